// Host-callable CUDA entry points (no CUDA headers needed to include this).
#pragma once
#include <string>

namespace hopkit {
namespace cuda {
int device_count();  // 0 when there is no driver or no device
// Fills n floats at device_out on `stream`; returns "" or the CUDA error.
std::string fill(float* device_out, float value, long long n, void* stream);
}  // namespace cuda
}  // namespace hopkit
