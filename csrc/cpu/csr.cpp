// COO -> CSR, duplicate summation and transpose.
//
// All three are built on one parallel stable counting sort: each thread
// counts the keys of a contiguous slice of the input into its own histogram,
// a prefix pass over (key, thread) turns counts into write offsets, and each
// thread scatters its slice. Stability makes the transpose sorted for free.
#include "hopkit/csr.h"

#include <algorithm>
#include <climits>
#include <memory>
#include <vector>

#include "hopkit/common.h"

namespace hopkit {
namespace {

// key(e) -> int64 key of input element e; valid(e) -> false rejects the input;
// scatter(e0, e1, offsets) writes input elements [e0, e1) to their output
// positions offsets[key(e)]++ (in increasing e). Returns -1 or the first
// invalid input position.
template <class Key, class Valid, class Scatter>
int64_t counting_sort(int64_t nnz, int64_t n_keys, Key key, Valid valid, int64_t* indptr,
                      Scatter scatter) {
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
    scatter(e0, e1, hist.data() + size_t(t) * size_t(n_keys));
  });
  return -1;
}

// The usual scatter: put(pos, e) for every element, in order.
template <class Key, class Put>
auto scatter_with(Key key, Put put) {
  return [=](int64_t e0, int64_t e1, int64_t* offsets) {
    for (int64_t e = e0; e < e1; ++e) put(offsets[key(e)]++, e);
  };
}

}  // namespace

namespace {

template <class I, class T>
struct CooItem {
  I row, col;
  T value;
};

// Stable LSD radix sort of keys[0, n) (with their values, when vals != null)
// on the low `bits` bits, in passes of at most 10 bits (<= 1024 buckets, so
// the write streams stay in L1/L2), ping-ponging with the tmp buffers.
// Returns the buffers holding the result.
template <class K, class T>
std::pair<K*, T*> radix_sort(K* keys, T* vals, K* ktmp, T* vtmp, int64_t n, int bits) {
  const int passes = std::max(1, (bits + 9) / 10), D = (bits + passes - 1) / passes;
  int64_t count[1 << 10];
  for (int lo = 0; lo < bits; lo += D) {
    std::fill(count, count + (int64_t(1) << D), 0);
    for (int64_t i = 0; i < n; ++i) ++count[(keys[i] >> lo) & ((1u << D) - 1)];
    int64_t run = 0;
    for (int64_t d = 0; d < (int64_t(1) << D); ++d) {
      const int64_t x = count[d];
      count[d] = run;
      run += x;
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pos = count[(keys[i] >> lo) & ((1u << D) - 1)]++;
      ktmp[pos] = keys[i];
      if (vals) vtmp[pos] = vals[i];
    }
    std::swap(keys, ktmp);
    std::swap(vals, vtmp);
  }
  return {keys, vals};
}

}  // namespace

template <class I, class T>
int64_t coo_to_csr(int64_t n_rows, int64_t n_cols, int64_t nnz, const I* rows, const I* cols,
                   const T* values, int64_t* indptr, I* cols_out, T* values_out, int64_t* uniq,
                   bool* bad_row) {
  // No comparison sort, and no scatter into n_rows write streams:
  // (1) a stable counting sort of whole items by row block (row >> shift:
  //     at most 512 blocks, so the write streams stay in cache);
  // (2) per block, in parallel, a stable LSD radix sort (11-bit digits, in
  //     cache) on (row within block, column). Equal (row, col) pairs stay in
  //     input order; each block fills its own rows of indptr, since its output
  //     range starts where the previous block's ends.
  int shift = 0;
  while ((n_rows >> shift) > 512) ++shift;
  const int64_t n_blocks = (n_rows >> shift) + 1;
  int col_bits = 0;
  while ((int64_t(1) << col_bits) < n_cols) ++col_bits;
  auto valid = [&](int64_t e) {
    return int64_t(rows[e]) >= 0 && int64_t(rows[e]) < n_rows && int64_t(cols[e]) >= 0 &&
           int64_t(cols[e]) < n_cols;
  };
  std::unique_ptr<CooItem<I, T>[]> items(new CooItem<I, T>[size_t(nnz)]);  // not zeroed
  std::vector<int64_t> block_ptr(static_cast<size_t>(n_blocks) + 1);
  auto block_key = [&](int64_t e) { return int64_t(rows[e]) >> shift; };
  const int64_t bad = counting_sort(
      nnz, n_blocks, block_key, valid, block_ptr.data(),
      scatter_with(block_key, [&](int64_t pos, int64_t e) {
        items[size_t(pos)] = {rows[e], cols[e], values ? values[e] : T(0)};
      }));
  if (bad >= 0) {
    *bad_row = !(int64_t(rows[bad]) >= 0 && int64_t(rows[bad]) < n_rows);
    return bad;
  }
  indptr[n_rows] = nnz;
  auto sort_blocks = [&](auto key_tag) {
    using K = decltype(key_tag);
    parallel_rows(block_ptr.data(), n_blocks, nnz, [&](int64_t b0, int64_t b1) {
      std::vector<K> keys, ktmp;
      std::vector<T> vals, vtmp;
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t r0 = blk << shift, r1 = std::min(n_rows, (blk + 1) << shift);
        if (r0 >= r1) continue;
        const int64_t start = block_ptr[blk], n = block_ptr[blk + 1] - start;
        keys.resize(size_t(n));
        ktmp.resize(size_t(n));
        vals.resize(values ? size_t(n) : 0);
        vtmp.resize(values ? size_t(n) : 0);
        for (int64_t i = 0; i < n; ++i) {
          const auto& it = items[size_t(start + i)];
          keys[size_t(i)] = (K(int64_t(it.row) - r0) << col_bits) | K(it.col);
          if (values) vals[size_t(i)] = it.value;
        }
        auto [k, v] = radix_sort<K, T>(keys.data(), values ? vals.data() : nullptr, ktmp.data(),
                                       values ? vtmp.data() : nullptr, n, shift + col_bits);
        // Rows r0..r1-1 of indptr/uniq; the block's output starts at `start`.
        int64_t i = 0;
        for (int64_t r = r0; r < r1; ++r) {
          indptr[r] = start + i;
          int64_t u = 0, prev = -1;
          for (; i < n && int64_t(k[i] >> col_bits) == r - r0; ++i) {
            const int64_t col = int64_t(k[i] & ((K(1) << col_bits) - 1));
            cols_out[start + i] = I(col);
            if (values) values_out[start + i] = v[i];
            u += col != prev;
            prev = col;
          }
          uniq[r] = u;
        }
      }
    });
  };
  if (shift + col_bits <= 32) sort_blocks(uint32_t{});
  else sort_blocks(uint64_t{});
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
  auto key = [&](int64_t e) { return int64_t(indices[e]); };
  counting_sort(nnz, n_cols, key, [](int64_t) { return true; }, t_indptr,
                scatter_with(key, [&](int64_t pos, int64_t e) {
                  t_indices[pos] = row_of[size_t(e)];
                  perm[pos] = e;
                }));
}

#define HOPKIT_INSTANTIATE_IT(I, T)                                                         \
  template int64_t coo_to_csr<I, T>(int64_t, int64_t, int64_t, const I*, const I*, const T*, \
                                     int64_t*, I*, T*, int64_t*, bool*);                   \
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
