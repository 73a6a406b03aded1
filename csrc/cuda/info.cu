// Placeholder CUDA kernel for the foundation: proves the optional CUDA build
// path and lets show_config() report the devices. The real kernels land in
// csrc/cuda/<op>.cu with the same names as csrc/cpu/<op>.cpp.
#include <cuda_runtime.h>

#include "hopkit/cuda_info.h"

namespace hopkit {
namespace cuda {

__global__ void fill_kernel(float* out, float value, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    out[i] = value;
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string fill(float* device_out, float value, long long n, void* stream) {
  if (n <= 0) return "";
  const int threads = 256;
  const int blocks = int((n + threads - 1) / threads < 65535 ? (n + threads - 1) / threads : 65535);
  fill_kernel<<<blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>(device_out, value, n);
  cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? "" : cudaGetErrorString(err);
}

}  // namespace cuda
}  // namespace hopkit
