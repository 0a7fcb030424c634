// Flash kernel instantiations for __half inputs, without softcapping.
#include "kernels/attention/flash_launch.cuh"

SWRUN_INSTANTIATE_FLASH_KERNELS(__half, false)
SWRUN_INSTANTIATE_FLASH_COMBINE(__half)
