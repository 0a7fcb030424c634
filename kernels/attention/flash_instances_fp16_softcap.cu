// Flash kernel instantiations for __half inputs with score softcapping (Gemma 2).
#include "kernels/attention/flash_launch.cuh"

SWRUN_INSTANTIATE_FLASH_KERNELS(__half, true, false)
