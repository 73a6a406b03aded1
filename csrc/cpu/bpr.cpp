// Fused BPR loss kernels (compiled once per ISA, see isa.h; contract in bpr.h).
//
// bpr_scores is one parallel pass over the triples: three gathered rows, one
// float64 dot product each. bpr_backward first counting-sorts the 3B triple
// slots by destination row (serial, O(B + rows), in triple order), then runs
// parallel_rows over that row list: each touched destination row is summed in
// float64 by one thread and written once; untouched rows are not written. No
// atomics, no per-thread copies of the tables, the same bits for any thread
// count.
#include "hopkit/bpr.h"

#include <vector>

#include "hopkit/common.h"
#include "spmm_rows.h"

namespace hopkit {
namespace HOPKIT_ISA {
namespace {

using rows::prefetch_row;

constexpr int64_t kPrefetch = 8;  // triples (slots) ahead whose rows are prefetched

}  // namespace

template <class T, class I>
void bpr_scores(const BprArgs<T, I>& a, T* x) {
  const int64_t F = a.F;
  parallel_ranges(a.B, a.B * F, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      if (b + kPrefetch < b1) {
        const int64_t q = b + kPrefetch;
        prefetch_row(a.U + int64_t(a.users[q]) * F, F);
        prefetch_row(a.V + int64_t(a.pos[q]) * F, F);
        prefetch_row(a.V + int64_t(a.neg[q]) * F, F);
      }
      const T* u = a.U + int64_t(a.users[b]) * F;
      const T* vp = a.V + int64_t(a.pos[b]) * F;
      const T* vn = a.V + int64_t(a.neg[b]) * F;
      double s = 0.0;
#pragma omp simd reduction(+ : s)
      for (int64_t f = 0; f < F; ++f) s += double(u[f]) * (double(vn[f]) - double(vp[f]));
      x[b] = T(s);
    }
  });
}

template <class T, class I>
void bpr_backward(const BprArgs<T, I>& a, const T* c, T* dU, T* dV) {
  const int64_t B = a.B, F = a.F, nu = a.n_users;
  // Destination keys: user r -> r; item j -> item0 + j (one key space when shared).
  const int64_t item0 = a.shared ? 0 : nu;
  const int64_t K = a.shared ? nu : nu + a.n_items;
  std::vector<int64_t> ptr(K + 1, 0), slot(3 * B);
  for (int64_t b = 0; b < B; ++b) {
    ++ptr[int64_t(a.users[b]) + 1];
    ++ptr[item0 + int64_t(a.pos[b]) + 1];
    ++ptr[item0 + int64_t(a.neg[b]) + 1];
  }
  for (int64_t k = 0; k < K; ++k) ptr[k + 1] += ptr[k];
  {
    std::vector<int64_t> next(ptr.begin(), ptr.end() - 1);
    for (int64_t b = 0; b < B; ++b) {  // slot = 4 b + role (0 user, 1 positive, 2 negative)
      slot[next[int64_t(a.users[b])]++] = 4 * b;
      slot[next[item0 + int64_t(a.pos[b])]++] = 4 * b + 1;
      slot[next[item0 + int64_t(a.neg[b])]++] = 4 * b + 2;
    }
  }
  // The rows a slot reads: V[pos], V[neg] for a user's slot, U[user] for an item's.
  // (always_inline: GCC 12 drops the call of an outlined lambda that only
  // prefetches, as if it had no effect.)
  auto prefetch_slot = [&](int64_t s) __attribute__((always_inline)) {
    const int64_t b = slot[s] >> 2;
    if ((slot[s] & 3) == 0) {
      prefetch_row(a.V + int64_t(a.pos[b]) * F, F);
      prefetch_row(a.V + int64_t(a.neg[b]) * F, F);
    } else {
      prefetch_row(a.U + int64_t(a.users[b]) * F, F);
    }
  };
  parallel_rows(ptr.data(), K, 3 * B * F + K * F, [&](int64_t r0, int64_t r1) {
    std::vector<double> acc(F);
    const int64_t s_end = ptr[r1];
    for (int64_t s = ptr[r0]; s < std::min(ptr[r0] + kPrefetch, s_end); ++s) prefetch_slot(s);
    for (int64_t r = r0; r < r1; ++r) {
      if (ptr[r] == ptr[r + 1]) continue;  // untouched: left as given (zero)
      T* out = r < nu ? dU + r * F : dV + (r - nu) * F;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t s = ptr[r]; s < ptr[r + 1]; ++s) {
        if (s + kPrefetch < s_end) prefetch_slot(s + kPrefetch);
        const int64_t b = slot[s] >> 2, role = slot[s] & 3;
        const double cb = double(c[b]);
        if (role == 0) {
          const T* vp = a.V + int64_t(a.pos[b]) * F;
          const T* vn = a.V + int64_t(a.neg[b]) * F;
#pragma omp simd
          for (int64_t f = 0; f < F; ++f) acc[f] += cb * (double(vn[f]) - double(vp[f]));
        } else {
          const T* u = a.U + int64_t(a.users[b]) * F;
          const double w = role == 2 ? cb : -cb;
#pragma omp simd
          for (int64_t f = 0; f < F; ++f) acc[f] += w * double(u[f]);
        }
      }
#pragma omp simd
      for (int64_t f = 0; f < F; ++f) out[f] = T(acc[f]);
    }
  });
}

#define HOPKIT_INSTANTIATE(T, I)                                  \
  template void bpr_scores<T, I>(const BprArgs<T, I>&, T*);       \
  template void bpr_backward<T, I>(const BprArgs<T, I>&, const T*, T*, T*);
HOPKIT_FOR_VALUE_INDEX_TYPES(HOPKIT_INSTANTIATE)
#undef HOPKIT_INSTANTIATE

}  // namespace HOPKIT_ISA
}  // namespace hopkit
