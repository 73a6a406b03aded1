// CUDA COO -> CSR and transpose (contract in hopkit/cuda/csr.h).
//
// Decomposition: one thread per edge builds a 64-bit key (row * n_cols +
// col, or col for the transpose) and its id; CUB's stable radix sort orders
// (key, id) over only the key bits in use; one thread per output row finds the
// row start by binary search over the sorted keys; one thread per edge
// gathers columns / values through the sorted ids. No atomics except an
// integer atomicMin that reports the first bad input position.
#include <cub/device/device_radix_sort.cuh>

#include "common.cuh"
#include "hopkit/cuda/csr.h"

namespace hopkit {
namespace cuda {
namespace {

constexpr int THREADS = 256;

int key_bits(uint64_t max_key) {
  int b = 0;
  while (b < 64 && (max_key >> b) != 0) ++b;
  return b < 1 ? 1 : b;
}

template <class I>
__global__ void coo_keys_kernel(int64_t nnz, int64_t n_rows, int64_t n_cols, const I* rows,
                                const I* cols, uint64_t* keys, int64_t* ids, uint64_t* bad) {
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < nnz;
       p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = rows[p], c = cols[p];
    const bool bad_row = r < 0 || r >= n_rows;
    const bool bad_col = c < 0 || c >= n_cols;
    if (bad_row || bad_col) {
      atomicMin(reinterpret_cast<unsigned long long*>(bad),
                static_cast<unsigned long long>(2 * p + (bad_row ? 0 : 1)));
      keys[p] = 0;
    } else {
      keys[p] = uint64_t(r) * uint64_t(n_cols) + uint64_t(c);
    }
    ids[p] = p;
  }
}

// starts[r] = first t with keys[t] >= r * unit, for r in [0, n] (keys sorted).
__global__ void lower_bounds_kernel(const uint64_t* keys, int64_t nnz, int64_t n, uint64_t unit,
                                    int64_t* starts) {
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r <= n;
       r += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t target = uint64_t(r) * unit;
    int64_t lo = 0, hi = nnz;
    while (lo < hi) {
      const int64_t mid = lo + ((hi - lo) >> 1);
      if (keys[mid] < target) lo = mid + 1; else hi = mid;
    }
    starts[r] = lo;
  }
}

template <class I, class T>
__global__ void gather_kernel(int64_t nnz, const int64_t* ids, const I* cols, const T* values,
                              I* cols_out, T* values_out) {
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < nnz;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = ids[t];
    cols_out[t] = cols[p];
    if (values) values_out[t] = values[p];
  }
}

template <class I>
__global__ void col_keys_kernel(int64_t nnz, const I* indices, uint64_t* keys, int64_t* ids) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < nnz;
       e += int64_t(gridDim.x) * blockDim.x) {
    keys[e] = uint64_t(indices[e]);
    ids[e] = e;
  }
}

// t_indices[t] = row of edge perm[t] (binary search in indptr).
template <class I>
__global__ void rows_of_kernel(int64_t nnz, const int64_t* indptr, int64_t n_rows,
                               const int64_t* perm, I* t_indices) {
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < nnz;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = perm[t];
    int64_t lo = 0, hi = n_rows;
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) >> 1;
      if (indptr[mid] <= e) lo = mid; else hi = mid - 1;
    }
    t_indices[t] = I(lo);
  }
}

void sort_pairs(const SortScratch& s, int64_t n, int end_bit, cudaStream_t st) {
  size_t bytes = s.temp_bytes;
  cudaError_t err = cub::DeviceRadixSort::SortPairs(s.temp, bytes, s.keys_in, s.keys_out,
                                                    s.ids_in, s.ids_out, n, 0, end_bit, st);
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("hopkit CUDA radix sort: ") + cudaGetErrorString(err));
}

void check_scratch(const SortScratch& s, int64_t nnz) {
  if (!s.keys_in || !s.keys_out || !s.ids_in || !s.ids_out || !s.temp ||
      s.temp_bytes < sort_temp_bytes(nnz))
    throw std::invalid_argument("hopkit._cuda: sort scratch missing or too small");
}

}  // namespace

size_t sort_temp_bytes(int64_t n) {
  size_t bytes = 0;
  cudaError_t err = cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const uint64_t*>(nullptr), static_cast<uint64_t*>(nullptr),
      static_cast<const int64_t*>(nullptr), static_cast<int64_t*>(nullptr),
      n < 1 ? int64_t(1) : n);
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("hopkit CUDA radix sort size: ") + cudaGetErrorString(err));
  return bytes < 16 ? 16 : bytes;
}

