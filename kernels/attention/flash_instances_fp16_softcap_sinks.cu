// Flash kernel instantiations for __half inputs with score softcapping and attention sinks together.
#include "kernels/attention/flash_launch.cuh"

SWRUN_INSTANTIATE_FLASH_KERNELS(__half, true, true)
