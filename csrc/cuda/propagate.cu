// CUDA fused multi-hop propagation (contract in hopkit/cuda/propagate.h).
//
// Decomposition: L hops of the spmm segment kernel (one warp per row segment
// and feature tile, see spmm.cu) whose epilogue applies the Horner step, all
// queued on one stream; layer 0 alone (L = 0) is one element-wise kernel.
// Hop h reads Z_{L-h+1} (X for h = 1) and writes Z_{L-h} into out when L - h
// is even, else into work, so the last hop (h = L) writes out and no hop
// reads the buffer it writes. The split-row workspace is reused by every hop
// (stream order makes that safe).
#include "common.cuh"
#include "hopkit/cuda/propagate.h"
#include "hopkit/spmm.h"

namespace hopkit {
namespace cuda {
namespace {

template <class T>
__global__ void scale_kernel(int64_t n, const T* __restrict__ X, double a, T* __restrict__ out) {
  using A = typename AccOf<T>::type;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = from_acc<T>(A(a) * to_acc(X[i]));
}

}  // namespace

void propagate(const SpmmCall& base, const void* X, const double* alpha, int64_t layers,
               void* out, void* work, void* ws_val, void* stream) {
  if (layers < 0) throw std::invalid_argument("hopkit._cuda.propagate: layers must be >= 0");
  if (base.reduce != SUM || (base.message != COPY && base.message != MUL) || base.e_width > 1)
    throw std::invalid_argument("hopkit._cuda.propagate: needs sum with no or scalar weights");
  if (layers >= 2 && !work && base.A.n_rows > 0 && base.F > 0)
    throw std::invalid_argument("hopkit._cuda.propagate: layers >= 2 needs a work buffer");
  const int64_t n = base.A.n_rows * base.F;
  if (n == 0) return;
  cudaStream_t st = as_stream(stream);
  if (layers == 0) {
    dispatch_dtype(base.dtype, [&](auto tag) {
      using T = decltype(tag);
      scale_kernel<T><<<grid_for(n, 256), 256, 0, st>>>(n, static_cast<const T*>(X), alpha[0],
                                                         static_cast<T*>(out));
    });
    check_launch("propagate (scale)");
    return;
  }
  const void* src = X;
  for (int64_t h = 1; h <= layers; ++h) {
    const int64_t k = layers - h;  // this hop produces Z_k
    void* dst = (k % 2 == 0) ? out : work;
    SpmmCall c = base;
    c.X = src;
    c.ep_a = alpha[k];
    c.ep_b = h == 1 ? alpha[layers] : 1.0;
    c.X0 = alpha[k] != 0.0 ? X : nullptr;  // X has n_rows rows only when A is square
    spmm_forward(c, dst, nullptr, ws_val, nullptr, stream);
    src = dst;
  }
}

}  // namespace cuda
}  // namespace hopkit
