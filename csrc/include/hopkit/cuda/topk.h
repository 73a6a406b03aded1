// CUDA per-query top-k selection over score rows, same contract as
// hopkit/topk.h: sorted by score descending, ties to the smaller item index,
// excluded items / NaN / -inf never enter, tail padded with idx -1 (the
// caller pre-fills scores with -inf and idx with -1; only found entries are
// written). Scores come from a query tile (dense S [nq, N], item t of row q
// is item t) or from a candidate CSR (S_c [nnz], item cand_indices[e]).
// k <= TOPK_MAX_K (one warp per query chunk keeps a shared-memory buffer);
// larger k goes through the caller's sort fallback.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hopkit {
namespace cuda {

constexpr int64_t TOPK_MAX_K = 256;

struct TopkSelectCall {
  int s_dtype;                  // F32 or F64: type of S and of scores_out
  const void* S;                // dense [nq, N] or candidate scores [nnz]
  int64_t nq, N, k;
  int64_t q0;                   // global index of the tile's first query
  const int64_t* ex_indptr;     // exclusion CSR (sorted rows, int64 ids) or null
  const int64_t* ex_indices;
  const int64_t* ex_rows;       // [B] exclusion row per global query, or null (row = query)
  const int64_t* cand_indptr;   // [B + 1] or null (dense)
  const int64_t* cand_indices;  // [nnz] sorted rows
  void* scores_out;             // [nq, k] (rows of this tile)
  int64_t* idx_out;             // [nq, k]
};

// Workspace bytes topk_select needs for this call (0 when a query's scores
// fit one chunk: then no workspace is read).
size_t topk_select_ws_bytes(const TopkSelectCall& c);
void topk_select(const TopkSelectCall& c, void* ws, void* stream);

}  // namespace cuda
}  // namespace hopkit
