// Tensor-memory-accelerator (TMA) tile loads and the shared-memory barriers that count their
// bytes, for sm_90a kernels. One thread issues a whole tile (`cp.async.bulk.tensor`); the
// hardware writes it to shared memory and signals an mbarrier when all its bytes have landed.
// Compared with per-thread cp.async this takes the copies off the warps' instruction streams:
// in the wgmma forward scan ~60% of the stall samples sat on the copies' address arithmetic.
#pragma once
#include <cuda.h>
#include <cstdint>

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

}  // namespace tma
}  // namespace gdr
}  // namespace engram
