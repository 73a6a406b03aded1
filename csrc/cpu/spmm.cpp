// CPU g-SpMM kernels (compiled once per ISA, see isa.h).
//
// Forward: parallel over rows, rows cut by nonzeros (parallel_rows). Within a
// row the feature dimension is cut into register-sized chunks (256 bytes,
// then 128, then 64, then a tail); each chunk keeps its accumulator (and arg)
// in registers while it walks the row's edges, so X rows are read once per
// edge and Y written once. No fast-math: lane-wise accumulation in edge order
// is the same on every ISA up to FMA contraction.
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "hopkit/common.h"
#include "hopkit/spmm.h"

namespace hopkit {
namespace HOPKIT_ISA {
namespace {

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

template <int R, int MSG, int EK, int CH, bool FULL, class T, class I>
inline void forward_chunk(const SpmmArgs<T, I>& a, int64_t i, int64_t f0, int w, T* Y,
                          int64_t* arg) {
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
      if (e + 8 < end) __builtin_prefetch(a.X + int64_t(a.A.indices[e + 8]) * F + f0);
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

template <int R, int MSG, int EK, class T, class I>
void forward_impl(const SpmmArgs<T, I>& a, T* Y, int64_t* arg) {
  const int64_t work = a.A.indptr[a.A.n_rows] * a.F + a.A.n_rows * a.F;
  parallel_rows(a.A.indptr, a.A.n_rows, work, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i)
      for_chunks<T>(a.F, [&](auto CH, auto FULL, int64_t f0, int w) {
        forward_chunk<R, MSG, EK, CH.value, FULL.value>(a, i, f0, w, Y, arg);
      });
  });
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

template <int R, int MSG, int EK, class T, class I>
void edge_grad_impl(const SpmmArgs<T, I>& a, const T* dY, const int64_t* arg, T* dE) {
  const int64_t F = a.F;
  const int64_t work = a.A.indptr[a.A.n_rows] * F;
  parallel_rows(a.A.indptr, a.A.n_rows, work, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t b = a.A.indptr[i], end = a.A.indptr[i + 1];
      const T* dy = dY + i * F;
      if constexpr (R == SUM || R == MEAN) {
        // dmsg/dE is x for MUL and 1 for ADD / EDGE.
        const T dy_sum = (MSG != MUL && EK == 1) ? reduce_row<false>(dy, dy, F) : T(0);
        for (int64_t e = b; e < end; ++e) {
          const int64_t ee = a.eperm ? a.eperm[e] : e;
          const T* x = MSG == MUL ? a.X + int64_t(a.A.indices[e]) * F : nullptr;
          if constexpr (EK == 1) {
            dE[ee] = MSG == MUL ? reduce_row<true>(dy, x, F) : dy_sum;
          } else {
            T* de = dE + ee * F;
            for (int64_t f = 0; f < F; ++f) de[f] = MSG == MUL ? dy[f] * x[f] : dy[f];
          }
        }
      } else {
        for (int64_t e = b; e < end; ++e) {
          const int64_t ee = a.eperm ? a.eperm[e] : e;
          if constexpr (EK == 1) dE[ee] = T(0);
          else std::memset(dE + ee * F, 0, sizeof(T) * F);
        }
        const int64_t* g = arg + i * F;
        for (int64_t f = 0; f < F; ++f) {
          const int64_t e = g[f];
          if (e < 0) continue;
          const int64_t ee = a.eperm ? a.eperm[e] : e;
          const T c = MSG == MUL ? dy[f] * a.X[int64_t(a.A.indices[e]) * F + f] : dy[f];
          if constexpr (EK == 1) dE[ee] += c;
          else dE[ee * F + f] = c;
        }
      }
    }
  });
}

template <int R, int MSG, int EK, class T, class I>
void arg_grad_x_impl(const SpmmArgs<T, I>& a, const T* dY, const int64_t* arg, T* dX) {
  const int64_t F = a.F, n_rows = a.A.n_rows, n_cols = a.A.n_cols;
  // Each thread owns a range of destination rows of dX and scans all winners:
  // no atomics, no false sharing, a fixed summation order (increasing i).
  parallel_ranges(n_cols, n_rows * F * 2, [&](int64_t j0, int64_t j1) {
    std::memset(dX + j0 * F, 0, sizeof(T) * (j1 - j0) * F);
    for (int64_t i = 0; i < n_rows; ++i) {
      const int64_t* g = arg + i * F;
      const T* dy = dY + i * F;
      for (int64_t f = 0; f < F; ++f) {
        const int64_t e = g[f];
        if (e < 0) continue;
        const int64_t j = a.A.indices[e];
        if (j < j0 || j >= j1) continue;
        T d = dy[f];
        if constexpr (MSG == MUL) {
          const int64_t ee = a.eperm ? a.eperm[e] : e;
          d *= EK == 1 ? a.E[ee] : a.E[ee * F + f];
        }
        dX[j * F + f] += d;
      }
    }
  });
}

}  // namespace

template <class T, class I>
void spmm_forward(const SpmmArgs<T, I>& a, T* Y, int64_t* arg) {
  dispatch_kind(a.reduce, a.message, edge_kind(a), [&](auto R, auto M, auto K) {
    forward_impl<R.value, M.value, K.value>(a, Y, arg);
  });
}

template <class T, class I>
void spmm_edge_grad(const SpmmArgs<T, I>& a, const T* dY, const int64_t* arg, T* dE) {
  dispatch_kind(a.reduce, a.message, edge_kind(a), [&](auto R, auto M, auto K) {
    if constexpr (K.value != 0) edge_grad_impl<R.value, M.value, K.value>(a, dY, arg, dE);
  });
}

template <class T, class I>
void spmm_arg_grad_x(const SpmmArgs<T, I>& a, const T* dY, const int64_t* arg, T* dX) {
  dispatch_kind(a.reduce, a.message, edge_kind(a), [&](auto R, auto M, auto K) {
    if constexpr (R.value == MAX || R.value == MIN)
      arg_grad_x_impl<R.value, M.value, K.value>(a, dY, arg, dX);
  });
}

#define HOPKIT_INSTANTIATE(T, I)                                                            \
  template void spmm_forward<T, I>(const SpmmArgs<T, I>&, T*, int64_t*);                    \
  template void spmm_edge_grad<T, I>(const SpmmArgs<T, I>&, const T*, const int64_t*, T*);  \
  template void spmm_arg_grad_x<T, I>(const SpmmArgs<T, I>&, const T*, const int64_t*, T*);
HOPKIT_INSTANTIATE(float, int32_t)
HOPKIT_INSTANTIATE(float, int64_t)
HOPKIT_INSTANTIATE(double, int32_t)
HOPKIT_INSTANTIATE(double, int64_t)
#undef HOPKIT_INSTANTIATE

}  // namespace HOPKIT_ISA
}  // namespace hopkit
