#include "hopkit/sampling.h"

#include "common.h"

using namespace hopkit_bind;

void bind_sampling(py::module_& m) {
  m.def(
      "sample_negatives",
      [](py::array indptr, py::array indices, int64_t n_items, py::array users, int64_t n_neg,
         uint64_t seed, py::array out) {
        const int64_t* ip = ptr<int64_t>(indptr, "indptr");
        const int64_t nb = users.shape(0);
        auto run = [&](auto i_tag, auto o_tag) {
          using I = decltype(i_tag);
          using O = decltype(o_tag);
          const I* ix = ptr<I>(indices, "indices");
          const O* u = ptr<O>(users, "users");
          O* o = ptr<O>(out, "out");
          py::gil_scoped_release release;
          hopkit::sample_negatives<I, O>(ip, ix, n_items, u, nb, n_neg, seed, o);
        };
        const bool i32 = is_dtype(indices, py::dtype::of<int32_t>());
        const bool o32 = is_dtype(users, py::dtype::of<int32_t>());
        if (i32) { if (o32) run(int32_t{}, int32_t{}); else run(int32_t{}, int64_t{}); }
        else { if (o32) run(int64_t{}, int32_t{}); else run(int64_t{}, int64_t{}); }
      },
      py::arg("indptr"), py::arg("indices"), py::arg("n_items"), py::arg("users"), py::arg("n_neg"),
      py::arg("seed"), py::arg("out"),
      "Uniform negatives per (user, j) rejecting the user's positives; out [len(users) * n_neg]");
}
