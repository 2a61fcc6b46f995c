// Warp-level tensor-core helpers (mma.sync m16n8k16 + ldmatrix) for the register-resident scans
// (gdr_scan_mma.cu). Fragment layouts, with g = lane / 4 and t = lane % 4:
//   A (16x16, row-major):  a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8, "col"):       b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C (16x8, fp32):        c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// The accumulator of a 16x8 tile pair holds, per thread, exactly the elements the A fragment of
// the same 16x16 block and the B fragments of its transpose need, so a state kept as a fp32
// accumulator feeds the next products without a trip through shared memory.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

namespace engram {
namespace gdr {
namespace mma {

template <class T> __device__ __forceinline__ uint32_t pack(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <> __device__ __forceinline__ uint32_t pack<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
// Exact negation of both halves (sign bits).
__device__ __forceinline__ uint32_t neg2(uint32_t x) { return x ^ 0x80008000u; }

// c += a b for one m16n8k16 tile (fp32 accumulators in place); TY is the PTX type of a and b.
// QUAL is `volatile` (the scans: products keep their place among the hand-pipelined fragment
// loads) or empty (mma_free).
#define ENGRAM_MMA16816(QUAL, TY)                                                                        \
  asm QUAL("mma.sync.aligned.m16n8k16.row.col.f32." TY "." TY ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, " \
           "{%0,%1,%2,%3};\n"                                                                            \
           : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                               \
           : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))

template <class T> __device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <> __device__ __forceinline__ void mma16816<__nv_bfloat16>(float c[4], const uint32_t a[4], uint32_t b0,
                                                                    uint32_t b1) {
  ENGRAM_MMA16816(volatile, "bf16");
}
template <> __device__ __forceinline__ void mma16816<__half>(float c[4], const uint32_t a[4], uint32_t b0,
                                                             uint32_t b1) {
  ENGRAM_MMA16816(volatile, "f16");
}

// As mma16816, but not volatile: the product depends only on its registers, so the compiler may
// sink it below later fragment loads (the loads are volatile and keep their order), which hides
// ldmatrix latency without a hand-written pipeline.
template <class T> __device__ __forceinline__ void mma_free(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <> __device__ __forceinline__ void mma_free<__nv_bfloat16>(float c[4], const uint32_t a[4], uint32_t b0,
                                                                    uint32_t b1) {
  ENGRAM_MMA16816(, "bf16");
}
template <> __device__ __forceinline__ void mma_free<__half>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  ENGRAM_MMA16816(, "f16");
}
#undef ENGRAM_MMA16816

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void* p) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void* p) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
// Stores four 8 x 8 16-bit matrices transposed (lanes 8i..8i+7 give the 8 row addresses of
// matrix i, 16 contiguous bytes each; r[i] is the thread's fragment of matrix i).
__device__ __forceinline__ void stsm_x4_t(void* p, const uint32_t r[4]) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1,%2,%3,%4};\n" ::"r"(s), "r"(r[0]), "r"(r[1]),
               "r"(r[2]), "r"(r[3])
               : "memory");
}

// The 16x16 A fragment at (m0, k0) of a row-major [M x K] smem matrix (leading dimension ld).
template <class T>
__device__ __forceinline__ void load_a(uint32_t a[4], const T* s, int ld, int m0, int k0) {
  const int l = threadIdx.x & 31, m = l >> 3;
  ldsm_x4(a, s + (m0 + (l & 7) + (m & 1) * 8) * ld + k0 + (m >> 1) * 8);
}
// The A fragment at (m0, k0) of op(A) = X^T where X is a row-major [K x M] smem matrix.
template <class T>
__device__ __forceinline__ void load_a_t(uint32_t a[4], const T* s, int ld, int m0, int k0) {
  const int l = threadIdx.x & 31, m = l >> 3;
  ldsm_x4_t(a, s + (k0 + (l & 7) + (m >> 1) * 8) * ld + m0 + (m & 1) * 8);
}
// B fragments of two n-tiles (n0 and n0 + 8) over k0..k0+15, when B^T is stored row-major
// [N x K] (n-major): b[0], b[1] for tile n0; b[2], b[3] for tile n0 + 8.
template <class T>
__device__ __forceinline__ void load_b_nmajor(uint32_t b[4], const T* s, int ld, int k0, int n0) {
  const int l = threadIdx.x & 31, m = l >> 3;
  ldsm_x4(b, s + (n0 + (l & 7) + (m >> 1) * 8) * ld + k0 + (m & 1) * 8);
}
// Same when B is stored row-major [K x N] (k-major).
template <class T>
__device__ __forceinline__ void load_b_kmajor(uint32_t b[4], const T* s, int ld, int k0, int n0) {
  const int l = threadIdx.x & 31, m = l >> 3;
  ldsm_x4_t(b, s + (k0 + (l & 7) + (m & 1) * 8) * ld + n0 + (m >> 1) * 8);
}

