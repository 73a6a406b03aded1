// Batched top-K inner-product retrieval with per-query exclusion / candidates.
//
//   For each query b: the k items j maximising <queries[b], items[j]>, sorted by
//   score descending, ties to the smaller j; items listed in the exclusion row
//   of b are never returned; with candidates only the items of candidate row b
//   are scored. NaN and -inf scores never enter the top-k. Fewer than k items
//   left: the tail of the row is idx -1, score -inf.
//
// Items are scored from a packed layout built once (topk_pack, or kept in a
// hopkit.ItemIndex): panels of NR = 128 / sizeof(T) consecutive items, each
// stored feature-major, packed[p][f][l] = items[p * NR + l][f], zero past N.
// Selection only (topk_scores): with `scored` set, the scores [B, N] are given
// and the same blocked select + exclusion runs on them (no candidates).
// Exclusion and candidate rows must be sorted and free of duplicates (the
// Python layer guarantees it). All arrays are C-contiguous and validated.
#pragma once
#include <cstdint>

#include "hopkit/isa.h"

namespace hopkit {

template <class T>
constexpr int64_t topk_panel_width() {
  return 128 / int64_t(sizeof(T));
}

template <class T, class I>
struct TopkArgs {
  const T* queries;             // [B, d]
  const T* packed;              // [ceil(N / NR), d, NR]; unused when scored != nullptr
  const T* scored = nullptr;    // selection only: scores [B, N] given (queries, d unused)
  int64_t B, N, d, k;           // k >= 1; output rows have k entries
  const int64_t* ex_indptr;     // exclusion CSR or nullptr
  const I* ex_indices;
  const int64_t* ex_rows;       // [B]: exclusion row of each query, or nullptr (row b)
  const int64_t* cand_indptr;   // [B + 1] candidate CSR or nullptr
  const I* cand_indices;
};

#define HOPKIT_TOPK_DECLS                                                                    \
  /* packed[p][f][l] = items[p*NR + l][f] (0 past N); parallel over panels. */               \
  template <class T>                                                                         \
  void topk_pack(const T* items, int64_t N, int64_t d, T* packed);                           \
  /* Writes scores [B, k] and idx [B, k]. Dense path: tasks = query chunks x item chunks */  \
  /* (item chunks only when B is small), each a fused score-tile + threshold-select loop; */ \
  /* partial lists merged per query. Candidate path: parallel over queries. */               \
  template <class T, class I>                                                                \
  void topk(const TopkArgs<T, I>& a, T* scores, int64_t* idx);

HOPKIT_DECLARE_ISAS(HOPKIT_TOPK_DECLS)

template <class T>
void topk_pack(const T* items, int64_t N, int64_t d, T* packed) {
  HOPKIT_DISPATCH(topk_pack<T>(items, N, d, packed));
}
template <class T, class I>
void topk(const TopkArgs<T, I>& a, T* scores, int64_t* idx) {
  HOPKIT_DISPATCH(topk<T, I>(a, scores, idx));
}

}  // namespace hopkit
