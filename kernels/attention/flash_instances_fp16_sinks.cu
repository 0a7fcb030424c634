// Flash kernel instantiations for __half inputs with attention sinks (gpt-oss), and the split-K combine that adds
// them.
#include "kernels/attention/flash_launch.cuh"

SWRUN_INSTANTIATE_FLASH_KERNELS(__half, false, true)
SWRUN_INSTANTIATE_FLASH_COMBINE(__half, true)
