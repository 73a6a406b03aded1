// The _native module: build facts, thread control, and each op's bindings.
#include <pybind11/pybind11.h>

#include "hopkit/common.h"
#include "hopkit/isa.h"

namespace py = pybind11;

void bind_csr(py::module_& m);
void bind_spmm(py::module_& m);
void bind_sampling(py::module_& m);
void bind_propagate(py::module_& m);
void bind_attention(py::module_& m);
void bind_topk(py::module_& m);
void bind_bpr(py::module_& m);
void bind_torch_kernels(py::module_& m);

PYBIND11_MODULE(_native, m) {
  m.doc() = "hopkit native CPU kernels";
#ifdef HOPKIT_VERSION
  m.attr("__version__") = HOPKIT_VERSION;
#endif
  m.attr("openmp") = bool(HOPKIT_BUILD_OPENMP);
#ifdef HOPKIT_CUDA_OPTION
  m.attr("cuda_option") = HOPKIT_CUDA_OPTION;  // AUTO | ON | OFF at configure time
  m.attr("cuda_built") = bool(HOPKIT_CUDA_BUILT);
#endif
  m.def("active_isa", [] { return hopkit::isa_name(hopkit::active_isa()); });
  m.def("compiled_isas", &hopkit::compiled_isas);
  m.def("get_num_threads", &hopkit::max_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
    hopkit::set_num_threads(n);
  }, py::arg("n"), "Set hopkit's thread count (n >= 1)");
  // The threads a kernel's parallel region gets now (what max_threads() asks
  // for, as OpenMP grants it): lets a test check the count really used.
  m.def("threads_in_parallel_region", [] {
    int got = 1;
    hopkit::parallel_threads(hopkit::max_threads(), [&](int t, int T) {
      if (t == 0) got = T;
    });
    return got;
  });
  bind_csr(m);
  bind_spmm(m);
  bind_sampling(m);
  bind_propagate(m);
  bind_attention(m);
  bind_topk(m);
  bind_bpr(m);
  bind_torch_kernels(m);
}
