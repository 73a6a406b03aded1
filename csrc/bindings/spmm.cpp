#include "hopkit/spmm.h"

#include "common.h"

using namespace hopkit_bind;

namespace {

template <class T, class I>
hopkit::SpmmArgs<T, I> make_args(const py::object& indptr, const py::object& indices,
                                 int64_t n_rows, int64_t n_cols, const py::object& X, int64_t F,
                                 const py::object& E, int64_t e_width, const py::object& eperm,
                                 int message, int reduce) {
  hopkit::SpmmArgs<T, I> a;
  a.A = {ptr<int64_t>(indptr, "indptr"), ptr<I>(indices, "indices"), n_rows, n_cols};
  a.X = ptr<T>(X, "X");
  a.F = F;
  a.E = ptr<T>(E, "edge features");
  a.e_width = e_width;
  a.eperm = ptr<int64_t>(eperm, "eperm");
  a.message = message;
  a.reduce = reduce;
  if (message < 0 || message > 3 || reduce < 0 || reduce > 3)
    throw py::value_error("hopkit native: bad message/reduce code");
  if (message != hopkit::COPY && e_width == 0)
    throw py::value_error("hopkit native: message needs edge features");
  if (message != hopkit::EDGE && !a.X) throw py::value_error("hopkit native: message needs X");
  return a;
}

}  // namespace

void bind_spmm(py::module_& m) {
  m.def(
      "spmm_forward",
      [](py::object indptr, py::object indices, int64_t n_rows, int64_t n_cols, py::object X,
         int64_t F, py::object E, int64_t e_width, py::object eperm, int message, int reduce,
         py::object Y, py::object arg) {
        dispatch_value_index(Y, indices, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          auto a = make_args<T, I>(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm,
                                   message, reduce);
          T* y = ptr<T>(Y, "Y");
          int64_t* g = ptr<int64_t>(arg, "arg");
          if (a.e_width && message != hopkit::COPY && !a.E)
            throw py::value_error("hopkit native: forward needs the edge features E");
          py::gil_scoped_release release;
          hopkit::spmm_forward<T, I>(a, y, g);
        });
      },
      py::arg("indptr"), py::arg("indices"), py::arg("n_rows"), py::arg("n_cols"),
      py::arg("X").none(true), py::arg("F"), py::arg("E").none(true), py::arg("e_width"),
      py::arg("eperm").none(true), py::arg("message"), py::arg("reduce"), py::arg("Y"),
      py::arg("arg").none(true), "g-SpMM forward (see csrc/include/hopkit/spmm.h)");
  m.def(
      "spmm_edge_grad",
      [](py::object indptr, py::object indices, int64_t n_rows, int64_t n_cols, py::object X,
         int64_t F, py::object E, int64_t e_width, py::object eperm, int message, int reduce,
         py::object dY, py::object arg, py::object dE) {
        dispatch_value_index(dY, indices, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          auto a = make_args<T, I>(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm,
                                   message, reduce);
          const T* dy = ptr<T>(dY, "dY");
          const int64_t* g = ptr<int64_t>(arg, "arg");
          T* de = ptr<T>(dE, "dE");
          if ((reduce == hopkit::MAX || reduce == hopkit::MIN) && !g)
            throw py::value_error("hopkit native: max/min need arg");
          py::gil_scoped_release release;
          hopkit::spmm_edge_grad<T, I>(a, dy, g, de);
        });
      },
      py::arg("indptr"), py::arg("indices"), py::arg("n_rows"), py::arg("n_cols"),
      py::arg("X").none(true), py::arg("F"), py::arg("E").none(true), py::arg("e_width"),
      py::arg("eperm").none(true), py::arg("message"), py::arg("reduce"), py::arg("dY"),
      py::arg("arg").none(true), py::arg("dE"), "Gradient of g-SpMM wrt the edge features");
  m.def(
      "spmm_arg_grad_x",
      [](py::object indptr, py::object indices, int64_t n_rows, int64_t n_cols, py::object X,
         int64_t F, py::object E, int64_t e_width, py::object eperm, int message, int reduce,
         py::object dY, py::object arg, py::object dX) {
        dispatch_value_index(dY, indices, [&](auto t, auto i) {
          using T = decltype(t);
          using I = decltype(i);
          auto a = make_args<T, I>(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm,
                                   message, reduce);
          const T* dy = ptr<T>(dY, "dY");
          const int64_t* g = ptr<int64_t>(arg, "arg");
          T* dx = ptr<T>(dX, "dX");
          if (!g) throw py::value_error("hopkit native: arg required");
          py::gil_scoped_release release;
          hopkit::spmm_arg_grad_x<T, I>(a, dy, g, dx);
        });
      },
      py::arg("indptr"), py::arg("indices"), py::arg("n_rows"), py::arg("n_cols"),
      py::arg("X").none(true), py::arg("F"), py::arg("E").none(true), py::arg("e_width"),
      py::arg("eperm").none(true), py::arg("message"), py::arg("reduce"), py::arg("dY"),
      py::arg("arg"), py::arg("dX"), "Gradient of max/min g-SpMM wrt X through the kept arg");
}
