// Tensor-memory-accelerator (TMA) tile loads and the shared-memory barriers that count their
// bytes, for sm_90a kernels. One thread issues a whole tile (`cp.async.bulk.tensor`); the
// hardware writes it to shared memory and signals an mbarrier when all its bytes have landed.
// Compared with per-thread cp.async this takes the copies off the warps' instruction streams:
// in the wgmma forward scan ~60% of the stall samples sat on the copies' address arithmetic.
#pragma once
#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <type_traits>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace engram {
namespace gdr {
namespace tma {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void bar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
// Makes the initialised barriers visible to the async proxy (before any TMA names them).
__device__ __forceinline__ void fence_bar_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
// One arrival that also announces `bytes` more to come from TMA loads in this phase.
__device__ __forceinline__ void arrive_expect(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
// Waits until the barrier's phase with this parity has completed.
__device__ __forceinline__ void wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred P;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 P, [%0], %1;\n"
      "@!P bra WAIT_%=;\n}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}
// Loads the box at coordinates c (innermost first) of an N-dimensional map into dst.
template <int N>
__device__ __forceinline__ void load(void* dst, const CUtensorMap* map, const int (&c)[N], uint64_t* bar);
template <>
__device__ __forceinline__ void load<2>(void* dst, const CUtensorMap* map, const int (&c)[2], uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c[0]), "r"(c[1]), "r"(smem_addr(bar))
      : "memory");
}
template <>
__device__ __forceinline__ void load<3>(void* dst, const CUtensorMap* map, const int (&c)[3], uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
      "[%5];\n" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(smem_addr(bar))
      : "memory");
}
template <>
__device__ __forceinline__ void load<5>(void* dst, const CUtensorMap* map, const int (&c)[5], uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5, "
      "%6}], [%7];\n" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]), "r"(c[4]), "r"(smem_addr(bar))
      : "memory");
}

// Stores the box at coordinates c of a 5-dimensional map from src (shared memory written by
// the generic proxy: fence.proxy.async before), as one bulk group of its own; elements outside
// the map are not written.
__device__ __forceinline__ void store5(const CUtensorMap* map, const int (&c)[5], const void* src) {
  asm volatile(
      "cp.async.bulk.tensor.5d.global.shared::cta.bulk_group [%0, {%1, %2, %3, %4, %5}], [%6];\n"
      "cp.async.bulk.commit_group;\n" ::"l"(reinterpret_cast<uint64_t>(map)),
      "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]), "r"(c[4]), "r"(smem_addr(src))
      : "memory");
}
// Waits until the issuing thread's bulk stores have read their shared memory (it may be reused).
__device__ __forceinline__ void store_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }

// One arrival (no bytes announced).
__device__ __forceinline__ void arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}

// ---- host side: the tensor maps ----
// cuTensorMapEncodeTiled from the driver, found through the runtime (no link against libcuda).
inline PFN_cuTensorMapEncodeTiled_v12000 encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    C10_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
    TORCH_CHECK(f != nullptr && q == cudaDriverEntryPointSuccess, "gdr: the CUDA driver has no cuTensorMapEncodeTiled");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// A tiled map over `rank` dims (innermost first; strides in bytes of dims 1..rank-1), box `box`,
// 128-byte swizzled or plain.
inline void encode(CUtensorMap* m, CUtensorMapDataType dt, int rank, const void* base, const uint64_t* dims,
            const uint64_t* strides, const uint32_t* box, bool swizzle) {
  const uint32_t ones[5] = {1, 1, 1, 1, 1};
  const CUresult r = encoder()(m, dt, (cuuint32_t)rank, const_cast<void*>(base), dims, strides, box, ones,
                               CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
                               CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  TORCH_CHECK(r == CUDA_SUCCESS, "gdr: cuTensorMapEncodeTiled failed with CUresult ", (int)r);
}


// A user tensor [B, T, H, D] (16-bit, D a multiple of 64) as the 5-D map (64 columns, T rows, D/64
// slabs of 64 columns, H, B) with box (64, 64 rows, `slabs`, 1, 1): one request writes `slabs`
// 64-column slabs of a 64-row chunk, 128-byte swizzled, and rows past T arrive as zeros. The
// slabs' stride (128 bytes) is below the rows'.
inline void encode_user(CUtensorMap* m, CUtensorMapDataType dt, const void* base, int B, int T, int H, int D,
                        int slabs) {
  const uint64_t d = D, h = H, t = T;
  const uint64_t dims[5] = {64, t, d / 64, h, (uint64_t)B}, strides[4] = {2 * d * h, 128, 2 * d, 2 * d * h * t};
  const uint32_t box[5] = {64, 64, (uint32_t)slabs, 1, 1};
  encode(m, dt, 5, base, dims, strides, box, true);
}
// A 16-bit row-major [rows x D] matrix (D a multiple of 64; the per-chunk intermediates, C or K
// rows per chunk) as the 3-D map (64 columns, rows, D/64 slabs) with box (64, box_rows, slabs):
// one request writes `slabs` 64-column slabs of box_rows rows, 128-byte swizzled.
inline void encode_rows(CUtensorMap* m, CUtensorMapDataType dt, const void* base, uint64_t rows, uint64_t D,
                        uint32_t box_rows, uint32_t slabs) {
  const uint64_t dims[3] = {64, rows, D / 64}, strides[2] = {2 * D, 128};
  const uint32_t box[3] = {64, box_rows, slabs};
  encode(m, dt, 3, base, dims, strides, box, true);
}
// The chunks' cumulative log decays gc [chunks x C] (fp32) as a plain 2-D map, one chunk per request.
inline void encode_chunk_decays(CUtensorMap* m, const float* gc, uint64_t chunks, uint32_t C) {
  const uint64_t dims[2] = {C, chunks}, strides[1] = {4 * (uint64_t)C};
  const uint32_t box[2] = {C, 1};
  encode(m, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, gc, dims, strides, box, false);
}
template <class T>
CUtensorMapDataType data_type() {
  return std::is_same<T, __half>::value ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
}
}  // namespace tma
}  // namespace gdr
}  // namespace engram
