// Checks the wgmma building blocks of kernels/include/gdr_wgmma.cuh on the GPU against a host
// product: the 128-byte swizzled layout with K-major and MN-major descriptors (A from shared
// memory, K-major, as well), register A fragments and the accumulator layout. Standalone (no torch):
//   nvcc -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Ikernels/include \
//        scripts/gpu/wgmma_layout_test.cu -o /tmp/wgmma_layout_test && /tmp/wgmma_layout_test
#include <cuda_bf16.h>
#include <cstdio>
#include <cmath>
#include <vector>
#include "gdr_wgmma.cuh"

using namespace engram::gdr;
using bf = __nv_bfloat16;

// The tile (64 x 128) arrives already swizzled (wg::sw128_offset).
// mode 0: D[64x64] = A[64x16] * tile[0:64, 16s:16s+16]^T (K-major)
// mode 1: D[64x128] = A[64x16] * tile[16s:16s+16, 0:128]  (MN-major)
// mode 3: D[64x64] = tile[0:64, 16s:16s+16] * tile[0:64, 16s:16s+16]^T (A from shared memory, K-major)
// mode 4: D[64x64] = tile[16s:16s+16, 0:64]^T * tile[0:64, 16s:16s+16]^T (A MN-major: the
//         gradient kernel's A^T and P^T operands)
// mode 5: D[64x32] = tile[0:64, 16s:16s+16] * tile[32:64, 16s:16s+16]^T (N = 32, B rows offset)
// mode 6: D[64x64] = tile[16s:16s+16, 0:64]^T * tile[16s:16s+16, 64:128] (both MN-major, B in
//         the second 64-column slab)
// mode 7: D[64x32] = tile[16s:16s+16, 0:64]^T * tile[16s:16s+16, 96:128] (B MN-major, N = 32 from
//         the middle of a slab: the descriptor starts 64 bytes into the swizzled rows)
__global__ void kern(const bf* tile, const bf* A, float* D, int mode, int s) {
  __shared__ __align__(1024) unsigned char sm[64 * 128 * 2];
  for (int i = threadIdx.x; i < 64 * 128; i += blockDim.x) reinterpret_cast<bf*>(sm)[i] = tile[i];
  wg::fence_smem();
  __syncthreads();
  const int w = threadIdx.x >> 5, l = threadIdx.x & 31, g = l >> 2, t = l & 3;
  auto at = [&](int r, int c) { return *reinterpret_cast<const uint32_t*>(A + r * 16 + c); };
  uint32_t a[4] = {at(16 * w + g, 2 * t), at(16 * w + g + 8, 2 * t), at(16 * w + g, 2 * t + 8),
                   at(16 * w + g + 8, 2 * t + 8)};
  float d[64];
  for (int i = 0; i < 64; ++i) d[i] = 0.f;
  wg::fence();
  if (mode == 0) {
    wg::RS<64, bf>::mma<0>(d, a, wg::desc_kmajor(sm, 64, s), 0);
  } else if (mode == 1) {
    wg::RS<128, bf>::mma<1>(d, a, wg::desc_mnmajor(sm, 64, s), 0);
  } else if (mode == 3) {
    wg::SS<64, bf>::mma<0>(d, wg::desc_kmajor(sm, 64, s), wg::desc_kmajor(sm, 64, s), 0);
  } else if (mode == 4) {
    wg::SS<64, bf>::mma<0, 1>(d, wg::desc_mnmajor(sm, 64, s), wg::desc_kmajor(sm, 64, s), 0);
  } else if (mode == 5) {
    wg::SS<32, bf>::mma<0>(d, wg::desc_kmajor(sm, 64, s), wg::desc_kmajor(sm + 32 * 128, 64, s), 0);
  } else if (mode == 7) {
    wg::SS<32, bf>::mma<1, 1>(d, wg::desc_mnmajor(sm, 64, s), wg::desc_mnmajor(sm + 64 * 128 + 64, 64, s), 0);
  } else if (mode == 6) {
    wg::SS<64, bf>::mma<1, 1>(d, wg::desc_mnmajor(sm, 64, s), wg::desc_mnmajor(sm + 64 * 128, 64, s), 0);
  } else {  // diagnostic: MN-major with the two strides swapped
    wg::RS<128, bf>::mma<1>(d, a, wg::desc(sm + s * 2048, 1024, 64 * 128) | wg::kSwizzle128, 0);
  }
  wg::commit();
  wg::wait<0>();
  wg::pin<64>(d);
  const int n = mode == 5 || mode == 7 ? 32 : mode == 1 || mode == 2 ? 128 : 64;
  for (int j = 0; j < n / 8; ++j)
    for (int e = 0; e < 4; ++e) D[(16 * w + g + 8 * (e >> 1)) * n + 8 * j + 2 * t + (e & 1)] = d[4 * j + e];
}

