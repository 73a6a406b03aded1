// CUDA g-SpMM forward, its edge-feature gradient and SDDMM (contract in
// hopkit/cuda/spmm.h; the X gradient runs the forward on the transpose).
//
// Forward decomposition (power-law safe, GE-SpMM / merge-SpMM style): rows
// are cut on the host into segments of at most seg_len edges; one warp takes
// one (segment, feature tile). The feature tile is 32 lanes x VEC values
// (VEC = 16 bytes / sizeof(T): one vector load per lane per edge). When a
// row has fewer than 32 vectors (F = 64 float32 is 16 vectors), the warp
// splits into G = 32 / lanes-per-row groups that take interleaved edges and
// are merged by an xor butterfly (commutative steps: every lane ends with the
// same bits). Column indices, edge ids and scalar weights are read 32 at a
// time, coalesced, and broadcast with shuffles. A row with one segment is
// written directly; a split row writes partials to a workspace that a second
// kernel folds in segment order. Nothing depends on scheduling: results are
// deterministic and no float atomics are used.
#include <algorithm>

#include "common.cuh"
#include "hopkit/cuda/spmm.h"
#include "hopkit/spmm.h"

namespace hopkit {
namespace cuda {
namespace {

template <int V>
using IC = std::integral_constant<int, V>;

constexpr int WARPS_PER_BLOCK = 8;

// Max/min merge of (vb, wb) into (va, wa): wins when it exists and is
// strictly better, or equal with a smaller edge offset (first edge in CSR
// order). A missing side (w < 0) never wins; NaN never became a candidate.
template <class A>
__device__ __forceinline__ void merge_arg(A& va, int32_t& wa, A vb, int32_t wb, bool is_max) {
  const bool better = is_max ? (vb > va) : (vb < va);
  if (wb >= 0 && (wa < 0 || better || (vb == va && wb < wa))) {
    va = vb;
    wa = wb;
  }
}

// Final value of one output entry from its accumulator.
template <bool ARG, class A>
__device__ __forceinline__ A finalize(A acc, int32_t win, int reduce, int64_t deg) {
  if constexpr (ARG) return win < 0 ? A(0) : acc;
  else return reduce == MEAN ? (deg > 0 ? acc / A(deg) : A(0)) : acc;
}

// y = ep_b * y + ep_a * X0[row, f0 .. f0 + VEC) (propagate's Horner step).
template <class T, int VEC, class A>
__device__ __forceinline__ void epilogue(const SpmmCall& c, int64_t row, int64_t f0,
                                         A (&out)[VEC]) {
  if (c.X0 == nullptr && c.ep_b == 1.0) return;
  A x0[VEC];
  if (c.X0) load_vec<T, VEC>(static_cast<const T*>(c.X0) + row * c.F + f0, x0);
#pragma unroll
  for (int q = 0; q < VEC; ++q)
    out[q] = A(c.ep_b) * out[q] + (c.X0 ? A(c.ep_a) * x0[q] : A(0));
}

// Phase 1: one warp per (segment, feature tile); see the file comment.
// EK: 0 no edge features (message COPY), 1 one scalar per edge, 2 a row per edge.
// U: edges per group and step (loads in flight per lane).
template <class T, bool ARG, int VEC, int EK, int U>
__global__ void __launch_bounds__(WARPS_PER_BLOCK * 32)
    spmm_segments_kernel(SpmmCall c, int lpr_log2, int64_t tiles, T* __restrict__ Y,
                         int64_t* __restrict__ arg, typename AccOf<T>::type* __restrict__ ws_val,
                         int32_t* __restrict__ ws_arg) {
  using A = typename AccOf<T>::type;
  const T* __restrict__ X = static_cast<const T*>(c.X);
  const T* __restrict__ E = static_cast<const T*>(c.E);
  const int lane = threadIdx.x & 31;
  const int G = 32 >> lpr_log2;                // edge groups per warp
  const int g = lane >> lpr_log2;              // this lane's group
  const int l = lane & ((1 << lpr_log2) - 1);  // lane within the group
  const int64_t F = c.F;
  const int64_t nvec = F / VEC;  // the host picks VEC > 1 only when VEC divides F
  const int msg = EK == 0 ? int(COPY) : c.message;
  const bool is_max = c.reduce == MAX;
  const int64_t items = c.plan.n_segs * tiles;
  const int64_t stride = int64_t(gridDim.x) * WARPS_PER_BLOCK;
  for (int64_t w = int64_t(blockIdx.x) * WARPS_PER_BLOCK + (threadIdx.x >> 5); w < items;
       w += stride) {  // warp-uniform loop: every lane of the warp reaches the shuffles
    const int64_t s = w / tiles;
    const int64_t tile = w - s * tiles;
    const int64_t row = c.plan.seg_row[s];
    const int64_t row_b = c.A.indptr[row], row_e = c.A.indptr[row + 1];
    const int64_t start = c.plan.seg_start[s];
    const int64_t end = min(start + c.plan.seg_len, row_e);
    const int64_t v = tile * 32 + l;
    const bool active = v < nvec;
    const int64_t f0 = v * VEC;
    A acc[VEC];
    int32_t win[VEC];
#pragma unroll
    for (int q = 0; q < VEC; ++q) {
      acc[q] = A(0);
      win[q] = -1;
    }
    const bool need_ee = EK == 2 || c.mask;
    for (int64_t cb = start; cb < end; cb += 32) {
      const int n = int(min(int64_t(32), end - cb));
      int32_t j_l = 0;
      long long ee_l = 0;
      A w_l = A(0);
      if (lane < n) {
        j_l = c.A.indices[cb + lane];
        ee_l = c.eperm ? c.eperm[cb + lane] : cb + lane;
        if constexpr (EK == 1) w_l = to_acc(E[ee_l]);
      }
      // Each group takes U edges per step: all U row loads are issued before
      // any is used, so every lane has U 16-byte gathers in flight.
      for (int k0 = 0; k0 < n; k0 += G * U) {
        int32_t j[U];
        long long ee[U];
        A we[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int src = (k0 + u * G + g) & 31;  // edges past n are never used
          j[u] = __shfl_sync(FULL_MASK, j_l, src);
          ee[u] = need_ee ? __shfl_sync(FULL_MASK, ee_l, src) : 0;
          we[u] = EK == 1 ? __shfl_sync(FULL_MASK, w_l, src) : A(0);
        }
        A x[U][VEC], ev[U][VEC];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          if (k0 + u * G + g < n && active) {
            if (msg != EDGE) load_vec<T, VEC>(X + int64_t(j[u]) * F + f0, x[u]);
            if constexpr (EK == 2) load_vec<T, VEC>(E + ee[u] * F + f0, ev[u]);
          }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int k = k0 + u * G + g;
          if (!(k < n && active)) continue;
          A m[VEC];
#pragma unroll
          for (int q = 0; q < VEC; ++q) {
            const A e = EK == 2 ? ev[u][q] : we[u];
            const A xm = msg != EDGE ? x[u][q] : A(0);
            m[q] = msg == COPY ? xm : msg == MUL ? xm * e : msg == ADD ? xm + e : e;
          }
          if (c.mask) {
            const int64_t* mk = c.mask + int64_t(j[u]) * F + f0;
#pragma unroll
            for (int q = 0; q < VEC; ++q)
              if (mk[q] != ee[u]) m[q] = A(0);
          }
          if constexpr (ARG) {
            const int32_t pos = int32_t(cb + k - row_b);
#pragma unroll
            for (int q = 0; q < VEC; ++q) {
              // A group's edges arrive in CSR order: strictly better, or
              // the first non-NaN message, replaces the kept one.
              const bool better = is_max ? (m[q] > acc[q]) : (m[q] < acc[q]);
              if (better || (win[q] < 0 && m[q] == m[q])) {
                acc[q] = m[q];
                win[q] = pos;
              }
            }
          } else {
#pragma unroll
            for (int q = 0; q < VEC; ++q) acc[q] += m[q];
          }
        }
      }
    }
    // Merge the G edge groups (partner lanes hold the same features).
    for (int off = 1 << lpr_log2; off < 32; off <<= 1) {
#pragma unroll
      for (int q = 0; q < VEC; ++q) {
        const A o = __shfl_xor_sync(FULL_MASK, acc[q], off);
        if constexpr (ARG) {
          const int32_t ow = __shfl_xor_sync(FULL_MASK, win[q], off);
          merge_arg(acc[q], win[q], o, ow, is_max);
        } else {
          acc[q] += o;
        }
      }
    }
    if (g == 0 && active) {
      const int64_t slot = c.plan.seg_slot[s];
      if (slot < 0) {
        A out[VEC];
#pragma unroll
        for (int q = 0; q < VEC; ++q) out[q] = finalize<ARG>(acc[q], win[q], c.reduce, row_e - row_b);
        if (!ARG) epilogue<T, VEC>(c, row, f0, out);
        store_vec<T, VEC>(Y + row * F + f0, out);
        if (ARG && arg) {
#pragma unroll
          for (int q = 0; q < VEC; ++q)
            arg[row * F + f0 + q] = win[q] < 0 ? int64_t(-1) : row_b + win[q];
        }
      } else {
#pragma unroll
        for (int q = 0; q < VEC; ++q) {
          ws_val[slot * F + f0 + q] = acc[q];
          if constexpr (ARG) ws_arg[slot * F + f0 + q] = win[q];
        }
      }
    }
  }
}

// Phase 2: one thread per (split row, feature); folds the row's segment
// partials in segment (= edge) order and writes the final entry.
template <class T, bool ARG>
__global__ void spmm_combine_kernel(SpmmCall c, T* __restrict__ Y, int64_t* __restrict__ arg,
                                    const typename AccOf<T>::type* __restrict__ ws_val,
                                    const int32_t* __restrict__ ws_arg) {
  using A = typename AccOf<T>::type;
  const int64_t F = c.F;
  const int64_t total = c.plan.n_split * F;
  const bool is_max = c.reduce == MAX;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = t / F, f = t - k * F;
    const int64_t row = c.plan.split_row[k];
    A acc = A(0);
    int32_t win = -1;
    for (int64_t s = c.plan.split_ptr[k]; s < c.plan.split_ptr[k + 1]; ++s) {
      if constexpr (ARG) merge_arg(acc, win, ws_val[s * F + f], ws_arg[s * F + f], is_max);
      else acc += ws_val[s * F + f];
    }
    const int64_t row_b = c.A.indptr[row], deg = c.A.indptr[row + 1] - row_b;
    A out[1] = {finalize<ARG>(acc, win, c.reduce, deg)};
    if (!ARG) epilogue<T, 1>(c, row, f, out);
    Y[row * F + f] = from_acc<T>(out[0]);
    if (ARG && arg) arg[row * F + f] = win < 0 ? int64_t(-1) : row_b + win;
  }
}

// Row of edge e: the last r with indptr[r] <= e (empty rows are skipped).
__device__ __forceinline__ int64_t row_of_edge(const int64_t* indptr, int64_t n_rows, int64_t e) {
  int64_t lo = 0, hi = n_rows;  // answer in [0, n_rows)
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) >> 1;
    if (indptr[mid] <= e) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// Edge gradient / SDDMM: one warp per edge, lanes over the features
// (coalesced rows of dY and X); e_width = 1 sums with an xor butterfly.
template <class T, int EK>
__global__ void __launch_bounds__(WARPS_PER_BLOCK * 32)
    spmm_edge_grad_kernel(SpmmCall c, const T* __restrict__ dY, const int64_t* __restrict__ arg,
                          T* __restrict__ dE) {
  using A = typename AccOf<T>::type;
  const T* __restrict__ X = static_cast<const T*>(c.X);
  const int lane = threadIdx.x & 31;
  const int64_t F = c.F;
  const bool mul = c.message == MUL;
  const bool is_arg = c.reduce == MAX || c.reduce == MIN;
  const int64_t stride = int64_t(gridDim.x) * WARPS_PER_BLOCK;
  for (int64_t e = int64_t(blockIdx.x) * WARPS_PER_BLOCK + (threadIdx.x >> 5); e < c.A.nnz;
       e += stride) {
    const int64_t i = row_of_edge(c.A.indptr, c.A.n_rows, e);
    const int64_t j = c.A.indices[e];
    const int64_t ee = c.eperm ? c.eperm[e] : e;
    A sum = A(0);
    for (int64_t f = lane; f < F; f += 32) {
      A d = to_acc(dY[i * F + f]);
      if (mul) d *= to_acc(X[j * F + f]);
      if (is_arg && arg[i * F + f] != e) d = A(0);
      if constexpr (EK == 1) sum += d;
      else dE[ee * F + f] = from_acc<T>(d);
    }
    if constexpr (EK == 1) {
      for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(FULL_MASK, sum, off);
      if (lane == 0) dE[ee] = from_acc<T>(sum);
    }
  }
}

void check_call(const SpmmCall& c) {
  if (c.message < COPY || c.message > EDGE || c.reduce < SUM || c.reduce > MIN)
    throw std::invalid_argument("hopkit._cuda.spmm: bad message/reduce code");
  if (c.message != COPY && c.e_width == 0)
    throw std::invalid_argument("hopkit._cuda.spmm: message needs edge features");
  if (c.F < 0 || c.A.n_rows < 0 || c.A.nnz < 0)
    throw std::invalid_argument("hopkit._cuda.spmm: negative size");
  // Empty arrays may have null data pointers; X and E are read only through edges.
  if (c.A.nnz > 0 && c.F > 0) {
    if (c.e_width != 0 && !c.E)
      throw std::invalid_argument("hopkit._cuda.spmm: edge features pointer is null");
    if (c.message != EDGE && !c.X) throw std::invalid_argument("hopkit._cuda.spmm: X is null");
  }
}

}  // namespace

