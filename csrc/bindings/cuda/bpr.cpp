// _cuda bindings of the BPR kernels (hopkit/cuda/bpr.h).
#include "hopkit/cuda/bpr.h"

#include "common.h"

using namespace hopkit_cuda_bind;

void bind_cuda_bpr(py::module_& m) {
  m.def(
      "bpr_scores",
      [](int dtype, int64_t U, int64_t V, int64_t F, bool ids_i64, int64_t users, int64_t pos,
         int64_t neg, int64_t B, int64_t x, int64_t stream) {
        py::gil_scoped_release release;
        hopkit::cuda::bpr_scores(dtype, dptr<const void>(U), dptr<const void>(V), F, ids_i64,
                                 dptr<const void>(users), dptr<const void>(pos),
                                 dptr<const void>(neg), B, dptr<void>(x), stream_of(stream));
      },
      py::arg("dtype"), py::arg("U"), py::arg("V"), py::arg("F"), py::arg("ids_i64"),
      py::arg("users"), py::arg("pos"), py::arg("neg"), py::arg("B"), py::arg("x"),
      py::arg("stream"), "BPR margins x[b] = U[users[b]] . (V[neg[b]] - V[pos[b]]) on device pointers");
  m.def(
      "bpr_rows",
      [](int dtype, int64_t Src, int64_t F, int64_t n_rows, int64_t row_ptr, int64_t src,
         int64_t w, int64_t out, int64_t stream) {
        py::gil_scoped_release release;
        hopkit::cuda::bpr_rows(dtype, dptr<const void>(Src), F, n_rows,
                               dptr<const int64_t>(row_ptr), dptr<const int64_t>(src),
                               dptr<const void>(w), dptr<void>(out), stream_of(stream));
      },
      py::arg("dtype"), py::arg("Src"), py::arg("F"), py::arg("n_rows"), py::arg("row_ptr"),
      py::arg("src"), py::arg("w"), py::arg("out"), py::arg("stream"),
      "BPR gradient rows out[r] = sum_s w[s] * Src[src[s]] over a row-sorted slot list");
}
