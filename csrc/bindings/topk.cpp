#include "hopkit/topk.h"

#include <algorithm>

#include "common.h"

using namespace hopkit_bind;

namespace {

// The index dtype of whichever sparse input is present (int32 when none is).
py::object index_dtype_source(const py::object& ex_indices, const py::object& cand_indices) {
  if (!ex_indices.is_none()) return ex_indices;
  if (!cand_indices.is_none()) return cand_indices;
  return py::array_t<int32_t>(0);
}

// Runs the kernel in blocks of >= 4096 queries (~2^33 flops), polling Ctrl-C
// between them. Offsetting indptr pointers keeps their absolute positions valid.
template <class T, class I>
void run_blocks(const hopkit::TopkArgs<T, I>& a, T* s, int64_t* ix) {
  const int64_t B = a.B, d = a.d, k = a.k;
  const double per_query = 2.0 * double(std::max<int64_t>(a.N, 1)) *
                           double(std::max<int64_t>(d, 1));
  const int64_t block = std::max<int64_t>(4096, int64_t(8.6e9 / per_query));
  for (int64_t b0 = 0; b0 < B; b0 += block) {
    hopkit::TopkArgs<T, I> c = a;
    c.B = std::min(block, B - b0);
    c.queries = a.queries ? a.queries + b0 * d : nullptr;
    if (a.scored) c.scored = a.scored + b0 * a.N;
    if (a.ex_indptr && !a.ex_rows) c.ex_indptr = a.ex_indptr + b0;
    if (a.ex_rows) c.ex_rows = a.ex_rows + b0;
    if (a.cand_indptr) c.cand_indptr = a.cand_indptr + b0;
    {
      py::gil_scoped_release release;
      hopkit::topk<T, I>(c, s + b0 * k, ix + b0 * k);
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

}  // namespace

void bind_topk(py::module_& m) {
  m.def(
      "topk_prepare",
      [](py::array items) -> py::object {
        if (items.ndim() != 2) throw py::value_error("hopkit native: items must be 2-D");
        const int64_t N = items.shape(0), d = items.shape(1);
        py::object out;
        auto run = [&](auto t) {
          using T = decltype(t);
          const int64_t NR = hopkit::topk_panel_width<T>();
          const int64_t P = (N + NR - 1) / NR;
          py::array_t<T> packed(std::vector<py::ssize_t>{py::ssize_t(P), py::ssize_t(d),
                                                         py::ssize_t(NR)});
          const T* src = ptr<T>(items, "items");
          T* dst = packed.mutable_data();
          {
            py::gil_scoped_release release;
            hopkit::topk_pack<T>(src, N, d, dst);
          }
          out = std::move(packed);
        };
        if (is_dtype(items, py::dtype::of<float>())) run(float{});
        else if (is_dtype(items, py::dtype::of<double>())) run(double{});
        else throw py::type_error("hopkit native: items must be float32 or float64");
        return out;
      },
      py::arg("items"),
      "Pack items [N, d] into the top-k kernel's panel layout [ceil(N/NR), d, NR]");
  m.def(
      "topk",
      [](py::object queries, py::object prepared, int64_t n_items, int64_t k,
         py::object ex_indptr, py::object ex_indices, py::object ex_rows, py::object cand_indptr,
         py::object cand_indices, py::object scores, py::object idx) {
        py::array q = py::reinterpret_borrow<py::array>(queries);
        py::array p = py::reinterpret_borrow<py::array>(prepared);
        if (q.ndim() != 2 || p.ndim() != 3)
          throw py::value_error("hopkit native: topk needs queries [B, d] and packed items");
        const int64_t B = q.shape(0), d = q.shape(1);
        if (p.shape(1) != d) throw py::value_error("hopkit native: packed items have another d");
        if (!ex_indices.is_none() && !cand_indices.is_none() &&
            !py::reinterpret_borrow<py::array>(ex_indices).dtype().is(
                py::reinterpret_borrow<py::array>(cand_indices).dtype()))
          throw py::type_error("hopkit native: exclude and candidates need one index dtype");
        dispatch_value_index(queries, index_dtype_source(ex_indices, cand_indices),
                             [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          if (p.shape(2) != hopkit::topk_panel_width<T>() ||
              p.shape(0) * p.shape(2) < n_items)
            throw py::value_error("hopkit native: packed items do not match n_items");
          hopkit::TopkArgs<T, I> a;
          a.queries = ptr<T>(queries, "queries");
          a.packed = ptr<T>(prepared, "packed items");
          a.B = B;
          a.N = n_items;
          a.d = d;
          a.k = k;
          a.ex_indptr = ptr<int64_t>(ex_indptr, "exclude indptr");
          a.ex_indices = ptr<I>(ex_indices, "exclude indices");
          a.ex_rows = ptr<int64_t>(ex_rows, "exclude_rows");
          a.cand_indptr = ptr<int64_t>(cand_indptr, "candidates indptr");
          a.cand_indices = ptr<I>(cand_indices, "candidates indices");
          T* s = ptr<T>(scores, "scores");
          int64_t* ix = ptr<int64_t>(idx, "idx");
          run_blocks(a, s, ix);
        });
      },
      py::arg("queries"), py::arg("prepared"), py::arg("n_items"), py::arg("k"),
      py::arg("ex_indptr").none(true), py::arg("ex_indices").none(true),
      py::arg("ex_rows").none(true), py::arg("cand_indptr").none(true),
      py::arg("cand_indices").none(true), py::arg("scores"), py::arg("idx"),
      "Top-k inner products with exclusion / candidates (see csrc/include/hopkit/topk.h)");
  m.def(
      "topk_select",
      [](py::object scored, int64_t k, py::object ex_indptr, py::object ex_indices,
         py::object ex_rows, py::object scores, py::object idx) {
        py::array S = py::reinterpret_borrow<py::array>(scored);
        if (S.ndim() != 2) throw py::value_error("hopkit native: topk_select needs scores [B, N]");
        dispatch_value_index(scored, index_dtype_source(ex_indices, py::none()),
                             [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          hopkit::TopkArgs<T, I> a{};
          a.scored = ptr<T>(scored, "scores");
          a.B = S.shape(0);
          a.N = S.shape(1);
          a.d = 0;
          a.k = k;
          a.ex_indptr = ptr<int64_t>(ex_indptr, "exclude indptr");
          a.ex_indices = ptr<I>(ex_indices, "exclude indices");
          a.ex_rows = ptr<int64_t>(ex_rows, "exclude_rows");
          run_blocks(a, ptr<T>(scores, "out scores"), ptr<int64_t>(idx, "idx"));
        });
      },
      py::arg("S"), py::arg("k"), py::arg("ex_indptr").none(true),
      py::arg("ex_indices").none(true), py::arg("ex_rows").none(true), py::arg("scores"),
      py::arg("idx"),
      "Top-k of given scores [B, N] with exclusion (the selection of topk)");
}
