// What the two register gradient kernels (gdr_grad_mma.cu, gdr_grad_wg.cu) share: the per-chunk
// sums they gather in shared memory, the dbeta and dg they finish a chunk with, and the
// elementwise steps on a warp's [16 x 8 CT8] tiles of the C x C intermediates (rows r0 + g and
// r0 + g + 8, columns c0 + 8 j + 2 t + {0, 1}: the mma.sync accumulator layout).
#pragma once
#include "gdr.h"
#include "gdr_common.cuh"

namespace engram {
namespace gdr {

// Offsets (floats) of the vectors in a block's shared memory: g and beta twice (a persistent
// block loads the next chunk's beside the current ones), then per-owner partial sums (row sums:
// one per column group; column sums: one per row strip of 16) and one <S0, dS> partial per warp
// (twice: bwd_grad_wg finishes a chunk while the next one gathers its own).
// Every slot has one writer, and finish() adds them in a fixed order: the gradients are bitwise
// deterministic.
template <int NCG, int WARPS>
struct GradSums {
  static constexpr int N = NCG * kC;
  static constexpr int vG = 0, vB = kC, vG2 = 2 * kC, vB2 = 3 * kC, vQd = 4 * kC, vZr = vQd + N, vCs = vZr + N,
                       vEs = vCs + N, vDb = vEs + N, vRe = vDb + N, vColZ = vRe + N, vColE = vColZ + 4 * kC,
                       vFrob = vColE + 4 * kC, vFrob2 = vFrob + WARPS, nvec = vFrob2 + WARPS;

  // dbeta and dg of the chunk at row0 (Lc valid rows) from the sums in vec and its g and beta
  // (gS, bS; gl = gS[C - 1]), by one whole warp; dg is the reverse cumulative sum of dG over the
  // valid rows.
  static __device__ __forceinline__ void finish(const float* vec, const float* gS, const float* bS, float gl, int Lc,
                                                int64_t row0, int H, float* dg, float* dbeta, int frob = vFrob) {
    const int lane = threadIdx.x & 31, i0 = 2 * lane;
    // the lane's two rows of every partial sum as 8-byte loads, all issued before any is used
    auto ld = [&](const float* v) { return *reinterpret_cast<const float2*>(v + i0); };
    float2 qd[NCG], zr[NCG], cg[NCG], eg[NCG], dbg[NCG], rg[NCG], cz[4], ce[4];
#pragma unroll
    for (int c = 0; c < NCG; ++c) {
      qd[c] = ld(vec + vQd + c * kC), zr[c] = ld(vec + vZr + c * kC), cg[c] = ld(vec + vCs + c * kC);
      eg[c] = ld(vec + vEs + c * kC), dbg[c] = ld(vec + vDb + c * kC), rg[c] = ld(vec + vRe + c * kC);
    }
#pragma unroll
    for (int s = 0; s < 4; ++s) cz[s] = ld(vec + vColZ + s * kC), ce[s] = ld(vec + vColE + s * kC);
    const float2 g2 = ld(gS), b2 = ld(bS);
    float d[2], db[2], cs = 0.f;
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      auto el = [u](float2 x) { return u ? x.y : x.x; };
      auto groups = [&](const float2* x) {  // the column groups' row sums
        float r = 0.f;
#pragma unroll
        for (int c = 0; c < NCG; ++c) r += el(x[c]);
        return r;
      };
      auto strips = [&](const float2* x) { return el(x[0]) + el(x[1]) + el(x[2]) + el(x[3]); };  // the row strips' column sums
      const float ga = __expf(el(g2)), bi = el(b2), re = groups(rg), es = groups(eg), csi = groups(cg);
      db[u] = groups(dbg) + re + ga * es;
      d[u] = groups(qd) + groups(zr) + bi * re - strips(ce) + bi * ga * es - csi - strips(cz);
      cs += csi;
    }
    __syncwarp();
#pragma unroll
    for (int o = 16; o; o >>= 1) cs += __shfl_xor_sync(0xffffffffu, cs, o);
    float fr = 0.f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) fr += vec[frob + w];
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int i = 2 * lane + u;
      if (i == Lc - 1) d[u] += __expf(gl) * fr + cs;
      if (i >= Lc) d[u] = 0.f;
    }
    // suffix sums over lanes of the pair sums
    const float pair = d[0] + d[1];
    float suf = pair;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float n = __shfl_down_sync(0xffffffffu, suf, o);
      if (lane + o < 32) suf += n;
    }
    const float after = suf - pair;  // rows 2 lane + 2 and later
    const float o1 = d[1] + after, o0 = d[0] + o1;
    if (i0 < Lc) {
      dg[row0 + (int64_t)i0 * H] = o0;
      dbeta[row0 + (int64_t)i0 * H] = db[0];
    }
    if (i0 + 1 < Lc) {
      dg[row0 + (int64_t)(i0 + 1) * H] = o1;
      dbeta[row0 + (int64_t)(i0 + 1) * H] = db[1];
    }
  }
};

