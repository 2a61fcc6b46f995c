// The sequential passes with warpgroup products (sm_90a wgmma) for 16-bit inputs.
//
// The forward's chunk step (fwd_chunk_wg, gdr_scan_wg.cuh, shared with the fused forward) has
// fwd_scan_mma's equations and roundings; the backward's are bwd_scan_mma's (bwd_scan_wg below).
// A warpgroup owns 64 columns of V and keeps S^T [64 v x K] as wgmma accumulators (warp w of
// the group: rows 16w..16w+15, the layout of the mma.sync version), so each product of a chunk
// is K/16 or C/16 instructions for the whole group instead of one mma.sync per 16 x 8 tile per
// warp, and the chunk's q, k, w and Aqk are read from shared memory by the tensor cores once per
// group instead of once per warp through ldmatrix. Every tile of a chunk (q, k, w, Aqk, the
// block's u columns, G) arrives as one TMA box in the 128-byte swizzled layout (gdr_wgmma.cuh),
// requested by one thread and counted by one mbarrier per buffer: the warps spend no
// instructions on copies, and every request is a 128-byte row segment (16-byte pieces, whether
// per-thread cp.async or narrow TMA boxes, left the scan waiting on its loads).
#include <c10/util/Exception.h>
#include <cudaTypedefs.h>
#include <algorithm>
#include <cstdlib>
#include <type_traits>
#include "gdr.h"
#include "gdr_common.cuh"
#include "gdr_mma.cuh"
#include "gdr_scan_wg.cuh"
#include "gdr_tma.cuh"
#include "gdr_wgmma.cuh"