// A fragments (16 rows x 16k per step) of a fp32 accumulator whose n8 tiles 2s, 2s+1 form k-step s.
template <class T>
__device__ __forceinline__ void acc_to_a(uint32_t a[4], const float c0[4], const float c1[4]) {
  a[0] = pack<T>(c0[0], c0[1]);
  a[1] = pack<T>(c0[2], c0[3]);
  a[2] = pack<T>(c1[0], c1[1]);
  a[3] = pack<T>(c1[2], c1[3]);
}

template <class T> __device__ __forceinline__ float2 unpack(uint32_t x);
template <> __device__ __forceinline__ float2 unpack<__nv_bfloat16>(uint32_t x) {
  return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&x));
}
template <> __device__ __forceinline__ float2 unpack<__half>(uint32_t x) {
  return __half22float2(*reinterpret_cast<__half2*>(&x));
}

// A load_b_kmajor fragment with its rows scaled and rounded back to T: b[0] and b[2] hold rows
// k0 + 2t, +1 (scaled by s0, s1), b[1] and b[3] rows k0 + 8 + 2t, +9 (s8, s9). Row scalings of
// the contraction operand cost this in registers instead of a pass over the shared tile.
template <class T>
__device__ __forceinline__ void scale_b_rows(uint32_t b[4], float s0, float s1, float s8, float s9) {
  float2 x = unpack<T>(b[0]);
  b[0] = pack<T>(x.x * s0, x.y * s1);
  x = unpack<T>(b[2]);
  b[2] = pack<T>(x.x * s0, x.y * s1);
  x = unpack<T>(b[1]);
  b[1] = pack<T>(x.x * s8, x.y * s9);
  x = unpack<T>(b[3]);
  b[3] = pack<T>(x.x * s8, x.y * s9);
}

// As acc_to_a, plus the rounding residual as a second fragment: hi + lo carries the fp32 value
// to about 16 bits of mantissa, so a product against it (two mma) keeps fp32-like accuracy.
template <class T>
__device__ __forceinline__ void acc_to_a_split(uint32_t hi[4], uint32_t lo[4], const float c0[4], const float c1[4]) {
  acc_to_a<T>(hi, c0, c1);
  const float src[8] = {c0[0], c0[1], c0[2], c0[3], c1[0], c1[1], c1[2], c1[3]};
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 h = unpack<T>(hi[e]);
    lo[e] = pack<T>(src[2 * e] - h.x, src[2 * e + 1] - h.y);
  }
}

}  // namespace mma
}  // namespace gdr
}  // namespace engram

namespace engram {
namespace gdr {
namespace mma {

// Software pipeline over N fragment loads of 4 registers each: load i + D is issued before the
// products of load i, so ldmatrix latency overlaps the tensor-core work (the warp issues in
// order; without this every product would wait for its own load).
template <int N, int D, class Load, class Use>
__device__ __forceinline__ void pipeline(Load load, Use use) {
  uint32_t f[D + 1][4];
#pragma unroll
  for (int i = 0; i < D && i < N; ++i) load(i, f[i]);
#pragma unroll
  for (int i = 0; i < N; ++i) {
    if (i + D < N) load(i + D, f[(i + D) % (D + 1)]);
    use(i, f[i % (D + 1)]);
  }
}

}  // namespace mma
}  // namespace gdr
}  // namespace engram

