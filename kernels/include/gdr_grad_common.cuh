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
// one per column group; column sums: one per row strip of 16) and one <S0, dS> partial per warp.
// Every slot has one writer, and finish() adds them in a fixed order: the gradients are bitwise
// deterministic.
template <int NCG, int WARPS>
struct GradSums {
  static constexpr int N = NCG * kC;
  static constexpr int vG = 0, vB = kC, vG2 = 2 * kC, vB2 = 3 * kC, vQd = 4 * kC, vZr = vQd + N, vCs = vZr + N,
                       vEs = vCs + N, vDb = vEs + N, vRe = vDb + N, vColZ = vRe + N, vColE = vColZ + 4 * kC,
                       vFrob = vColE + 4 * kC, nvec = vFrob + WARPS;

  // dbeta and dg of the chunk at row0 (Lc valid rows) from the sums in vec and its g and beta
  // (gS, bS; gl = gS[C - 1]), by one whole warp; dg is the reverse cumulative sum of dG over the
  // valid rows.
  static __device__ __forceinline__ void finish(const float* vec, const float* gS, const float* bS, float gl, int Lc,
                                                int64_t row0, int H, float* dg, float* dbeta) {
    const int lane = threadIdx.x & 31;
    float d[2], db[2], cs = 0.f;
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int i = 2 * lane + u;
      auto groups = [&](int off) {  // the column groups' row sums
        float x = 0.f;
#pragma unroll
        for (int c = 0; c < NCG; ++c) x += vec[off + c * kC + i];
        return x;
      };
      auto strips = [&](int off) {  // the row strips' column sums
        return vec[off + i] + vec[off + kC + i] + vec[off + 2 * kC + i] + vec[off + 3 * kC + i];
      };
      const float ga = __expf(gS[i]), bi = bS[i], re = groups(vRe), es = groups(vEs), csi = groups(vCs);
      db[u] = groups(vDb) + re + ga * es;
      d[u] = groups(vQd) + groups(vZr) + bi * re - strips(vColE) + bi * ga * es - csi - strips(vColZ);
      cs += csi;
    }
    __syncwarp();
#pragma unroll
    for (int o = 16; o; o >>= 1) cs += __shfl_xor_sync(0xffffffffu, cs, o);
    float fr = 0.f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) fr += vec[vFrob + w];
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
    const int i0 = 2 * lane;
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

// dA = dW (beta e^G K)^T + dX (beta V)^T from its two products (wk = dW K^T, da = dX V^T):
// both scaled by the column's beta, the first by its e^G.
template <int CT8>
__device__ __forceinline__ void form_da(float (*da)[4], const float (*wk)[4], const float* gS, const float* bS, int c0) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < CT8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = c0 + 8 * j + 2 * (lane & 3) + (e & 1);
      da[j][e] = bS[col] * (da[j][e] + __expf(gS[col]) * wk[j][e]);
    }
}

// From dl = (A^T dA) A^T and kk = K K^T: the decayed -dL strictly below the diagonal, d; then
// E = d (K K^T) in kk and R = d beta_i in dl. row_beta(i) gives beta of row i.
template <int CT8, class RowBeta>
__device__ __forceinline__ void form_e_and_r(float (*dl)[4], float (*kk)[4], const float* gS, int r0, int c0,
                                             RowBeta row_beta) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < CT8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = r0 + (lane >> 2) + 8 * (e >> 1), jj = c0 + 8 * j + 2 * (lane & 3) + (e & 1);
      const float d = jj < i ? -__expf(gS[i] - gS[jj]) * dl[j][e] : 0.f;
      kk[j][e] *= d;
      dl[j][e] = d * row_beta(e >> 1, i);
    }
}

}  // namespace gdr
}  // namespace engram
