// Negative sampling. Parallel decomposition: contiguous ranges of samples per
// thread (parallel_ranges); each sample's draws depend only on (seed, index).
#include "hopkit/sampling.h"

#include <algorithm>

#include "hopkit/common.h"

namespace hopkit {

namespace {

inline int64_t draw(uint64_t key, int64_t t, int64_t n) {
  uint64_t z = mix64(key + uint64_t(t) * 0x9E3779B97F4A7C15ULL);
  return int64_t(((z >> 32) * uint64_t(n)) >> 32);
}

// The r-th (0-based) integer in [0, n) missing from the sorted row a[0..deg).
template <class I>
inline int64_t rth_missing(const I* a, int64_t deg, int64_t r) {
  // missing(k) = a[k] - k = how many integers below a[k] are missing; find the
  // number of row entries k with a[k] - k <= r: the answer is r + k.
  int64_t lo = 0, hi = deg;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (int64_t(a[mid]) - mid <= r) lo = mid + 1; else hi = mid;
  }
  return r + lo;
}

}  // namespace

template <class I, class O>
void sample_negatives(const int64_t* indptr, const I* indices, int64_t n_items, const O* users,
                      int64_t n_users_batch, int64_t n_neg, uint64_t seed, O* out) {
  const int64_t n = n_users_batch * n_neg;
  const uint64_t base = mix64(seed);
  parallel_ranges(n, n * 8, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t u = int64_t(users[s / n_neg]);
      const I* row = indices + indptr[u];
      const int64_t deg = indptr[u + 1] - indptr[u];
      const uint64_t key = mix64(base ^ uint64_t(s));
      int64_t item = -1;
      if (deg < n_items) {
        for (int t = 0; t < kNegativeTries; ++t) {
          const int64_t c = draw(key, t, n_items);
          if (!std::binary_search(row, row + deg, I(c))) { item = c; break; }
        }
        if (item < 0) item = rth_missing(row, deg, draw(key, kNegativeTries, n_items - deg));
      }
      out[s] = O(item);
    }
  });
}

#define HOPKIT_INST(I, O)                                                                 \
  template void sample_negatives<I, O>(const int64_t*, const I*, int64_t, const O*, int64_t, \
                                       int64_t, uint64_t, O*);
HOPKIT_INST(int32_t, int32_t)
HOPKIT_INST(int32_t, int64_t)
HOPKIT_INST(int64_t, int32_t)
HOPKIT_INST(int64_t, int64_t)
#undef HOPKIT_INST

}  // namespace hopkit
