#include "hopkit/csr.h"

#include "common.h"

using namespace hopkit_bind;

namespace {

template <class I, class T>
py::tuple coo_to_csr_impl(int64_t n_rows, int64_t n_cols, py::array rows, py::array cols,
                          py::object values) {
  const int64_t nnz = rows.shape(0);
  py::array_t<int64_t> indptr(n_rows + 1), uniq(n_rows);
  py::array cols_out = new_array(cols.dtype(), nnz);
  py::object values_out = py::none();
  if (!values.is_none()) values_out = new_array(py::dtype::of<T>(), nnz);
  const I* r = ptr<I>(rows, "row");
  const I* c = ptr<I>(cols, "col");
  const T* v = ptr<T>(values, "values");
  I* co = static_cast<I*>(cols_out.mutable_data());
  T* vo = ptr<T>(values_out, "values");
  bool bad_row = false;
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = hopkit::coo_to_csr<I, T>(n_rows, n_cols, nnz, r, c, v, indptr.mutable_data(), co,
                                   vo, uniq.mutable_data(), &bad_row);
  }
  return py::make_tuple(bad, bad_row, indptr, cols_out, py::none(), values_out, uniq);
}

}  // namespace

void bind_csr(py::module_& m) {
  m.def(
      "coo_to_csr",
      [](int64_t n_rows, int64_t n_cols, py::array rows, py::array cols, py::object values) {
        const bool i32 = is_dtype(rows, py::dtype::of<int32_t>());
        const bool f64 = !values.is_none() && is_dtype(values, py::dtype::of<double>());
        if (i32) return f64 ? coo_to_csr_impl<int32_t, double>(n_rows, n_cols, rows, cols, values)
                            : coo_to_csr_impl<int32_t, float>(n_rows, n_cols, rows, cols, values);
        return f64 ? coo_to_csr_impl<int64_t, double>(n_rows, n_cols, rows, cols, values)
                   : coo_to_csr_impl<int64_t, float>(n_rows, n_cols, rows, cols, values);
      },
      py::arg("n_rows"), py::arg("n_cols"), py::arg("rows"), py::arg("cols"),
      py::arg("values").none(true),
      "COO -> CSR: returns (bad_pos, bad_is_row, indptr, indices, None, values, uniq)");
  m.def(
      "csr_sum_duplicates",
      [](py::array indptr, py::array cols, py::object values, py::array_t<int64_t> uniq) {
        const int64_t n_rows = indptr.shape(0) - 1;
        const int64_t* ip = ptr<int64_t>(indptr, "indptr");
        const int64_t* u = ptr<int64_t>(uniq, "uniq");
        int64_t nnz_out = 0;
        for (int64_t r = 0; r < n_rows; ++r) nnz_out += u[r];
        py::array_t<int64_t> out_indptr(n_rows + 1);
        py::array out_cols = new_array(cols.dtype(), nnz_out);
        py::object out_values = py::none();
        if (!values.is_none())
          out_values = new_array(py::reinterpret_borrow<py::array>(values).dtype(), nnz_out);
        auto run = [&](auto i_tag, auto t_tag) {
          using I = decltype(i_tag);
          using T = decltype(t_tag);
          const I* c = ptr<I>(cols, "cols");
          const T* v = ptr<T>(values, "values");
          I* oc = static_cast<I*>(out_cols.mutable_data());
          T* ov = ptr<T>(out_values, "values");
          py::gil_scoped_release release;
          hopkit::csr_sum_duplicates<I, T>(n_rows, ip, c, v, u, out_indptr.mutable_data(), oc, ov);
        };
        const bool i32 = is_dtype(cols, py::dtype::of<int32_t>());
        const bool f64 = !values.is_none() && is_dtype(values, py::dtype::of<double>());
        if (i32) { if (f64) run(int32_t{}, double{}); else run(int32_t{}, float{}); }
        else { if (f64) run(int64_t{}, double{}); else run(int64_t{}, float{}); }
        return py::make_tuple(out_indptr, out_cols, out_values);
      },
      py::arg("indptr"), py::arg("cols"), py::arg("values").none(true), py::arg("uniq"),
      "Sum runs of equal columns of a row-sorted CSR");
  m.def(
      "csr_transpose",
      [](py::array indptr, py::array indices, int64_t n_cols) {
        const int64_t n_rows = indptr.shape(0) - 1;
        const int64_t nnz = indices.shape(0);
        py::array_t<int64_t> t_indptr(n_cols + 1), perm(nnz);
        py::array t_indices = new_array(indices.dtype(), nnz);
        const int64_t* ip = ptr<int64_t>(indptr, "indptr");
        auto run = [&](auto i_tag) {
          using I = decltype(i_tag);
          const I* ix = ptr<I>(indices, "indices");
          I* tx = static_cast<I*>(t_indices.mutable_data());
          py::gil_scoped_release release;
          hopkit::csr_transpose<I>(n_rows, n_cols, ip, ix, t_indptr.mutable_data(), tx,
                                   perm.mutable_data());
        };
        if (is_dtype(indices, py::dtype::of<int32_t>())) run(int32_t{});
        else run(int64_t{});
        return py::make_tuple(t_indptr, t_indices, perm);
      },
      py::arg("indptr"), py::arg("indices"), py::arg("n_cols"),
      "Transpose: returns (indptr, indices, perm) with perm[t] = edge of A");
}
