// Negative sampling for implicit-feedback training (BPR): uniform items that
// are not among a user's positives. No Python, no torch.
#pragma once
#include <cstdint>

namespace hopkit {

// Counter-based randomness: draw t of sample s under `seed` is
//   z = mix64(mix64(mix64(seed) ^ s) + t * 0x9E3779B97F4A7C15)
// (mix64 = the splitmix64 finalizer), and an item in [0, n) is
// ((z >> 32) * n) >> 32 (n < 2^32). Each sample depends only on (seed, s), so
// results are identical for every thread count and every backend.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Rejection draws per sample before the exact fallback (below).
constexpr int kNegativeTries = 32;

// For every sample s = b * n_neg + j (b < n_users_batch, j < n_neg) writes to
// out[s] an item in [0, n_items) that is not in row users[b] of the CSR
// (indptr, indices), whose rows must be sorted and duplicate-free: up to
// kNegativeTries uniform draws, each rejected by a binary search in the row;
// if all are rejected (a user who has most of the catalogue), draw
// r in [0, n_items - deg) and take the r-th item missing from the row
// (exactly uniform over the negatives). A user with every item gets -1.
// Parallel over samples (each sample written by one thread).
template <class I, class O>
void sample_negatives(const int64_t* indptr, const I* indices, int64_t n_items, const O* users,
                      int64_t n_users_batch, int64_t n_neg, uint64_t seed, O* out);

}  // namespace hopkit
