// CUDA g-SpMM, its backward kernels and SDDMM. Same contract as
// hopkit/spmm.h (reduce / message codes, empty rows, ties, NaN), on device
// pointers, launched on `stream` without synchronising. Differences:
//  * value dtypes float32, float64, float16, bfloat16 (code `dtype`, see
//    cuda/common.h); half types accumulate in float32. E has X's dtype.
//  * column indices are int32 (the device copy of a CSR; n_cols < 2^31).
//  * rows are cut into segments of at most `seg_len` edges (SpmmPlan, built
//    once per CSR on the host): one warp per (segment, feature tile); rows
//    with several segments write partial results to a workspace and a
//    second kernel combines them in segment order, so results are
//    deterministic and no float atomics are used.
#pragma once
#include <cstdint>

namespace hopkit {
namespace cuda {

struct DeviceCsr {
  const int64_t* indptr;   // [n_rows + 1]
  const int32_t* indices;  // [nnz]
  int64_t n_rows;
  int64_t n_cols;
  int64_t nnz;
};

struct SpmmPlan {
  const int64_t* seg_start;  // [n_segs] first edge of each segment (segments of a row are adjacent)
  const int64_t* seg_row;    // [n_segs]
  const int64_t* seg_slot;   // [n_segs] workspace slot, -1 when the segment is its row's only one
  int64_t n_segs;            // >= n_rows: an empty row has one empty segment
  int64_t seg_len;           // max edges per segment
  const int64_t* split_row;  // [n_split] rows with more than one segment
  const int64_t* split_ptr;  // [n_split + 1] their slot ranges
  int64_t n_split;
  int64_t n_slots;
};

struct SpmmCall {
  DeviceCsr A;
  SpmmPlan plan;
  int dtype;
  const void* X;         // [n_cols, F] or null for EDGE
  int64_t F;
  const void* E;         // [nnz] or [nnz, F] or null
  int64_t e_width;       // 0, 1 or F
  const int64_t* eperm;  // null or [nnz]: edge e's features (and mask id) at eperm[e]
  int message;
  int reduce;
  // Masked message (max/min backward on the transpose): edge e of row r
  // contributes to entry f only when mask[indices[e] * F + f] == eperm[e].
  const int64_t* mask;
  // Epilogue for sum/mean (used by propagate): y = ep_b * reduced + ep_a * X0[row]
  // (X0 [n_rows, F], read only when not null). spmm itself uses X0 = null, ep_b = 1.
  const void* X0;
  double ep_a;
  double ep_b;
};

// Y [n_rows, F] (and arg [n_rows, F] for MAX/MIN when not null). ws_val
// needs plan.n_slots * F accumulators (float, or double for F64), ws_arg
// plan.n_slots * F int32 for MAX/MIN; both may be null when n_slots == 0.
// Edges each lane group gathers per step in the forward kernel (loads in
// flight per lane): 1, 2, 4 or 8, or 0 (the default) to choose by value type.
// A process-wide tuning knob.
int spmm_unroll();
void set_spmm_unroll(int u);

void spmm_forward(const SpmmCall& c, void* Y, int64_t* arg, void* ws_val, int32_t* ws_arg,
                  void* stream);

// Gradient wrt edge features (dE has E's shape), and SDDMM:
// dE[e] = sum_f dY[i,f] * (MUL ? X[j,f] : 1) [* (arg[i,f] == e) for MAX/MIN],
// or per (e, f) for e_width = F. dY is pre-scaled for MEAN. One warp per edge.
void spmm_edge_grad(const SpmmCall& c, const void* dY, const int64_t* arg, void* dE,
                    void* stream);

}  // namespace cuda
}  // namespace hopkit
