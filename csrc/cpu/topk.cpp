// CPU top-K retrieval (compiled once per ISA, see isa.h).
//
// Dense path: never holds a B x N score matrix. A task owns a chunk of queries
// (packed MR at a time, feature-major) and a range of items; it walks the
// items in L2-sized blocks and, per block, every query panel against every
// item panel (NR = 128 bytes of items) through a register-blocked micro-kernel
// (MR x NR scores in registers, one FMA chain per score over f = 0..d-1, so a
// score does not depend on the blocking). The tile is compared with each
// query's current threshold in registers; only lanes that beat it leave the
// registers (AVX-512: compressed straight into the query's buffer). A full
// buffer first drops its new entries that are in the query's exclusion row (a
// pointer walks the sorted row as the items advance), then is cut back to the
// k best (branchless quickselect), which raises the threshold.
// Tasks: query chunks in parallel; when B is small, also item chunks, whose
// partial lists are merged per query. Order everywhere is (score desc, item
// asc), so the result does not depend on the schedule.
// Candidate path: per query, candidate items are gathered NR at a time into a
// panel and scored by the same micro-kernel (same scores as the dense path).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "hopkit/common.h"
#include "hopkit/topk.h"

namespace hopkit {
namespace HOPKIT_ISA {
namespace {

// ------------------------------------------------------------------ SIMD layer
template <class T>
struct Simd;

#if defined(__AVX512F__)
constexpr int kMR = 12;  // 12 x 2 zmm accumulators + 2 item vectors + 1 broadcast
template <>
struct Simd<float> {
  using V = __m512;
  static constexpr int L = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static uint64_t gt(V a, V t) { return _mm512_cmp_ps_mask(a, t, _CMP_GT_OQ); }
  static void store(float* p, V a) { _mm512_storeu_ps(p, a); }
};
template <>
struct Simd<double> {
  using V = __m512d;
  static constexpr int L = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static V set1(double x) { return _mm512_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static uint64_t gt(V a, V t) { return _mm512_cmp_pd_mask(a, t, _CMP_GT_OQ); }
  static void store(double* p, V a) { _mm512_storeu_pd(p, a); }
};
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kMR = 3;  // 3 x 4 ymm accumulators (NR = 128 bytes = 4 ymm)
template <>
struct Simd<float> {
  using V = __m256;
  static constexpr int L = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static uint64_t gt(V a, V t) {
    return uint64_t(unsigned(_mm256_movemask_ps(_mm256_cmp_ps(a, t, _CMP_GT_OQ))));
  }
  static void store(float* p, V a) { _mm256_storeu_ps(p, a); }
};
template <>
struct Simd<double> {
  using V = __m256d;
  static constexpr int L = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static V set1(double x) { return _mm256_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static uint64_t gt(V a, V t) {
    return uint64_t(unsigned(_mm256_movemask_pd(_mm256_cmp_pd(a, t, _CMP_GT_OQ))));
  }
  static void store(double* p, V a) { _mm256_storeu_pd(p, a); }
};
#else
// Portable fallback: scalar lanes (the compiler may vectorise; no FMA contraction
// is requested, so baseline scores may differ from AVX2/AVX-512 in the last bit).
constexpr int kMR = 1;
template <class T>
struct SimdScalar {
  using V = T;
  static constexpr int L = 1;
  static V zero() { return T(0); }
  static V load(const T* p) { return *p; }
  static V set1(T x) { return x; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static uint64_t gt(V a, V t) { return a > t ? 1u : 0u; }
  static void store(T* p, V a) { *p = a; }
};
template <>
struct Simd<float> : SimdScalar<float> {};
template <>
struct Simd<double> : SimdScalar<double> {};
#endif

template <class T>
constexpr int kNR = int(topk_panel_width<T>());
template <class T>
constexpr int kNV = kNR<T> / Simd<T>::L;

// MR x NR scores of M query rows (q[f * QS + m]) against one item panel
// (x[f * NR + l]); acc stays in registers (every index is a constant after
// unrolling).
template <int M, int QS, class T>
inline __attribute__((always_inline)) void score_tile(const T* __restrict q,
                                                      const T* __restrict x, int64_t d,
                                                      typename Simd<T>::V (&acc)[M][kNV<T>]) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int NV = kNV<T>, NR = kNR<T>;
#pragma GCC unroll 16
  for (int m = 0; m < M; ++m)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[m][v] = S::zero();
  for (int64_t f = 0; f < d; ++f) {
    V xv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) xv[v] = S::load(x + f * NR + v * S::L);
#pragma GCC unroll 16
    for (int m = 0; m < M; ++m) {
      const V qb = S::set1(q[f * QS + m]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[m][v] = S::fma(qb, xv[v], acc[m][v]);
    }
  }
}

// Selection only: the M x NR tile of given scores at s (row stride ld), lanes
// past n filled with -inf (never selected).
template <int M, class T>
inline __attribute__((always_inline)) void load_tile(const T* __restrict s, int64_t ld, int n,
                                                     typename Simd<T>::V (&acc)[M][kNV<T>]) {
  using S = Simd<T>;
  constexpr int NR = kNR<T>;
  alignas(64) T pad[NR];
#pragma GCC unroll 16
  for (int m = 0; m < M; ++m) {
    const T* row = s + m * ld;
    if (n < NR) {
      for (int l = 0; l < NR; ++l) pad[l] = l < n ? row[l] : -std::numeric_limits<T>::infinity();
      row = pad;
    }
#pragma GCC unroll 16
    for (int v = 0; v < kNV<T>; ++v) acc[m][v] = S::load(row + v * S::L);
  }
}

// Lanes of one tile row whose score beats t (NaN never does).
template <class T>
inline __attribute__((always_inline)) uint64_t above(const typename Simd<T>::V (&row)[kNV<T>], T t) {
  using S = Simd<T>;
  const auto tv = S::set1(t);
  uint64_t bits = 0;
#pragma GCC unroll 16
  for (int v = 0; v < kNV<T>; ++v) bits |= S::gt(row[v], tv) << (v * S::L);
  return bits;
}

// ------------------------------------------------------------------ selection
template <class T>
struct Entry {
  T s;
  int64_t i;
};
template <class T>
inline bool before(const Entry<T>& a, const Entry<T>& b) {
  return a.s > b.s || (a.s == b.s && a.i < b.i);
}

// b[0, w) = the elements of a[0, n) satisfying keep, in order; returns w.
template <class T, class Keep>
inline int64_t compact_if(const T* a, int64_t n, T* b, Keep&& keep) {
  int64_t w = 0;
  for (int64_t i = 0; i < n; ++i) {
    b[w] = a[i];
    w += keep(a[i]);
  }
  return w;
}

// Value of the (kth+1)-th largest of a[0, n) (no NaN): a quickselect whose
// partition passes are branchless (count, then compact one side into b);
// a and b are scratch, both of length n.
template <class T>
T kth_largest(T* a, T* b, int64_t n, int64_t kth) {
  while (n > 24) {
    T x = a[0], y = a[n / 2], z = a[n - 1];
    const T p = std::max(std::min(x, y), std::min(std::max(x, y), z));  // median of 3
    int32_t gt = 0, eq = 0;  // 32-bit counts: the loop vectorises
#pragma omp simd reduction(+ : gt, eq)
    for (int64_t i = 0; i < n; ++i) {
      gt += a[i] > p ? 1 : 0;
      eq += a[i] == p ? 1 : 0;
    }
    if (kth < gt) {
      n = compact_if(a, n, b, [p](T v) { return v > p; });
    } else if (kth < gt + eq) {
      return p;
    } else {
      n = compact_if(a, n, b, [p](T v) { return v < p; });
      kth -= gt + eq;
    }
    std::swap(a, b);
  }
  std::nth_element(a, a + kth, a + n, [](T u, T v) { return u > v; });
  return a[kth];
}

// Exclusion row of one query, walked forwards as its items increase.
template <class I>
struct ExWalk {
  const I* p = nullptr;
  const I* e = nullptr;
  bool hit(int64_t j) {
    while (p < e && int64_t(*p) < j) ++p;
    return p < e && int64_t(*p) == j;
  }
};

template <class T, class I>
ExWalk<I> ex_walk(const TopkArgs<T, I>& a, int64_t q, int64_t j0) {
  ExWalk<I> w;
  if (!a.ex_indptr) return w;
  const int64_t r = a.ex_rows ? a.ex_rows[q] : q;
  const I* b = a.ex_indices + a.ex_indptr[r];
  w.e = a.ex_indices + a.ex_indptr[r + 1];
  w.p = std::lower_bound(b, w.e, I(j0));
  return w;
}

// Running top-k of nq queries. Each query has a buffer of (score, item) in
// arrival order, which is increasing item order; lanes above the query's
// threshold are appended a tile row at a time (AVX-512: compressed straight
// from the registers). Once a buffer holds `cap` entries it is cut: entries
// appended since the last cut are checked against the query's exclusion row
// (one forward walk), then, if more than k remain, t = the k-th largest score
// and a stable branchless pass keeps every score > t and the earliest entries
// equal to t; t becomes the threshold. An item tying the threshold arrives
// later than the kept ones, so it has the larger index and loses: exact.
template <class T, class I>
struct Lists {
  int64_t k, cap, stride;
  std::vector<T> sc, tmp;
  std::vector<int64_t> ix, cnt, fresh;
  std::vector<T> thr;
  std::vector<ExWalk<I>> ex;

