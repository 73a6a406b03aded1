// Helpers for the _cuda bindings: device pointers and streams arrive from
// Python as integers (torch's data_ptr() and cuda_stream); CSR and plan
// descriptors as tuples of integers. Never includes torch or CUDA headers.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "hopkit/cuda/spmm.h"

namespace py = pybind11;

namespace hopkit_cuda_bind {

template <class T>
inline T* dptr(int64_t p) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(p));
}

inline void* stream_of(int64_t s) { return reinterpret_cast<void*>(static_cast<uintptr_t>(s)); }

inline void need(const std::vector<int64_t>& v, size_t n, const char* what) {
  if (v.size() != n)
    throw std::invalid_argument(std::string("hopkit._cuda: ") + what + " must have " +
                                std::to_string(n) + " entries, got " + std::to_string(v.size()));
}

// csr = (indptr, indices, n_rows, n_cols, nnz): the device copy of a CSR.
inline hopkit::cuda::DeviceCsr to_csr(const std::vector<int64_t>& v) {
  need(v, 5, "csr");
  return {dptr<const int64_t>(v[0]), dptr<const int32_t>(v[1]), v[2], v[3], v[4]};
}

// plan = (seg_start, seg_row, seg_slot, n_segs, seg_len, split_row, split_ptr, n_split, n_slots).
inline hopkit::cuda::SpmmPlan to_plan(const std::vector<int64_t>& v) {
  need(v, 9, "plan");
  return {dptr<const int64_t>(v[0]), dptr<const int64_t>(v[1]), dptr<const int64_t>(v[2]), v[3],
          v[4], dptr<const int64_t>(v[5]), dptr<const int64_t>(v[6]), v[7], v[8]};
}

}  // namespace hopkit_cuda_bind
