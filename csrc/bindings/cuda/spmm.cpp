// _cuda bindings of spmm / sddmm (contract in hopkit/cuda/spmm.h). Arguments
// are validated in hopkit/ops/_cuda.py; kernels launch on the given stream.
#include "hopkit/cuda/spmm.h"

#include "common.h"

using namespace hopkit_cuda_bind;

namespace {

hopkit::cuda::SpmmCall make_call(const std::vector<int64_t>& csr, const std::vector<int64_t>& plan,
                                 int dtype, int64_t X, int64_t F, int64_t E, int64_t e_width,
                                 int64_t eperm, int message, int reduce, int64_t mask) {
  hopkit::cuda::SpmmCall c{};
  c.A = to_csr(csr);
  if (!plan.empty()) c.plan = to_plan(plan);
  c.dtype = dtype;
  c.X = dptr<const void>(X);
  c.F = F;
  c.E = dptr<const void>(E);
  c.e_width = e_width;
  c.eperm = dptr<const int64_t>(eperm);
  c.message = message;
  c.reduce = reduce;
  c.mask = dptr<const int64_t>(mask);
  c.X0 = nullptr;
  c.ep_a = 0.0;
  c.ep_b = 1.0;
  return c;
}

}  // namespace

void bind_cuda_spmm(py::module_& m) {
  m.def("spmm_unroll", &hopkit::cuda::spmm_unroll,
        "Edges per lane group and step in the spmm forward kernel");
  m.def("set_spmm_unroll", &hopkit::cuda::set_spmm_unroll, py::arg("u"),
        "Set the spmm forward unroll (0 = by value type, 1, 2, 4 or 8; a tuning knob)");
  m.def(
      "spmm_forward",
      [](std::vector<int64_t> csr, std::vector<int64_t> plan, int dtype, int64_t X, int64_t F,
         int64_t E, int64_t e_width, int64_t eperm, int message, int reduce, int64_t mask,
         int64_t Y, int64_t arg, int64_t ws_val, int64_t ws_arg, int64_t stream) {
        auto c = make_call(csr, plan, dtype, X, F, E, e_width, eperm, message, reduce, mask);
        py::gil_scoped_release release;
        hopkit::cuda::spmm_forward(c, dptr<void>(Y), dptr<int64_t>(arg), dptr<void>(ws_val),
                                   dptr<int32_t>(ws_arg), stream_of(stream));
      },
      py::arg("csr"), py::arg("plan"), py::arg("dtype"), py::arg("X"), py::arg("F"), py::arg("E"),
      py::arg("e_width"), py::arg("eperm"), py::arg("message"), py::arg("reduce"),
      py::arg("mask"), py::arg("Y"), py::arg("arg"), py::arg("ws_val"), py::arg("ws_arg"),
      py::arg("stream"), "g-SpMM forward on device pointers (0 = null)");
  m.def(
      "spmm_edge_grad",
      [](std::vector<int64_t> csr, int dtype, int64_t X, int64_t F, int64_t E, int64_t e_width,
         int64_t eperm, int message, int reduce, int64_t dY, int64_t arg, int64_t dE,
         int64_t stream) {
        auto c = make_call(csr, {}, dtype, X, F, E, e_width, eperm, message, reduce, 0);
        py::gil_scoped_release release;
        hopkit::cuda::spmm_edge_grad(c, dptr<const void>(dY), dptr<const int64_t>(arg),
                                     dptr<void>(dE), stream_of(stream));
      },
      py::arg("csr"), py::arg("dtype"), py::arg("X"), py::arg("F"), py::arg("E"),
      py::arg("e_width"), py::arg("eperm"), py::arg("message"), py::arg("reduce"), py::arg("dY"),
      py::arg("arg"), py::arg("dE"), py::arg("stream"),
      "Edge-feature gradient of g-SpMM / SDDMM on device pointers");
}
