// Flash kernel instantiations for __half inputs, without softcapping or sinks.
#include "kernels/attention/flash_launch.cuh"

SWRUN_INSTANTIATE_FLASH_KERNELS(__half, false, false)
SWRUN_INSTANTIATE_FLASH_COMBINE(__half, false)