void coo_to_csr(int64_t n_rows, int64_t n_cols, int64_t nnz, bool index_i64, const void* rows,
                const void* cols, int value_dtype, const void* values, int64_t* indptr,
                void* cols_out, void* values_out, uint64_t* bad, const SortScratch& s,
                void* stream) {
  if (n_rows < 0 || n_cols < 0 || nnz < 0)
    throw std::invalid_argument("hopkit._cuda.coo_to_csr: negative size");
  if (n_cols > 0 && uint64_t(n_rows) > (~uint64_t(0)) / uint64_t(n_cols))
    throw std::invalid_argument("hopkit._cuda.coo_to_csr: n_rows * n_cols must fit in 64 bits");
  if (values && value_dtype != F32 && value_dtype != F64)
    throw std::invalid_argument("hopkit._cuda.coo_to_csr: values must be float32 or float64");
  cudaStream_t st = as_stream(stream);
  cudaMemsetAsync(bad, 0xff, sizeof(uint64_t), st);
  if (nnz == 0) {
    cudaMemsetAsync(indptr, 0, sizeof(int64_t) * size_t(n_rows + 1), st);
    check_launch("coo_to_csr (empty)");
    return;
  }
  check_scratch(s, nnz);
  const unsigned grid = grid_for(nnz, THREADS);
  auto run = [&](auto itag) {
    using I = decltype(itag);
    coo_keys_kernel<I><<<grid, THREADS, 0, st>>>(nnz, n_rows, n_cols, static_cast<const I*>(rows),
                                                 static_cast<const I*>(cols), s.keys_in, s.ids_in,
                                                 bad);
    check_launch("coo_to_csr (keys)");
    const uint64_t max_key = n_rows > 0 && n_cols > 0
                                 ? uint64_t(n_rows) * uint64_t(n_cols) - 1 : 0;
    sort_pairs(s, nnz, key_bits(max_key), st);
    lower_bounds_kernel<<<grid_for(n_rows + 1, THREADS), THREADS, 0, st>>>(
        s.keys_out, nnz, n_rows, uint64_t(n_cols), indptr);
    check_launch("coo_to_csr (indptr)");
    if (value_dtype == F64)
      gather_kernel<I, double><<<grid, THREADS, 0, st>>>(
          nnz, s.ids_out, static_cast<const I*>(cols), static_cast<const double*>(values),
          static_cast<I*>(cols_out), static_cast<double*>(values_out));
    else
      gather_kernel<I, float><<<grid, THREADS, 0, st>>>(
          nnz, s.ids_out, static_cast<const I*>(cols), static_cast<const float*>(values),
          static_cast<I*>(cols_out), static_cast<float*>(values_out));
    check_launch("coo_to_csr (gather)");
  };
  if (index_i64) run(int64_t{}); else run(int32_t{});
}

void csr_transpose(int64_t n_rows, int64_t n_cols, int64_t nnz, bool index_i64,
                   const int64_t* indptr, const void* indices, int64_t* t_indptr,
                   void* t_indices, int64_t* perm, const SortScratch& s, void* stream) {
  if (n_rows < 0 || n_cols < 0 || nnz < 0)
    throw std::invalid_argument("hopkit._cuda.csr_transpose: negative size");
  cudaStream_t st = as_stream(stream);
  if (nnz == 0) {
    cudaMemsetAsync(t_indptr, 0, sizeof(int64_t) * size_t(n_cols + 1), st);
    check_launch("csr_transpose (empty)");
    return;
  }
  check_scratch(s, nnz);
  const unsigned grid = grid_for(nnz, THREADS);
  auto run = [&](auto itag) {
    using I = decltype(itag);
    col_keys_kernel<I><<<grid, THREADS, 0, st>>>(nnz, static_cast<const I*>(indices), s.keys_in,
                                                 s.ids_in);
    check_launch("csr_transpose (keys)");
    sort_pairs(s, nnz, key_bits(n_cols > 0 ? uint64_t(n_cols - 1) : 0), st);
    lower_bounds_kernel<<<grid_for(n_cols + 1, THREADS), THREADS, 0, st>>>(
        s.keys_out, nnz, n_cols, 1, t_indptr);
    check_launch("csr_transpose (indptr)");
    rows_of_kernel<I><<<grid, THREADS, 0, st>>>(nnz, indptr, n_rows, s.ids_out,
                                                static_cast<I*>(t_indices));
    check_launch("csr_transpose (rows)");
    cudaMemcpyAsync(perm, s.ids_out, sizeof(int64_t) * size_t(nnz), cudaMemcpyDeviceToDevice, st);
    check_launch("csr_transpose (perm)");
  };
  if (index_i64) run(int64_t{}); else run(int32_t{});
}

}  // namespace cuda
}  // namespace hopkit
