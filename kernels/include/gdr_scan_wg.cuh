// The forward chunk step with warpgroup products (sm_90a wgmma), shared by the split forward
// scan (gdr_scan_wg.cu: its tiles arrive by TMA from prep's outputs) and the fused forward
// (gdr_fwd_fused.cu: a producer warpgroup forms A and Aqk in shared memory).
//
// Per chunk, for a warpgroup's 64 columns of V with S^T [64 v x K] in its accumulators:
//   X^T = u^T - S^T w^T,  O = scale (e^G (Q S) + Aqk X),  S^T <- e^{G_last} S^T + (X^T e^{G_last-G}) K
// with the roundings of fwd_scan_mma (gdr_scan_mma.cu). The fused forward forms X from v instead
// of u and w (FromV): u - w S = A diag(beta) (V - e^G (K S)), so
//   X^T = (V^T - (S^T K^T) e^G) (A diag(beta))^T,
// one more 64 x 64 x 64 product here and none of u's and w's C x C x (K + V) in its producer.
// Warp w of the group owns rows 16w..16w+15 (the mma.sync layout), so accumulators become A
// fragments with `acc_to_a`. O^T, X^T and S^T come out with v as rows; they are stored as O, X
// and h (rows c or k) in 4-byte pairs after one shuffle with the neighbouring row.
#pragma once
#include "gdr.h"
#include "gdr_common.cuh"
#include "gdr_mma.cuh"
#include "gdr_wgmma.cuh"

