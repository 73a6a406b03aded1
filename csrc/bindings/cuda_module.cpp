// The optional _cuda module. Takes device pointers and streams as integers
// (from torch / CuPy on the Python side); never includes torch.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>

#include "hopkit/cuda_info.h"

namespace py = pybind11;

void bind_cuda_csr(py::module_& m);
void bind_cuda_spmm(py::module_& m);
void bind_cuda_propagate(py::module_& m);
void bind_cuda_attention(py::module_& m);
void bind_cuda_topk(py::module_& m);
void bind_cuda_bpr(py::module_& m);
void bind_cuda_sampling(py::module_& m);

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "hopkit CUDA kernels";
#ifdef HOPKIT_CUDA_ARCHS
  m.attr("architectures") = HOPKIT_CUDA_ARCHS;
#endif
  m.def("device_count", &hopkit::cuda::device_count);
  m.def("fill", [](uintptr_t out, float value, long long n, uintptr_t stream) {
    std::string err = hopkit::cuda::fill(reinterpret_cast<float*>(out), value, n,
                                         reinterpret_cast<void*>(stream));
    if (!err.empty()) throw std::runtime_error("hopkit._cuda.fill: " + err);
  }, py::arg("out"), py::arg("value"), py::arg("n"), py::arg("stream"));
  bind_cuda_csr(m);
  bind_cuda_spmm(m);
  bind_cuda_propagate(m);
  bind_cuda_attention(m);
  bind_cuda_topk(m);
  bind_cuda_bpr(m);
  bind_cuda_sampling(m);
}
