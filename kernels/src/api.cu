// Library-wide entry points: version and device queries.
#include <cuda_runtime.h>
#include <torch/version.h>
#include "engram_abi.h"

#define ENGRAM_STR2(x) #x
#define ENGRAM_STR(x) ENGRAM_STR2(x)

ENGRAM_EXPORT const char* engram_kernels_version() {
  return "engram-kernels 0.1.0 (libtorch " TORCH_VERSION ", CUDA " ENGRAM_STR(CUDART_VERSION) ")";
}

ENGRAM_EXPORT int engram_device_name(int ordinal, char* out, size_t len) {
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, ordinal) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  engram::write_err(out, len, p.name);
  return 0;
}
