// The sequential passes with warpgroup products (sm_90a wgmma) for 16-bit inputs.
//
// The forward's equations are those of fwd_scan_mma (gdr_scan_mma.cu), with the same roundings:
//   X^T = u^T - S^T w^T,  O = scale (e^G (Q S) + Aqk X),  S^T <- e^{G_last} S^T + (X^T e^{G_last-G}) K
// per chunk; the backward's are bwd_scan_mma's (see bwd_scan_wg below).
// A warpgroup owns 64 columns of V and keeps S^T [64 v x K] as wgmma accumulators (warp w of
// the group: rows 16w..16w+15, the layout of the mma.sync version), so each product of a chunk
// is K/16 or C/16 instructions for the whole group instead of one mma.sync per 16 x 8 tile per
// warp, and the chunk's q, k, w and Aqk are read from shared memory by the tensor cores once per
// group instead of once per warp through ldmatrix. Every tile of a chunk (q, k, w, Aqk, the
// block's u columns, G) arrives as one TMA box in the 128-byte swizzled layout (gdr_wgmma.cuh),
// requested by one thread and counted by one mbarrier per buffer: the warps spend no
// instructions on copies, and every request is a 128-byte row segment (16-byte pieces, whether
// per-thread cp.async or narrow TMA boxes, left the scan waiting on its loads).
// O^T, X^T and S^T come out with v as rows; they are stored as O, X and h (rows c or k) in
// 4-byte pairs after one shuffle with the neighbouring row.
#include <c10/util/Exception.h>
#include <cudaTypedefs.h>
#include <algorithm>
#include <cstdlib>
#include <type_traits>
#include "gdr.h"
#include "gdr_common.cuh"
#include "gdr_mma.cuh"
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
      if (n < valid) *reinterpret_cast<uint32_t*>(dst + (int64_t)n * ld + v) = even ? pack<T>(a0, r) : pack<T>(r, a1);
    }
}

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
  constexpr int KT = K / 8, KS = K / 16, CT = kC / 8, CS = kC / 16;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const WgRing<K, NWG, ST, false> ring(p, smem_raw);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int vw = 16 * warp;  // the warp's first column inside the block's 64 NWG
  const int64_t bh = ring.bh;
  const int v0 = ring.v0, hh = ring.hh, b = ring.b;
  const int V = p.V, H = p.H, NT = p.NT;

  float S[KT][4];
  const int64_t st0 = bh * K * V + v0 + vw;
  mma::load_state<KT>(S, p.h0, st0, V);
#pragma unroll
  for (int n = 0; n < ST - 1; ++n) ring.request(m, n);
  for (int c = 0; c < NT; ++c) {
    __syncthreads();  // every warp is done with chunk c - 1, whose buffer the next request reuses
    const unsigned char* cur = ring.wait(c);
    const float* gS = reinterpret_cast<const float*>(cur + L::g);
    const float gl = gS[kC - 1], Gam = __expf(gl);
    const int64_t cidx = bh * NT + c;
    const int t0 = c * kC, Lc = min(kC, p.T - t0);
    // u's element (row r, block column v)
    auto u_at = [&](int r, int v) {
      return to_f(*reinterpret_cast<const T*>(cur + L::e + wg::sw128_offset(r, v, kC)));
    };

    uint32_t SA[KS][4];
#pragma unroll
    for (int s = 0; s < KS; ++s) acc_to_a<T>(SA[s], S[2 * s], S[2 * s + 1]);
    // before the products: ptxas waits for every product in flight before a use of registers a
    // product wrote, and it does not see that S's last product has been waited for
    if (p.save) store_pairs_t<T, KT>(static_cast<T*>(p.h) + cidx * K * V + v0 + vw, V, &S[0][0], 1.f, K);
    float X[CT][4], O[CT][4];
    wg::pin<KS * 4>(&SA[0][0]);
    wg::fence();
#pragma unroll
    for (int s = 0; s < KS; ++s) wg::RS<64, T>::template mma<0>(&X[0][0], SA[s], wg::desc_kmajor(cur + L::w, kC, s), s);
    wg::commit();
#pragma unroll
    for (int s = 0; s < KS; ++s) wg::RS<64, T>::template mma<0>(&O[0][0], SA[s], wg::desc_kmajor(cur + L::q, kC, s), s);
    wg::commit();
    ring.request(m, c + ST - 1);  // goes out while the tensor cores work (the barrier freed its buffer)
    wg::wait<1>();
    wg::pin<CT * 4>(&X[0][0]);
#pragma unroll
    for (int j = 0; j < CT; ++j) {
      const int r = 8 * j + 2 * t, col = vw + g;
      X[j][0] = u_at(r, col) - X[j][0];
      X[j][1] = u_at(r + 1, col) - X[j][1];
      X[j][2] = u_at(r, col + 8) - X[j][2];
      X[j][3] = u_at(r + 1, col + 8) - X[j][3];
    }
    uint32_t XA[CS][4], XD[CS][4];  // X^T, and X^T e^{G_last - G} for the state update
#pragma unroll
    for (int s = 0; s < CS; ++s) acc_to_a<T>(XA[s], X[2 * s], X[2 * s + 1]);
    mma::decayed_x_to_a<T, CS>(XD, X, gS, gl);
    wg::wait<0>();
    wg::pin<KS * 4>(&SA[0][0]);
    wg::pin<CT * 4>(&O[0][0]);
    // O^T columns are chunk rows: e^G scales them before Aqk X joins
#pragma unroll
    for (int j = 0; j < CT; ++j) {
      const float e0 = __expf(gS[8 * j + 2 * t]), e1 = __expf(gS[8 * j + 2 * t + 1]);
      O[j][0] *= e0, O[j][1] *= e1, O[j][2] *= e0, O[j][3] *= e1;
    }
#pragma unroll
    for (int j = 0; j < KT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) S[j][e] *= Gam;
    wg::pin<KT * 4>(&S[0][0]);
    wg::pin<CT * 4>(&O[0][0]);
    wg::pin<CS * 4>(&XA[0][0]);
    wg::pin<CS * 4>(&XD[0][0]);
    wg::fence();
#pragma unroll
    for (int s = 0; s < CS; ++s) wg::RS<64, T>::template mma<0>(&O[0][0], XA[s], wg::desc_kmajor(cur + L::a, kC, s), 1);
    wg::commit();
#pragma unroll
    for (int s = 0; s < CS; ++s) wg::RS<K, T>::template mma<1>(&S[0][0], XD[s], wg::desc_mnmajor(cur + L::k, kC, s), 1);
    wg::commit();
    if (p.save) store_pairs_t<T, CT>(static_cast<T*>(p.X) + cidx * kC * V + v0 + vw, V, &X[0][0], 1.f, kC);
    wg::wait<1>();
    wg::pin<CT * 4>(&O[0][0]);
    store_pairs_t<T, CT>(static_cast<T*>(p.o) + (((int64_t)b * p.T + t0) * H + hh) * V + v0 + vw, (int64_t)H * V, &O[0][0],
                         p.scale, Lc);
    wg::wait<0>();
    wg::pin<KT * 4>(&S[0][0]);
    wg::pin<CS * 4>(&XA[0][0]);
    wg::pin<CS * 4>(&XD[0][0]);
  }
  mma::store_state<KT>(p.ht, S, st0, V);
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