// ---- warp-tile helpers shared by the register-resident chunk stages (gdr_grad_mma.cu, gdr_prep_mma.cu):
// a warp owns a [16 x 8 NT8] fp32 accumulator tile; (g, t) = (lane / 4, lane % 4) as above.
namespace engram {
namespace gdr {
namespace mma {

// acc (+)= op(A) [16 x 16 KS] op(B) [16 KS x 8 NT8] for one warp: fa(a, k0) loads the A
// fragment at k0, fb(b, k0, n0) the B fragments of the n-tiles n0 and n0 + 8.
template <class T, int NT8, int KS, class FA, class FB>
__device__ __forceinline__ void warp_mm(float (*acc)[4], FA fa, FB fb) {
#pragma unroll
  for (int s = 0; s < KS; ++s) {
    uint32_t a[4];
    fa(a, 16 * s);
#pragma unroll
    for (int j = 0; j < NT8 / 2; ++j) {
      uint32_t b[4];
      fb(b, 16 * s, 16 * j);
      mma_free<T>(acc[2 * j], a, b[0], b[1]);
      mma_free<T>(acc[2 * j + 1], a, b[2], b[3]);
    }
  }
}

template <int N>
__device__ __forceinline__ void zero(float (*acc)[4]) {
#pragma unroll
  for (int j = 0; j < N; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
}

// f(value&, row, col) for every element of a warp's [16 x 8 NT8] accumulator (tile coordinates).
template <int NT8, class F>
__device__ __forceinline__ void each(float (*acc)[4], F f) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
#pragma unroll
  for (int j = 0; j < NT8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) f(acc[j][e], g + 8 * (e >> 1), 8 * j + 2 * t + (e & 1));
}

// dst[g] = s0 and dst[g + 8] = s1, each summed over the 4 lanes that hold a row of a warp's
// 16-row tile (lane = 4 g + t).
__device__ __forceinline__ void store_row_sums(float s0, float s1, float* dst) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
#pragma unroll
  for (int o = 1; o < 4; o <<= 1) {
    s0 += __shfl_xor_sync(0xffffffffu, s0, o);
    s1 += __shfl_xor_sync(0xffffffffu, s1, o);
  }
  if (t == 0) {
    dst[g] = s0;
    dst[g + 8] = s1;
  }
}

// dst[row] = sum over the tile's columns of f(value, row, col), for the tile's 16 rows.
template <int NT8, class F>
__device__ __forceinline__ void row_reduce(float (*acc)[4], float* dst, F f) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
  float s0 = 0.f, s1 = 0.f;
#pragma unroll
  for (int j = 0; j < NT8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float x = f(acc[j][e], g + 8 * (e >> 1), 8 * j + 2 * t + (e & 1));
      if (e < 2) s0 += x; else s1 += x;
    }
  store_row_sums(s0, s1, dst);
}

// dst[col] = sum over the tile's 16 rows of f(value, row, col), for the tile's 8 NT8 columns.
template <int NT8, class F>
__device__ __forceinline__ void col_reduce(float (*acc)[4], float* dst, F f) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
#pragma unroll
  for (int j = 0; j < NT8; ++j)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int c = 8 * j + 2 * t + e;
      float x = f(acc[j][e], g, c) + f(acc[j][e + 2], g + 8, c);
#pragma unroll
      for (int o = 4; o < 32; o <<= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
      if (g == 0) dst[c] = x;
    }
}

// Stores alpha * acc as T at dst (tile row 0, col 0; row stride ld); rows >= valid are skipped.
template <class T, int NT8>
__device__ __forceinline__ void store_acc(T* dst, int64_t ld, float (*acc)[4], float alpha = 1.f, int valid = 16) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
#pragma unroll
  for (int j = 0; j < NT8; ++j) {
    const int c = 8 * j + 2 * t;
    if (g < valid) *reinterpret_cast<uint32_t*>(dst + g * ld + c) = pack<T>(alpha * acc[j][0], alpha * acc[j][1]);
    if (g + 8 < valid)
      *reinterpret_cast<uint32_t*>(dst + (g + 8) * ld + c) = pack<T>(alpha * acc[j][2], alpha * acc[j][3]);
  }
}

