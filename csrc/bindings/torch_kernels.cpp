// hopkit::spmm's CPU kernel in C++ (also that of hopkit::spmm_nograd, the same
// schema), registered through torch's stable C library API (docs/compile.md,
// "The C++ kernel of hopkit::spmm").
//
// The operator itself (schema, fake kernel, autograd) is defined in Python
// (python/hopkit/torch_ops/spmm.py); this file adds the kernel torch's
// dispatcher calls for CPU tensors, so a compiled program calls the native
// kernel with no Python frame in between. _native does not link libtorch:
// the C functions below are looked up at run time (dlsym) in the libtorch_cpu
// that Python already loaded, and registration is refused (the Python kernel
// stays) when any is missing. They are torch's stable ABI, declared here as
// torch/csrc/inductor/aoti_torch/c/shim.h and torch/csrc/stable/c/shim.h
// declare them, with the StableIValue conventions of torch 2.13 (the
// extension version passed to torch_library_impl): tensors arrive as owning
// handles, an optional as a pointer to a heap StableIValue (null for None)
// the kernel frees, a str as an owning string handle, outputs leave as new
// owning tensor handles on the stack.
#include <dlfcn.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "common.h"
#include "hopkit/spmm.h"

using namespace hopkit_bind;

namespace {

using StableIValue = uint64_t;
struct AtenTensorOpaque;
using AtenTensorHandle = AtenTensorOpaque*;
struct TorchLibraryOpaque;
using TorchLibraryHandle = TorchLibraryOpaque*;
struct StringOpaque;
using StringHandle = StringOpaque*;
using Err = int32_t;
using BoxedKernel = void (*)(StableIValue*, uint64_t, uint64_t);

constexpr uint64_t kStableVersion = (2ULL << 56) | (13ULL << 48);  // TORCH_VERSION_2_13_0

struct Api {
  Err (*library_init_impl)(const char*, const char*, const char*, uint32_t, TorchLibraryHandle*);
  Err (*library_impl)(TorchLibraryHandle, const char*, BoxedKernel, uint64_t) = nullptr;
  Err (*delete_library)(TorchLibraryHandle);
  Err (*get_data_ptr)(AtenTensorHandle, void**);
  Err (*get_dim)(AtenTensorHandle, int64_t*);
  Err (*get_sizes)(AtenTensorHandle, int64_t**);
  Err (*get_dtype)(AtenTensorHandle, int32_t*);
  Err (*is_contiguous)(AtenTensorHandle, bool*);
  Err (*empty_strided)(int64_t, const int64_t*, const int64_t*, int32_t, int32_t, int32_t,
                       AtenTensorHandle*);
  Err (*copy_)(AtenTensorHandle, AtenTensorHandle, int32_t);
  Err (*delete_tensor)(AtenTensorHandle);
  Err (*delete_stable_ivalue)(StableIValue*);
  Err (*string_c_str)(StringHandle, const char**);
  Err (*delete_string)(StringHandle);
  int32_t (*dtype_float32)();
  int32_t (*dtype_float64)();
  int32_t (*dtype_int32)();
  int32_t (*dtype_int64)();
  int32_t (*device_type_cpu)();
  int32_t f32, f64, i32, i64, cpu;
};
Api api;
py::object* fallback = nullptr;  // the Python kernel for the other CPU backends (never freed:
                                  // it may outlive the interpreter's teardown)

void check(Err e, const char* what) {
  if (e != 0)
    throw std::runtime_error(std::string("hopkit::spmm (C++ kernel): torch failed in ") + what);
}

// An owning tensor handle (or none), with the metadata the kernel reads.
struct Tensor {
  AtenTensorHandle h = nullptr;
  Tensor() = default;
  explicit Tensor(StableIValue v) : h(reinterpret_cast<AtenTensorHandle>(v)) {}
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  Tensor(Tensor&& o) noexcept : h(o.h) { o.h = nullptr; }
  Tensor& operator=(Tensor&& o) noexcept {
    std::swap(h, o.h);
    return *this;
  }
  ~Tensor() {
    if (h) api.delete_tensor(h);
  }
  explicit operator bool() const { return h != nullptr; }
  AtenTensorHandle release() {
    AtenTensorHandle r = h;
    h = nullptr;
    return r;
  }
  int64_t dim() const {
    int64_t d;
    check(api.get_dim(h, &d), "get_dim");
    return d;
  }
  int64_t size(int64_t i) const {
    int64_t* s;
    check(api.get_sizes(h, &s), "get_sizes");
    return s[i];
  }
  int32_t dtype() const {
    int32_t t;
    check(api.get_dtype(h, &t), "get_dtype");
    return t;
  }
  template <class T>
  T* data() const {
    if (!h) return nullptr;
    void* p;
    check(api.get_data_ptr(h, &p), "get_data_ptr");
    return static_cast<T*>(p);
  }
};

Tensor empty(std::initializer_list<int64_t> shape, int32_t dtype) {
  int64_t sizes[2], strides[2];
  int64_t n = 0;
  for (int64_t s : shape) sizes[n++] = s;
  int64_t st = 1;
  for (int64_t i = n - 1; i >= 0; --i) {
    strides[i] = st;
    st *= sizes[i];
  }
  Tensor t;
  check(api.empty_strided(n, sizes, strides, dtype, api.cpu, 0, &t.h), "empty_strided");
  return t;
}

// The kernels take C-contiguous arrays: a strided input is copied once.
Tensor contiguous(Tensor t) {
  bool c = true;
  if (t) check(api.is_contiguous(t.h, &c), "is_contiguous");
  if (c) return t;
  int64_t d = t.dim();
  int64_t* s;
  check(api.get_sizes(t.h, &s), "get_sizes");
  Tensor out = d == 1 ? empty({s[0]}, t.dtype()) : empty({s[0], s[1]}, t.dtype());
  check(api.copy_(out.h, t.h, 0), "copy_");
  return out;
}

Tensor optional_raw(StableIValue v) {
  auto* p = reinterpret_cast<StableIValue*>(v);
  if (!p) return Tensor();
  Tensor t(*p);
  check(api.delete_stable_ivalue(p), "delete_stable_ivalue");
  return t;
}

int64_t int_arg(StableIValue v) {
  int64_t x;
  std::memcpy(&x, &v, sizeof x);
  return x;
}

bool bool_arg(StableIValue v) {
  bool b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

std::string str_arg(StableIValue v) {
  auto h = reinterpret_cast<StringHandle>(v);
  const char* s;
  Err e = api.string_c_str(h, &s);
  std::string out = e == 0 ? std::string(s) : std::string();
  api.delete_string(h);
  check(e, "string_c_str");
  return out;
}

// Whether `backend` surely names the native kernels for CPU tensors:
// "native", or "auto" with HOPKIT_BACKEND unset, "auto" or "native". Any
// other name goes to the Python kernel, where hopkit._backend.resolve
// decides (or raises).
bool is_native(const std::string& backend) {
  if (backend == "native") return true;
  if (backend != "auto") return false;
  const char* env = std::getenv("HOPKIT_BACKEND");
  return !env || !std::strcmp(env, "auto") || !std::strcmp(env, "native");
}

// A NumPy view of a contiguous tensor's memory (no copy), for the fallback.
py::object view(const Tensor& t, int32_t dtype) {
  if (!t) return py::none();
  std::vector<py::ssize_t> shape;
  for (int64_t i = 0, d = t.dim(); i < d; ++i) shape.push_back(t.size(i));
  py::dtype dt = dtype == api.f32   ? py::dtype::of<float>()
                 : dtype == api.f64 ? py::dtype::of<double>()
                 : dtype == api.i32 ? py::dtype::of<int32_t>()
                                    : py::dtype::of<int64_t>();
  return py::array(dt, shape, t.data<void>(), py::capsule(t.data<void>(), [](void*) {}));
}

void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("hopkit::spmm: ") + what);
}

