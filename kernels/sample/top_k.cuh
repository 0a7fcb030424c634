// The k best entries of one row of logits on the device (greedy argmax and top-k candidates for sampling), so a
// decode step copies back k (id, value) pairs instead of the whole vocabulary.
#pragma once
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace swrun::cuda {

// Device bytes top_k_f32 needs as workspace for n entries and k candidates.
size_t top_k_workspace_bytes(int64_t n, int k);

// ids[k] and values[k] (device) receive the k best of x[0 .. n), best first: higher value first, the lower index
// among equal values, NaN never chosen; slots beyond the non-NaN entries get id -1 and value NaN. This is the
// order of swrun::top_candidates (runtime/sampler.h), so the CPU and GPU pick the same candidates. In levels: each
// block of a level leaves the k best of its span of entries in the workspace, until one block takes all that is
// left (two launches up to 262144 entries); deterministic. Launched overlapped.
void top_k_f32(const float* x, int64_t n, int k, void* workspace, int32_t* ids, float* values,
               cudaStream_t stream);

}  // namespace swrun::cuda
