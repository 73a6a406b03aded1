#include "hopkit/bpr.h"

#include "common.h"

using namespace hopkit_bind;

namespace {

template <class T, class I>
hopkit::BprArgs<T, I> bpr_args(const py::object& U, const py::object& V, int64_t F,
                               const py::object& users, const py::object& pos,
                               const py::object& neg, bool shared) {
  hopkit::BprArgs<T, I> a;
  a.U = ptr<T>(U, "U");
  a.n_users = py::reinterpret_borrow<py::array>(U).shape(0);
  a.V = ptr<T>(V, "V");
  a.n_items = py::reinterpret_borrow<py::array>(V).shape(0);
  a.F = F;
  a.users = ptr<I>(users, "users");
  a.pos = ptr<I>(pos, "pos");
  a.neg = ptr<I>(neg, "neg");
  a.B = py::reinterpret_borrow<py::array>(users).shape(0);
  a.shared = shared;
  if (py::reinterpret_borrow<py::array>(pos).shape(0) != a.B ||
      py::reinterpret_borrow<py::array>(neg).shape(0) != a.B)
    throw py::value_error("hopkit native: users, pos and neg must have one length");
  if (shared && a.V != a.U) throw py::value_error("hopkit native: shared needs V is U");
  return a;
}

}  // namespace

void bind_bpr(py::module_& m) {
  m.def(
      "bpr_scores",
      [](py::object U, py::object V, int64_t F, py::object users, py::object pos,
         py::object neg, bool shared, py::object x) {
        dispatch_value_index(x, users, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          auto a = bpr_args<T, I>(U, V, F, users, pos, neg, shared);
          T* o = ptr<T>(x, "x");
          py::gil_scoped_release release;
          hopkit::bpr_scores<T, I>(a, o);
        });
      },
      py::arg("U"), py::arg("V"), py::arg("F"), py::arg("users"), py::arg("pos"), py::arg("neg"),
      py::arg("shared"), py::arg("x"),
      "x[b] = U[users[b]] . (V[neg[b]] - V[pos[b]]) (see csrc/include/hopkit/bpr.h)");
  m.def(
      "bpr_backward",
      [](py::object U, py::object V, int64_t F, py::object users, py::object pos,
         py::object neg, bool shared, py::object c, py::object dU, py::object dV) {
        dispatch_value_index(c, users, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          auto a = bpr_args<T, I>(U, V, F, users, pos, neg, shared);
          const T* cp = ptr<T>(c, "c");
          T* gu = ptr<T>(dU, "dU");
          T* gv = ptr<T>(dV, "dV");
          if (shared && gu != gv) throw py::value_error("hopkit native: shared needs dV is dU");
          py::gil_scoped_release release;
          hopkit::bpr_backward<T, I>(a, cp, gu, gv);
        });
      },
      py::arg("U"), py::arg("V"), py::arg("F"), py::arg("users"), py::arg("pos"), py::arg("neg"),
      py::arg("shared"), py::arg("c"), py::arg("dU"), py::arg("dV"),
      "Gradients of sum_b c[b] x[b] wrt U and V (see csrc/include/hopkit/bpr.h)");
}