static int g_spmm_unroll = 0;  // 0: by value type
int spmm_unroll() { return g_spmm_unroll; }
void set_spmm_unroll(int u) {
  if (u != 0 && u != 1 && u != 2 && u != 4 && u != 8)
    throw std::invalid_argument("hopkit._cuda.set_spmm_unroll: 0 (by value type), 1, 2, 4 or 8");
  g_spmm_unroll = u;
}

void spmm_forward(const SpmmCall& c, void* Y, int64_t* arg, void* ws_val, int32_t* ws_arg,
                  void* stream) {
  check_call(c);
  if (c.A.n_rows == 0 || c.F == 0) return;
  if (c.plan.n_segs < c.A.n_rows || c.plan.seg_len < 1)
    throw std::invalid_argument("hopkit._cuda.spmm_forward: bad segment plan");
  const bool is_arg = c.reduce == MAX || c.reduce == MIN;
  if (c.plan.n_slots > 0 && (!ws_val || (is_arg && !ws_arg)))
    throw std::invalid_argument("hopkit._cuda.spmm_forward: workspace missing");
  if (c.mask && (is_arg || !c.eperm))
    throw std::invalid_argument("hopkit._cuda.spmm_forward: mask needs sum/mean and eperm");
  if (c.X0 && is_arg) throw std::invalid_argument("hopkit._cuda.spmm_forward: epilogue needs sum/mean");
  const int ek = c.e_width == 0 ? 0 : (c.e_width == 1 && c.F != 1 ? 1 : 2);
  cudaStream_t st = as_stream(stream);
  dispatch_dtype(c.dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = typename AccOf<T>::type;
    constexpr int V = vec16<T>();
    const bool vec = c.F % V == 0 && aligned16(Y) && (c.message == EDGE || aligned16(c.X)) &&
                     (ek != 2 || aligned16(c.E)) && (!c.X0 || aligned16(c.X0));
    const int64_t nvec = vec ? c.F / V : c.F;
    int lpr_log2 = 5;
    int64_t tiles = (nvec + 31) / 32;
    if (nvec < 32) {
      lpr_log2 = 0;
      while ((int64_t(1) << lpr_log2) < nvec) ++lpr_log2;
      tiles = 1;
    }
    const int64_t items = c.plan.n_segs * tiles;
    auto launch = [&](auto ARGc, auto VECc, auto EKc) {
      auto go = [&](auto Uc) {
        spmm_segments_kernel<T, bool(ARGc.value), VECc.value, EKc.value, Uc.value>
            <<<grid_for(items, WARPS_PER_BLOCK), WARPS_PER_BLOCK * 32, 0, st>>>(
                c, lpr_log2, tiles, static_cast<T*>(Y), arg, static_cast<A*>(ws_val), ws_arg);
      };
      // Measured on an H200 (docs/benchmarks.md): 2 in flight for 4- and
      // 8-byte values, 1 for half types (8 values per 16-byte load already).
      const int u = spmm_unroll() ? spmm_unroll() : (sizeof(T) >= 4 ? 2 : 1);
      if (u == 1) go(IC<1>{});
      else if (u == 2) go(IC<2>{});
      else if (u == 8) go(IC<8>{});
      else go(IC<4>{});
    };
    auto on_ek = [&](auto ARGc, auto VECc) {
      if (ek == 0) launch(ARGc, VECc, IC<0>{});
      else if (ek == 1) launch(ARGc, VECc, IC<1>{});
      else launch(ARGc, VECc, IC<2>{});
    };
    auto on_vec = [&](auto ARGc) {
      if (vec) on_ek(ARGc, IC<V>{});
      else on_ek(ARGc, IC<1>{});
    };
    if (is_arg) on_vec(IC<1>{});
    else on_vec(IC<0>{});
    check_launch("spmm_forward");
    if (c.plan.n_split > 0) {
      const int64_t total = c.plan.n_split * c.F;
      if (is_arg)
        spmm_combine_kernel<T, true><<<grid_for(total, 256), 256, 0, st>>>(
            c, static_cast<T*>(Y), arg, static_cast<const A*>(ws_val), ws_arg);
      else
        spmm_combine_kernel<T, false><<<grid_for(total, 256), 256, 0, st>>>(
            c, static_cast<T*>(Y), arg, static_cast<const A*>(ws_val), ws_arg);
      check_launch("spmm_forward (combine)");
    }
  });
}