namespace engram {
namespace gdr {
namespace {

using mma::acc_to_a;
using mma::pack;

// One chunk buffer (bytes), every 16-bit tile 128-byte swizzled (1024-aligned): q, k, w
// [C x K], Aqk [C x C], the block's columns of u (forward) or dO (backward) [C x 64 NWG], then
// G [C] fp32.
template <int K, int NWG>
struct WgLayout {
  static constexpr int q = 0, k = q + 2 * kC * K, w = k + 2 * kC * K, a = w + 2 * kC * K, e = a + 2 * kC * kC,
                       g = e + 2 * kC * 64 * NWG, bytes = g + 4 * kC, buf = (bytes + 1023) / 1024 * 1024;
};

// The TMA descriptors of one call. Each tile is one box whose dimensions are (64 columns, 64
// rows, slabs of 64 columns), so a single request writes the whole tile in the swizzled layout:
// q and k as [B, T, H, K/64 slabs of 64] (rows past T read as zeros), w, Aqk and u as [rows,
// slabs] over the per-chunk layout, G as [B H NT, C] fp32.
struct Maps {
  CUtensorMap q, k, w, a, e, g;  // e: u (forward) or dO (backward)
};

// One thread requests chunk c's six tiles into `buf` and announces their bytes on `bar`.
template <int K, int NWG, bool BWD>
__device__ __forceinline__ void fetch_wg(const Maps& m, unsigned char* buf, uint64_t* bar, int64_t cidx, int b, int hh,
                                         int v0, int c) {
  using L = WgLayout<K, NWG>;
  const int row = (int)(cidx * kC);
  tma::arrive_expect(bar, L::bytes);
  tma::load<5>(buf + L::q, &m.q, {0, c * kC, 0, hh, b}, bar);
  tma::load<5>(buf + L::k, &m.k, {0, c * kC, 0, hh, b}, bar);
  tma::load<3>(buf + L::w, &m.w, {0, row, 0}, bar);
  tma::load<2>(buf + L::a, &m.a, {0, row}, bar);
  if (BWD)
    tma::load<5>(buf + L::e, &m.e, {0, c * kC, v0 / 64, hh, b}, bar);
  else
    tma::load<3>(buf + L::e, &m.e, {0, row, v0 / 64}, bar);
  tma::load<2>(buf + L::g, &m.g, {0, (int)cidx}, bar);
}

// Where a scan block works, and its ring of ST chunk buffers in shared memory. The n-th chunk the
// block processes is chunk n (forward) or NT - 1 - n (backward); it lives in buffer n % ST, is
// requested ST - 1 chunks ahead, and its barrier completes phase n / ST when its bytes have
// landed. The constructor initialises the barriers (block-wide: it synchronises).
template <int K, int NWG, int ST, bool BWD>
struct WgRing {
  using L = WgLayout<K, NWG>;
  unsigned char* smem;  // the buffers, 1024-aligned: the swizzle is a function of address bits
  uint64_t* bars;
  int64_t bh;    // (batch, head)
  int v0;        // the block's first column of V
  int hh, b, NT;
  __device__ WgRing(const Params& p, unsigned char* raw)
      : smem(raw + ((1024 - (tma::smem_addr(raw) & 1023)) & 1023)), bars(reinterpret_cast<uint64_t*>(smem + ST * L::buf)) {
    const int nvb = p.V / (64 * NWG);
    bh = blockIdx.x / nvb;
    v0 = (int)(blockIdx.x % nvb) * 64 * NWG;
    hh = (int)(bh % p.H);
    b = (int)(bh / p.H);
    NT = p.NT;
    if (threadIdx.x == 0) {
#pragma unroll
      for (int i = 0; i < ST; ++i) tma::bar_init(&bars[i], 1);
      tma::fence_bar_init();
    }
    __syncthreads();
  }
  __device__ int chunk(int n) const { return BWD ? NT - 1 - n : n; }
  // Thread 0 requests the n-th chunk, if there is one; its buffer must be free (every warp past
  // the chunk that used it before).
  __device__ void request(const Maps& m, int n) const {
    if (threadIdx.x == 0 && n < NT)
      fetch_wg<K, NWG, BWD>(m, smem + (n % ST) * L::buf, &bars[n % ST], bh * NT + chunk(n), b, hh, v0, chunk(n));
  }
  // Waits for the n-th chunk and returns its buffer.
  __device__ const unsigned char* wait(int n) const {
    tma::wait(&bars[n % ST], (n / ST) & 1);
    return smem + (n % ST) * L::buf;
  }
};

template <class T, int K, int NWG, int ST>
__global__ void __launch_bounds__(128 * NWG) fwd_scan_wg(Params p, const __grid_constant__ Maps m) {
  using L = WgLayout<K, NWG>;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const WgRing<K, NWG, ST, false> ring(p, smem_raw);
  const int vw = 16 * (threadIdx.x >> 5);  // the warp's first column inside the block's 64 NWG
  float S[K / 8][4];
  const int64_t st0 = ring.bh * K * p.V + ring.v0 + vw;
  mma::load_state<K / 8>(S, p.h0, st0, p.V);
#pragma unroll
  for (int n = 0; n < ST - 1; ++n) ring.request(m, n);
  for (int c = 0; c < p.NT; ++c) {
    __syncthreads();  // every warp is done with chunk c - 1, whose buffer the next request reuses
    const unsigned char* cur = ring.wait(c);
    const FwdChunkTiles tl{cur + L::q, cur + L::k, cur + L::w, cur + L::a, cur + L::e,
                           reinterpret_cast<const float*>(cur + L::g)};
    // the next request goes out while the tensor cores work (the barrier freed its buffer)
    fwd_chunk_wg<T, K>(S, tl, p, p.save, ring.bh * p.NT + c, ring.b, ring.hh, ring.v0, vw, c * kC,
                       [&] { ring.request(m, c + ST - 1); });
  }
  if (p.ht != nullptr) mma::store_state<K / 8>(p.ht, S, st0, p.V);  // null: no final state asked for
}

// The backward pass (the equations of bwd_scan_mma), a warpgroup per 64 columns of V with dS^T
// [64 v x K] in its accumulators:
//   dX^T = scale dO^T Aqk + e^{G_last-G} (dS^T K^T),  dS^T <- e^{G_last} dS^T + scale (dO^T e^G) Q - dX^T w.
// dS^T and dX^T enter their products as hi + lo 16-bit pairs, as in the mma.sync version (dh0
// accumulates every chunk's rounding). dO^T's A fragments come from the swizzled dO tile by
// ldmatrix.trans; the decays are applied in fp32 to P = dS^T K^T and to dO^T's values before
// their rounding, `scale` in fp32 to the products.
template <class T, int K, int NWG, int ST>
__global__ void __launch_bounds__(128 * NWG) bwd_scan_wg(Params p, const __grid_constant__ Maps m) {
  using L = WgLayout<K, NWG>;
  constexpr int KT = K / 8, KS = K / 16, CT = kC / 8, CS = kC / 16;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const WgRing<K, NWG, ST, true> ring(p, smem_raw);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = lane & 3, l8 = lane >> 3;
  const int vw = 16 * warp;
  const int64_t bh = ring.bh;
  const int v0 = ring.v0;
  const int V = p.V, NT = p.NT;

  float D[KT][4];  // dS^T
  const int64_t st0 = bh * K * V + v0 + vw;
  mma::load_state<KT>(D, p.dht, st0, V);
#pragma unroll
  for (int n = 0; n < ST - 1; ++n) ring.request(m, n);
  for (int n = 0; n < NT; ++n) {
    const int c = ring.chunk(n);
    __syncthreads();
    const unsigned char* cur = ring.wait(n);
    const float* gS = reinterpret_cast<const float*>(cur + L::g);
    const float gl = gS[kC - 1], Gam = __expf(gl);
    const int64_t cidx = bh * NT + c;

    uint32_t DA[KS][4], DL[KS][4];
#pragma unroll
    for (int s = 0; s < KS; ++s) mma::acc_to_a_split<T>(DA[s], DL[s], D[2 * s], D[2 * s + 1]);
    store_pairs_t<T, KT>(static_cast<T*>(p.dh) + cidx * K * V + v0 + vw, V, &D[0][0], 1.f, K);
    uint32_t OA[CS][4];  // dO^T (rows v, cols c) as A fragments
#pragma unroll
    for (int s = 0; s < CS; ++s)
      mma::ldsm_x4_t(OA[s], cur + L::e + wg::sw128_offset(16 * s + (lane & 7) + (l8 >> 1) * 8, vw + (l8 & 1) * 8, kC));
    float X[CT][4], P[CT][4];
    wg::pin<KS * 4>(&DA[0][0]);
    wg::pin<KS * 4>(&DL[0][0]);
    wg::pin<CS * 4>(&OA[0][0]);
    wg::fence();
#pragma unroll
    for (int s = 0; s < CS; ++s) wg::RS<64, T>::template mma<1>(&X[0][0], OA[s], wg::desc_mnmajor(cur + L::a, kC, s), s);
#pragma unroll
    for (int s = 0; s < KS; ++s) wg::RS<64, T>::template mma<0>(&P[0][0], DA[s], wg::desc_kmajor(cur + L::k, kC, s), s);
#pragma unroll
    for (int s = 0; s < KS; ++s) wg::RS<64, T>::template mma<0>(&P[0][0], DL[s], wg::desc_kmajor(cur + L::k, kC, s), 1);
    wg::commit();
    ring.request(m, n + ST - 1);
    // scale dO^T e^G, rounded to T, into new registers (the products in flight read OA):
    // dO^T's A fragment columns are chunk rows
    uint32_t OS[CS][4];
#pragma unroll
    for (int s = 0; s < CS; ++s)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c0 = 16 * s + 2 * t + 8 * (e >> 1);
        const float2 x = mma::unpack<T>(OA[s][e]);
        OS[s][e] = pack<T>(p.scale * x.x * __expf(gS[c0]), p.scale * x.y * __expf(gS[c0 + 1]));
      }
    wg::wait<0>();
    // operands stay live (unreused) until the products that read them are done
    wg::pin<CS * 4>(&OA[0][0]);
    wg::pin<KS * 4>(&DA[0][0]);
    wg::pin<KS * 4>(&DL[0][0]);
    wg::pin<CT * 4>(&X[0][0]);
    wg::pin<CT * 4>(&P[0][0]);
#pragma unroll
    for (int j = 0; j < CT; ++j) {
      const float e0 = __expf(gl - gS[8 * j + 2 * t]), e1 = __expf(gl - gS[8 * j + 2 * t + 1]);
      X[j][0] = p.scale * X[j][0] + e0 * P[j][0];
      X[j][1] = p.scale * X[j][1] + e1 * P[j][1];
      X[j][2] = p.scale * X[j][2] + e0 * P[j][2];
      X[j][3] = p.scale * X[j][3] + e1 * P[j][3];
    }
    uint32_t XA[CS][4], XL[CS][4];  // -dX^T as hi + lo
#pragma unroll
    for (int s = 0; s < CS; ++s) {
      mma::acc_to_a_split<T>(XA[s], XL[s], X[2 * s], X[2 * s + 1]);
#pragma unroll
      for (int e = 0; e < 4; ++e) XA[s][e] = mma::neg2(XA[s][e]), XL[s][e] = mma::neg2(XL[s][e]);
    }
    wg::pin<CS * 4>(&OS[0][0]);
    wg::pin<CS * 4>(&XA[0][0]);
    wg::pin<CS * 4>(&XL[0][0]);
    store_pairs_t<T, CT>(static_cast<T*>(p.dX) + cidx * kC * V + v0 + vw, V, &X[0][0], 1.f, kC);
    // the chunk's increment scale (dO^T e^G) Q - dX^T w is formed from zero and joins Gam dS^T in
    // fp32, so the tensor cores never add small terms into the large running dS^T (the seed map's
    // bf16 dh0 error measured the same either way: 9.83e-3, fla 9.00e-3, gdr_seed_check.py)
    float U[KT][4];
    wg::fence();
#pragma unroll
    for (int s = 0; s < CS; ++s) wg::RS<K, T>::template mma<1>(&U[0][0], OS[s], wg::desc_mnmajor(cur + L::q, kC, s), s);
#pragma unroll
    for (int s = 0; s < CS; ++s) wg::RS<K, T>::template mma<1>(&U[0][0], XA[s], wg::desc_mnmajor(cur + L::w, kC, s), 1);
#pragma unroll
    for (int s = 0; s < CS; ++s) wg::RS<K, T>::template mma<1>(&U[0][0], XL[s], wg::desc_mnmajor(cur + L::w, kC, s), 1);
    wg::commit();
    wg::wait<0>();
    wg::pin<KT * 4>(&U[0][0]);
#pragma unroll
    for (int j = 0; j < KT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) D[j][e] = Gam * D[j][e] + U[j][e];
    wg::pin<CS * 4>(&OS[0][0]);
    wg::pin<CS * 4>(&XA[0][0]);
    wg::pin<CS * 4>(&XL[0][0]);
  }
  mma::store_state<KT>(p.dh0, D, st0, V);
}

// Warpgroups per block: one (64 columns of V) while that fills the GPU in one wave, else two
// (whole heads of V = 128) so that blocks share the chunk's q, k, w and Aqk copies and every
// block is resident at once. ENGRAM_GDR_WG=1|2 forces it.
int pick_groups(const Params& p) {
  int n = 1;
  if (p.V % 128 == 0 && (int64_t)p.B * p.H * (p.V / 64) > device_attribute(cudaDevAttrMultiProcessorCount)) n = 2;
  if (const char* e = std::getenv("ENGRAM_GDR_WG")) {
    const int want = std::atoi(e);
    TORCH_CHECK((want == 1 || want == 2) && p.V % (64 * want) == 0, "ENGRAM_GDR_WG=", e, " is not usable with V=", p.V);
    n = want;
  }
  return n;
}

template <class T, int NWG>
Maps make_maps(const Params& p, bool bwd) {
  const CUtensorMapDataType dt = tma::data_type<T>();
  const uint64_t K = p.K, V = p.V, rows = (uint64_t)p.B * p.H * p.NT * kC;
  // TMA coordinates are 32-bit: the per-chunk row index must fit
  TORCH_CHECK(rows < (uint64_t)INT32_MAX, "gdr forward scan: B*H*T = ", rows, " rows exceed the TMA coordinate range");
  Maps m;
  tma::encode_user(&m.q, dt, p.q, p.B, p.T, p.H, p.K, p.K / 64);
  tma::encode_user(&m.k, dt, p.k, p.B, p.T, p.H, p.K, p.K / 64);
  tma::encode_rows(&m.w, dt, p.w, rows, K, kC, (uint32_t)K / 64);
  const uint64_t ad[2] = {kC, rows}, as[1] = {2 * kC};
  const uint32_t ab[2] = {kC, kC};
  tma::encode(&m.a, dt, 2, p.Aqk, ad, as, ab, true);
  if (bwd) {
    tma::encode_user(&m.e, dt, p.dO, p.B, p.T, p.H, p.V, NWG);
  } else {
    tma::encode_rows(&m.e, dt, p.u, rows, V, kC, NWG);
  }
  tma::encode_chunk_decays(&m.g, p.gc, rows / kC, kC);
  return m;
}

template <class T, int K, int NWG, int ST>
void launch(const Params& p, cudaStream_t s, bool bwd, int64_t blocks, size_t smem, const Maps& m) {
  if (bwd)
    launch_checked(bwd_scan_wg<T, K, NWG, ST>, blocks, 128 * NWG, smem, s, p, "gdr backward scan (wgmma)", m);
  else
    launch_checked(fwd_scan_wg<T, K, NWG, ST>, blocks, 128 * NWG, smem, s, p, "gdr forward scan (wgmma)", m);
}

template <class T, int K, int NWG>
void run(const Params& p, cudaStream_t s, bool bwd) {
  const size_t buf = WgLayout<K, NWG>::buf, bars = 64 + 1024;  // + the alignment slack
  const int64_t blocks = (int64_t)p.B * p.H * (p.V / (64 * NWG));
  int stages = 2;
  if (const char* e = std::getenv("ENGRAM_GDR_STAGES")) stages = std::max(2, std::min(3, std::atoi(e)));
  if (stages * buf + bars > max_smem_per_block()) stages = 2;
  const Maps m = make_maps<T, NWG>(p, bwd);
  if (stages == 3)
    launch<T, K, NWG, 3>(p, s, bwd, blocks, 3 * buf + bars, m);
  else
    launch<T, K, NWG, 2>(p, s, bwd, blocks, 2 * buf + bars, m);
}

template <class T>
void dispatch(const Params& p, cudaStream_t s, bool bwd) {
  const int n = pick_groups(p);
  if (p.K == 64)
    n == 2 ? run<T, 64, 2>(p, s, bwd) : run<T, 64, 1>(p, s, bwd);
  else
    n == 2 ? run<T, 128, 2>(p, s, bwd) : run<T, 128, 1>(p, s, bwd);
}

}  // namespace

bool scan_wg_applies(DType dt, const Params& p) {
  if (dt == kF32 || (p.K != 64 && p.K != 128) || p.V % 64 != 0) return false;
  if (device_attribute(cudaDevAttrComputeCapabilityMajor) != 9) return false;  // wgmma is sm_90a only
  return !knob_says_smem("ENGRAM_GDR_SCAN") && !knob_is("ENGRAM_GDR_SCAN", "mma");
}

bool launch_scan_wg(DType dt, const Params& p, cudaStream_t s, bool bwd) {
  if (!scan_wg_applies(dt, p)) return false;
  if (dt == kBF16)
    dispatch<__nv_bfloat16>(p, s, bwd);
  else
    dispatch<__half>(p, s, bwd);
  return true;
}

}  // namespace gdr
}  // namespace engram