// cuTensorMapEncodeTiled from the driver, found through the runtime (no link against libcuda).
PFN_cuTensorMapEncodeTiled_v12000 encoder() {
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
void encode(CUtensorMap* m, CUtensorMapDataType dt, int rank, const void* base, const uint64_t* dims,
            const uint64_t* strides, const uint32_t* box, bool swizzle) {
  const uint32_t ones[5] = {1, 1, 1, 1, 1};
  const CUresult r = encoder()(m, dt, (cuuint32_t)rank, const_cast<void*>(base), dims, strides, box, ones,
                               CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
                               CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  TORCH_CHECK(r == CUDA_SUCCESS, "gdr forward scan: cuTensorMapEncodeTiled failed with CUresult ", (int)r);
}

template <class T, int NWG>
Maps make_maps(const Params& p, bool bwd) {
  const CUtensorMapDataType dt =
      std::is_same<T, __half>::value ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  const uint64_t K = p.K, V = p.V, H = p.H, rows = (uint64_t)p.B * p.H * p.NT * kC;
  // TMA coordinates are 32-bit: the per-chunk row index must fit
  TORCH_CHECK(rows < (uint64_t)INT32_MAX, "gdr forward scan: B*H*T = ", rows, " rows exceed the TMA coordinate range");
  Maps m;
  // (64 columns, rows, slabs of 64 columns, ...): the slabs' stride (128 bytes) is below the rows'
  const uint64_t qd[5] = {64, (uint64_t)p.T, K / 64, H, (uint64_t)p.B}, qs[4] = {2 * K * H, 128, 2 * K, 2 * K * H * p.T};
  const uint32_t qb[5] = {64, kC, (uint32_t)K / 64, 1, 1};
  encode(&m.q, dt, 5, p.q, qd, qs, qb, true);
  encode(&m.k, dt, 5, p.k, qd, qs, qb, true);
  const uint64_t wd[3] = {64, rows, K / 64}, ws[2] = {2 * K, 128};
  const uint32_t wb[3] = {64, kC, (uint32_t)K / 64};
  encode(&m.w, dt, 3, p.w, wd, ws, wb, true);
  const uint64_t ad[2] = {kC, rows}, as[1] = {2 * kC};
  const uint32_t ab[2] = {kC, kC};
  encode(&m.a, dt, 2, p.Aqk, ad, as, ab, true);
  if (bwd) {
    const uint64_t od[5] = {64, (uint64_t)p.T, V / 64, H, (uint64_t)p.B}, os[4] = {2 * V * H, 128, 2 * V, 2 * V * H * p.T};
    const uint32_t ob[5] = {64, kC, NWG, 1, 1};
    encode(&m.e, dt, 5, p.dO, od, os, ob, true);
  } else {
    const uint64_t ud[3] = {64, rows, V / 64}, us[2] = {2 * V, 128};
    const uint32_t ub[3] = {64, kC, NWG};
    encode(&m.e, dt, 3, p.u, ud, us, ub, true);
  }
  const uint64_t gd[2] = {kC, rows / kC}, gs[1] = {4 * kC};
  const uint32_t gb[2] = {kC, 1};
  encode(&m.g, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, p.gc, gd, gs, gb, false);
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