  Lists(int64_t nq, int64_t k_, int64_t n_items) : k(k_) {
    // A small slack keeps the threshold close to the running k-th score (fewer
    // lanes pass it) at the price of more frequent, cheap cuts.
    cap = std::max<int64_t>(1, std::min<int64_t>(k + std::max<int64_t>(k / 2, 16), n_items));
    stride = cap + 2 * kNR<T> + 16;  // a tile row past cap, plus whole-vector stores
    sc.resize(size_t(nq * stride));
    ix.resize(size_t(nq * stride));
    tmp.resize(size_t(2 * stride));
    cnt.assign(size_t(nq), 0);
    fresh.assign(size_t(nq), 0);
    thr.assign(size_t(nq), -std::numeric_limits<T>::infinity());
    ex.resize(size_t(nq));
  }
  T* scores(int64_t q) { return sc.data() + q * stride; }
  int64_t* items(int64_t q) { return ix.data() + q * stride; }

  // Drops the excluded entries among those appended since the last check.
  void filter(int64_t q) {
    ExWalk<I>& w = ex[size_t(q)];
    int64_t r = fresh[q];
    const int64_t n = cnt[q];
    if (w.p < w.e) {
      T* s = scores(q);
      int64_t* id = items(q);
      int64_t o = r;
      for (; r < n; ++r) {
        const bool keep = !w.hit(id[r]);
        s[o] = s[r];
        id[o] = id[r];
        o += keep;
      }
      cnt[q] = o;
    }
    fresh[q] = cnt[q];
  }
  __attribute__((noinline)) void cut(int64_t q) {
    filter(q);
    const int64_t n = cnt[q];
    if (n <= k) return;
    T* s = scores(q);
    int64_t* id = items(q);
    std::copy(s, s + n, tmp.data());
    const T t = kth_largest(tmp.data(), tmp.data() + stride, n, k - 1);
    int32_t n_gt = 0;
#pragma omp simd reduction(+ : n_gt)
    for (int64_t r = 0; r < n; ++r) n_gt += s[r] > t ? 1 : 0;
    int64_t need_eq = k - n_gt;
    int64_t w = 0;
    for (int64_t r = 0; r < n; ++r) {
      const bool eq = s[r] == t;
      const bool keep = (s[r] > t) | (eq & (need_eq > 0));
      need_eq -= eq & keep;
      s[w] = s[r];
      id[w] = id[r];
      w += keep;
    }
    cnt[q] = fresh[q] = w;  // == k
    thr[q] = t;
  }
  // Appends lanes `bits` of a tile row (scores s; item of lane l: id(l)).
  template <class Id>
  void append(int64_t q, const T* s, uint64_t bits, Id&& id) {
    T* bs = scores(q);
    int64_t* bi = items(q);
    int64_t c = cnt[q];
    while (bits) {
      const int l = __builtin_ctzll(bits);
      bits &= bits - 1;
      bs[c] = s[l];
      bi[c] = id(l);
      ++c;
    }
    cnt[q] = c;
  }
  // Writes the sorted list of query q to out_s/out_i[0, width), padded.
  void finish(int64_t q, T* out_s, int64_t* out_i, int64_t width,
              std::vector<Entry<T>>& scratch) {
    filter(q);
    const T* s = scores(q);
    const int64_t* id = items(q);
    const int64_t c = cnt[q];
    scratch.resize(size_t(c));
    for (int64_t r = 0; r < c; ++r) scratch[size_t(r)] = {s[r], id[r]};
    const int64_t n = std::min(c, width);
    std::partial_sort(scratch.begin(), scratch.begin() + n, scratch.end(), before<T>);
    for (int64_t r = 0; r < n; ++r) {
      out_s[r] = scratch[size_t(r)].s;
      out_i[r] = scratch[size_t(r)].i;
    }
    for (int64_t r = n; r < width; ++r) {
      out_s[r] = -std::numeric_limits<T>::infinity();
      out_i[r] = -1;
    }
  }
};

#if defined(__AVX512F__)
// Appends the lanes `bits` of a tile row held in registers, items j, j+1, ...:
// compress in registers, store whole vectors (the buffer has room past cnt).
template <class I>
inline __attribute__((always_inline)) void append_row(Lists<float, I>& L, int64_t q,
                                                      const __m512 (&row)[2], uint64_t bits,
                                                      int64_t j) {
  float* bs = L.scores(q);
  int64_t* bi = L.items(q);
  int64_t c = L.cnt[q];
  const __m512i iota_lo = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  const __m512i iota_hi = _mm512_setr_epi64(8, 9, 10, 11, 12, 13, 14, 15);
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __mmask16 m = __mmask16((bits >> (16 * h)) & 0xFFFF);
    _mm512_storeu_ps(bs + c, _mm512_maskz_compress_ps(m, row[h]));
    const __m512i base = _mm512_set1_epi64(j + 16 * h);
    const __mmask8 lo = __mmask8(m & 0xFF), hi = __mmask8(m >> 8);
    _mm512_storeu_si512(bi + c, _mm512_maskz_compress_epi64(lo, _mm512_add_epi64(base, iota_lo)));
    const int nlo = __builtin_popcount(unsigned(lo));
    _mm512_storeu_si512(bi + c + nlo,
                        _mm512_maskz_compress_epi64(hi, _mm512_add_epi64(base, iota_hi)));
    c += __builtin_popcount(unsigned(m));
  }
  L.cnt[q] = c;
}
template <class I>
inline __attribute__((always_inline)) void append_row(Lists<double, I>& L, int64_t q,
                                                      const __m512d (&row)[2], uint64_t bits,
                                                      int64_t j) {
  double* bs = L.scores(q);
  int64_t* bi = L.items(q);
  int64_t c = L.cnt[q];
  const __m512i iota = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __mmask8 m = __mmask8((bits >> (8 * h)) & 0xFF);
    _mm512_storeu_pd(bs + c, _mm512_maskz_compress_pd(m, row[h]));
    _mm512_storeu_si512(bi + c, _mm512_maskz_compress_epi64(
                                    m, _mm512_add_epi64(_mm512_set1_epi64(j + 8 * h), iota)));
    c += __builtin_popcount(unsigned(m));
  }
  L.cnt[q] = c;
}
constexpr bool kRegisterAppend = true;
#else
constexpr bool kRegisterAppend = false;
#endif

template <int M, class Fn>
inline void with_rows(int m, Fn&& fn) {
  if constexpr (M >= 1) {
    if (m == M) return fn(std::integral_constant<int, M>{});
    with_rows<M - 1>(m, fn);
  }
}

// ------------------------------------------------------------------ dense task
// Queries [q0, q1) x items [j0, j1) (j0 a multiple of NR). Writes each query's
// sorted list (width entries, padded) to out_s/out_i + (q - q0) * width.
template <class T, class I>
void dense_task(const TopkArgs<T, I>& a, int64_t q0, int64_t q1, int64_t j0, int64_t j1,
                int64_t kk, T* out_s, int64_t* out_i, int64_t width) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int NR = kNR<T>, NV = kNV<T>, MR = kMR;
  const int64_t nq = q1 - q0, d = a.d;
  const int64_t n_panels = (nq + MR - 1) / MR;
  std::vector<T> qpack(size_t(std::max<int64_t>(1, n_panels * d * MR)), T(0));
  for (int64_t q = 0; q < nq; ++q) {
    const T* src = a.queries + (q0 + q) * d;
    T* dst = qpack.data() + (q / MR) * d * MR + q % MR;
    for (int64_t f = 0; f < d; ++f) dst[f * MR] = src[f];
  }
  Lists<T, I> lists(nq, kk, j1 - j0);
  for (int64_t q = 0; q < nq; ++q) lists.ex[size_t(q)] = ex_walk(a, q0 + q, j0);
  // Item block: ~256 KB of packed items (L2), a whole number of panels.
  const int64_t nc = std::max<int64_t>(NR, (int64_t(256 << 10) / std::max<int64_t>(1, d * int64_t(sizeof(T)))) / NR * NR);
  alignas(64) T tile[NR];
  for (int64_t jb = j0; jb < j1; jb += nc) {
    const int64_t je = std::min(jb + nc, j1);
    for (int64_t p = 0; p < n_panels; ++p) {
      const T* qp = qpack.data() + p * d * MR;
      const int mr = int(std::min<int64_t>(MR, nq - p * MR));
      with_rows<MR>(mr, [&](auto Mc) {
        constexpr int M = decltype(Mc)::value;
        for (int64_t jp = jb; jp < je; jp += NR) {
          V acc[M][NV];
          const int64_t nvalid = std::min<int64_t>(NR, je - jp);
          if (a.scored)
            load_tile<M>(a.scored + (q0 + p * MR) * a.N + jp, a.N, int(nvalid), acc);
          else
            score_tile<M, MR, T>(qp, a.packed + (jp / NR) * d * NR, d, acc);
          const uint64_t valid = nvalid >= 64 ? ~uint64_t(0) : (uint64_t(1) << nvalid) - 1;
          // Compare in registers; append the lanes above threshold (no call while
          // the accumulators are live), then cut the buffers that are full.
          uint64_t bits[M];
          uint64_t any = 0;
#pragma GCC unroll 16
          for (int m = 0; m < M; ++m) {
            bits[m] = above<T>(acc[m], lists.thr[p * MR + m]) & valid;
            any |= bits[m];
          }
          if (__builtin_expect(any != 0, 0)) {
#pragma GCC unroll 16
            for (int m = 0; m < M; ++m) {
              if (!bits[m]) continue;
              if constexpr (kRegisterAppend) {
                append_row(lists, p * MR + m, acc[m], bits[m], jp);
              } else {
#pragma GCC unroll 16
                for (int v = 0; v < NV; ++v) S::store(tile + v * S::L, acc[m][v]);
                lists.append(p * MR + m, tile, bits[m], [&](int l) { return jp + l; });
              }
            }
            for (int m = 0; m < M; ++m)
              if (lists.cnt[p * MR + m] >= lists.cap) lists.cut(p * MR + m);
          }
        }
      });
    }
  }
  std::vector<Entry<T>> scratch;
  for (int64_t q = 0; q < nq; ++q)
    lists.finish(q, out_s + q * width, out_i + q * width, width, scratch);
}

// ------------------------------------------------------------------ candidate path
template <class T, class I>
void candidate_rows(const TopkArgs<T, I>& a, int64_t r0, int64_t r1, T* scores, int64_t* idx) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int NR = kNR<T>, NV = kNV<T>;
  const int64_t d = a.d;
  std::vector<T> panel(size_t(std::max<int64_t>(1, d * NR)));
  std::vector<Entry<T>> scratch;
  alignas(64) T s[NR];
  for (int64_t q = r0; q < r1; ++q) {
    const int64_t cb = a.cand_indptr[q], ce = a.cand_indptr[q + 1];
    const I* ids = a.cand_indices;
    Lists<T, I> lists(1, std::min(a.k, a.N), ce - cb);
    lists.ex[0] = ex_walk(a, q, 0);
    for (int64_t c0 = cb; c0 < ce; c0 += NR) {
      const int n = int(std::min<int64_t>(NR, ce - c0));
      for (int l = 0; l < n; ++l) {
        const int64_t j = ids[c0 + l];
        const T* src = a.packed + (j / NR) * d * NR + j % NR;
        for (int64_t f = 0; f < d; ++f) panel[f * NR + l] = src[f * NR];
      }
      for (int l = n; l < NR; ++l)
        for (int64_t f = 0; f < d; ++f) panel[f * NR + l] = T(0);
      V acc[1][NV];
      score_tile<1, 1, T>(a.queries + q * d, panel.data(), d, acc);
      const uint64_t valid = n >= 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1;
      const uint64_t bits = above<T>(acc[0], lists.thr[0]) & valid;
      if (bits) {
        for (int v = 0; v < NV; ++v) S::store(s + v * S::L, acc[0][v]);
        lists.append(0, s, bits, [&](int l) { return int64_t(ids[c0 + l]); });
        if (lists.cnt[0] >= lists.cap) lists.cut(0);
      }
    }
    lists.finish(0, scores + q * a.k, idx + q * a.k, a.k, scratch);
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

template <class T>
void topk_pack(const T* items, int64_t N, int64_t d, T* packed) {
  constexpr int64_t NR = kNR<T>;
  const int64_t P = ceil_div(N, NR);
  parallel_ranges(P, N * d, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      T* dst = packed + p * d * NR;
      const int64_t n = std::min(NR, N - p * NR);
      for (int64_t l = 0; l < n; ++l) {
        const T* src = items + (p * NR + l) * d;
        for (int64_t f = 0; f < d; ++f) dst[f * NR + l] = src[f];
      }
      for (int64_t l = n; l < NR; ++l)
        for (int64_t f = 0; f < d; ++f) dst[f * NR + l] = T(0);
    }
  });
}

template <class T, class I>
void topk(const TopkArgs<T, I>& a, T* scores, int64_t* idx) {
  constexpr int64_t NR = kNR<T>;
  const int64_t B = a.B, N = a.N, k = a.k;
  if (B == 0 || k == 0) return;
  if (a.cand_indptr) {
    const int64_t work = (a.cand_indptr[B] + B) * std::max<int64_t>(a.d, 1);
    parallel_rows(a.cand_indptr, B, work, [&](int64_t r0, int64_t r1) {
      candidate_rows(a, r0, r1, scores, idx);
    });
    return;
  }
  const int64_t kk = std::min(k, N);
  if (kk == 0) {  // no items: all padding
    for (int64_t i = 0; i < B * k; ++i) {
      scores[i] = -std::numeric_limits<T>::infinity();
      idx[i] = -1;
    }
    return;
  }
  const int64_t P = ceil_div(N, NR);
  const double work = double(B) * double(N) * double(std::max<int64_t>(a.d, 1));
  const int T_ = work < double(1 << 18) ? 1 : max_threads();
  // Query chunks of ~96 queries (whole panels); item chunks only when there
  // are too few query chunks to keep every thread busy.
  const int64_t QB = kMR * ceil_div(96, kMR);
  const int64_t n_qc = ceil_div(B, QB);
  int64_t n_ic = 1;
  if (T_ > 1 && n_qc < 4 * T_) {
    n_ic = T_ * ceil_div(4 * T_, n_qc * T_);
    n_ic = std::min(n_ic, P);
    if (double(B) * double(kk) * double(n_ic) > double(1 << 24)) n_ic = 1;
  }
  const int64_t n_tasks = n_qc * n_ic;
  std::vector<T> part_s;
  std::vector<int64_t> part_i;
  if (n_ic > 1) {
    part_s.resize(size_t(n_ic * B * kk));
    part_i.resize(size_t(n_ic * B * kk));
  }
  auto run_task = [&](int64_t t) {
    const int64_t qc = t / n_ic, ic = t % n_ic;
    const int64_t q0 = B * qc / n_qc, q1 = B * (qc + 1) / n_qc;
    const int64_t j0 = P * ic / n_ic * NR, j1 = std::min(N, P * (ic + 1) / n_ic * NR);
    if (q1 <= q0 || j1 <= j0) {
      if (n_ic > 1)  // an empty item chunk contributes an empty list
        for (int64_t i = 0; i < (q1 - q0) * kk; ++i) {
          part_s[size_t((ic * B + q0) * kk + i)] = -std::numeric_limits<T>::infinity();
          part_i[size_t((ic * B + q0) * kk + i)] = -1;
        }
      return;
    }
    if (n_ic == 1)
      dense_task(a, q0, q1, j0, j1, kk, scores + q0 * k, idx + q0 * k, k);
    else
      dense_task(a, q0, q1, j0, j1, kk, part_s.data() + (ic * B + q0) * kk,
                 part_i.data() + (ic * B + q0) * kk, kk);
  };
  if (T_ > 1 && n_tasks > 1) {
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(T_)
#endif
    for (int64_t t = 0; t < n_tasks; ++t) run_task(t);
  } else {
    for (int64_t t = 0; t < n_tasks; ++t) run_task(t);
  }
  if (n_ic == 1) return;
  // Merge the item chunks' lists (each sorted, padded with idx -1).
  parallel_ranges(B, B * kk * n_ic * 8, [&](int64_t b0, int64_t b1) {
    std::vector<Entry<T>> all(size_t(n_ic * kk));
    for (int64_t b = b0; b < b1; ++b) {
      int64_t n = 0;
      for (int64_t ic = 0; ic < n_ic; ++ic)
        for (int64_t r = 0; r < kk; ++r) {
          const size_t at = size_t((ic * B + b) * kk + r);
          if (part_i[at] < 0) break;
          all[size_t(n++)] = {part_s[at], part_i[at]};
        }
      const int64_t m = std::min(n, k);
      std::partial_sort(all.begin(), all.begin() + m, all.begin() + n, before<T>);
      for (int64_t r = 0; r < k; ++r) {
        scores[b * k + r] = r < m ? all[size_t(r)].s : -std::numeric_limits<T>::infinity();
        idx[b * k + r] = r < m ? all[size_t(r)].i : -1;
      }
    }
  });
}

#define HOPKIT_INSTANTIATE(T, I) \
  template void topk<T, I>(const TopkArgs<T, I>&, T*, int64_t*);
template void topk_pack<float>(const float*, int64_t, int64_t, float*);
template void topk_pack<double>(const double*, int64_t, int64_t, double*);
HOPKIT_FOR_VALUE_INDEX_TYPES(HOPKIT_INSTANTIATE)
#undef HOPKIT_INSTANTIATE

}  // namespace HOPKIT_ISA
}  // namespace hopkit
