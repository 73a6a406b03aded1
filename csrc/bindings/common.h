// Binding helpers: dtype dispatch and raw pointers from NumPy arrays. The
// Python layer (ops.py) validates shapes and values; these checks only stop a
// wrong dtype or a non-contiguous array from reaching a kernel.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace hopkit_bind {

template <class T>
inline T* ptr(const py::object& o, const char* name) {
  if (o.is_none()) return nullptr;
  py::array a = py::reinterpret_borrow<py::array>(o);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string("hopkit native: ") + name + " has dtype " +
                         std::string(py::str(a.dtype())) + ", expected " +
                         std::string(py::str(py::dtype::of<T>())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string("hopkit native: ") + name + " must be C-contiguous");
  return static_cast<T*>(const_cast<void*>(a.data()));
}

// A new 1-D array of n elements of dtype dt.
inline py::array new_array(const py::dtype& dt, int64_t n) {
  return py::array(dt, std::vector<py::ssize_t>{py::ssize_t(n)});
}

inline bool is_dtype(const py::object& o, const py::dtype& d) {
  return py::reinterpret_borrow<py::array>(o).dtype().is(d);
}

// fn(T{}, I{}) for the value dtype of `values` and the index dtype of `index`.
template <class Fn>
void dispatch_value_index(const py::object& values, const py::object& index, Fn&& fn) {
  const bool i32 = is_dtype(index, py::dtype::of<int32_t>());
  if (!i32 && !is_dtype(index, py::dtype::of<int64_t>()))
    throw py::type_error("hopkit native: index arrays must be int32 or int64");
  if (is_dtype(values, py::dtype::of<float>())) {
    if (i32) fn(float{}, int32_t{}); else fn(float{}, int64_t{});
  } else if (is_dtype(values, py::dtype::of<double>())) {
    if (i32) fn(double{}, int32_t{}); else fn(double{}, int64_t{});
  } else {
    throw py::type_error("hopkit native: value arrays must be float32 or float64");
  }
}

}  // namespace hopkit_bind