void spmm_edge_grad(const SpmmCall& c, const void* dY, const int64_t* arg, void* dE,
                    void* stream) {
  if (c.message < COPY || c.message > EDGE || c.reduce < SUM || c.reduce > MIN)
    throw std::invalid_argument("hopkit._cuda.spmm_edge_grad: bad message/reduce code");
  if (c.e_width == 0) throw std::invalid_argument("hopkit._cuda.spmm_edge_grad: no edge features");
  if (c.A.nnz == 0 || c.F == 0) {
    // dE is empty, or F = 0 makes every per-edge sum 0.
    if (c.A.nnz > 0 && c.e_width == 1) {
      const size_t bytes = size_t(c.A.nnz) * (c.dtype == F64 ? 8 : c.dtype == F32 ? 4 : 2);
      cudaMemsetAsync(dE, 0, bytes, as_stream(stream));
      check_launch("spmm_edge_grad (zero)");
    }
    return;
  }
  if (c.message == MUL && !c.X) throw std::invalid_argument("hopkit._cuda.spmm_edge_grad: X is null");
  if ((c.reduce == MAX || c.reduce == MIN) && !arg)
    throw std::invalid_argument("hopkit._cuda.spmm_edge_grad: max/min need arg");
  const int ek = c.e_width == 1 && c.F != 1 ? 1 : 2;
  cudaStream_t st = as_stream(stream);
  dispatch_dtype(c.dtype, [&](auto tag) {
    using T = decltype(tag);
    const unsigned grid = grid_for(c.A.nnz, WARPS_PER_BLOCK);
    if (ek == 1)
      spmm_edge_grad_kernel<T, 1><<<grid, WARPS_PER_BLOCK * 32, 0, st>>>(
          c, static_cast<const T*>(dY), arg, static_cast<T*>(dE));
    else
      spmm_edge_grad_kernel<T, 2><<<grid, WARPS_PER_BLOCK * 32, 0, st>>>(
          c, static_cast<const T*>(dY), arg, static_cast<T*>(dE));
    check_launch("spmm_edge_grad");
  });
}

}  // namespace cuda
}  // namespace hopkit
