// _cuda binding of propagate (hopkit/cuda/propagate.h).
#include "hopkit/cuda/propagate.h"

#include "common.h"
#include "hopkit/spmm.h"

using namespace hopkit_cuda_bind;

void bind_cuda_propagate(py::module_& m) {
  m.def(
      "propagate",
      [](std::vector<int64_t> csr, std::vector<int64_t> plan, int dtype, int64_t X, int64_t F,
         int64_t E, int64_t eperm, std::vector<double> alpha, int64_t out, int64_t work,
         int64_t ws_val, int64_t stream) {
        if (alpha.empty()) throw std::invalid_argument("hopkit._cuda.propagate: alpha is empty");
        hopkit::cuda::SpmmCall c{};
        c.A = to_csr(csr);
        c.plan = to_plan(plan);
        c.dtype = dtype;
        c.F = F;
        c.E = dptr<const void>(E);
        c.e_width = E ? 1 : 0;
        c.eperm = dptr<const int64_t>(eperm);
        c.message = E ? hopkit::MUL : hopkit::COPY;
        c.reduce = hopkit::SUM;
        c.ep_b = 1.0;
        py::gil_scoped_release release;
        hopkit::cuda::propagate(c, dptr<const void>(X), alpha.data(), int64_t(alpha.size()) - 1,
                                dptr<void>(out), dptr<void>(work), dptr<void>(ws_val),
                                stream_of(stream));
      },
      py::arg("csr"), py::arg("plan"), py::arg("dtype"), py::arg("X"), py::arg("F"), py::arg("E"),
      py::arg("eperm"), py::arg("alpha"), py::arg("out"), py::arg("work"), py::arg("ws_val"),
      py::arg("stream"), "Fused multi-hop propagation on device pointers");
}
