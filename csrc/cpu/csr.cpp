// COO -> CSR, duplicate summation and transpose.
//
// COO -> CSR and transpose are built on one parallel stable counting sort:
// each chunk of the input counts its keys into its own histogram, a prefix
// pass over (key, chunk) turns counts into write offsets, and each chunk is
// scattered. Stability makes the transpose sorted for free.
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
//
// The input is cut into C contiguous chunks with a histogram each, handed out
// dynamically: C = T when the keys are many (the histograms must stay small
// next to the data), up to 8 T when they are few, so a thread that the OS
// preempts on a busy machine holds up at most one small chunk.
template <class Key, class Valid, class Scatter>
int64_t counting_sort(int64_t nnz, int64_t n_keys, Key key, Valid valid, int64_t* indptr,
                      Scatter scatter) {
  int T = std::max(1, std::min<int>(max_threads(), int(nnz / 65536)));
  while (T > 1 && double(T) * double(n_keys) > 4.0 * double(nnz) + 1e6) --T;
  int C = T;
  while (T > 1 && C < 8 * T && double(2 * C) * double(n_keys) <= double(nnz) / 16 &&
         nnz / (2 * C) >= 32768)
    C *= 2;
  std::vector<int64_t> hist(size_t(C) * size_t(n_keys), 0);
  std::vector<int64_t> bad(size_t(C), INT64_MAX);
  auto for_chunks = [&](auto&& body) {
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
#endif
    for (int c = 0; c < C; ++c) body(c, nnz * c / C, nnz * (c + 1) / C);
  };
  for_chunks([&](int c, int64_t e0, int64_t e1) {
    int64_t* h = hist.data() + size_t(c) * size_t(n_keys);
    // Validity over sub-slices without early exit (vectorised), then the
    // counts; the first bad position is searched only in a failing sub-slice.
    for (int64_t s0 = e0; s0 < e1; s0 += 2048) {
      const int64_t s1 = std::min(e1, s0 + 2048);
      bool ok = true;
      for (int64_t e = s0; e < s1; ++e) ok &= valid(e);
      if (!ok) {
        int64_t e = s0;
        while (valid(e)) ++e;
        bad[size_t(c)] = e;
        return;
      }
      for (int64_t e = s0; e < s1; ++e) ++h[key(e)];
    }
  });
  const int64_t first_bad = *std::min_element(bad.begin(), bad.end());
  if (first_bad != INT64_MAX) return first_bad;
  int64_t run = 0;
  for (int64_t k = 0; k < n_keys; ++k) {
    indptr[k] = run;
    for (int c = 0; c < C; ++c) {
      int64_t& h = hist[size_t(c) * size_t(n_keys) + size_t(k)];
      const int64_t x = h;
      h = run;
      run += x;
    }
  }
  indptr[n_keys] = run;
  for_chunks([&](int c, int64_t e0, int64_t e1) {
    scatter(e0, e1, hist.data() + size_t(c) * size_t(n_keys));
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

// Per-thread scratch of sort_block: two ping-pong buffers of keys and values.
template <class K, class T>
struct BlockScratch {
  std::vector<K> k0, k1;
  std::vector<T> v0, v1;
  std::vector<int64_t> hist;
};

// Sorts one row block in place: keys[0, n) hold (row - r0) << col_bits | col,
// vals[0, n) (optional) the values. LSD radix passes of <= 10 bits (<= 1024
// buckets) on the column, then a stable counting pass by row within the
// block, all through the in-cache scratch; the last pass writes back to
// keys/vals as columns, in CSR order. Fills indptr[r0, r0 + nr) (offset by
// `start`, where the block's output begins) and uniq (distinct columns per
// row).
template <class K, class T, class I>
void sort_block(K* keys, T* vals, int64_t n, int64_t start, int64_t r0, int64_t nr, int col_bits,
                BlockScratch<K, T>& s, int64_t* indptr, int64_t* uniq) {
  const int col_passes = col_bits == 0 ? 0 : (col_bits + 9) / 10;
  const int D = col_passes ? (col_bits + col_passes - 1) / col_passes : 0;
  const int64_t nb = int64_t(1) << D;
  const K dmask = K(nb - 1), cmask = (K(1) << col_bits) - 1;
  // All histograms in one read (LSD counts do not depend on the order).
  s.hist.assign(size_t(col_passes * nb + nr), 0);
  int64_t* rc = s.hist.data() + col_passes * nb;
  for (int64_t i = 0; i < n; ++i) {
    const K k = keys[i];
    for (int p = 0; p < col_passes; ++p)
      ++s.hist[size_t(p * nb + int64_t((k >> (p * D)) & dmask))];
    ++rc[k >> col_bits];
  }
  for (int p = 0; p < col_passes; ++p) {
    int64_t* h = s.hist.data() + p * nb;
    int64_t run = 0;
    for (int64_t d = 0; d < nb; ++d) {
      const int64_t x = h[d];
      h[d] = run;
      run += x;
    }
  }
  int64_t run = 0;
  for (int64_t r = 0; r < nr; ++r) {
    indptr[r0 + r] = start + run;
    const int64_t x = rc[r];
    rc[r] = run;
    run += x;
  }
  s.k0.resize(size_t(n));
  s.k1.resize(size_t(n));
  if (vals) s.v0.resize(size_t(n)), s.v1.resize(size_t(n));
  // Pass p reads src and writes dst: keys -> k0 -> k1 -> k0 ... -> keys.
  K* src_k = keys;
  T* src_v = vals;
  K* buf_k[2] = {s.k0.data(), s.k1.data()};
  T* buf_v[2] = {s.v0.data(), s.v1.data()};
  if (col_passes == 0) {  // a single pass would scatter in place: copy first
    std::copy(keys, keys + n, buf_k[0]);
    if (vals) std::copy(vals, vals + n, buf_v[0]);
    src_k = buf_k[0];
    src_v = buf_v[0];
  }
  for (int p = 0; p < col_passes; ++p) {
    int64_t* h = s.hist.data() + p * nb;
    K* dk = buf_k[p & 1];
    T* dv = buf_v[p & 1];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t o = h[int64_t((src_k[i] >> (p * D)) & dmask)]++;
      dk[o] = src_k[i];
      if (vals) dv[o] = src_v[i];
    }
    src_k = dk;
    src_v = dv;
  }
  I* cols = reinterpret_cast<I*>(keys);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t o = rc[src_k[i] >> col_bits]++;
    cols[o] = I(src_k[i] & cmask);
    if (vals) vals[o] = src_v[i];
  }
  for (int64_t r = 0, a = 0; r < nr; ++r) {
    const int64_t b = rc[r];  // now the row's end
    int64_t u = b > a;
    for (int64_t e = a + 1; e < b; ++e) u += cols[e] != cols[e - 1];
    uniq[r0 + r] = u;
    a = b;
  }
}

}  // namespace

