// Flash kernel instantiations for __nv_bfloat16 inputs, without softcapping or sinks.
#include "kernels/attention/flash_launch.cuh"

SWRUN_INSTANTIATE_FLASH_KERNELS(__nv_bfloat16, false, false)
SWRUN_INSTANTIATE_FLASH_COMBINE(__nv_bfloat16, false)
