// Flash kernel instantiations for __half inputs.
#include "kernels/attention/flash_launch.cuh"

SWRUN_INSTANTIATE_FLASH_LAUNCHERS(__half)
