// _cuda bindings of attention_aggregate (hopkit/cuda/attention.h).
#include "hopkit/cuda/attention.h"

#include "common.h"

using namespace hopkit_cuda_bind;

namespace {

hopkit::cuda::AttentionCall make_call(const std::vector<int64_t>& csr,
                                      const std::vector<int64_t>& csr_t, int dtype, int64_t Q,
                                      int64_t K, int64_t V, int64_t heads, int64_t dk, int64_t dv,
                                      int score, double scale, double slope) {
  hopkit::cuda::AttentionCall a{};
  a.A = to_csr(csr);
  if (!csr_t.empty()) a.AT = to_csr(csr_t);
  a.dtype = dtype;
  a.Q = dptr<const void>(Q);
  a.K = dptr<const void>(K);
  a.V = dptr<const void>(V);
  a.heads = heads;
  a.dk = dk;
  a.dv = dv;
  a.score = score;
  a.scale = scale;
  a.slope = slope;
  return a;
}

}  // namespace

void bind_cuda_attention(py::module_& m) {
  m.def(
      "attention_forward",
      [](std::vector<int64_t> csr, std::vector<int64_t> plan, int dtype, int64_t Q, int64_t K,
         int64_t V, int64_t heads, int64_t dk, int64_t dv, int score, double scale, double slope,
         int64_t out, int64_t lse, int64_t ws, int64_t stream) {
        auto a = make_call(csr, {}, dtype, Q, K, V, heads, dk, dv, score, scale, slope);
        a.plan = to_plan(plan);
        py::gil_scoped_release release;
        hopkit::cuda::attention_forward(a, dptr<void>(out), dptr<void>(lse), dptr<void>(ws),
                                        stream_of(stream));
      },
      py::arg("csr"), py::arg("plan"), py::arg("dtype"), py::arg("Q"), py::arg("K"), py::arg("V"),
      py::arg("heads"), py::arg("dk"), py::arg("dv"), py::arg("score"), py::arg("scale"),
      py::arg("slope"), py::arg("out"), py::arg("lse"), py::arg("ws"), py::arg("stream"),
      "Fused attention forward on device pointers");
  m.def(
      "attention_backward",
      [](std::vector<int64_t> csr, std::vector<int64_t> csr_t, int dtype, int64_t Q, int64_t K,
         int64_t V, int64_t heads, int64_t dk, int64_t dv, int score, double scale, double slope,
         int64_t out, int64_t dout, int64_t lse, int64_t delta, int64_t dQ, int64_t dK,
         int64_t dV, int64_t stream) {
        auto a = make_call(csr, csr_t, dtype, Q, K, V, heads, dk, dv, score, scale, slope);
        py::gil_scoped_release release;
        hopkit::cuda::attention_backward(a, dptr<const void>(out), dptr<const void>(dout),
                                         dptr<const void>(lse), dptr<void>(delta),
                                         dptr<void>(dQ), dptr<void>(dK), dptr<void>(dV),
                                         stream_of(stream));
      },
      py::arg("csr"), py::arg("csr_t"), py::arg("dtype"), py::arg("Q"), py::arg("K"),
      py::arg("V"), py::arg("heads"), py::arg("dk"), py::arg("dv"), py::arg("score"),
      py::arg("scale"), py::arg("slope"), py::arg("out"), py::arg("dout"), py::arg("lse"),
      py::arg("delta"), py::arg("dQ"), py::arg("dK"), py::arg("dV"), py::arg("stream"),
      "Fused attention backward on device pointers");
}