int main() {
  std::vector<bf> tile(64 * 128), A(64 * 16);
  std::vector<float> tf(64 * 128), af(64 * 16);
  unsigned x = 12345;
  auto rnd = [&]() { x = x * 1664525u + 1013904223u; return ((x >> 9) & 0xFFFF) / 65536.f - 0.5f; };
  for (int r = 0; r < 64; ++r)
    for (int c = 0; c < 128; ++c) {
      tf[r * 128 + c] = __bfloat162float(__float2bfloat16(rnd()));
      tile[wg::sw128_offset(r, c, 64) / 2] = __float2bfloat16(tf[r * 128 + c]);
    }
  for (int i = 0; i < 64 * 16; ++i) { A[i] = __float2bfloat16(rnd()); af[i] = __bfloat162float(A[i]); }
  bf *dt, *da; float* dd;
  cudaMalloc(&dt, tile.size() * 2); cudaMalloc(&da, A.size() * 2); cudaMalloc(&dd, 64 * 128 * 4);
  cudaMemcpy(dt, tile.data(), tile.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(da, A.data(), A.size() * 2, cudaMemcpyHostToDevice);
  int bad = 0;
  auto T = [&](int r, int c) { return (double)tf[r * 128 + c]; };
  for (int mode = 0; mode < 8; ++mode)
    for (int s = 0; s < (mode == 0 || mode == 3 || mode == 5 ? 8 : 4); ++s) {
      cudaMemset(dd, 0, 64 * 128 * 4);
      kern<<<1, 128>>>(dt, da, dd, mode, s);
      cudaError_t e = cudaDeviceSynchronize();
      if (e != cudaSuccess) { printf("mode %d s %d: %s\n", mode, s, cudaGetErrorString(e)); return 2; }
      const int n = mode == 5 || mode == 7 ? 32 : mode == 1 || mode == 2 ? 128 : 64;
      std::vector<float> D(64 * n);
      cudaMemcpy(D.data(), dd, D.size() * 4, cudaMemcpyDeviceToHost);
      double err = 0;
      for (int m = 0; m < 64; ++m)
        for (int j = 0; j < n; ++j) {
          double ref = 0;
          for (int k = 0; k < 16; ++k) {
            const int kk = 16 * s + k;
            switch (mode) {
              case 0: ref += af[m * 16 + k] * T(j, kk); break;
              case 3: ref += T(m, kk) * T(j, kk); break;
              case 4: ref += T(kk, m) * T(j, kk); break;
              case 5: ref += T(m, kk) * T(32 + j, kk); break;
              case 6: ref += T(kk, m) * T(kk, 64 + j); break;
              case 7: ref += T(kk, m) * T(kk, 96 + j); break;
              default: ref += af[m * 16 + k] * T(kk, j);
            }
          }
          err = fmax(err, fabs(ref - D[m * n + j]));
        }
      printf("mode %d (%s) k-step %d: max abs err %.3g\n", mode,
             mode == 0   ? "K-major"
             : mode == 1 ? "MN-major"
             : mode == 3 ? "A and B K-major from shared memory"
             : mode == 4 ? "A MN-major, B K-major"
             : mode == 5 ? "N = 32, B rows 32-63"
             : mode == 6 ? "A and B MN-major, B in the second slab"
             : mode == 7 ? "B MN-major, N = 32 from the middle of a slab"
                         : "MN-major, strides swapped (diagnostic)",
             s, err);
      if (mode != 2 && err > 1e-3) bad++;
    }
  printf(bad ? "WGMMA LAYOUT TEST FAILED\n" : "WGMMA LAYOUT TEST PASSED\n");
  return bad ? 1 : 0;
}