// A chunk-local vector (G or beta) at a thread's 2 CT8 accumulator columns c0 + 8 j + 2 t + {0, 1},
// read once as CT8 8-byte loads. Why: read per element (and, in the triangular steps, under the
// diagonal's branch) every element paid a shared-memory round trip, so the warps holding the
// most elements below the diagonal reached every block barrier last (bwd_grad_wg's trace,
// 2026-11-25: up to 1,900 cycles a chunk behind the others).
template <int CT8>
struct ColVec {
  float2 c[CT8];
  __device__ __forceinline__ ColVec(const float* v, int c0) {
    const int t = threadIdx.x & 3;
#pragma unroll
    for (int j = 0; j < CT8; ++j) c[j] = *reinterpret_cast<const float2*>(v + c0 + 8 * j + 2 * t);
  }
  __device__ __forceinline__ float at(int j, int e) const { return (e & 1) ? c[j].y : c[j].x; }
};

// f(j, e, i, jj, d) for each element e of n8 tile j of a warp's [16 x 8 CT8] accumulator at chunk
// rows r0.., columns c0.., with its row i, column jj and d = exp(G_i - G_jj): the rows' and
// columns' G are read once, and every exponential is formed (above the diagonal it may overflow,
// so callers select the triangle, never multiply by a mask), so each warp does the same work.
template <int CT8, class F>
__device__ __forceinline__ void each_decay(const float* gS, int r0, int c0, F f) {
  const int lane = threadIdx.x & 31, i0 = r0 + (lane >> 2);
  const float gr[2] = {gS[i0], gS[i0 + 8]};
  const ColVec<CT8> gc(gS, c0);
#pragma unroll
  for (int j = 0; j < CT8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      f(j, e, i0 + 8 * (e >> 1), c0 + 8 * j + 2 * (lane & 3) + (e & 1), __expf(gr[e >> 1] - gc.at(j, e)));
}

// x <- f exp(G_i - G_j) x on and below the diagonal (j <= i), 0 above it.
template <int CT8>
__device__ __forceinline__ void decay_tril(float (*acc)[4], const float* gS, int r0, int c0, float f) {
  each_decay<CT8>(gS, r0, c0,
                  [&](int j, int e, int i, int jj, float d) { acc[j][e] = jj <= i ? f * d * acc[j][e] : 0.f; });
}

// dA = dW (beta e^G K)^T + dX (beta V)^T from its two products (wk = dW K^T, da = dX V^T):
// both scaled by the column's beta, the first by its e^G.
template <int CT8>
__device__ __forceinline__ void form_da(float (*da)[4], const float (*wk)[4], const float* gS, const float* bS, int c0) {
  const ColVec<CT8> gc(gS, c0), bc(bS, c0);
#pragma unroll
  for (int j = 0; j < CT8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) da[j][e] = bc.at(j, e) * (da[j][e] + __expf(gc.at(j, e)) * wk[j][e]);
}

// From dl = (A^T dA) A^T and kk = K K^T: the decayed -dL strictly below the diagonal, d; then
// E = d (K K^T) in kk and R = d beta_i in dl. row_beta(h, i) gives beta of row i (h: the
// thread's first or second row). Every exponential is formed and the triangle only selects.
template <int CT8, class RowBeta>
__device__ __forceinline__ void form_e_and_r(float (*dl)[4], float (*kk)[4], const float* gS, int r0, int c0,
                                             RowBeta row_beta) {
  each_decay<CT8>(gS, r0, c0, [&](int j, int e, int i, int jj, float decay) {
    const float x = -decay * dl[j][e];
    const float d = jj < i ? x : 0.f;
    kk[j][e] *= d;
    dl[j][e] = d * row_beta(e >> 1, i);
  });
}

}  // namespace gdr
}  // namespace engram