// hopkit::spmm(indptr, indices, eid?, t_indptr?, t_indices?, t_eid?, n_cols, X?, E?, ET?,
//              message, reduce, want_arg, backend) -> (Y, arg): see torch_ops/spmm.py.
// The public ops validate before they get here; the checks below are those of
// the pybind11 binding the Python kernel calls (dtypes, ranks), so that a
// direct call gets an error where the Python kernel gives one, never a read
// of the wrong type (std::invalid_argument reaches the caller as ValueError).
void spmm_kernel(StableIValue* stack, uint64_t num_args, uint64_t num_outputs) {
  if (num_args != 14 || num_outputs != 2)
    throw std::runtime_error("hopkit::spmm (C++ kernel): unexpected schema");
  // every argument is owned from here on, whatever throws below
  Tensor indptr(stack[0]), indices(stack[1]), eid = optional_raw(stack[2]);
  Tensor t_indptr = optional_raw(stack[3]), t_indices = optional_raw(stack[4]);
  Tensor t_eid = optional_raw(stack[5]), X = optional_raw(stack[7]), E = optional_raw(stack[8]);
  Tensor ET = optional_raw(stack[9]);  // the transposed side and ET are the backward's
  const std::string backend = str_arg(stack[13]);
  const int64_t n_cols = int_arg(stack[6]);
  const int message = int(int_arg(stack[10])), reduce = int(int_arg(stack[11]));
  const bool want_arg = bool_arg(stack[12]);

  require(X || E, "X and E are both None");
  const int32_t vt = (X ? X : E).dtype(), it = indices.dtype();
  require(vt == api.f32 || vt == api.f64, "values must be float32 or float64");
  require(it == api.i32 || it == api.i64, "indices must be int32 or int64");
  require(indptr.dtype() == api.i64 && (!eid || eid.dtype() == api.i64),
          "indptr and eid must be int64");
  require(indptr.dim() == 1 && indptr.size(0) >= 1 && indices.dim() == 1 &&
              (!eid || eid.dim() == 1),
          "graph arrays must be 1-D, indptr non-empty");
  require(!X || X.dim() == 2, "X must be 2-D");
  require(!E || ((E.dim() == 1 || E.dim() == 2) && E.dtype() == vt),
          "E must be 1-D or 2-D, of X's dtype");
  indptr = contiguous(std::move(indptr));
  indices = contiguous(std::move(indices));
  eid = contiguous(std::move(eid));
  X = contiguous(std::move(X));
  E = contiguous(std::move(E));

  const int64_t n_rows = indptr.size(0) - 1;
  const int64_t F = X ? X.size(1) : (E.dim() == 1 ? 1 : E.size(1));
  const int64_t e_width = !E ? 0 : (E.dim() == 1 ? 1 : F);
  const bool keep = reduce >= 2 && want_arg;
  Tensor Y = empty({n_rows, F}, vt);
  Tensor arg = keep ? empty({n_rows, F}, api.i64) : empty({0}, api.i64);

  if (!is_native(backend)) {
    py::gil_scoped_acquire gil;
    try {
      (*fallback)(backend, view(indptr, api.i64), view(indices, it), n_rows, n_cols,
                  view(X, vt), F, view(E, vt), e_width, view(eid, api.i64), message, reduce,
                  view(Y, vt), keep ? view(arg, api.i64) : py::none());
    } catch (py::error_already_set& e) {  // as a C++ error torch's binding translates
      const std::string msg = py::str(e.value());
      if (e.matches(PyExc_ValueError)) throw std::invalid_argument(msg);  // a ValueError again
      throw std::runtime_error(msg);
    }
  } else {
    require(message >= 0 && message <= 3 && reduce >= 0 && reduce <= 3,
            "bad message/reduce code");
    require(message == hopkit::COPY || E, "message needs edge features");
    require(message == hopkit::EDGE || X, "message needs X");
    auto run = [&](auto t, auto i) {
      using T = decltype(t);
      using I = decltype(i);
      hopkit::SpmmArgs<T, I> a;
      a.A = {indptr.data<int64_t>(), indices.data<I>(), n_rows, n_cols};
      a.X = X.data<T>();
      a.F = F;
      a.E = E.data<T>();
      a.e_width = e_width;
      a.eperm = eid.data<int64_t>();
      a.message = message;
      a.reduce = reduce;
      hopkit::spmm_forward<T, I>(a, Y.data<T>(), keep ? arg.data<int64_t>() : nullptr);
    };
    if (vt == api.f32) {
      if (it == api.i32) run(float{}, int32_t{}); else run(float{}, int64_t{});
    } else {
      if (it == api.i32) run(double{}, int32_t{}); else run(double{}, int64_t{});
    }
  }
  stack[0] = reinterpret_cast<StableIValue>(Y.release());
  stack[1] = reinterpret_cast<StableIValue>(arg.release());
}

