// Shared helpers for hopkit's CPU kernels: thread control, nnz-balanced row
// partitioning and the ISA dispatch macros. No Python, no torch.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#ifdef _OPENMP
#include <omp.h>
#endif

// M(T, I) for every value type T and index type I the kernels are built for
// (the explicit instantiations at the end of each kernel file).
#define HOPKIT_FOR_VALUE_INDEX_TYPES(M) \
  M(float, int32_t) M(float, int64_t) M(double, int32_t) M(double, int64_t)

namespace hopkit {

// hopkit's own thread count, set from Python (hopkit.set_num_threads,
// HOPKIT_NUM_THREADS) and passed to every parallel region's num_threads
// clause. It is not OpenMP's nthreads ICV: torch sets that one too when it
// shares the runtime, and it is per thread. 0 (never set): the ICV.
inline std::atomic<int> num_threads_setting{0};

inline int max_threads() {
#ifdef _OPENMP
  const int n = num_threads_setting.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();
#else
  return 1;
#endif
}

inline void set_num_threads(int n) { num_threads_setting.store(n, std::memory_order_relaxed); }

// First row r with cost(r) = indptr[r] + r >= target: rows are split by
// nonzeros plus a unit per row, so a power-law degree distribution does not
// leave a thread idle and long runs of empty rows still cost something.
inline int64_t row_at_cost(const int64_t* indptr, int64_t n_rows, double target) {
  int64_t lo = 0, hi = n_rows;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (double(indptr[mid] + mid) < target) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// Calls body(r0, r1) on disjoint row ranges covering [0, n_rows) in parallel.
// The ranges are cut by cost (nnz + rows) into a few chunks per thread and
// handed out dynamically (a busy core on a shared machine does not stall the
// call). Results never depend on the schedule: each row is written by one call.
template <class Body>
void parallel_rows(const int64_t* indptr, int64_t n_rows, int64_t work, Body&& body) {
  int T = max_threads();
  if (T <= 1 || work < (int64_t(1) << 16) || n_rows < 2) {
    body(int64_t(0), n_rows);
    return;
  }
  const int64_t chunks = std::min<int64_t>(int64_t(T) * 8, n_rows);
  const double total = double(indptr[n_rows] + n_rows);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(T)
#endif
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t r0 = c == 0 ? 0 : row_at_cost(indptr, n_rows, total * double(c) / double(chunks));
    int64_t r1 = c == chunks - 1 ? n_rows
                                 : row_at_cost(indptr, n_rows, total * double(c + 1) / double(chunks));
    if (r1 > r0) body(r0, r1);
  }
}

// Calls body(i0, i1) on `parts` contiguous equal ranges of [0, n), in parallel.
template <class Body>
void parallel_ranges(int64_t n, int64_t work, Body&& body) {
  int T = max_threads();
  if (T <= 1 || work < (int64_t(1) << 16) || n < 2) {
    body(int64_t(0), n);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(T)
#endif
  for (int t = 0; t < T; ++t) {
    int64_t i0 = n * t / T, i1 = n * (t + 1) / T;
    if (i1 > i0) body(i0, i1);
  }
}

// Runs body(t, T) on T threads (T = 1 runs inline).
template <class Body>
void parallel_threads(int T, Body&& body) {
#ifdef _OPENMP
  if (T > 1) {
#pragma omp parallel num_threads(T)
    body(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  body(0, 1);
}

}  // namespace hopkit
