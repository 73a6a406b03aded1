// CUDA negative sampling, same contract and the same draws as
// hopkit/sampling.h: sample s = b * n_neg + j depends only on (seed, s)
// (counter-based splitmix64), so the device returns exactly the items the
// CPU backends return. Rows of the CSR (indptr int64, indices int32 or int64)
// must be sorted and duplicate-free; users / out int32 or int64. One thread
// per sample, launched on `stream` without synchronising.
#pragma once
#include <cstdint>

namespace hopkit {
namespace cuda {

void sample_negatives(const int64_t* indptr, const void* indices, bool indices_i64,
                      int64_t n_items, const void* users, bool users_i64, int64_t n_batch,
                      int64_t n_neg, uint64_t seed, void* out, bool out_i64, void* stream);

}  // namespace cuda
}  // namespace hopkit
