// Host-side facts shared by the CUDA entry points (no CUDA headers needed).
#pragma once

namespace hopkit {
namespace cuda {

// Value dtype codes passed from Python (hopkit/ops/_cuda.py DTYPE_CODES).
enum DType : int { F32 = 0, F64 = 1, F16 = 2, BF16 = 3 };

}  // namespace cuda
}  // namespace hopkit
