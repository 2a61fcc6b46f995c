// Backward stage 2 with warpgroup products (sm_90a wgmma), 16-bit inputs, V = 128 with K in {64, 128}, or K = V = 64:
// every input gradient of one chunk, the equations and block barriers of gdr_grad_mma.cu (see
// its header; the loads here start earlier, see below), with each product one chain of `wgmma`
// reading both operands from shared memory instead of a warp's `mma.sync` chain fed by `ldmatrix`.
//
// A persistent block of two warpgroups walks chunks blk, blk + grid, ... Warpgroup wg owns
// column half wg of every [C x *] result and all 64 rows (warp w of the group rows 16w..16w+15,
// the mma.sync accumulator layout, so the row and column sums of gdr_mma.cuh apply unchanged). Every tile (q, k, v, dO, X, dX, S0, dS, A, the C x C
// intermediates P, dA, A^T dA, R, and dW) lives in the 128-byte swizzled layout `wgmma` reads
// (wg::sw128_offset): TMA writes the loaded tiles (one request per tile, issued by one thread,
// counted by two mbarriers: the V side with S0 and dS, and q, k, A), the intermediates are
// stored into it from the accumulators. Transposed operands (A^T, P^T, R^T, and the tiles whose
// rows are the contraction) are MN-major descriptors of the same tiles, so nothing is
// transposed by hand; a group's column half of an MN-major operand may start in the middle of
// a 64-column slab (wgmma_layout_test covers it).
//
// Why: the mma.sync kernel issues ~600 `mma` and ~300 `ldmatrix` per warp and chunk from 2 warps
// per scheduler and is bound by their latencies (Nsight Compute: 0.27 issued per scheduler per
// cycle, stalls led by fixed-latency waits and shared-memory scoreboards). At K = V = 64 this
// kernel was slower than the mma.sync one until its epilogues and schedule were shortened
// (2026-11-25: 0.472 against 0.495 ms at (8,2048,32,64,64), one block per SM); at K = 128,
// V = 64 the mma.sync kernel still runs.
#include <c10/util/Exception.h>
#include <c10/cuda/CUDAException.h>
#include <cstdlib>
#include "gdr.h"
#include "gdr_common.cuh"
#include "gdr_grad_common.cuh"
#include "gdr_mma.cuh"
#include "gdr_tma.cuh"
#include "gdr_wgmma.cuh"

