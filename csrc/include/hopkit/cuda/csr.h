// CUDA CSR construction (device pointers, launched on `stream`, no sync).
// Both sort edges with a stable LSD radix sort (CUB; a sequence of counting
// sorts with deterministic scans) and find row starts by binary search over
// the sorted keys (no atomics on the output), so results are deterministic
// and equal the CPU kernels' (hopkit/csr.h).
#pragma once
#include <cstddef>
#include <cstdint>

namespace hopkit {
namespace cuda {

// Scratch bytes the radix sort needs for n keys (Python allocates it).
size_t sort_temp_bytes(int64_t n);

// Scratch arrays of nnz uint64 keys / int64 ids, twice each, plus temp.
struct SortScratch {
  uint64_t* keys_in;
  uint64_t* keys_out;
  int64_t* ids_in;
  int64_t* ids_out;
  void* temp;
  size_t temp_bytes;
};

// COO -> CSR: columns ascending within a row, equal (row, col) pairs in input
// order. index_i64 selects int32/int64 rows/cols/cols_out; value dtype code
// (F32/F64) for values/values_out (null when absent). *bad (device, one
// uint64) receives 2 * position + (0 row / 1 col) of the first out-of-range
// entry, or stays UINT64_MAX. Writes indptr [n_rows + 1].
void coo_to_csr(int64_t n_rows, int64_t n_cols, int64_t nnz, bool index_i64, const void* rows,
                const void* cols, int value_dtype, const void* values, int64_t* indptr,
                void* cols_out, void* values_out, uint64_t* bad, const SortScratch& s,
                void* stream);

// Transpose of an (n_rows x n_cols) CSR: t_indptr [n_cols + 1], t_indices
// [nnz] (index_i64 dtype, sorted within each row), perm [nnz].
void csr_transpose(int64_t n_rows, int64_t n_cols, int64_t nnz, bool index_i64,
                   const int64_t* indptr, const void* indices, int64_t* t_indptr,
                   void* t_indices, int64_t* perm, const SortScratch& s, void* stream);

}  // namespace cuda
}  // namespace hopkit
