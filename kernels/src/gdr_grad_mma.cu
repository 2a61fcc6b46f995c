// Backward stage 2 for 16-bit inputs with K, V in {64, 128}: every input gradient of one chunk,
// with the products in mma.sync registers instead of fp32 shared-memory tiles.
//
// The equations are gdr_bwd_grad.cu's (see its header). One block of 8 warps per (batch, head,
// chunk); the whole chunk (q, k, v, dO, X, dX, S0, dS and A) sits in shared memory as 16-bit
// tiles. Warp w owns rows 16*(w/2) .. +15 of every [C x *] result and one column half (w % 2), so
// dq and dk live in that warp's registers from their first term to their store, and every
// product that contracts over V is done once, straight from the tiles:
//   1. dO S0^T, X dS^T, dX S0^T (one pass over V sharing the B fragments); P, Z from dO X^T and
//      Q K^T; dX V^T; dV = beta A^T dX (stored at once)
//   2. dA = dW (beta e^G K)^T + dX (beta V)^T, A^T dW, dQ += P K (stored), dK += P^T Q
//   3. A^T dA, then dL = -(A^T dA) A^T with K K^T: E and R
//   4. dK += R K + R^T K (stored); dbeta and dg from per-warp row and column sums
// Only the C x C intermediates (P, dA, A^T dA, R) and dW go back to shared memory, as 16-bit
// tiles, as in gdr_bwd_grad.cu (the same roundings, except that beta e^G is applied to dW K^T
// in fp32 after the product instead of to K before it). Seven barriers per chunk instead of ~30.
// Row and column sums are written by one owner each and added in a fixed order: the gradients
// are bitwise deterministic.
#include <c10/util/Exception.h>
#include <c10/cuda/CUDAException.h>
#include "gdr.h"
#include "gdr_common.cuh"
#include "gdr_mma.cuh"

