#include "hopkit/propagate.h"

#include "common.h"

using namespace hopkit_bind;

void bind_propagate(py::module_& m) {
  m.def(
      "propagate",
      [](py::object indptr, py::object indices, int64_t n_rows, int64_t n_cols, py::object X,
         int64_t F, py::object E, py::object eperm, py::object alpha, py::object out,
         py::object work) {
        dispatch_value_index(out, indices, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          hopkit::PropagateArgs<T, I> p;
          p.A = {ptr<int64_t>(indptr, "indptr"), ptr<I>(indices, "indices"), n_rows, n_cols};
          p.X = ptr<T>(X, "X");
          p.F = F;
          p.E = ptr<T>(E, "edge weights");
          p.eperm = ptr<int64_t>(eperm, "eperm");
          p.alpha = ptr<double>(alpha, "alpha");
          p.layers = py::reinterpret_borrow<py::array>(alpha).size() - 1;
          T* o = ptr<T>(out, "out");
          T* w = ptr<T>(work, "work");
          if (p.layers < 0) throw py::value_error("hopkit native: alpha must not be empty");
          if (p.layers >= 2 && !w) throw py::value_error("hopkit native: layers >= 2 need work");
          if ((p.layers >= 2 || p.alpha[0] != 0.0) && n_rows != n_cols)
            throw py::value_error("hopkit native: propagate needs a square A here");
          py::gil_scoped_release release;
          hopkit::propagate<T, I>(p, o, w);
        });
      },
      py::arg("indptr"), py::arg("indices"), py::arg("n_rows"), py::arg("n_cols"), py::arg("X"),
      py::arg("F"), py::arg("E").none(true), py::arg("eperm").none(true), py::arg("alpha"),
      py::arg("out"), py::arg("work").none(true),
      "Fused multi-hop propagation (see csrc/include/hopkit/propagate.h)");
}
