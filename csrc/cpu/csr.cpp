// COO -> CSR, duplicate summation and transpose.
//
// All three are built on one parallel stable counting sort: each thread
// counts the keys of a contiguous slice of the input into its own histogram,
// a prefix pass over (key, thread) turns counts into write offsets, and each
// thread scatters its slice. Stability makes the transpose sorted for free.
#include "hopkit/csr.h"

#include <algorithm>
#include <climits>
#include <vector>

#include "hopkit/common.h"

namespace hopkit {
namespace {

// key(e) -> int64 key of input element e; valid(e) -> false rejects the input;
// put(pos, e) writes element e to output position pos. Returns -1 or the first
// invalid input position.
template <class Key, class Valid, class Put>
int64_t counting_sort(int64_t nnz, int64_t n_keys, Key key, Valid valid, int64_t* indptr, Put put) {
  int T = std::max(1, std::min<int>(max_threads(), int(nnz / 65536)));
  while (T > 1 && double(T) * double(n_keys) > 4.0 * double(nnz) + 1e6) --T;
  std::vector<int64_t> hist(size_t(T) * size_t(n_keys), 0);
  std::vector<int64_t> bad(size_t(T), INT64_MAX);
  parallel_threads(T, [&](int t, int nt) {
    const int64_t e0 = nnz * t / nt, e1 = nnz * (t + 1) / nt;
    int64_t* h = hist.data() + size_t(t) * size_t(n_keys);
    for (int64_t e = e0; e < e1; ++e) {
      if (!valid(e)) { bad[t] = e; break; }
      ++h[key(e)];
    }
  });
  const int64_t first_bad = *std::min_element(bad.begin(), bad.end());
  if (first_bad != INT64_MAX) return first_bad;
  int64_t run = 0;
  for (int64_t k = 0; k < n_keys; ++k) {
    indptr[k] = run;
    for (int t = 0; t < T; ++t) {
      int64_t& h = hist[size_t(t) * size_t(n_keys) + size_t(k)];
      const int64_t c = h;
      h = run;
      run += c;
    }
  }
  indptr[n_keys] = run;
  parallel_threads(T, [&](int t, int nt) {
    const int64_t e0 = nnz * t / nt, e1 = nnz * (t + 1) / nt;
    int64_t* h = hist.data() + size_t(t) * size_t(n_keys);
    for (int64_t e = e0; e < e1; ++e) put(h[key(e)]++, e);
  });
  return -1;
}

}  // namespace

template <class I, class T>
int64_t coo_to_csr(int64_t n_rows, int64_t n_cols, int64_t nnz, const I* rows, const I* cols,
                   const T* values, int64_t* indptr, I* cols_out, int64_t* perm, T* values_out,
                   int64_t* uniq, bool* bad_row) {
  auto valid = [&](int64_t e) {
    return int64_t(rows[e]) >= 0 && int64_t(rows[e]) < n_rows && int64_t(cols[e]) >= 0 &&
           int64_t(cols[e]) < n_cols;
  };
  const int64_t bad = counting_sort(
      nnz, n_rows, [&](int64_t e) { return int64_t(rows[e]); }, valid, indptr,
      [&](int64_t pos, int64_t e) {
        cols_out[pos] = cols[e];
        perm[pos] = e;
      });
  if (bad >= 0) {
    *bad_row = !(int64_t(rows[bad]) >= 0 && int64_t(rows[bad]) < n_rows);
    return bad;
  }
  // Sort columns within each row (stable: ties keep input order), count the
  // distinct columns, and gather the values in the final order.
  parallel_rows(indptr, n_rows, nnz, [&](int64_t r0, int64_t r1) {
    std::vector<std::pair<I, int64_t>> tmp;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = indptr[r], end = indptr[r + 1];
      bool sorted = true;
      for (int64_t e = b + 1; e < end && sorted; ++e) sorted = cols_out[e - 1] <= cols_out[e];
      if (!sorted) {
        tmp.resize(size_t(end - b));
        for (int64_t e = b; e < end; ++e) tmp[size_t(e - b)] = {cols_out[e], perm[e]};
        std::sort(tmp.begin(), tmp.end());
        for (int64_t e = b; e < end; ++e) {
          cols_out[e] = tmp[size_t(e - b)].first;
          perm[e] = tmp[size_t(e - b)].second;
        }
      }
      int64_t u = end > b ? 1 : 0;
      for (int64_t e = b + 1; e < end; ++e) u += cols_out[e] != cols_out[e - 1];
      uniq[r] = u;
      if (values)
        for (int64_t e = b; e < end; ++e) values_out[e] = values[perm[e]];
    }
  });
  return -1;
}

template <class I, class T>
void csr_sum_duplicates(int64_t n_rows, const int64_t* indptr, const I* cols, const T* values,
                        const int64_t* uniq, int64_t* out_indptr, I* out_cols, T* out_values) {
  out_indptr[0] = 0;
  for (int64_t r = 0; r < n_rows; ++r) out_indptr[r + 1] = out_indptr[r] + uniq[r];
  parallel_rows(indptr, n_rows, indptr[n_rows], [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t o = out_indptr[r] - 1;
      for (int64_t e = indptr[r]; e < indptr[r + 1]; ++e) {
        if (e == indptr[r] || cols[e] != cols[e - 1]) {
          ++o;
          out_cols[o] = cols[e];
          if (values) out_values[o] = T(0);
        }
        if (values) out_values[o] += values[e];
      }
    }
  });
}

template <class I>
void csr_transpose(int64_t n_rows, int64_t n_cols, const int64_t* indptr, const I* indices,
                   int64_t* t_indptr, I* t_indices, int64_t* perm) {
  const int64_t nnz = indptr[n_rows];
  std::vector<I> row_of(static_cast<size_t>(nnz));
  parallel_rows(indptr, n_rows, nnz, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t e = indptr[r]; e < indptr[r + 1]; ++e) row_of[size_t(e)] = I(r);
  });
  counting_sort(
      nnz, n_cols, [&](int64_t e) { return int64_t(indices[e]); },
      [](int64_t) { return true; }, t_indptr,
      [&](int64_t pos, int64_t e) {
        t_indices[pos] = row_of[size_t(e)];
        perm[pos] = e;
      });
}

#define HOPKIT_INSTANTIATE_IT(I, T)                                                         \
  template int64_t coo_to_csr<I, T>(int64_t, int64_t, int64_t, const I*, const I*, const T*, \
                                     int64_t*, I*, int64_t*, T*, int64_t*, bool*);         \
  template void csr_sum_duplicates<I, T>(int64_t, const int64_t*, const I*, const T*,        \
                                         const int64_t*, int64_t*, I*, T*);
HOPKIT_INSTANTIATE_IT(int32_t, float)
HOPKIT_INSTANTIATE_IT(int32_t, double)
HOPKIT_INSTANTIATE_IT(int64_t, float)
HOPKIT_INSTANTIATE_IT(int64_t, double)
template void csr_transpose<int32_t>(int64_t, int64_t, const int64_t*, const int32_t*, int64_t*,
                                     int32_t*, int64_t*);
template void csr_transpose<int64_t>(int64_t, int64_t, const int64_t*, const int64_t*, int64_t*,
                                     int64_t*, int64_t*);

}  // namespace hopkit
