// Flash kernel instantiations for __nv_bfloat16 inputs with score softcapping and attention sinks together.
#include "kernels/attention/flash_launch.cuh"

SWRUN_INSTANTIATE_FLASH_KERNELS(__nv_bfloat16, true, true)