namespace engram {
namespace gdr {

// Stores alpha * acc^T (acc: rows v = g, g+8 of this warp's 16 columns, NT8 tiles of 8 columns
// n) as T into dst[n * ld + v] for n < valid. Neighbouring rows v, v+1 sit in lanes 4 apart: one
// shuffle gives the even lane (v, v+1) of column n and the odd lane (v-1, v) of column n+1, so
// every store is 4 bytes.
template <class T, int NT8>
__device__ __forceinline__ void store_pairs_t(T* dst, int64_t ld, const float* acc, float alpha, int valid) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
  const bool even = (g & 1) == 0;
#pragma unroll
  for (int j = 0; j < NT8; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float a0 = alpha * acc[4 * j + 2 * h], a1 = alpha * acc[4 * j + 2 * h + 1];
      const float r = __shfl_xor_sync(0xffffffffu, even ? a1 : a0, 4);
      const int n = 8 * j + 2 * t + (even ? 0 : 1), v = (g & ~1) + 8 * h;
      if (n < valid) *reinterpret_cast<uint32_t*>(dst + (int64_t)n * ld + v) = even ? mma::pack<T>(a0, r) : mma::pack<T>(r, a1);
    }
}

// The byte offset, in a swizzled C-row tile, of the row this lane addresses for an .x4.trans
// ldmatrix/stmatrix over the 8 x 8 blocks of tile rows 16 jj .. 16 jj + 15 and columns vw .. vw + 15
// (lanes 8i..8i+7: block i = rows 16 jj + 8 (i / 2), columns vw + 8 (i % 2)).
__device__ __forceinline__ int t_block_offset(int jj, int vw) {
  const int lane = threadIdx.x & 31, m = lane >> 3;
  return wg::sw128_offset(8 * (2 * jj + (m >> 1)) + (lane & 7), vw + 8 * (m & 1), kC);
}
// u's (or v's) 16-bit values at the thread's places of X^T (rows v = vw + g, + 8 of the block's
// columns; columns r = 8 j + 2 t, + 1 of the chunk's rows): uv[j][h] holds rows r and r + 1 of
// column vw + g + 8 h, read as the tile's 8 x 8 blocks transposed (ldmatrix.trans): one read
// per 16 values instead of one per value.
template <int CT>
__device__ __forceinline__ void load_cols_t(uint32_t (*uv)[2], const unsigned char* tile, int vw) {
#pragma unroll
  for (int jj = 0; jj < CT / 2; ++jj) {
    uint32_t x[4];
    mma::ldsm_x4_t(x, tile + t_block_offset(jj, vw));
    uv[2 * jj][0] = x[0], uv[2 * jj][1] = x[1], uv[2 * jj + 1][0] = x[2], uv[2 * jj + 1][1] = x[3];
  }
}
// Stores alpha acc^T (acc: rows v = vw + g, + 8; columns c = 8 j + 2 t, + 1) as T into the
// swizzled C-row tile, row c, block column v: the 8 x 8 blocks transposed (stmatrix.trans).
template <class T, int CT>
__device__ __forceinline__ void stage_t(unsigned char* tile, const float (*acc)[4], float alpha, int vw) {
#pragma unroll
  for (int jj = 0; jj < CT / 2; ++jj) {
    uint32_t x[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float* a = acc[2 * jj + (i >> 1)] + 2 * (i & 1);
      x[i] = mma::pack<T>(alpha * a[0], alpha * a[1]);
    }
    mma::stsm_x4_t(tile + t_block_offset(jj, vw), x);
  }
}

// One chunk's tiles in shared memory, 16-bit ones 128-byte swizzled and 1024-aligned: q, k, w
// [C x K], Aqk [C x C], the block's columns of u [C x 64 NWG]; G [C] fp32 (q's and k's 64-column
// slabs QKRows 128-byte rows apart: the fused forward may interleave them). FromV: w is unused,
// u holds the block's columns of v, ab is A diag(beta) [C x C], and eg, egl hold e^G and
// e^{G_last - G} [C] (formed once per chunk by the producer instead of by every consumer thread);
// O is written to the tile ostage (v's, once read) for the caller to store.
struct FwdChunkTiles {
  const unsigned char *q, *k, *w, *a, *u;
  const float* g;
  const unsigned char* ab = nullptr;
  const float *eg = nullptr, *egl = nullptr;
  unsigned char* ostage = nullptr;
};

// Chunk c (first row t0, per-chunk index cidx) of the forward scan for the calling warpgroup:
// S (its S^T) enters as the state before the chunk and leaves as the state after it; O is
// stored to the user's [B,T,H,V] (rows below T), h and X to the per-chunk layout when `save`
// (a constant false lets the compiler drop X's registers after the state update's operands).
// vw: the warp's first column inside the block (whose first column of V is v0). mid() runs once
// the chunk's first products are issued (the split scan requests a later chunk's tiles there).
template <class T, int K, bool FromV = false, int QKRows = kC, class Mid>
__device__ __forceinline__ void fwd_chunk_wg(float (*S)[4], const FwdChunkTiles& tl, const Params& p, bool save,
                                             int64_t cidx, int b, int hh, int v0, int vw, int t0, Mid mid) {
  using mma::acc_to_a;
  constexpr int KT = K / 8, KS = K / 16, CT = kC / 8, CS = kC / 16;
  const int t = threadIdx.x & 3;
  const int V = p.V, H = p.H, Lc = min(kC, p.T - t0);
  const float* gS = tl.g;
  const float gl = gS[kC - 1];
  // e^{G_c} and e^{G_last - G_c}
  auto eg = [&](int c) {
    if constexpr (FromV) return tl.eg[c];
    else return __expf(gS[c]);
  };
  auto egl = [&](int c) {
    if constexpr (FromV) return tl.egl[c];
    else return __expf(gl - gS[c]);
  };
  const float Gam = eg(kC - 1);

  uint32_t SA[KS][4];
#pragma unroll
  for (int s = 0; s < KS; ++s) acc_to_a<T>(SA[s], S[2 * s], S[2 * s + 1]);
  // before the products: ptxas waits for every product in flight before a use of registers a
  // product wrote, and it does not see that S's last product has been waited for
  if (save) store_pairs_t<T, KT>(static_cast<T*>(p.h) + cidx * K * V + v0 + vw, V, &S[0][0], 1.f, K);
  float X[CT][4], O[CT][4];
  wg::pin<KS * 4>(&SA[0][0]);
  wg::fence();
#pragma unroll
  for (int s = 0; s < KS; ++s) wg::RS<64, T>::template mma<0>(&X[0][0], SA[s], FromV ? wg::desc_kmajor(tl.k, QKRows, s) : wg::desc_kmajor(tl.w, kC, s), s);
  wg::commit();
#pragma unroll
  for (int s = 0; s < KS; ++s) wg::RS<64, T>::template mma<0>(&O[0][0], SA[s], wg::desc_kmajor(tl.q, QKRows, s), s);
  wg::commit();
  mid();
  uint32_t uv[CT][2];
  load_cols_t<CT>(uv, tl.u, vw);
  wg::wait<1>();
  wg::pin<CT * 4>(&X[0][0]);
  // O^T columns are chunk rows: e^G scales them before Aqk X joins; the state decays by e^{G_last}
  auto decay_o_and_state = [&] {
#pragma unroll
    for (int j = 0; j < CT; ++j) {
      const float e0 = eg(8 * j + 2 * t), e1 = eg(8 * j + 2 * t + 1);
      O[j][0] *= e0, O[j][1] *= e1, O[j][2] *= e0, O[j][3] *= e1;
    }
#pragma unroll
    for (int j = 0; j < KT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) S[j][e] *= Gam;
  };
  uint32_t XA[CS][4], XD[CS][4];  // X^T, and X^T e^{G_last - G} for the state update
  if constexpr (FromV) {
    // D^T = V^T - (S^T K^T) e^G in place, then X^T = D^T (A diag(beta))^T while O's product ends
#pragma unroll
    for (int j = 0; j < CT; ++j) {
      const int r = 8 * j + 2 * t;
      const float e0 = eg(r), e1 = eg(r + 1);
      const float2 u0 = mma::unpack<T>(uv[j][0]), u1 = mma::unpack<T>(uv[j][1]);
      X[j][0] = u0.x - e0 * X[j][0];
      X[j][1] = u0.y - e1 * X[j][1];
      X[j][2] = u1.x - e0 * X[j][2];
      X[j][3] = u1.y - e1 * X[j][3];
    }
    uint32_t DA[CS][4];
#pragma unroll
    for (int s = 0; s < CS; ++s) acc_to_a<T>(DA[s], X[2 * s], X[2 * s + 1]);
    wg::pin<CS * 4>(&DA[0][0]);
    wg::fence();
#pragma unroll
    for (int s = 0; s < CS; ++s) wg::RS<64, T>::template mma<0>(&X[0][0], DA[s], wg::desc_kmajor(tl.ab, kC, s), s);
    wg::commit();
    wg::wait<1>();
    wg::pin<KS * 4>(&SA[0][0]);
    wg::pin<CT * 4>(&O[0][0]);
    decay_o_and_state();
    wg::wait<0>();
    wg::pin<CT * 4>(&X[0][0]);
    wg::pin<CS * 4>(&DA[0][0]);
#pragma unroll
    for (int s = 0; s < CS; ++s) acc_to_a<T>(XA[s], X[2 * s], X[2 * s + 1]);
    mma::decayed_x_to_a<T, CS>(XD, X, egl);
  } else {
#pragma unroll
    for (int j = 0; j < CT; ++j) {
      const float2 u0 = mma::unpack<T>(uv[j][0]), u1 = mma::unpack<T>(uv[j][1]);
      X[j][0] = u0.x - X[j][0];
      X[j][1] = u0.y - X[j][1];
      X[j][2] = u1.x - X[j][2];
      X[j][3] = u1.y - X[j][3];
    }
#pragma unroll
    for (int s = 0; s < CS; ++s) acc_to_a<T>(XA[s], X[2 * s], X[2 * s + 1]);
    mma::decayed_x_to_a<T, CS>(XD, X, egl);
    wg::wait<0>();
    wg::pin<KS * 4>(&SA[0][0]);
    wg::pin<CT * 4>(&O[0][0]);
    decay_o_and_state();
  }
  wg::pin<KT * 4>(&S[0][0]);
  wg::pin<CT * 4>(&O[0][0]);
  wg::pin<CS * 4>(&XA[0][0]);
  wg::pin<CS * 4>(&XD[0][0]);
  wg::fence();
#pragma unroll
  for (int s = 0; s < CS; ++s) wg::RS<64, T>::template mma<0>(&O[0][0], XA[s], wg::desc_kmajor(tl.a, kC, s), 1);
  wg::commit();
#pragma unroll
  for (int s = 0; s < CS; ++s) wg::RS<K, T>::template mma<1>(&S[0][0], XD[s], wg::desc_mnmajor(tl.k, QKRows, s), 1);
  wg::commit();
  if (save) store_pairs_t<T, CT>(static_cast<T*>(p.X) + cidx * kC * V + v0 + vw, V, &X[0][0], 1.f, kC);
  wg::wait<1>();
  wg::pin<CT * 4>(&O[0][0]);
  if constexpr (FromV)
    stage_t<T, CT>(tl.ostage, O, p.scale, vw);
  else
    store_pairs_t<T, CT>(static_cast<T*>(p.o) + (((int64_t)b * p.T + t0) * H + hh) * V + v0 + vw, (int64_t)H * V,
                         &O[0][0], p.scale, Lc);
  wg::wait<0>();
  wg::pin<KT * 4>(&S[0][0]);
  wg::pin<CS * 4>(&XA[0][0]);
  wg::pin<CS * 4>(&XD[0][0]);
}

}  // namespace gdr
}  // namespace engram
