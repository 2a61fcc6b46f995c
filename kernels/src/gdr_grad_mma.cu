// Backward stage 2 for 16-bit inputs with K, V in {64, 128}: every input gradient of one chunk,
// with the products in mma.sync registers instead of fp32 shared-memory tiles.
//
// The equations are gdr_bwd_grad.cu's (see its header). A block of 8 warps per (batch, head,
// chunk), or a persistent block that walks chunks with the next one's loads in flight; the
// whole chunk (q, k, v, dO, X, dX, S0, dS and A) sits in shared memory as 16-bit tiles. Warp w
// owns rows 16*(w/NCG) .. +15 of every [C x *] result and one of NCG column groups (w % NCG;
// the launcher instantiates NCG = 2, the code is written for any even split), so dq and dk live
// in that warp's registers from their first term to their store, and every product that
// contracts over V is done once, straight from the tiles:
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
#include <algorithm>
#include <cstdlib>
#include <c10/util/Exception.h>
#include <c10/cuda/CUDAException.h>
#include "gdr.h"
#include "gdr_common.cuh"
#include "gdr_grad_common.cuh"
#include "gdr_mma.cuh"

namespace engram {
namespace gdr {
namespace {

using namespace mma;

template <int K, int V, int NCG, bool PF>
struct GradMmaLayout : GradSums<NCG, 4 * NCG> {
  static constexpr int GW = 4 * NCG;  // warps per block: 4 row strips x NCG column groups
  static constexpr int LDK = K + 8, LDV = V + 8, LDC = kC + 8;  // 16-byte row padding
  using GradSums<NCG, 4 * NCG>::nvec;
  size_t q, k, k2, dO, x, dx, v, s0, ds, a, pm, da, vec, total;
  __host__ __device__ GradMmaLayout() {
    SmemPlan s;
    q = s.take(2 * kC * LDK);
    k = s.take(2 * kC * LDK);
    k2 = PF ? s.take(2 * kC * LDK) : k;  // the next chunk's keys (k is read to the chunk's end)
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

template <class T, int K, int V, int NCG, bool PF>
__global__ void __launch_bounds__(32 * 4 * NCG, NCG == 2 && K * V <= 64 * 64 ? 2 : 1) bwd_grad_mma(Params p) {
  using L = GradMmaLayout<K, V, NCG, PF>;
  constexpr int GW = L::GW;
  constexpr int LDK = L::LDK, LDV = L::LDV, LDC = L::LDC;
  constexpr int KW = K / NCG, KT8 = KW / 8;   // a warp's columns of a [C x K] result
  constexpr int CW = kC / NCG, CT8 = CW / 8;  // ... of a [C x C] result
  constexpr int VW = V / NCG, VT8 = VW / 8;   // ... of dV
  static_assert(KT8 % 2 == 0 && CT8 >= 1 && VT8 >= 1, "column groups too narrow");
  extern __shared__ __align__(128) unsigned char smem[];
  const L lay;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int strip = warp / NCG, grp = warp % NCG, r0 = 16 * strip;
  const int kc0 = grp * KW, cc0 = grp * CW, vc0 = grp * VW;
  const int H = p.H;
  const int64_t total = (int64_t)p.B * p.H * p.NT;

  T* Qs = reinterpret_cast<T*>(smem + lay.q);
  T* const K0s = reinterpret_cast<T*>(smem + lay.k);
  T* const K1s = reinterpret_cast<T*>(smem + lay.k2);
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

  // The loads of one chunk, in the order the products need them. A persistent block (PF) issues
  // the next chunk's tiles as soon as the current chunk's copy is dead: dS after barrier (2); dO,
  // X, dX after (3); S0, g, beta and then q, k, v after (4) (k into the other K buffer); A after
  // (6). The last group (q, k, v, A) is waited for only before barrier (2).
  constexpr int LV = ilog2(V * (int)sizeof(T) / 16), LK = ilog2(K * (int)sizeof(T) / 16);
  const int64_t strideV = (int64_t)H * V, strideK = (int64_t)H * K;
  auto load_ds = [&](const ChunkBlock& c) {
    copy_tile(dSs, LDV, static_cast<const T*>(p.dh) + c.cidx * K * V, V, K, LV, K);
  };
  auto load_dx = [&](const ChunkBlock& c) {
    copy_tile(dOs, LDV, static_cast<const T*>(p.dO) + c.row0 * V, strideV, kC, LV, c.Lc);
    copy_tile(Xs, LDV, static_cast<const T*>(p.X) + c.cidx * kC * V, V, kC, LV, kC);
    copy_tile(dXs, LDV, static_cast<const T*>(p.dX) + c.cidx * kC * V, V, kC, LV, kC);
  };
  auto load_s0 = [&](const ChunkBlock& c, float* gdst, float* bdst) {
    copy_tile(S0s, LDV, static_cast<const T*>(p.h) + c.cidx * K * V, V, K, LV, K);
    const int t = threadIdx.x;
    if (t < kC / 4) cp_async16(gdst + 4 * t, p.gc + c.cidx * kC + 4 * t, true);
    if (t < kC) cp_async4(bdst + t, p.beta + c.row0 + (int64_t)(t < c.Lc ? t : 0) * H, t < c.Lc);
    cp_commit();
  };
  auto load_qkv = [&](const ChunkBlock& c, T* kdst) {  // committed with A
    copy_tile(Qs, LDK, static_cast<const T*>(p.q) + c.row0 * K, strideK, kC, LK, c.Lc);
    copy_tile(kdst, LDK, static_cast<const T*>(p.k) + c.row0 * K, strideK, kC, LK, c.Lc);
    copy_tile(Vs, LDV, static_cast<const T*>(p.v) + c.row0 * V, strideV, kC, LV, c.Lc);
  };
  // A saved in T (p.A16) is copied like the tiles; fp32 A goes through registers
  auto load_a16 = [&](const ChunkBlock& c) {
    constexpr int LC = ilog2(kC * (int)sizeof(T) / 16);
    copy_tile(As, LDC, static_cast<const T*>(p.A16) + c.cidx * kC * kC, kC, kC, LC, kC);
  };
  constexpr int NA = kC * kC / 4 / (32 * GW);  // float4s of A per thread
  auto load_a_regs = [&](const ChunkBlock& c, float4* r) {
    const float4* Ag = reinterpret_cast<const float4*>(p.A + c.cidx * kC * kC);
#pragma unroll
    for (int u = 0; u < NA; ++u) r[u] = Ag[threadIdx.x + u * 32 * GW];
  };
  auto store_a = [&](const float4* r) {
#pragma unroll
    for (int u = 0; u < NA; ++u) {
      const int i = threadIdx.x + u * 32 * GW, row = (4 * i) / kC, col = (4 * i) % kC;
      uint2 w;
      w.x = pack<T>(r[u].x, r[u].y);
      w.y = pack<T>(r[u].z, r[u].w);
      *reinterpret_cast<uint2*>(As + row * LDC + col) = w;
    }
  };

  int64_t blk = blockIdx.x;
  {  // the first chunk's tiles
    const ChunkBlock c(p, blk);
    load_ds(c);
    load_dx(c);
    load_s0(c, vec + L::vG, vec + L::vB);
    load_qkv(c, K0s);
    if (p.A16 != nullptr) {
      load_a16(c);
    } else {
      float4 ar[NA];
      load_a_regs(c, ar);
      store_a(ar);
    }
    cp_commit();
  }
#pragma unroll 1
  for (int it = 0; blk < total; ++it, blk += gridDim.x) {
  const ChunkBlock cb(p, blk);
  const int Lc = cb.Lc;
  const int64_t row0 = cb.row0;
  const bool more = PF && blk + gridDim.x < total;
  const ChunkBlock nb(p, more ? blk + gridDim.x : blk);
  const bool odd = PF && (it & 1);
  T* const Ks = odd ? K1s : K0s;
  const float* gS = vec + (odd ? L::vG2 : L::vG);
  const float* bS = vec + (odd ? L::vB2 : L::vB);
  cp_wait<1>();
  __syncthreads();  // (1) the V-side tiles, A, g and beta are visible
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
    if (more) load_ds(nb);
    store_acc<T, KT8>(dWs + r0 * LDK + kc0, LDK, aw, -1.f);  // dW = -dX S0^T
  }
  // dQ's first term scale e^G (dO S0^T), and its share of dg (q . that)
  each<KT8>(aq, [&](float& x, int r, int) { x *= p.scale * __expf(gS[r0 + r]); });
  row_reduce<KT8>(aq, vec + L::vQd + grp * kC + r0,
                  [&](float x, int r, int col) { return x * to_f(Qs[(r0 + r) * LDK + kc0 + col]); });
  // dK's term e^{G_last - G} (X dS^T), and c_j = k_j . that
  each<KT8>(ak, [&](float& x, int r, int) { x *= __expf(gl - gS[r0 + r]); });
  row_reduce<KT8>(ak, vec + L::vCs + grp * kC + r0,
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
    decay_tril<CT8>(pa, gS, r0, cc0, p.scale);
    store_acc<T, CT8>(Ps + r0 * LDC + cc0, LDC, pa);
    each<CT8>(qk, [&](float& x, int r, int col) { x *= pa[col / 8][(r >= 8) * 2 + (col & 1)]; });
    row_reduce<CT8>(qk, vec + L::vZr + grp * kC + r0, [](float x, int, int) { return x; });
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
    row_reduce<VT8>(dv, vec + L::vDb + grp * kC + r0,
                    [&](float x, int r, int col) { return x * to_f(Vs[(r0 + r) * LDV + vc0 + col]); });
    each<VT8>(dv, [&](float& x, int r, int) { x *= bS[r0 + r]; });
    store_acc<T, VT8>(static_cast<T*>(p.dv) + (row0 + (int64_t)r0 * H) * V + vc0, (int64_t)H * V, dv, 1.f, Lc - r0);
  }
  __syncthreads();  // (3) dW and P are visible; dO, X, dX and V are consumed
  if (more) load_dx(nb);

  // ---- 2: dA = dW (beta e^G K)^T + dX (beta V)^T
  {
    float wk[CT8][4];
    zero<CT8>(wk);
    warp_mm<T, CT8, K / 16>(wk, [&](uint32_t* a, int k0) { load_a<T>(a, dWs, LDK, r0, k0); },
                            [&](uint32_t* bb, int k0, int n0) { load_b_nmajor<T>(bb, Ks, LDK, k0, cc0 + n0); });
    form_da<CT8>(da, wk, gS, bS, cc0);
    store_acc<T, CT8>(dAs + r0 * LDC + cc0, LDC, da);
  }
  // A^T dW: e_i = k_i . (A^T dW)_i, and dK += beta e^G (A^T dW)
  {
    float atw[KT8][4];
    zero<KT8>(atw);
    warp_mm<T, KT8, kC / 16>(atw, [&](uint32_t* a, int k0) { load_a_t<T>(a, As, LDC, r0, k0); },
                             [&](uint32_t* bb, int k0, int n0) { load_b_kmajor<T>(bb, dWs, LDK, k0, kc0 + n0); });
    row_reduce<KT8>(atw, vec + L::vEs + grp * kC + r0,
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
  __syncthreads();  // (4) dA is visible; P, q and dW are consumed
  if (more) {
    load_s0(nb, vec + (odd ? L::vG : L::vG2), vec + (odd ? L::vB : L::vB2));
    load_qkv(nb, odd ? K0s : K1s);
  }

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
    form_e_and_r<CT8>(dl, kk, gS, r0, cc0, [&](int, int i) { return bS[i]; });
    store_acc<T, CT8>(Rs + r0 * LDC + cc0, LDC, dl);
    row_reduce<CT8>(kk, vec + L::vRe + grp * kC + r0, [](float x, int, int) { return x; });
    col_reduce<CT8>(kk, vec + L::vColE + strip * kC + cc0, [&](float x, int r, int) { return bS[r0 + r] * x; });
  }
  __syncthreads();  // (6) R is visible; A is consumed
  float4 ar[NA];
  if (more) {
    if (p.A16 != nullptr) load_a16(nb);
    else load_a_regs(nb, ar);
    cp_commit();
  }

  // ---- 4: dK += R K + R^T K, stored
  warp_mm<T, KT8, kC / 16>(ak, [&](uint32_t* a, int k0) { load_a<T>(a, Rs, LDC, r0, k0); },
                           [&](uint32_t* bb, int k0, int n0) { load_b_kmajor<T>(bb, Ks, LDK, k0, kc0 + n0); });
  warp_mm<T, KT8, kC / 16>(ak, [&](uint32_t* a, int k0) { load_a_t<T>(a, Rs, LDC, r0, k0); },
                           [&](uint32_t* bb, int k0, int n0) { load_b_kmajor<T>(bb, Ks, LDK, k0, kc0 + n0); });
  store_acc<T, KT8>(static_cast<T*>(p.dk) + (row0 + (int64_t)r0 * H) * K + kc0, (int64_t)H * K, ak, 1.f, Lc - r0);
  if (more && p.A16 == nullptr) store_a(ar);

  // dbeta and dg (every sum they read was written before barrier (6))
  if (warp == 0) L::finish(vec, gS, bS, gl, Lc, row0, H, p.dg, p.dbeta);
  }  // chunks
}

template <class T, int K, int V, int NCG, bool PF>
void launch_groups(const Params& p, cudaStream_t s) {
  auto kern = bwd_grad_mma<T, K, V, NCG, PF>;
  const size_t smem = GradMmaLayout<K, V, NCG, PF>().total;
  int64_t blocks = (int64_t)p.B * p.H * p.NT;
  if (PF) {  // persistent: as many blocks as fit at once, each walking chunks blk, blk + grid, ...
    allow_dynamic_smem(reinterpret_cast<const void*>(kern), smem);
    int per_sm = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, 32 * 4 * NCG, smem));
    blocks = std::min<int64_t>(blocks, (int64_t)std::max(per_sm, 1) * device_attribute(cudaDevAttrMultiProcessorCount));
  }
  launch_checked(kern, blocks, 32 * 4 * NCG, smem, s, p, "gdr backward (mma)");
}

// Persistent blocks where one block holds an SM's shared memory (K = V = 128, and K = 64,
// V = 128): their next chunk's loads overlap this chunk's products (0.60 against 0.64 ms at
// (8,2048,16,128)). At K = V = 64 two one-chunk blocks share an SM and the second K buffer of a
// persistent block would leave room for one. ENGRAM_GDR_GRAD_PERSIST=0|1 forces the choice.
// (Four column groups, 16 warps per block, measured slower everywhere: 0.656 against 0.600 ms.)
template <class T, int K, int V>
struct Launch {
  static void run(const Params& p, cudaStream_t s) {
    bool persist = V == 128;
    if (const char* e = std::getenv("ENGRAM_GDR_GRAD_PERSIST")) persist = std::atoi(e) != 0;
    persist ? launch_groups<T, K, V, 2, true>(p, s) : launch_groups<T, K, V, 2, false>(p, s);
  }
};

}  // namespace

bool chunk_mma_applies(DType dt, const Params& p) {
  return mma_stage_applies(dt, p, "ENGRAM_GDR_PREP") && mma_stage_applies(dt, p, "ENGRAM_GDR_GRAD");
}

bool launch_bwd_grad_mma(DType dt, const Params& p, cudaStream_t s) { return launch_16bit_kv<Launch>(dt, p, s, "ENGRAM_GDR_GRAD"); }

}  // namespace gdr
}  // namespace engram
