// _cuda binding of the top-k selection kernel (hopkit/cuda/topk.h).
#include "hopkit/cuda/topk.h"

#include "common.h"

using namespace hopkit_cuda_bind;

void bind_cuda_topk(py::module_& m) {
  m.attr("TOPK_MAX_K") = hopkit::cuda::TOPK_MAX_K;
  m.def(
      "topk_select",
      [](int s_dtype, int64_t S, int64_t nq, int64_t N, int64_t k, int64_t q0, int64_t ex_indptr,
         int64_t ex_indices, int64_t ex_rows, int64_t cand_indptr, int64_t cand_indices,
         int64_t scores_out, int64_t idx_out, int64_t ws, int64_t stream) {
        hopkit::cuda::TopkSelectCall c{s_dtype,
                                       dptr<const void>(S),
                                       nq,
                                       N,
                                       k,
                                       q0,
                                       dptr<const int64_t>(ex_indptr),
                                       dptr<const int64_t>(ex_indices),
                                       dptr<const int64_t>(ex_rows),
                                       dptr<const int64_t>(cand_indptr),
                                       dptr<const int64_t>(cand_indices),
                                       dptr<void>(scores_out),
                                       dptr<int64_t>(idx_out)};
        if (ws < 0) return int64_t(hopkit::cuda::topk_select_ws_bytes(c));
        py::gil_scoped_release release;
        hopkit::cuda::topk_select(c, dptr<void>(ws), stream_of(stream));
        return int64_t(0);
      },
      py::arg("s_dtype"), py::arg("S"), py::arg("nq"), py::arg("N"), py::arg("k"), py::arg("q0"),
      py::arg("ex_indptr"), py::arg("ex_indices"), py::arg("ex_rows"), py::arg("cand_indptr"),
      py::arg("cand_indices"), py::arg("scores_out"), py::arg("idx_out"), py::arg("ws"),
      py::arg("stream"),
      "Per-query top-k selection over score rows on device pointers; ws = -1 returns the "
      "workspace bytes the call needs instead of running it");
}