template <class F>
bool find(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

// Resolves the C API in the libtorch_cpu at this path, or of that name
// (already loaded by torch: RTLD_NOLOAD never loads a second copy).
bool resolve_api(const std::string& libtorch_cpu) {
  if (api.library_impl) return true;
  void* lib = dlopen(libtorch_cpu.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (!lib) lib = dlopen("libtorch_cpu.so", RTLD_NOW | RTLD_NOLOAD);
  if (!lib) return false;
  Api a;
  bool ok = find(lib, "aoti_torch_library_init_impl", a.library_init_impl) &&
            find(lib, "aoti_torch_delete_library_object", a.delete_library) &&
            find(lib, "aoti_torch_get_data_ptr", a.get_data_ptr) &&
            find(lib, "aoti_torch_get_dim", a.get_dim) &&
            find(lib, "aoti_torch_get_sizes", a.get_sizes) &&
            find(lib, "aoti_torch_get_dtype", a.get_dtype) &&
            find(lib, "aoti_torch_is_contiguous", a.is_contiguous) &&
            find(lib, "aoti_torch_empty_strided", a.empty_strided) &&
            find(lib, "aoti_torch_copy_", a.copy_) &&
            find(lib, "aoti_torch_delete_tensor_object", a.delete_tensor) &&
            find(lib, "torch_delete_stable_ivalue", a.delete_stable_ivalue) &&
            find(lib, "torch_string_c_str", a.string_c_str) &&
            find(lib, "torch_delete_string", a.delete_string) &&
            find(lib, "aoti_torch_dtype_float32", a.dtype_float32) &&
            find(lib, "aoti_torch_dtype_float64", a.dtype_float64) &&
            find(lib, "aoti_torch_dtype_int32", a.dtype_int32) &&
            find(lib, "aoti_torch_dtype_int64", a.dtype_int64) &&
            find(lib, "aoti_torch_device_type_cpu", a.device_type_cpu) &&
            find(lib, "torch_library_impl", a.library_impl);  // last: it marks api ready
  dlclose(lib);  // torch keeps it loaded; RTLD_NOLOAD only took a reference
  if (!ok) return false;
  a.f32 = a.dtype_float32();
  a.f64 = a.dtype_float64();
  a.i32 = a.dtype_int32();
  a.i64 = a.dtype_int64();
  a.cpu = a.device_type_cpu();
  api = a;
  return true;
}

TorchLibraryHandle registration = nullptr;

}  // namespace

void bind_torch_kernels(py::module_& m) {
  m.def(
      "register_torch_kernels",
      [](const std::string& libtorch_cpu, py::object py_kernel) {
        if (registration) return true;
        if (!resolve_api(libtorch_cpu)) return false;
        TorchLibraryHandle h;
        check(api.library_init_impl("hopkit", "CPU", __FILE__, __LINE__, &h), "library_init_impl");
        // hopkit::spmm_nograd has spmm's schema (torch_ops/spmm.py): the same kernel
        if (api.library_impl(h, "spmm", &spmm_kernel, kStableVersion) != 0 ||
            api.library_impl(h, "spmm_nograd", &spmm_kernel, kStableVersion) != 0) {
          api.delete_library(h);
          throw std::runtime_error("hopkit: torch refused the C++ kernel of hopkit::spmm");
        }
        if (!fallback) fallback = new py::object();
        *fallback = std::move(py_kernel);
        registration = h;
        return true;
      },
      py::arg("libtorch_cpu"), py::arg("py_kernel"),
      "Register hopkit::spmm's CPU kernel with torch (the stable C library API of the "
      "libtorch_cpu at this path, already loaded); py_kernel(backend, *spmm_forward args) "
      "serves the CPU backends other than native. False when that API is missing.");
  m.def(
      "unregister_torch_kernels",
      [] {
        if (registration) api.delete_library(registration);  // torch removes its kernels
        registration = nullptr;
      },
      "Remove what register_torch_kernels registered (torch's dispatcher then calls the "
      "operator's Python kernel again).");
}
