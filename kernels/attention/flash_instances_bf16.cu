// Flash kernel instantiations for __nv_bfloat16 inputs.
#include "kernels/attention/flash_launch.cuh"

SWRUN_INSTANTIATE_FLASH_LAUNCHERS(__nv_bfloat16)
