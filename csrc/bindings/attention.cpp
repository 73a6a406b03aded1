#include "hopkit/attention.h"

#include "common.h"

using namespace hopkit_bind;

namespace {

template <class T, class I>
hopkit::AttentionArgs<T, I> make_args(const py::object& indptr, const py::object& indices,
                                      int64_t n_rows, int64_t n_cols, const py::object& Q,
                                      const py::object& K, const py::object& V, int64_t heads,
                                      int64_t dk, int64_t dv, int score, double scale,
                                      double slope) {
  hopkit::AttentionArgs<T, I> a;
  a.A = {ptr<int64_t>(indptr, "indptr"), ptr<I>(indices, "indices"), n_rows, n_cols};
  a.Q = ptr<T>(Q, "Q");
  a.K = ptr<T>(K, "K");
  a.V = ptr<T>(V, "V");
  a.heads = heads;
  a.dk = dk;
  a.dv = dv;
  a.score = score;
  a.scale = T(scale);
  a.slope = T(slope);
  if (!a.Q || !a.K || !a.V) throw py::value_error("hopkit native: Q, K, V are required");
  if (heads < 1 || (score == hopkit::GAT && dk != 1) || score < 0 || score > 1)
    throw py::value_error("hopkit native: bad heads/score/dk");
  return a;
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def(
      "attention_forward",
      [](py::object indptr, py::object indices, int64_t n_rows, int64_t n_cols, py::object Q,
         py::object K, py::object V, int64_t heads, int64_t dk, int64_t dv, int score,
         double scale, double slope, py::object out, py::object lse) {
        dispatch_value_index(out, indices, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          auto a = make_args<T, I>(indptr, indices, n_rows, n_cols, Q, K, V, heads, dk, dv,
                                   score, scale, slope);
          T* o = ptr<T>(out, "out");
          T* l = ptr<T>(lse, "lse");
          py::gil_scoped_release release;
          hopkit::attention_forward<T, I>(a, o, l);
        });
      },
      py::arg("indptr"), py::arg("indices"), py::arg("n_rows"), py::arg("n_cols"), py::arg("Q"),
      py::arg("K"), py::arg("V"), py::arg("heads"), py::arg("dk"), py::arg("dv"),
      py::arg("score"), py::arg("scale"), py::arg("slope"), py::arg("out"), py::arg("lse"),
      "Fused attention aggregation forward (see csrc/include/hopkit/attention.h)");
  m.def(
      "attention_backward",
      [](py::object indptr, py::object indices, py::object t_indptr, py::object t_indices,
         int64_t n_rows, int64_t n_cols, py::object Q, py::object K, py::object V,
         int64_t heads, int64_t dk, int64_t dv, int score, double scale, double slope,
         py::object out, py::object dout, py::object lse, py::object dQ, py::object dK,
         py::object dV) {
        dispatch_value_index(out, indices, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          auto a = make_args<T, I>(indptr, indices, n_rows, n_cols, Q, K, V, heads, dk, dv,
                                   score, scale, slope);
          hopkit::CsrView<I> AT{ptr<int64_t>(t_indptr, "t_indptr"), ptr<I>(t_indices, "t_indices"),
                                n_cols, n_rows};
          const T* o = ptr<T>(out, "out");
          const T* go = ptr<T>(dout, "dout");
          const T* l = ptr<T>(lse, "lse");
          T* dq = ptr<T>(dQ, "dQ");
          T* dk_ = ptr<T>(dK, "dK");
          T* dv_ = ptr<T>(dV, "dV");
          if (!o || !go || !l || !dq || !dk_ || !dv_)
            throw py::value_error("hopkit native: attention_backward needs every array");
          std::vector<T> delta(size_t(n_rows * heads));
          py::gil_scoped_release release;
          hopkit::attention_backward<T, I>(a, AT, o, go, l, delta.data(), dq, dk_, dv_);
        });
      },
      py::arg("indptr"), py::arg("indices"), py::arg("t_indptr"), py::arg("t_indices"),
      py::arg("n_rows"), py::arg("n_cols"), py::arg("Q"), py::arg("K"), py::arg("V"),
      py::arg("heads"), py::arg("dk"), py::arg("dv"), py::arg("score"), py::arg("scale"),
      py::arg("slope"), py::arg("out"), py::arg("dout"), py::arg("lse"), py::arg("dQ"),
      py::arg("dK"), py::arg("dV"),
      "Fused attention aggregation backward: dQ, dK, dV");
}
