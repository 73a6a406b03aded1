// Native CSR construction: COO -> CSR (parallel stable counting sort, O(nnz)),
// per-row column sort, duplicate summation and transpose.
#pragma once
#include <cstdint>

namespace hopkit {

// Sorts COO (rows, cols[, values]) into CSR order: columns ascending within
// a row, equal (row, col) pairs in input order. Writes indptr [n_rows + 1],
// cols_out [nnz], values_out [nnz] when values != nullptr, and uniq [n_rows]
// (distinct columns per row). Returns -1, or the first input position whose
// row (*bad_row = true) or column is out of range.
template <class I, class T>
int64_t coo_to_csr(int64_t n_rows, int64_t n_cols, int64_t nnz, const I* rows, const I* cols,
                   const T* values, int64_t* indptr, I* cols_out, T* values_out, int64_t* uniq,
                   bool* bad_row);

// Merges runs of equal columns in a row-sorted CSR: out_indptr [n_rows + 1]
// from uniq, out_cols, out_values (sum of the run; skipped when values is null).
template <class I, class T>
void csr_sum_duplicates(int64_t n_rows, const int64_t* indptr, const I* cols, const T* values,
                        const int64_t* uniq, int64_t* out_indptr, I* out_cols, T* out_values);

// Transpose of an (n_rows x n_cols) CSR: t_indptr [n_cols + 1], t_indices
// [nnz] (sorted within each row), perm [nnz] (transposed edge -> edge of A).
template <class I>
void csr_transpose(int64_t n_rows, int64_t n_cols, const int64_t* indptr, const I* indices,
                   int64_t* t_indptr, I* t_indices, int64_t* perm);

}  // namespace hopkit