namespace engram {
namespace gdr {
namespace {

using namespace mma;

constexpr int kGThreads = 256;  // two warpgroups

// Byte offsets of the block's shared memory (1024-aligned tiles, the swizzle's period).
template <int K, int V>
struct GradWgLayout : GradSums<2, kGThreads / 32> {  // row sums: one per column half
  static constexpr int kTileCK = kC * K * 2, kTileCV = kC * V * 2, kTileKV = K * V * 2, kTileCC = kC * kC * 2;
  size_t q, k, k2, dO, x, dx, v, s0, ds, dw, a, pm, da, vec, bar, total;
  __host__ __device__ GradWgLayout() {
    size_t off = 0;
    auto take = [&](size_t bytes) {
      const size_t o = off;
      off += (bytes + 1023) / 1024 * 1024;
      return o;
    };
    q = take(kTileCK);
    k = take(kTileCK);
    k2 = take(kTileCK);  // the next chunk's keys (k is read to the chunk's end)
    dO = take(kTileCV);
    x = take(kTileCV);
    dx = take(kTileCV);
    v = take(kTileCV);
    s0 = take(kTileKV);
    ds = take(kTileKV);
    dw = take(kTileCK);  // its own tile, so the next S0 can load as soon as this one is consumed
    a = take(kTileCC);
    pm = take(kTileCC);  // P, then A^T dA
    da = take(kTileCC);  // dA, then R
    vec = take(4 * nvec);
    bar = take(16);
    total = off;
  }
};

// dst[row] = sum over the columns of acc * tile (a warp's [16 x 8 NT8] accumulator at tile rows
// r0.., columns c0..; r0 and c0 multiples of 16 and 8), the tile's elements read in pairs.
template <class T, int NT8>
__device__ __forceinline__ void row_dot_sw(const float (*acc)[4], const unsigned char* tile, int rows, int r0, int c0,
                                           float* dst) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
  const unsigned char* base = tile + (r0 + g) * 128 + 4 * t;  // rows r0 + g and + 8 share the swizzle phase g
  float s0 = 0.f, s1 = 0.f;
#pragma unroll
  for (int j = 0; j < NT8; ++j) {
    const int c = c0 + 8 * j, off = (c >> 6) * rows * 128 + ((((c & 63) >> 3) ^ g) << 4);
    const float2 a = unpack<T>(*reinterpret_cast<const uint32_t*>(base + off));
    const float2 b = unpack<T>(*reinterpret_cast<const uint32_t*>(base + off + 8 * 128));
    s0 += acc[j][0] * a.x + acc[j][1] * a.y;
    s1 += acc[j][2] * b.x + acc[j][3] * b.y;
  }
  store_row_sums(s0, s1, dst);
}

// acc's rows (g and g + 8 of the warp's strip) scaled by f[0] and f[1]
template <int NT8>
__device__ __forceinline__ void scale_rows(float (*acc)[4], const float* f) {
#pragma unroll
  for (int j = 0; j < NT8; ++j) {
    acc[j][0] *= f[0], acc[j][1] *= f[0];
    acc[j][2] *= f[1], acc[j][3] *= f[1];
  }
}

// Stores alpha * acc (a warp's [16 x 8 NT8] accumulator, tile rows r0.., columns c0..) as T into
// a swizzled tile of `rows` rows.
template <class T, int NT8>
__device__ __forceinline__ void store_sw(unsigned char* tile, int rows, int r0, int c0, const float (*acc)[4],
                                         float alpha = 1.f) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
#pragma unroll
  for (int j = 0; j < NT8; ++j) {
    const int c = c0 + 8 * j + 2 * t;
    *reinterpret_cast<uint32_t*>(tile + wg::sw128_offset(r0 + g, c, rows)) = pack<T>(alpha * acc[j][0], alpha * acc[j][1]);
    *reinterpret_cast<uint32_t*>(tile + wg::sw128_offset(r0 + g + 8, c, rows)) =
        pack<T>(alpha * acc[j][2], alpha * acc[j][3]);
  }
}

// Descriptors. K-major: the tile's rows are M or N (from row n0), its columns the contraction.
// MN-major: the tile's rows are the contraction, its columns M or N (from column c0, which may
// sit inside a 64-column slab).
__device__ __forceinline__ uint64_t kmaj(const unsigned char* tile, int rows, int n0, int s) {
  return wg::desc_kmajor(tile + n0 * 128, rows, s);
}
__device__ __forceinline__ uint64_t mnmaj(const unsigned char* tile, int rows, int c0, int s) {
  return wg::desc_mnmajor(tile + (c0 >> 6) * rows * 128 + (c0 & 63) * 2, rows, s);
}

// The tiles' TMA maps: q, k, v, dO over the user's [B, T, H, D] (rows past T arrive as zeros),
// X, dX, h, dh, A and g over the per-chunk layouts.
struct GradMaps {
  CUtensorMap q, k, v, dO, x, dx, h, dh, a, g;
};
// bytes each mbarrier counts per chunk
template <int K, int V>
constexpr uint32_t kBytesV = 2 * (2 * K * V + 4 * kC * V) + 4 * kC;  // dS, S0, dO, X, dX, v, g
template <int K, int V>
constexpr uint32_t kBytesQ = 2 * (2 * kC * K + kC * kC);  // q, k, A

template <class T, int K, int V>
__global__ void __launch_bounds__(kGThreads, 1) bwd_grad_wg(Params p, const __grid_constant__ GradMaps m) {
  using L = GradWgLayout<K, V>;
  using SSK = wg::SS<K / 2, T>;  // [C x K] results: the group's K / 2 columns
  using SSV = wg::SS<V / 2, T>;
  using SSC = wg::SS<kC / 2, T>;
  constexpr int KT8 = K / 16, CT8 = kC / 16, VT8 = V / 16;  // n8 tiles of a group's column half
  extern __shared__ __align__(128) unsigned char smem_raw[];
  unsigned char* const sm = smem_raw + ((1024 - (static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023)) & 1023);
  const L lay;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int strip = warp & 3, grp = warp >> 2, r0 = 16 * strip;
  const int kc0 = grp * (K / 2), cc0 = grp * (kC / 2), vc0 = grp * (V / 2);
  const int H = p.H;
  const int64_t total = (int64_t)p.B * p.H * p.NT;

  unsigned char* const Qs = sm + lay.q;
  unsigned char* const K0s = sm + lay.k;
  unsigned char* const K1s = sm + lay.k2;
  unsigned char* const dOs = sm + lay.dO;
  unsigned char* const Xs = sm + lay.x;
  unsigned char* const dXs = sm + lay.dx;
  unsigned char* const Vs = sm + lay.v;
  unsigned char* const S0s = sm + lay.s0;
  unsigned char* const dSs = sm + lay.ds;
  unsigned char* const dWs = sm + lay.dw;
  unsigned char* const As = sm + lay.a;
  unsigned char* const Ps = sm + lay.pm;
  unsigned char* const Ts = Ps;
  unsigned char* const dAs = sm + lay.da;
  unsigned char* const Rs = dAs;
  float* vec = reinterpret_cast<float*>(sm + lay.vec);

  // The next chunk's loads, issued by thread 0 as soon as each tile is dead: after barrier (2)
  // dS, S0 and g (consumed by 1a) and k (its other buffer); after (3) dO, X, dX and v; after (4)
  // q; after (6) A. fullV counts the first two groups, fullQ q, k and A, each armed with its
  // first load (a phase cannot complete while announced bytes are missing); beta (strided over
  // heads) comes by cp.async.
  uint64_t* const fullV = reinterpret_cast<uint64_t*>(sm + lay.bar);
  uint64_t* const fullQ = fullV + 1;
  auto load_ds = [&](const ChunkBlock& w, float* gdst) {
    tma::arrive_expect(fullV, kBytesV<K, V>);
    tma::load<3>(dSs, &m.dh, {0, (int)w.cidx * K, 0}, fullV);
    tma::load<3>(S0s, &m.h, {0, (int)w.cidx * K, 0}, fullV);
    tma::load<2>(gdst, &m.g, {0, (int)w.cidx}, fullV);
  };
  auto load_dx = [&](const ChunkBlock& w) {
    tma::load<5>(dOs, &m.dO, {0, w.t0, 0, w.hh, w.b}, fullV);
    tma::load<3>(Xs, &m.x, {0, (int)w.cidx * kC, 0}, fullV);
    tma::load<3>(dXs, &m.dx, {0, (int)w.cidx * kC, 0}, fullV);
    tma::load<5>(Vs, &m.v, {0, w.t0, 0, w.hh, w.b}, fullV);
  };
  auto load_beta = [&](const ChunkBlock& c, float* bdst) {  // every thread below kC
    const int t = threadIdx.x;
    if (t < kC) cp_async4(bdst + t, p.beta + c.row0 + (int64_t)(t < c.Lc ? t : 0) * H, t < c.Lc);
    cp_commit();
  };
  auto load_k = [&](const ChunkBlock& w, unsigned char* kdst) {
    tma::arrive_expect(fullQ, kBytesQ<K, V>);
    tma::load<5>(kdst, &m.k, {0, w.t0, 0, w.hh, w.b}, fullQ);
  };
  auto load_q = [&](const ChunkBlock& w) { tma::load<5>(Qs, &m.q, {0, w.t0, 0, w.hh, w.b}, fullQ); };
  auto load_a = [&](const ChunkBlock& w) { tma::load<2>(As, &m.a, {0, (int)w.cidx * kC}, fullQ); };
  // every thread's generic-proxy writes (cp.async landed, st.shared) visible to wgmma, then the barrier
  auto barrier = [] {
    wg::fence_smem();
    __syncthreads();
  };

  int64_t blk = blockIdx.x;
  const bool issuer = threadIdx.x == 0;
  if (issuer) {
    tma::bar_init(fullV, 1);
    tma::bar_init(fullQ, 1);
    tma::fence_bar_init();
    const ChunkBlock w(p, blk);
    load_ds(w, vec + L::vG);
    load_dx(w);
    load_k(w, K0s);
    load_q(w);
    load_a(w);
  }
  load_beta(ChunkBlock(p, blk), vec + L::vB);
  __syncthreads();  // the barriers are initialised before anyone waits on them
  // The previous chunk, whose dbeta and dg warp 0 forms while this chunk's 1a products run (its
  // sums stay until 1b, its g and beta until barrier (4), its <S0, dS> partials in the other
  // half of vFrob): at the chunk's end that warp made everyone wait at the next barrier (1).
  struct Prev {
    int Lc = 0;
    int64_t row0 = 0;
    bool odd = false;
  } prev;
  auto finish = [&](const Prev& c) {
    const float* g = vec + (c.odd ? L::vG2 : L::vG);
    L::finish(vec, g, vec + (c.odd ? L::vB2 : L::vB), g[kC - 1], c.Lc, c.row0, H, p.dg, p.dbeta,
              c.odd ? L::vFrob2 : L::vFrob);
  };
  int it = 0;
#pragma unroll 1
  for (; blk < total; ++it, blk += gridDim.x) {
    const ChunkBlock cb(p, blk);
    const int Lc = cb.Lc;
    const int64_t row0 = cb.row0;
    const bool more = blk + gridDim.x < total;
    const ChunkBlock nb(p, more ? blk + gridDim.x : blk);
    const bool odd = it & 1;
    unsigned char* const Ks = odd ? K1s : K0s;
    const float* gS = vec + (odd ? L::vG2 : L::vG);
    const float* bS = vec + (odd ? L::vB2 : L::vB);
    tma::wait(fullV, it & 1);
    cp_wait<0>();
    barrier();  // (1) the V-side tiles, g and beta are visible
    const float gl = gS[kC - 1];
    // this thread's two rows (g and g + 8 of its warp's strip): e^G, e^{G_last - G}, beta
    const int ra = r0 + (lane >> 2), rb = ra + 8;
    const float eg[2] = {__expf(gS[ra]), __expf(gS[rb])}, egl[2] = {__expf(gl - gS[ra]), __expf(gl - gS[rb])};
    const float br[2] = {bS[ra], bS[rb]};

    // ---- 1a: dO S0^T, dX S0^T, X dS^T over V (the group's K half)
    float aq[KT8][4], ak[KT8][4];  // dQ and dK, held until their stores
    {
      float aw[KT8][4];
      wg::fence();
#pragma unroll
      for (int s = 0; s < V / 16; ++s) {
        SSK::template mma<0>(&aq[0][0], kmaj(dOs, kC, 0, s), kmaj(S0s, K, kc0, s), s);
        SSK::template mma<0>(&aw[0][0], kmaj(dXs, kC, 0, s), kmaj(S0s, K, kc0, s), s);
        SSK::template mma<0>(&ak[0][0], kmaj(Xs, kC, 0, s), kmaj(dSs, K, kc0, s), s);
      }
      wg::commit();
      // <S0, dS> while the products run: both tiles share one layout, so a flat walk pairs them
      float fr = 0.f;
#pragma unroll 2
      for (int i = threadIdx.x; i < K * V / 8; i += kGThreads) {
        const uint4 x = reinterpret_cast<const uint4*>(S0s)[i], y = reinterpret_cast<const uint4*>(dSs)[i];
        const uint32_t xs[4] = {x.x, x.y, x.z, x.w}, ys[4] = {y.x, y.y, y.z, y.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 a = unpack<T>(xs[e]), b = unpack<T>(ys[e]);
          fr += a.x * b.x + a.y * b.y;
        }
      }
#pragma unroll
      for (int o = 16; o; o >>= 1) fr += __shfl_xor_sync(0xffffffffu, fr, o);
      if (lane == 0) vec[(odd ? L::vFrob2 : L::vFrob) + warp] = fr;
      if (warp == 0 && it > 0) finish(prev);
      wg::wait<0>();
      wg::pin<KT8 * 4>(&aq[0][0]);
      wg::pin<KT8 * 4>(&aw[0][0]);
      wg::pin<KT8 * 4>(&ak[0][0]);
      tma::wait(fullQ, it & 1);
      barrier();  // (2) S0 and dS are consumed; q, k, A are visible
      if (more && issuer) {
        load_ds(nb, vec + (odd ? L::vG : L::vG2));
        load_k(nb, odd ? K0s : K1s);
      }
      store_sw<T, KT8>(dWs, kC, r0, kc0, aw, -1.f);  // dW = -dX S0^T
    }
    // ---- 1b: P = scale M (dO X^T) and Q K^T; dX (beta V)^T; dV = beta A^T dX
    float pa[CT8][4], qk[CT8][4], da[CT8][4], dv[VT8][4];
    wg::fence();
#pragma unroll
    for (int s = 0; s < V / 16; ++s) SSC::template mma<0>(&pa[0][0], kmaj(dOs, kC, 0, s), kmaj(Xs, kC, cc0, s), s);
#pragma unroll
    for (int s = 0; s < K / 16; ++s) SSC::template mma<0>(&qk[0][0], kmaj(Qs, kC, 0, s), kmaj(Ks, kC, cc0, s), s);
    wg::commit();
#pragma unroll
    for (int s = 0; s < V / 16; ++s) SSC::template mma<0>(&da[0][0], kmaj(dXs, kC, 0, s), kmaj(Vs, kC, cc0, s), s);
#pragma unroll
    for (int s = 0; s < kC / 16; ++s)
      SSV::template mma<1, 1>(&dv[0][0], mnmaj(As, kC, 0, s), mnmaj(dXs, kC, vc0, s), s);
    wg::commit();
    // dQ's first term scale e^G (dO S0^T) and its share of dg; dK's e^{G_last - G} (X dS^T) and c_j
    {
      const float f[2] = {p.scale * eg[0], p.scale * eg[1]};
      scale_rows<KT8>(aq, f);
    }
    row_dot_sw<T, KT8>(aq, Qs, kC, r0, kc0, vec + L::vQd + grp * kC + r0);
    scale_rows<KT8>(ak, egl);
    row_dot_sw<T, KT8>(ak, Ks, kC, r0, kc0, vec + L::vCs + grp * kC + r0);
    wg::wait<1>();
    wg::pin<CT8 * 4>(&pa[0][0]);
    wg::pin<CT8 * 4>(&qk[0][0]);
    decay_tril<CT8>(pa, gS, r0, cc0, p.scale);
    store_sw<T, CT8>(Ps, kC, r0, cc0, pa);
    each<CT8>(qk, [&](float& x, int r, int col) { x *= pa[col / 8][(r >= 8) * 2 + (col & 1)]; });
    row_reduce<CT8>(qk, vec + L::vZr + grp * kC + r0, [](float x, int, int) { return x; });
    col_reduce<CT8>(qk, vec + L::vColZ + strip * kC + cc0, [](float x, int, int) { return x; });
    wg::wait<0>();
    wg::pin<CT8 * 4>(&da[0][0]);
    wg::pin<VT8 * 4>(&dv[0][0]);
    row_dot_sw<T, VT8>(dv, Vs, kC, r0, vc0, vec + L::vDb + grp * kC + r0);
    scale_rows<VT8>(dv, br);
    store_acc<T, VT8>(static_cast<T*>(p.dv) + (row0 + (int64_t)r0 * H) * V + vc0, (int64_t)H * V, dv, 1.f, Lc - r0);
    barrier();  // (3) dW and P are visible; dO, X, dX and V are consumed
    if (more && issuer) load_dx(nb);

    // ---- 2: dA = dW (beta e^G K)^T + dX (beta V)^T; A^T dW; dQ += P K; dK += P^T Q
    {
      float wk[CT8][4], atw[KT8][4];
      wg::fence();
#pragma unroll
      for (int s = 0; s < K / 16; ++s) SSC::template mma<0>(&wk[0][0], kmaj(dWs, kC, 0, s), kmaj(Ks, kC, cc0, s), s);
      wg::commit();
#pragma unroll
      for (int s = 0; s < kC / 16; ++s)
        SSK::template mma<1, 1>(&atw[0][0], mnmaj(As, kC, 0, s), mnmaj(dWs, kC, kc0, s), s);
      wg::commit();
#pragma unroll
      for (int s = 0; s < kC / 16; ++s) SSK::template mma<1>(&aq[0][0], kmaj(Ps, kC, 0, s), mnmaj(Ks, kC, kc0, s), 1);
      wg::commit();
      wg::wait<2>();
      wg::pin<CT8 * 4>(&wk[0][0]);
      form_da<CT8>(da, wk, gS, bS, cc0);
      store_sw<T, CT8>(dAs, kC, r0, cc0, da);
      wg::wait<1>();
      wg::pin<KT8 * 4>(&atw[0][0]);
      row_dot_sw<T, KT8>(atw, Ks, kC, r0, kc0, vec + L::vEs + grp * kC + r0);
      const float f[2] = {br[0] * eg[0], br[1] * eg[1]};
#pragma unroll
      for (int j = 0; j < KT8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) ak[j][e] += f[e >> 1] * atw[j][e];
    }
    wg::fence();
#pragma unroll
    for (int s = 0; s < kC / 16; ++s)
      SSK::template mma<1, 1>(&ak[0][0], mnmaj(Ps, kC, 0, s), mnmaj(Qs, kC, kc0, s), 1);
    wg::commit();
    wg::wait<1>();
    wg::pin<KT8 * 4>(&aq[0][0]);
    store_acc<T, KT8>(static_cast<T*>(p.dq) + (row0 + (int64_t)r0 * H) * K + kc0, (int64_t)H * K, aq, 1.f, Lc - r0);
    wg::wait<0>();
    wg::pin<KT8 * 4>(&ak[0][0]);
    barrier();  // (4) dA is visible; P, q and dW are consumed
    if (more) {
      if (issuer) load_q(nb);
      load_beta(nb, vec + (odd ? L::vB : L::vB2));
    }

    // ---- 3: A^T dA and K K^T; then dL = -(A^T dA) A^T
    float kk[CT8][4];
    {
      float ta[CT8][4];
      wg::fence();
#pragma unroll
      for (int s = 0; s < kC / 16; ++s) SSC::template mma<1, 1>(&ta[0][0], mnmaj(As, kC, 0, s), mnmaj(dAs, kC, cc0, s), s);
      wg::commit();
#pragma unroll
      for (int s = 0; s < K / 16; ++s) SSC::template mma<0>(&kk[0][0], kmaj(Ks, kC, 0, s), kmaj(Ks, kC, cc0, s), s);
      wg::commit();
      wg::wait<1>();
      wg::pin<CT8 * 4>(&ta[0][0]);
      store_sw<T, CT8>(Ts, kC, r0, cc0, ta);
    }
    barrier();  // (5) A^T dA is visible; dA is consumed
    {
      float dl[CT8][4];
      wg::fence();
#pragma unroll
      for (int s = 0; s < kC / 16; ++s) SSC::template mma<0>(&dl[0][0], kmaj(Ts, kC, 0, s), kmaj(As, kC, cc0, s), s);
      wg::commit();
      wg::wait<0>();
      wg::pin<CT8 * 4>(&dl[0][0]);
      wg::pin<CT8 * 4>(&kk[0][0]);
      // E = dL (decay) (K K^T) and R = dL beta_i (decay), strictly below the diagonal
      form_e_and_r<CT8>(dl, kk, gS, r0, cc0, [&](int h, int) { return br[h]; });
      store_sw<T, CT8>(Rs, kC, r0, cc0, dl);
      row_reduce<CT8>(kk, vec + L::vRe + grp * kC + r0, [](float x, int, int) { return x; });
      col_reduce<CT8>(kk, vec + L::vColE + strip * kC + cc0, [&](float x, int r, int) { return br[r >> 3] * x; });
    }
    barrier();  // (6) R is visible; A is consumed
    if (more && issuer) load_a(nb);

    // ---- 4: dK += R K + R^T K, stored
    wg::fence();
#pragma unroll
    for (int s = 0; s < kC / 16; ++s) SSK::template mma<1>(&ak[0][0], kmaj(Rs, kC, 0, s), mnmaj(Ks, kC, kc0, s), 1);
#pragma unroll
    for (int s = 0; s < kC / 16; ++s) SSK::template mma<1, 1>(&ak[0][0], mnmaj(Rs, kC, 0, s), mnmaj(Ks, kC, kc0, s), 1);
    wg::commit();

    wg::wait<0>();
    wg::pin<KT8 * 4>(&ak[0][0]);
    store_acc<T, KT8>(static_cast<T*>(p.dk) + (row0 + (int64_t)r0 * H) * K + kc0, (int64_t)H * K, ak, 1.f, Lc - r0);
    prev = Prev{Lc, row0, odd};
  }  // chunks
  // the last chunk's dbeta and dg (every sum they read was written before its barrier (6))
  if (warp == 0 && it > 0) finish(prev);
}

template <class T, int K, int V>
void launch(const Params& p, cudaStream_t s) {
  const CUtensorMapDataType dt = tma::data_type<T>();
  const uint64_t rows = (uint64_t)p.B * p.H * p.NT * kC, krows = rows / kC * K;
  // TMA coordinates are 32-bit: the per-chunk row indices must fit
  TORCH_CHECK(krows < (uint64_t)INT32_MAX, "gdr backward (wgmma): B*H*T = ", rows,
              " rows exceed the TMA coordinate range");
  GradMaps m;
  tma::encode_user(&m.q, dt, p.q, p.B, p.T, p.H, K, K / 64);
  tma::encode_user(&m.k, dt, p.k, p.B, p.T, p.H, K, K / 64);
  tma::encode_user(&m.v, dt, p.v, p.B, p.T, p.H, V, V / 64);
  tma::encode_user(&m.dO, dt, p.dO, p.B, p.T, p.H, V, V / 64);
  tma::encode_rows(&m.x, dt, p.X, rows, V, kC, V / 64);
  tma::encode_rows(&m.dx, dt, p.dX, rows, V, kC, V / 64);
  tma::encode_rows(&m.h, dt, p.h, krows, V, K, V / 64);
  tma::encode_rows(&m.dh, dt, p.dh, krows, V, K, V / 64);
  const uint64_t ad[2] = {kC, rows}, as[1] = {2 * kC};
  const uint32_t ab[2] = {kC, kC};
  tma::encode(&m.a, dt, 2, p.A16, ad, as, ab, true);
  tma::encode_chunk_decays(&m.g, p.gc, rows / kC, kC);
  const size_t smem = GradWgLayout<K, V>().total + 1024;
  const int64_t blocks =
      std::min<int64_t>((int64_t)p.B * p.H * p.NT, device_attribute(cudaDevAttrMultiProcessorCount));
  launch_checked(bwd_grad_wg<T, K, V>, blocks, kGThreads, smem, s, p, "gdr backward (wgmma)", m);
}

// The shapes built here: V = 128 with K in {64, 128}, and K = V = 64 (at K = 128, V = 64 the
// mma.sync kernel runs).
bool shape_built(const Params& p) { return p.V == 128 ? (p.K == 64 || p.K == 128) : (p.V == 64 && p.K == 64); }

template <class T>
void launch_k(const Params& p, cudaStream_t s) {
  if (p.V == 64) launch<T, 64, 64>(p, s);
  else if (p.K == 64) launch<T, 64, 128>(p, s);
  else launch<T, 128, 128>(p, s);
}

}  // namespace

bool launch_bwd_grad_wg(DType dt, const Params& p, cudaStream_t s) {
  if (p.A16 == nullptr || !shape_built(p) || !mma_stage_applies(dt, p, "ENGRAM_GDR_GRAD") ||
      knob_is("ENGRAM_GDR_GRAD", "mma"))
    return false;
  if (device_attribute(cudaDevAttrComputeCapabilityMajor) != 9) return false;  // wgmma is sm_90a only
  dt == kBF16 ? launch_k<__nv_bfloat16>(p, s) : launch_k<__half>(p, s);
  return true;
}

}  // namespace gdr
}  // namespace engram