namespace engram {
namespace gdr {
namespace {

using namespace mma;
constexpr int kGW = 8;  // warps per block: 4 row strips x 2 column halves

template <int K, int V>
struct GradMmaLayout {
  static constexpr int LDK = K + 8, LDV = V + 8, LDC = kC + 8;  // 16-byte row padding
  // vectors (fp32): g, beta, then per-owner partial sums
  static constexpr int vG = 0, vB = kC, vQd = 2 * kC, vZr = 4 * kC, vCs = 6 * kC, vEs = 8 * kC, vDb = 10 * kC,
                       vRe = 12 * kC, vColZ = 14 * kC, vColE = 18 * kC, vFrob = 22 * kC,
                       nvec = 22 * kC + kGW;
  size_t q, k, dO, x, dx, v, s0, ds, a, pm, da, vec, total;
  __host__ __device__ GradMmaLayout() {
    SmemPlan s;
    q = s.take(2 * kC * LDK);
    k = s.take(2 * kC * LDK);
    dO = s.take(2 * kC * LDV);
    x = s.take(2 * kC * LDV);
    dx = s.take(2 * kC * LDV);
    v = s.take(2 * kC * LDV);
    s0 = s.take(2 * K * LDV);  // dW [C x K] reuses it once S0 and dS are consumed
    ds = s.take(2 * K * LDV);
    a = s.take(2 * kC * LDC);
    pm = s.take(2 * kC * LDC);  // P, then A^T dA
    da = s.take(2 * kC * LDC);  // dA, then R
    vec = s.take(4 * nvec);
    total = s.off;
  }
};

template <class T, int K, int V>
__global__ void __launch_bounds__(32 * kGW, K * V <= 64 * 64 ? 2 : 1) bwd_grad_mma(Params p) {
  using L = GradMmaLayout<K, V>;
  constexpr int LDK = L::LDK, LDV = L::LDV, LDC = L::LDC;
  constexpr int KW = K / 2, KT8 = KW / 8;   // a warp's columns of a [C x K] result
  constexpr int CW = kC / 2, CT8 = CW / 8;  // ... of a [C x C] result
  constexpr int VW = V / 2, VT8 = VW / 8;   // ... of dV
  extern __shared__ __align__(128) unsigned char smem[];
  const L lay;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int strip = warp >> 1, half = warp & 1, r0 = 16 * strip;
  const int kc0 = half * KW, cc0 = half * CW, vc0 = half * VW;
  const int H = p.H;
  const ChunkBlock cb(p);
  const int Lc = cb.Lc;
  const int64_t row0 = cb.row0, cidx = cb.cidx;

  T* Qs = reinterpret_cast<T*>(smem + lay.q);
  T* Ks = reinterpret_cast<T*>(smem + lay.k);
  T* dOs = reinterpret_cast<T*>(smem + lay.dO);
  T* Xs = reinterpret_cast<T*>(smem + lay.x);
  T* dXs = reinterpret_cast<T*>(smem + lay.dx);
  T* Vs = reinterpret_cast<T*>(smem + lay.v);
  T* S0s = reinterpret_cast<T*>(smem + lay.s0);
  T* dSs = reinterpret_cast<T*>(smem + lay.ds);
  T* dWs = S0s;
  T* As = reinterpret_cast<T*>(smem + lay.a);
  T* Ps = reinterpret_cast<T*>(smem + lay.pm);
  T* Ts = Ps;
  T* dAs = reinterpret_cast<T*>(smem + lay.da);
  T* Rs = dAs;
  float* vec = reinterpret_cast<float*>(smem + lay.vec);
  const float* gS = vec + L::vG;
  const float* bS = vec + L::vB;

  // ---- loads: the V-side tiles first (the first products need only them), then q, k, v
  {
    constexpr int LV = ilog2(V * (int)sizeof(T) / 16), LK = ilog2(K * (int)sizeof(T) / 16);
    const int64_t strideV = (int64_t)H * V, strideK = (int64_t)H * K;
    copy_tile(dOs, LDV, static_cast<const T*>(p.dO) + row0 * V, strideV, kC, LV, Lc);
    copy_tile(Xs, LDV, static_cast<const T*>(p.X) + cidx * kC * V, V, kC, LV, kC);
    copy_tile(dXs, LDV, static_cast<const T*>(p.dX) + cidx * kC * V, V, kC, LV, kC);
    copy_tile(S0s, LDV, static_cast<const T*>(p.h) + cidx * K * V, V, K, LV, K);
    copy_tile(dSs, LDV, static_cast<const T*>(p.dh) + cidx * K * V, V, K, LV, K);
    cp_commit();
    copy_tile(Qs, LDK, static_cast<const T*>(p.q) + row0 * K, strideK, kC, LK, Lc);
    copy_tile(Ks, LDK, static_cast<const T*>(p.k) + row0 * K, strideK, kC, LK, Lc);
    copy_tile(Vs, LDV, static_cast<const T*>(p.v) + row0 * V, strideV, kC, LV, Lc);
    cp_commit();
    const float4* Ag = reinterpret_cast<const float4*>(p.A + cidx * kC * kC);
    for (int i = threadIdx.x; i < kC * kC / 4; i += blockDim.x) {
      const float4 a = Ag[i];
      const int r = (4 * i) / kC, col = (4 * i) % kC;
      uint2 u;
      u.x = pack<T>(a.x, a.y);
      u.y = pack<T>(a.z, a.w);
      *reinterpret_cast<uint2*>(As + r * LDC + col) = u;
    }
    for (int i = threadIdx.x; i < kC; i += blockDim.x) {
      vec[L::vG + i] = p.gc[cidx * kC + i];
      vec[L::vB + i] = i < Lc ? p.beta[row0 + (int64_t)i * H] : 0.f;
    }
    cp_wait<1>();
    __syncthreads();  // (1) the V-side tiles, A, g and beta are visible
  }
  const float gl = gS[kC - 1];

  // ---- 1a: the products that contract over V against S0 and dS (one pass, shared B fragments)
  float aq[KT8][4], ak[KT8][4];  // dQ and dK, held until their stores
  {
    float aw[KT8][4];
    zero<KT8>(aq);
    zero<KT8>(ak);
    zero<KT8>(aw);
#pragma unroll
    for (int s = 0; s < V / 16; ++s) {
      uint32_t ado[4], ax[4], adx[4];
      load_a<T>(ado, dOs, LDV, r0, 16 * s);
      load_a<T>(ax, Xs, LDV, r0, 16 * s);
      load_a<T>(adx, dXs, LDV, r0, 16 * s);
#pragma unroll
      for (int j = 0; j < KT8 / 2; ++j) {
        uint32_t bs[4], bd[4];
        load_b_nmajor<T>(bs, S0s, LDV, 16 * s, kc0 + 16 * j);
        load_b_nmajor<T>(bd, dSs, LDV, 16 * s, kc0 + 16 * j);
        mma_free<T>(aq[2 * j], ado, bs[0], bs[1]);
        mma_free<T>(aq[2 * j + 1], ado, bs[2], bs[3]);
        mma_free<T>(aw[2 * j], adx, bs[0], bs[1]);
        mma_free<T>(aw[2 * j + 1], adx, bs[2], bs[3]);
        mma_free<T>(ak[2 * j], ax, bd[0], bd[1]);
        mma_free<T>(ak[2 * j + 1], ax, bd[2], bd[3]);
      }
    }
    // <S0, dS>: the decay of the state leaving the chunk
    float fr = 0.f;
    for (int i = threadIdx.x; i < K * V / 2; i += blockDim.x) {
      const int r = (2 * i) / V, col = (2 * i) % V;
      const float2 x = unpack<T>(*reinterpret_cast<const uint32_t*>(S0s + r * LDV + col));
      const float2 y = unpack<T>(*reinterpret_cast<const uint32_t*>(dSs + r * LDV + col));
      fr += x.x * y.x + x.y * y.y;
    }
#pragma unroll
    for (int o = 16; o; o >>= 1) fr += __shfl_xor_sync(0xffffffffu, fr, o);
    if (lane == 0) vec[L::vFrob + warp] = fr;
    cp_wait<0>();
    __syncthreads();  // (2) S0 and dS are consumed (dW may overwrite them); q, k, v are visible
    store_acc<T, KT8>(dWs + r0 * LDK + kc0, LDK, aw, -1.f);  // dW = -dX S0^T
  }
  // dQ's first term scale e^G (dO S0^T), and its share of dg (q . that)
  each<KT8>(aq, [&](float& x, int r, int) { x *= p.scale * __expf(gS[r0 + r]); });
  row_reduce<KT8>(aq, vec + L::vQd + half * kC + r0,
                  [&](float x, int r, int col) { return x * to_f(Qs[(r0 + r) * LDK + kc0 + col]); });
  // dK's term e^{G_last - G} (X dS^T), and c_j = k_j . that
  each<KT8>(ak, [&](float& x, int r, int) { x *= __expf(gl - gS[r0 + r]); });
  row_reduce<KT8>(ak, vec + L::vCs + half * kC + r0,
                  [&](float x, int r, int col) { return x * to_f(Ks[(r0 + r) * LDK + kc0 + col]); });

  // ---- 1b: P = scale M (dO X^T), Z = P (Q K^T) (the decay's share of the gradient)
  {
    float pa[CT8][4], qk[CT8][4];
    zero<CT8>(pa);
    zero<CT8>(qk);
    warp_mm<T, CT8, V / 16>(pa, [&](uint32_t* a, int k0) { load_a<T>(a, dOs, LDV, r0, k0); },
                            [&](uint32_t* bb, int k0, int n0) { load_b_nmajor<T>(bb, Xs, LDV, k0, cc0 + n0); });
    warp_mm<T, CT8, K / 16>(qk, [&](uint32_t* a, int k0) { load_a<T>(a, Qs, LDK, r0, k0); },
                            [&](uint32_t* bb, int k0, int n0) { load_b_nmajor<T>(bb, Ks, LDK, k0, cc0 + n0); });
    each<CT8>(pa, [&](float& x, int r, int col) {
      const int i = r0 + r, j = cc0 + col;
      x = j <= i ? p.scale * __expf(gS[i] - gS[j]) * x : 0.f;
    });
    store_acc<T, CT8>(Ps + r0 * LDC + cc0, LDC, pa);
    each<CT8>(qk, [&](float& x, int r, int col) { x *= pa[col / 8][(r >= 8) * 2 + (col & 1)]; });
    row_reduce<CT8>(qk, vec + L::vZr + half * kC + r0, [](float x, int, int) { return x; });
    col_reduce<CT8>(qk, vec + L::vColZ + strip * kC + cc0, [](float x, int, int) { return x; });
  }
  // dX (beta V)^T, the second half of dA, kept in registers until dW is in shared memory
  float da[CT8][4];
  zero<CT8>(da);
  warp_mm<T, CT8, V / 16>(da, [&](uint32_t* a, int k0) { load_a<T>(a, dXs, LDV, r0, k0); },
                          [&](uint32_t* bb, int k0, int n0) { load_b_nmajor<T>(bb, Vs, LDV, k0, cc0 + n0); });
  // dV = beta A^T dX, and its share of dbeta (v . A^T dX)
  {
    float dv[VT8][4];
    zero<VT8>(dv);
    warp_mm<T, VT8, kC / 16>(dv, [&](uint32_t* a, int k0) { load_a_t<T>(a, As, LDC, r0, k0); },
                             [&](uint32_t* bb, int k0, int n0) { load_b_kmajor<T>(bb, dXs, LDV, k0, vc0 + n0); });
    row_reduce<VT8>(dv, vec + L::vDb + half * kC + r0,
                    [&](float x, int r, int col) { return x * to_f(Vs[(r0 + r) * LDV + vc0 + col]); });
    each<VT8>(dv, [&](float& x, int r, int) { x *= bS[r0 + r]; });
    store_acc<T, VT8>(static_cast<T*>(p.dv) + (row0 + (int64_t)r0 * H) * V + vc0, (int64_t)H * V, dv, 1.f, Lc - r0);
  }
  __syncthreads();  // (3) dW and P are visible

  // ---- 2: dA = dW (beta e^G K)^T + dX (beta V)^T
  {
    float wk[CT8][4];
    zero<CT8>(wk);
    warp_mm<T, CT8, K / 16>(wk, [&](uint32_t* a, int k0) { load_a<T>(a, dWs, LDK, r0, k0); },
                            [&](uint32_t* bb, int k0, int n0) { load_b_nmajor<T>(bb, Ks, LDK, k0, cc0 + n0); });
#pragma unroll
    for (int j = 0; j < CT8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = cc0 + 8 * j + 2 * (lane & 3) + (e & 1);
        da[j][e] = bS[col] * (da[j][e] + __expf(gS[col]) * wk[j][e]);
      }
    store_acc<T, CT8>(dAs + r0 * LDC + cc0, LDC, da);
  }
  // A^T dW: e_i = k_i . (A^T dW)_i, and dK += beta e^G (A^T dW)
  {
    float atw[KT8][4];
    zero<KT8>(atw);
    warp_mm<T, KT8, kC / 16>(atw, [&](uint32_t* a, int k0) { load_a_t<T>(a, As, LDC, r0, k0); },
                             [&](uint32_t* bb, int k0, int n0) { load_b_kmajor<T>(bb, dWs, LDK, k0, kc0 + n0); });
    row_reduce<KT8>(atw, vec + L::vEs + half * kC + r0,
                    [&](float x, int r, int col) { return x * to_f(Ks[(r0 + r) * LDK + kc0 + col]); });
#pragma unroll
    for (int j = 0; j < KT8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = r0 + (lane >> 2) + 8 * (e >> 1);
        ak[j][e] += bS[i] * __expf(gS[i]) * atw[j][e];
      }
  }
  // dQ += P K (then stored), dK += P^T Q
  warp_mm<T, KT8, kC / 16>(aq, [&](uint32_t* a, int k0) { load_a<T>(a, Ps, LDC, r0, k0); },
                           [&](uint32_t* bb, int k0, int n0) { load_b_kmajor<T>(bb, Ks, LDK, k0, kc0 + n0); });
  store_acc<T, KT8>(static_cast<T*>(p.dq) + (row0 + (int64_t)r0 * H) * K + kc0, (int64_t)H * K, aq, 1.f, Lc - r0);
  warp_mm<T, KT8, kC / 16>(ak, [&](uint32_t* a, int k0) { load_a_t<T>(a, Ps, LDC, r0, k0); },
                           [&](uint32_t* bb, int k0, int n0) { load_b_kmajor<T>(bb, Qs, LDK, k0, kc0 + n0); });
  __syncthreads();  // (4) dA is visible; P is consumed

  // ---- 3: A^T dA, then dL = -(A^T dA) A^T
  {
    float ta[CT8][4];
    zero<CT8>(ta);
    warp_mm<T, CT8, kC / 16>(ta, [&](uint32_t* a, int k0) { load_a_t<T>(a, As, LDC, r0, k0); },
                             [&](uint32_t* bb, int k0, int n0) { load_b_kmajor<T>(bb, dAs, LDC, k0, cc0 + n0); });
    store_acc<T, CT8>(Ts + r0 * LDC + cc0, LDC, ta);
  }
  __syncthreads();  // (5) A^T dA is visible; dA is consumed
  {
    float dl[CT8][4], kk[CT8][4];
    zero<CT8>(dl);
    zero<CT8>(kk);
    warp_mm<T, CT8, kC / 16>(dl, [&](uint32_t* a, int k0) { load_a<T>(a, Ts, LDC, r0, k0); },
                             [&](uint32_t* bb, int k0, int n0) { load_b_nmajor<T>(bb, As, LDC, k0, cc0 + n0); });
    warp_mm<T, CT8, K / 16>(kk, [&](uint32_t* a, int k0) { load_a<T>(a, Ks, LDK, r0, k0); },
                            [&](uint32_t* bb, int k0, int n0) { load_b_nmajor<T>(bb, Ks, LDK, k0, cc0 + n0); });
    // E = dL (decay) (K K^T) and R = dL beta_i (decay), strictly below the diagonal
#pragma unroll
    for (int j = 0; j < CT8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = r0 + (lane >> 2) + 8 * (e >> 1), jj = cc0 + 8 * j + 2 * (lane & 3) + (e & 1);
        const float d = jj < i ? -__expf(gS[i] - gS[jj]) * dl[j][e] : 0.f;
        kk[j][e] *= d;
        dl[j][e] = d * bS[i];
      }
    store_acc<T, CT8>(Rs + r0 * LDC + cc0, LDC, dl);
    row_reduce<CT8>(kk, vec + L::vRe + half * kC + r0, [](float x, int, int) { return x; });
    col_reduce<CT8>(kk, vec + L::vColE + strip * kC + cc0, [&](float x, int r, int) { return bS[r0 + r] * x; });
  }
  __syncthreads();  // (6) R is visible

  // ---- 4: dK += R K + R^T K, stored
  warp_mm<T, KT8, kC / 16>(ak, [&](uint32_t* a, int k0) { load_a<T>(a, Rs, LDC, r0, k0); },
                           [&](uint32_t* bb, int k0, int n0) { load_b_kmajor<T>(bb, Ks, LDK, k0, kc0 + n0); });
  warp_mm<T, KT8, kC / 16>(ak, [&](uint32_t* a, int k0) { load_a_t<T>(a, Rs, LDC, r0, k0); },
                           [&](uint32_t* bb, int k0, int n0) { load_b_kmajor<T>(bb, Ks, LDK, k0, kc0 + n0); });
  store_acc<T, KT8>(static_cast<T*>(p.dk) + (row0 + (int64_t)r0 * H) * K + kc0, (int64_t)H * K, ak, 1.f, Lc - r0);

  // dbeta and dg; dg is the reverse cumulative sum of dG over the chunk's valid rows
  if (warp == 0) {
    float d[2], db[2], cs = 0.f;
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int i = 2 * lane + u;
      const float* v = vec;
      auto both = [&](int off) { return v[off + i] + v[off + kC + i]; };
      auto four = [&](int off) { return v[off + i] + v[off + kC + i] + v[off + 2 * kC + i] + v[off + 3 * kC + i]; };
      const float ga = __expf(gS[i]), bi = bS[i], re = both(L::vRe), es = both(L::vEs), csi = both(L::vCs);
      db[u] = both(L::vDb) + re + ga * es;
      d[u] = both(L::vQd) + both(L::vZr) + bi * re - four(L::vColE) + bi * ga * es - csi - four(L::vColZ);
      cs += csi;
    }
    __syncwarp();
#pragma unroll
    for (int o = 16; o; o >>= 1) cs += __shfl_xor_sync(0xffffffffu, cs, o);
    float fr = 0.f;
#pragma unroll
    for (int w = 0; w < kGW; ++w) fr += vec[L::vFrob + w];
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
      p.dg[row0 + (int64_t)i0 * H] = o0;
      p.dbeta[row0 + (int64_t)i0 * H] = db[0];
    }
    if (i0 + 1 < Lc) {
      p.dg[row0 + (int64_t)(i0 + 1) * H] = o1;
      p.dbeta[row0 + (int64_t)(i0 + 1) * H] = db[1];
    }
  }
}

template <class T, int K, int V>
struct Launch {
  static void run(const Params& p, cudaStream_t s) {
    launch_checked(bwd_grad_mma<T, K, V>, (int64_t)p.B * p.H * p.NT, 32 * kGW, GradMmaLayout<K, V>().total, s, p, "gdr backward (mma)");
  }
};

}  // namespace

bool launch_bwd_grad_mma(DType dt, const Params& p, cudaStream_t s) { return launch_16bit_kv<Launch>(dt, p, s, "ENGRAM_GDR_GRAD"); }

}  // namespace gdr
}  // namespace engram