template <class I, class T>
int64_t coo_to_csr(int64_t n_rows, int64_t n_cols, int64_t nnz, const I* rows, const I* cols,
                   const T* values, int64_t* indptr, I* cols_out, T* values_out, int64_t* uniq,
                   bool* bad_row) {
  // No comparison sort, no scatter into n_rows write streams, and no
  // nnz-sized scratch: the output arrays are the working storage.
  // (1) a stable parallel counting sort by row block (row >> shift: at most
  //     512 blocks, so the write streams stay in cache) of the packed keys
  //     (row within block) << col_bits | col into cols_out (values into
  //     values_out); block b then occupies exactly its final output range;
  // (2) per block, in parallel (a block fits in L2): sort_block.
  // The packed key must fit in 64 bits: with columns wider than 64 - shift
  // bits the blocks get fewer rows (down to one row each, key = column).
  int col_bits = 0;  // ceil(log2(n_cols)) <= 63
  while (col_bits < 63 && (int64_t(1) << col_bits) < n_cols) ++col_bits;
  int shift = 0;
  while ((n_rows >> shift) > 512) ++shift;
  shift = std::min(shift, 64 - col_bits);
  const int64_t n_blocks = (n_rows >> shift) + 1;
  auto valid = [&](int64_t e) {
    return uint64_t(int64_t(rows[e])) < uint64_t(n_rows) &&
           uint64_t(int64_t(cols[e])) < uint64_t(n_cols);
  };
  std::vector<int64_t> block_ptr(static_cast<size_t>(n_blocks) + 1);
  auto block_key = [&](int64_t e) { return int64_t(rows[e]) >> shift; };
  auto run = [&](auto key_tag) -> int64_t {
    using K = decltype(key_tag);
    // The keys live in cols_out when they fit in I, else in a scratch array.
    std::unique_ptr<K[]> own;
    K* keys = reinterpret_cast<K*>(cols_out);
    if (sizeof(K) != sizeof(I)) keys = (own.reset(new K[size_t(nnz)]), own.get());
    const K rmask = (K(1) << shift) - 1;
    const int64_t bad = counting_sort(
        nnz, n_blocks, block_key, valid, block_ptr.data(),
        scatter_with(block_key, [&](int64_t pos, int64_t e) {
          keys[pos] = ((K(rows[e]) & rmask) << col_bits) | K(cols[e]);
          if (values) values_out[pos] = values[e];
        }));
    if (bad >= 0) return bad;
    indptr[n_rows] = nnz;
    parallel_rows(block_ptr.data(), n_blocks, nnz, [&](int64_t b0, int64_t b1) {
      BlockScratch<K, T> s;
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t r0 = blk << shift, r1 = std::min(n_rows, (blk + 1) << shift);
        if (r0 >= r1) continue;
        const int64_t start = block_ptr[blk], n = block_ptr[blk + 1] - start;
        if (sizeof(K) == sizeof(I)) {
          sort_block<K, T, I>(keys + start, values ? values_out + start : nullptr, n, start, r0,
                              r1 - r0, col_bits, s, indptr, uniq);
        } else {  // sort the block's keys in the scratch, then narrow into cols_out
          sort_block<K, T, K>(keys + start, values ? values_out + start : nullptr, n, start, r0,
                              r1 - r0, col_bits, s, indptr, uniq);
          for (int64_t i = start; i < start + n; ++i) cols_out[i] = I(keys[i]);
        }
      }
    });
    return -1;
  };
  const int64_t bad =
      sizeof(I) == 4 && col_bits < 32 && shift + col_bits <= 32 ? run(uint32_t{}) : run(uint64_t{});
  if (bad >= 0) *bad_row = !(uint64_t(int64_t(rows[bad])) < uint64_t(n_rows));
  return bad;
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
