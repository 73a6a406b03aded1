// The g-SpMM row kernel and helpers shared by the SIMD kernel files (spmm,
// propagate, attention, bpr), in namespace hopkit::<isa>::rows: every ISA build of
// a kernel file gets its own copy. Internal: not a contract header.
#pragma once
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "hopkit/common.h"
#include "hopkit/spmm.h"

namespace hopkit {
namespace HOPKIT_ISA {
namespace rows {

// spmm's epilogue: Y (divided by the row length for MEAN; 0 for an empty
// row) and, for MAX/MIN when arg is given, the winning edge (-1 when empty).
template <class T>
struct SpmmStore {
  T* Y;
  int64_t* arg;
  int64_t F;
  template <int R, int CH>
  inline void put(int64_t i, int64_t f0, int n, int64_t b, int64_t end, const T* acc,
                  const int32_t* win) const {
    constexpr bool ARG = R == MAX || R == MIN;
    T* y = Y + i * F + f0;
    if constexpr (R == MEAN) {
      const T deg = T(end - b);
      for (int f = 0; f < n; ++f) y[f] = end > b ? acc[f] / deg : T(0);
    } else if constexpr (ARG) {
      for (int f = 0; f < n; ++f) y[f] = win[f] < 0 ? T(0) : acc[f];
      if (arg) {
        int64_t* g = arg + i * F + f0;
        for (int f = 0; f < n; ++f) g[f] = win[f] < 0 ? int64_t(-1) : b + win[f];
      }
    } else {
      for (int f = 0; f < n; ++f) y[f] = acc[f];
    }
  }
};

// Prefetches every cache line of n values at p (a gathered row: the hardware
// prefetchers do not follow the random row order).
template <class T>
__attribute__((always_inline)) inline void prefetch_row(const T* p, int64_t n) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int64_t b = 0; b < n * int64_t(sizeof(T)); b += 64) __builtin_prefetch(c + b);
}

template <int V>
using IC = std::integral_constant<int, V>;

// Calls fn(IC<reduce>, IC<message>, IC<edge kind>) for the runtime triple;
// edge kind: 0 = no edge features, 1 = one per edge, 2 = one row per edge.
template <class Fn>
void dispatch_kind(int reduce, int message, int ekind, Fn&& fn) {
  auto on_reduce = [&](auto R) {
    if (message == COPY) return fn(R, IC<COPY>{}, IC<0>{});
    if (ekind == 1) {
      if (message == MUL) return fn(R, IC<MUL>{}, IC<1>{});
      if (message == ADD) return fn(R, IC<ADD>{}, IC<1>{});
      return fn(R, IC<EDGE>{}, IC<1>{});
    }
    if (message == MUL) return fn(R, IC<MUL>{}, IC<2>{});
    if (message == ADD) return fn(R, IC<ADD>{}, IC<2>{});
    return fn(R, IC<EDGE>{}, IC<2>{});
  };
  switch (reduce) {
    case SUM: return on_reduce(IC<SUM>{});
    case MEAN: return on_reduce(IC<MEAN>{});
    case MAX: return on_reduce(IC<MAX>{});
    default: return on_reduce(IC<MIN>{});
  }
}

template <class T, class I>
int edge_kind(const SpmmArgs<T, I>& a) {
  return a.e_width == 0 ? 0 : (a.e_width == 1 && a.F != 1 ? 1 : 2);
}

template <int MSG, class T>
inline T message(T x, T e) {
  if constexpr (MSG == COPY) return x;
  else if constexpr (MSG == MUL) return x * e;
  else if constexpr (MSG == ADD) return x + e;
  else return e;
}

// Walks the feature dimension in chunks of W = 256, 128, 64 bytes and a tail.
template <class T, class Chunk>
inline void for_chunks(int64_t F, Chunk&& chunk) {
  constexpr int W = 256 / int(sizeof(T));
  int64_t f0 = 0;
  for (; f0 + W <= F; f0 += W) chunk(IC<W>{}, std::true_type{}, f0, W);
  if (f0 + W / 2 <= F) { chunk(IC<W / 2>{}, std::true_type{}, f0, W / 2); f0 += W / 2; }
  if (f0 + W / 4 <= F) { chunk(IC<W / 4>{}, std::true_type{}, f0, W / 4); f0 += W / 4; }
  if (f0 < F) chunk(IC<W / 4>{}, std::false_type{}, f0, int(F - f0));
}

// One row chunk of g-SpMM: the accumulator (and arg) of CH features stays in
// registers while the row's edges are walked (gathered rows are prefetched up
// to edge pf_end, exclusive); `store.put` writes the result
// (SpmmStore: Y and arg; other ops pass their own epilogue, e.g. propagate's
// y = a * X[i] + b * acc).
template <int R, int MSG, int EK, int CH, bool FULL, class T, class I, class Store>
inline void forward_chunk(const SpmmArgs<T, I>& a, int64_t i, int64_t f0, int w,
                          const Store& store, int64_t pf_end) {
  const int n = FULL ? CH : w;
  const int64_t F = a.F, b = a.A.indptr[i], end = a.A.indptr[i + 1];
  constexpr bool ARG = R == MAX || R == MIN;
  // The winner is kept as a 32-bit offset into the row (same lane width as a
  // float accumulator, so the select vectorises); rows have < 2^31 edges.
  T acc[CH];
  int32_t win[CH];
  for (int f = 0; f < n; ++f) {
    acc[f] = T(0);
    if constexpr (ARG) win[f] = -1;
  }
  for (int64_t e = b; e < end; ++e) {
    const int64_t ee = a.eperm ? a.eperm[e] : e;
    const T* x = nullptr;
    if constexpr (MSG != EDGE) {
      x = a.X + int64_t(a.A.indices[e]) * F + f0;
      // Prefetch 8 edges ahead, across row ends up to pf_end (the end of this
      // thread's rows): short rows are the common case on power-law graphs.
      if (e + 8 < pf_end) prefetch_row(a.X + int64_t(a.A.indices[e + 8]) * F + f0, n);
    }
    const T es = EK == 1 ? a.E[ee] : T(0);
    const T* ev = EK == 2 ? a.E + ee * F + f0 : nullptr;
    const int32_t k = int32_t(e - b);
#pragma omp simd
    for (int f = 0; f < n; ++f) {
      const T m = message<MSG>(MSG != EDGE ? x[f] : T(0), EK == 2 ? ev[f] : es);
      if constexpr (R == SUM || R == MEAN) {
        acc[f] += m;
      } else {
        // First non-NaN message is taken; later ones replace it only when
        // strictly better, so ties keep the earliest edge and NaN never wins.
        const bool better = R == MAX ? (m > acc[f]) : (m < acc[f]);
        const bool take = better | ((win[f] < 0) & (m == m));
        acc[f] = take ? m : acc[f];
        win[f] = take ? k : win[f];
      }
    }
  }
  store.template put<R, CH>(i, f0, n, b, end, acc, win);
}

// Lane-parallel dot product / sum in a fixed order (no reassociation needed
// for vectorisation, so results do not depend on compiler flags).
template <bool DOT, class T>
inline T reduce_row(const T* u, const T* v, int64_t n) {
  constexpr int L = 64 / int(sizeof(T)) * 2;
  T lanes[L] = {};
  int64_t f = 0;
  for (; f + L <= n; f += L)
    for (int l = 0; l < L; ++l) lanes[l] += DOT ? u[f + l] * v[f + l] : u[f + l];
  T s = 0;
  for (int l = 0; l < L; ++l) s += lanes[l];
  for (; f < n; ++f) s += DOT ? u[f] * v[f] : u[f];
  return s;
}

}  // namespace rows
}  // namespace HOPKIT_ISA
}  // namespace hopkit
