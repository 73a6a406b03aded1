// _cuda binding of negative sampling (hopkit/cuda/sampling.h).
#include "hopkit/cuda/sampling.h"

#include "common.h"

using namespace hopkit_cuda_bind;

void bind_cuda_sampling(py::module_& m) {
  m.def(
      "sample_negatives",
      [](int64_t indptr, int64_t indices, bool indices_i64, int64_t n_items, int64_t users,
         bool users_i64, int64_t n_batch, int64_t n_neg, uint64_t seed, int64_t out,
         bool out_i64, int64_t stream) {
        py::gil_scoped_release release;
        hopkit::cuda::sample_negatives(dptr<const int64_t>(indptr), dptr<const void>(indices),
                                       indices_i64, n_items, dptr<const void>(users), users_i64,
                                       n_batch, n_neg, seed, dptr<void>(out), out_i64,
                                       stream_of(stream));
      },
      py::arg("indptr"), py::arg("indices"), py::arg("indices_i64"), py::arg("n_items"),
      py::arg("users"), py::arg("users_i64"), py::arg("n_batch"), py::arg("n_neg"),
      py::arg("seed"), py::arg("out"), py::arg("out_i64"), py::arg("stream"),
      "Uniform negatives per (user, j) rejecting the user's positives, on device pointers");
}
