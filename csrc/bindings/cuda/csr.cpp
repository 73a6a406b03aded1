// _cuda bindings of the CSR construction kernels (hopkit/cuda/csr.h).
#include "hopkit/cuda/csr.h"

#include "common.h"

using namespace hopkit_cuda_bind;

namespace {

// scratch = (keys_in, keys_out, ids_in, ids_out, temp, temp_bytes)
hopkit::cuda::SortScratch to_scratch(const std::vector<int64_t>& v) {
  need(v, 6, "scratch");
  return {dptr<uint64_t>(v[0]), dptr<uint64_t>(v[1]), dptr<int64_t>(v[2]),
          dptr<int64_t>(v[3]), dptr<void>(v[4]), size_t(v[5])};
}

}  // namespace

void bind_cuda_csr(py::module_& m) {
  m.def("sort_temp_bytes", [](int64_t n) { return int64_t(hopkit::cuda::sort_temp_bytes(n)); },
        py::arg("n"),
        "Scratch bytes of the radix sort for n keys");
  m.def(
      "coo_to_csr",
      [](int64_t n_rows, int64_t n_cols, int64_t nnz, bool index_i64, int64_t rows, int64_t cols,
         int value_dtype, int64_t values, int64_t indptr, int64_t cols_out, int64_t values_out,
         int64_t bad, std::vector<int64_t> scratch, int64_t stream) {
        auto s = to_scratch(scratch);
        py::gil_scoped_release release;
        hopkit::cuda::coo_to_csr(n_rows, n_cols, nnz, index_i64, dptr<const void>(rows),
                                 dptr<const void>(cols), value_dtype, dptr<const void>(values),
                                 dptr<int64_t>(indptr), dptr<void>(cols_out),
                                 dptr<void>(values_out), dptr<uint64_t>(bad), s,
                                 stream_of(stream));
      },
      py::arg("n_rows"), py::arg("n_cols"), py::arg("nnz"), py::arg("index_i64"), py::arg("rows"),
      py::arg("cols"), py::arg("value_dtype"), py::arg("values"), py::arg("indptr"),
      py::arg("cols_out"), py::arg("values_out"), py::arg("bad"), py::arg("scratch"),
      py::arg("stream"), "COO -> CSR on device pointers");
  m.def(
      "csr_transpose",
      [](int64_t n_rows, int64_t n_cols, int64_t nnz, bool index_i64, int64_t indptr,
         int64_t indices, int64_t t_indptr, int64_t t_indices, int64_t perm,
         std::vector<int64_t> scratch, int64_t stream) {
        auto s = to_scratch(scratch);
        py::gil_scoped_release release;
        hopkit::cuda::csr_transpose(n_rows, n_cols, nnz, index_i64, dptr<const int64_t>(indptr),
                                    dptr<const void>(indices), dptr<int64_t>(t_indptr),
                                    dptr<void>(t_indices), dptr<int64_t>(perm), s,
                                    stream_of(stream));
      },
      py::arg("n_rows"), py::arg("n_cols"), py::arg("nnz"), py::arg("index_i64"),
      py::arg("indptr"), py::arg("indices"), py::arg("t_indptr"), py::arg("t_indices"),
      py::arg("perm"), py::arg("scratch"), py::arg("stream"), "CSR transpose on device pointers");
}