// A fragments of X^T [16 v x C] with its columns (chunk rows c) scaled by decay(c) = e^{gl - G_c}:
// the forward scans' state-update operand (X^T e^{G_last - G}), from X's 2 CS n8 tiles (the
// decay applied in fp32, then one rounding to T).
template <class T, int CS, class Decay>
__device__ __forceinline__ void decayed_x_to_a(uint32_t (*a)[4], const float (*X)[4], Decay decay) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int s = 0; s < CS; ++s) {
    float x0[4], x1[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int c0 = 16 * s + 2 * t + (e & 1);
      x0[e] = X[2 * s][e] * decay(c0);
      x1[e] = X[2 * s + 1][e] * decay(c0 + 8);
    }
    acc_to_a<T>(a[s], x0, x1);
  }
}

// As store_acc (alpha 1, all 16 rows), through a warp-private shared staging tile of
// 16 x (8 NT8 + 8) T: the accumulator goes to shared memory in 4-byte pairs (conflict-free with
// the 16-byte row padding) and leaves in 16-byte row chunks, so global memory sees a quarter of
// the store instructions, each a whole 16-byte piece (4-byte scatters throttled prep's stores).
template <class T, int NT8>
__device__ __forceinline__ void store_acc_staged(T* dst, int64_t ld, float (*acc)[4], T* stage) {
  constexpr int LDS = 8 * NT8 + 8, CPR = NT8;  // staging row stride; 16-byte chunks per row
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
#pragma unroll
  for (int j = 0; j < NT8; ++j) {
    *reinterpret_cast<uint32_t*>(stage + g * LDS + 8 * j + 2 * t) = pack<T>(acc[j][0], acc[j][1]);
    *reinterpret_cast<uint32_t*>(stage + (g + 8) * LDS + 8 * j + 2 * t) = pack<T>(acc[j][2], acc[j][3]);
  }
  __syncwarp();
#pragma unroll
  for (int i = l; i < 16 * CPR; i += 32) {
    const int r = i / CPR, c = (i % CPR) * 8;
    *reinterpret_cast<int4*>(dst + r * ld + c) = *reinterpret_cast<const int4*>(stage + r * LDS + c);
  }
  __syncwarp();  // the stage may be reused by the warp's next store
}

// A warp's S^T slice (rows v = g, g+8 of its 16 columns; cols k = 8j + 2t, +1) from / to a
// fp32 [K x V] state whose (0, first column) is at `base`; a null `src` reads zeros.
template <int KT>
__device__ __forceinline__ void load_state(float (*S)[4], const float* src, int64_t base, int V) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
#pragma unroll
  for (int j = 0; j < KT; ++j) {
    const int k = 8 * j + 2 * t;
    S[j][0] = src ? src[base + (int64_t)k * V + g] : 0.f;
    S[j][1] = src ? src[base + (int64_t)(k + 1) * V + g] : 0.f;
    S[j][2] = src ? src[base + (int64_t)k * V + g + 8] : 0.f;
    S[j][3] = src ? src[base + (int64_t)(k + 1) * V + g + 8] : 0.f;
  }
}
template <int KT>
__device__ __forceinline__ void store_state(float* dst, const float (*S)[4], int64_t base, int V) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
#pragma unroll
  for (int j = 0; j < KT; ++j) {
    const int k = 8 * j + 2 * t;
    dst[base + (int64_t)k * V + g] = S[j][0];
    dst[base + (int64_t)(k + 1) * V + g] = S[j][1];
    dst[base + (int64_t)k * V + g + 8] = S[j][2];
    dst[base + (int64_t)(k + 1) * V + g + 8] = S[j][3];
  }
}

}  // namespace mma
}  // namespace gdr
}  // namespace engram
