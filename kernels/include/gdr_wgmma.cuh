// Warpgroup matrix products (sm_90a `wgmma.mma_async`) for the chunked gated-delta-rule scans.
//
// A warpgroup (4 consecutive warps, 128 threads) multiplies a 64 x 16 A operand held in
// registers by a 16 x N B operand read from shared memory through a descriptor, into 64 x N
// fp32 accumulators in registers. Warp w of the group owns rows 16w..16w+15, and within a warp
// both the A fragment and the accumulator use the layout of mma.sync m16n8k16 (accumulator
// element 4j + e is n8 tile j, element e), so a `float[N/2]` accumulator is the same registers as
// the `float[N/8][4]` tiles of gdr_mma.cuh and converts to A fragments with `acc_to_a`.
//
// B tiles live in shared memory in the 128-byte swizzled layout below (what TMA writes). The
// same tile serves as a K-major B (its rows are N, its columns the contraction) and, transposed,
// as an MN-major B (its rows are the contraction); only the descriptor differs.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

namespace engram {
namespace gdr {
namespace wg {

#include "gdr_wgmma_asm.inc"

// Shared-memory matrix descriptor (no swizzle bits; or kSwizzle128 into it). lbo and sbo: bytes
// between core matrices (8 rows x 16 bytes) that are neighbours along the leading and the
// strided dimension of the canonical layout.
__device__ __forceinline__ uint64_t desc(const void* smem, uint32_t lbo, uint32_t sbo) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return (uint64_t)((a & 0x3FFFF) >> 4) | ((uint64_t)((lbo & 0x3FFFF) >> 4) << 16) |
         ((uint64_t)((sbo & 0x3FFFF) >> 4) << 32);
}
// Byte offset of element (r, c) of a 16-bit tile of `rows` rows in the 128-byte swizzled layout
// that TMA writes with CU_TENSOR_MAP_SWIZZLE_128B: 64-column slabs of rows x 128 bytes one after
// another, and in each row the 16-byte chunk index XORed with the row's index within its group
// of 8 (the group of 8 rows, 1024 bytes, must be 1024-aligned). Wide rows cost few memory
// requests (128 bytes each), and the XOR keeps fragment reads free of bank conflicts.
__host__ __device__ constexpr int sw128_offset(int r, int c, int rows) {
  return (c >> 6) * rows * 128 + r * 128 + ((((c & 63) >> 3) ^ (r & 7)) << 4) + (c & 7) * 2;
}
constexpr uint64_t kSwizzle128 = 1ull << 62;
// B = tile^T for k-step s: the tile's rows are N and its columns the contraction. Within a slab
// the k-steps are 32 bytes apart (the hardware applies the swizzle to the address it forms).
__device__ __forceinline__ uint64_t desc_kmajor(const void* tile, int rows, int s) {
  return desc(static_cast<const unsigned char*>(tile) + (s >> 2) * rows * 128 + (s & 3) * 32, 16, 1024) | kSwizzle128;
}
// B = tile for k-step s: the tile's rows are the contraction and its columns N (slabs of 64
// columns rows * 128 bytes apart, groups of 8 rows 1024 bytes apart).
__device__ __forceinline__ uint64_t desc_mnmajor(const void* tile, int rows, int s) {
  return desc(static_cast<const unsigned char*>(tile) + s * 2048, rows * 128, 1024) | kSwizzle128;
}

__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Generic-proxy writes to shared memory (cp.async, st.shared) made visible to wgmma's reads.
__device__ __forceinline__ void fence_smem() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Pins registers that an in-flight wgmma reads or writes: the compiler may not move their uses
// across this point (CUTLASS's warpgroup_fence_operand).
template <int N>
__device__ __forceinline__ void pin(float* d) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
template <int N>
__device__ __forceinline__ void pin(uint32_t* a) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(a[i])::"memory");
}

}  // namespace wg
}  // namespace gdr
}  // namespace engram
