// Flash kernel instantiations for __nv_bfloat16 inputs with attention sinks (gpt-oss), and the split-K combine that adds
// them.
#include "kernels/attention/flash_launch.cuh"

SWRUN_INSTANTIATE_FLASH_KERNELS(__nv_bfloat16, false, true)
SWRUN_INSTANTIATE_FLASH_COMBINE(__nv_bfloat16, true)
