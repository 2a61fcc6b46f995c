// The sequential passes (forward and backward) for 16-bit inputs with the state in registers.
//
// One warp owns 16 columns of V and keeps its slice of the fp32 state S^T [16 x K] as mma
// accumulators for the whole sequence; a block of NW warps covers 16*NW columns and shares one
// double-buffered copy of the chunk's inputs in shared memory (cp.async, one barrier per chunk).
// Per chunk, with g = lane/4 rows of the accumulators being V columns:
//   forward:  X^T = u^T - S^T w^T,  O = scale (e^G (Q S) + Aqk X),  S^T <- e^{G_last} S^T + (X^T e^{G_last-G}) K
//   backward: dX^T = scale dO^T Aqk + e^{G_last-G} (dS^T K^T),  dS^T <- e^{G_last} dS^T + scale (dO^T e^G) Q - dX^T w
// (the equations of gdr_fwd_scan.cu / gdr_bwd_scan.cu, which read kt = K e^{G_last-G} and
// qg = Q e^G from prep; here the decays are applied in fp32 to the other operand or to the
// result, so prep writes neither and the scans read the user's q and k). The state and X are
// rounded to the input type before they enter a product. S^T and X^T accumulators
// are reused directly as A fragments (and their transposes as B fragments), so the only
// shared-memory traffic is the chunk's inputs.
#include <c10/util/Exception.h>
#include <c10/cuda/CUDAException.h>
#include <algorithm>
#include <cstdlib>
#include "gdr.h"
#include "gdr_common.cuh"
#include "gdr_mma.cuh"

namespace engram {
namespace gdr {
namespace {

using namespace mma;
constexpr int kMaxWarps = 8;

// Shared memory of one chunk buffer (offsets in bytes); `e` is the per-V-column tile (u or dO).
template <int K>
struct MmaLayout {
  static constexpr int LDK = K + 8, LDC = kC + 8;
  int ldv;
  size_t q, k, w, a, e, g, buf, total;
  __host__ __device__ MmaLayout(int vblk) {
    ldv = vblk + 8;
    SmemPlan s;
    q = s.take(2 * kC * LDK);
    k = s.take(2 * kC * LDK);
    w = s.take(2 * kC * LDK);
    a = s.take(2 * kC * LDC);
    e = s.take(2 * kC * ldv);
    g = s.take(4 * kC);
    buf = s.off;
    total = 2 * buf;  // the launcher adds a third buffer when it fits
  }
};

// The 10 nonzero 16x16 tiles of the lower-triangular Aqk (C = 64) for the forward's Aqk X,
// k-step outer: pair i is (k-step tri_step(i), row tile tri_tile(i) >= it). The skipped tiles
// are exact zeros. (Measured neutral in the forward, 0.276-0.278 ms either way.)
__device__ __forceinline__ constexpr int tri_step(int i) { return i < 4 ? 0 : i < 7 ? 1 : i < 9 ? 2 : 3; }
__device__ __forceinline__ constexpr int tri_tile(int i) { return i < 4 ? i : i < 7 ? i - 3 : i < 9 ? i - 5 : 3; }
static_assert(kC == 64, "the triangular tile tables are for 4 x 4 tiles");

template <class T, int K>
__device__ __forceinline__ void fetch(const Params& p, const MmaLayout<K>& L, unsigned char* buf, int64_t bh,
                                      int64_t b, int hh, int v0, int lvb, int c, bool bwd) {
  constexpr int LK = ilog2(K * (int)sizeof(T) / 16), LC = ilog2(kC * (int)sizeof(T) / 16);
  const int64_t cidx = bh * p.NT + c;
  const int t0 = c * kC, Lc = min(kC, p.T - t0);
  const int64_t row0 = (b * p.T + t0) * p.H + hh;
  // raw q and k: their decays are applied in fp32 to the other operand or the result
  copy_tile(reinterpret_cast<T*>(buf + L.q), L.LDK, static_cast<const T*>(p.q) + row0 * K, (int64_t)p.H * K, kC, LK, Lc);
  copy_tile(reinterpret_cast<T*>(buf + L.k), L.LDK, static_cast<const T*>(p.k) + row0 * K, (int64_t)p.H * K, kC, LK, Lc);
  copy_tile(reinterpret_cast<T*>(buf + L.w), L.LDK, static_cast<const T*>(p.w) + cidx * kC * K, K, kC, LK, kC);
  copy_tile(reinterpret_cast<T*>(buf + L.a), L.LDC, static_cast<const T*>(p.Aqk) + cidx * kC * kC, kC, kC, LC, kC);
  if (bwd)
    copy_tile(reinterpret_cast<T*>(buf + L.e), L.ldv, static_cast<const T*>(p.dO) + row0 * p.V + v0,
              (int64_t)p.H * p.V, kC, lvb, Lc);
  else
    copy_tile(reinterpret_cast<T*>(buf + L.e), L.ldv, static_cast<const T*>(p.u) + cidx * kC * p.V + v0, p.V, kC,
              lvb, kC);
  if (threadIdx.x < kC / 4) cp_async16(buf + L.g + 16 * threadIdx.x, p.gc + cidx * kC + 4 * threadIdx.x, true);
}

// Stores a warp's [16 v x n] fp32 accumulator (n8 tiles along n) transposed, as T, into a
// row-major [n x V] destination at column v0: dst[(n) * ld + v].
template <class T, int NT8>
__device__ __forceinline__ void store_acc_t(T* dst, int64_t ld, const float (*acc)[4]) {
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
#pragma unroll
  for (int j = 0; j < NT8; ++j) {
    const int n = j * 8 + 2 * t;
    dst[(int64_t)n * ld + g] = from_f<T>(acc[j][0]);
    dst[(int64_t)(n + 1) * ld + g] = from_f<T>(acc[j][1]);
    dst[(int64_t)n * ld + g + 8] = from_f<T>(acc[j][2]);
    dst[(int64_t)(n + 1) * ld + g + 8] = from_f<T>(acc[j][3]);
  }
}

template <class T, int K, int ST>
__global__ void __launch_bounds__(32 * kMaxWarps) fwd_scan_mma(Params p) {
  constexpr int KT = K / 8, KS = K / 16, CT = kC / 8, CS = kC / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  const int nw = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int vblk = 16 * nw, nvb = p.V / vblk;
  const int64_t bh = blockIdx.x / nvb;
  const int v0 = (int)(blockIdx.x % nvb) * vblk, vw = 16 * warp;  // block's and warp's first column
  const int hh = (int)(bh % p.H);
  const int64_t b = bh / p.H;
  const MmaLayout<K> L(vblk);
  const int V = p.V, H = p.H, NT = p.NT;

  float S[KT][4];  // S^T: rows v = g, g+8 of this warp's columns; cols k = 8j + 2t, +1
  const int64_t st0 = bh * K * V + v0 + vw;
  load_state<KT>(S, p.h0, st0, V);
  const int lvb = ilog2(vblk * (int)sizeof(T) / 16);
  // ST-stage ring: chunk n lives in buffer n % ST and is requested ST - 1 chunks ahead
#pragma unroll
  for (int n = 0; n < ST - 1; ++n) {
    if (n < NT) fetch<T, K>(p, L, smem + n * L.buf, bh, b, hh, v0, lvb, n, false);
    cp_commit();
  }
  for (int c = 0; c < NT; ++c) {
    cp_wait<ST - 2>();
    __syncthreads();  // chunk c visible; every warp is done with chunk c-1's buffer
    if (c + ST - 1 < NT) fetch<T, K>(p, L, smem + ((c + ST - 1) % ST) * L.buf, bh, b, hh, v0, lvb, c + ST - 1, false);
    cp_commit();
    const unsigned char* cur = smem + (c % ST) * L.buf;
    const T* qS = reinterpret_cast<const T*>(cur + L.q);
    const T* kS = reinterpret_cast<const T*>(cur + L.k);
    const T* wS = reinterpret_cast<const T*>(cur + L.w);
    const T* aS = reinterpret_cast<const T*>(cur + L.a);
    const T* uS = reinterpret_cast<const T*>(cur + L.e);
    const float* gS = reinterpret_cast<const float*>(cur + L.g);
    const float gl = gS[kC - 1], Gam = __expf(gl);
    const int64_t cidx = bh * NT + c;
    const int t0 = c * kC, Lc = min(kC, p.T - t0);

    uint32_t SA[KS][4];  // S^T rounded to T, as A fragments (and, transposed, S's B fragments)
#pragma unroll
    for (int s = 0; s < KS; ++s) acc_to_a<T>(SA[s], S[2 * s], S[2 * s + 1]);
    if (p.save) store_acc_t<T, KT>(static_cast<T*>(p.h) + cidx * K * V + v0 + vw, V, S);

    // X^T = u^T - S^T w^T
    float X[CT][4];
#pragma unroll
    for (int j = 0; j < CT; ++j) X[j][0] = X[j][1] = X[j][2] = X[j][3] = 0.f;
    pipeline<KS * CT / 2, 3>(
        [&](int i, uint32_t* f) { load_b_nmajor(f, wS, L.LDK, 16 * (i / (CT / 2)), 16 * (i % (CT / 2))); },
        [&](int i, const uint32_t* f) {
          const int s = i / (CT / 2), jj = i % (CT / 2);
          mma16816<T>(X[2 * jj], SA[s], f[0], f[1]);
          mma16816<T>(X[2 * jj + 1], SA[s], f[2], f[3]);
        });
#pragma unroll
    for (int j = 0; j < CT; ++j) {
      const int r = 8 * j + 2 * t, col = vw + g;
      X[j][0] = to_f(uS[r * L.ldv + col]) - X[j][0];
      X[j][1] = to_f(uS[(r + 1) * L.ldv + col]) - X[j][1];
      X[j][2] = to_f(uS[r * L.ldv + col + 8]) - X[j][2];
      X[j][3] = to_f(uS[(r + 1) * L.ldv + col + 8]) - X[j][3];
    }
    uint32_t XA[CS][4];
#pragma unroll
    for (int s = 0; s < CS; ++s) acc_to_a<T>(XA[s], X[2 * s], X[2 * s + 1]);
    if (p.save) store_acc_t<T, CT>(static_cast<T*>(p.X) + cidx * kC * V + v0 + vw, V, X);

    // O = e^G (Q S) + Aqk X  (rows c, cols v); B fragments of S and X come from SA and XA
    float O[CS][2][4];
#pragma unroll
    for (int mt = 0; mt < CS; ++mt)
#pragma unroll
      for (int n = 0; n < 2; ++n) O[mt][n][0] = O[mt][n][1] = O[mt][n][2] = O[mt][n][3] = 0.f;
    // k-step outer, row tile inner: eight independent accumulators between two products into
    // the same one (measured neutral: the forward scan is not bound by mma latency)
    pipeline<CS * KS, 3>([&](int i, uint32_t* f) { load_a(f, qS, L.LDK, 16 * (i % CS), 16 * (i / CS)); },
                         [&](int i, const uint32_t* f) {
                           const int mt = i % CS, s = i / CS;
                           mma16816<T>(O[mt][0], f, SA[s][0], SA[s][2]);
                           mma16816<T>(O[mt][1], f, SA[s][1], SA[s][3]);
                         });
#pragma unroll
    for (int mt = 0; mt < CS; ++mt)
#pragma unroll
      for (int hlf = 0; hlf < 2; ++hlf) {
        const float e = __expf(gS[16 * mt + g + 8 * hlf]);
#pragma unroll
        for (int n = 0; n < 2; ++n) O[mt][n][2 * hlf] *= e, O[mt][n][2 * hlf + 1] *= e;
      }
    pipeline<10, 3>([&](int i, uint32_t* f) { load_a(f, aS, L.LDC, 16 * tri_tile(i), 16 * tri_step(i)); },
                         [&](int i, const uint32_t* f) {
                           const int mt = tri_tile(i), s = tri_step(i);
                           mma16816<T>(O[mt][0], f, XA[s][0], XA[s][2]);
                           mma16816<T>(O[mt][1], f, XA[s][1], XA[s][3]);
                         });
    T* o = static_cast<T*>(p.o) + ((b * p.T + t0) * H + hh) * V + v0 + vw;
#pragma unroll
    for (int mt = 0; mt < CS; ++mt)
#pragma unroll
      for (int n = 0; n < 2; ++n)
#pragma unroll
        for (int hlf = 0; hlf < 2; ++hlf) {
          const int r = 16 * mt + g + 8 * hlf;
          if (r < Lc) {
            const uint32_t v = pack<T>(p.scale * O[mt][n][2 * hlf], p.scale * O[mt][n][2 * hlf + 1]);
            *reinterpret_cast<uint32_t*>(o + (int64_t)r * H * V + 8 * n + 2 * t) = v;
          }
        }

    // S^T <- Gam S^T + (X^T e^{G_last - G}) K: the decay scales X's columns in fp32
    decayed_x_to_a<T, CS>(XA, X, [&](int c) { return __expf(gl - gS[c]); });
#pragma unroll
    for (int j = 0; j < KT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) S[j][e] *= Gam;
    pipeline<CS * KT / 2, 3>(
        [&](int i, uint32_t* f) { load_b_kmajor(f, kS, L.LDK, 16 * (i / (KT / 2)), 16 * (i % (KT / 2))); },
        [&](int i, const uint32_t* f) {
          const int s = i / (KT / 2), jj = i % (KT / 2);
          mma16816<T>(S[2 * jj], XA[s], f[0], f[1]);
          mma16816<T>(S[2 * jj + 1], XA[s], f[2], f[3]);
        });
  }
  if (p.ht != nullptr) store_state<KT>(p.ht, S, st0, V);  // null: no final state asked for
}

template <class T, int K, int ST>
__global__ void __launch_bounds__(32 * kMaxWarps) bwd_scan_mma(Params p) {
  constexpr int KT = K / 8, KS = K / 16, CT = kC / 8, CS = kC / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  const int nw = blockDim.x >> 5, warp = threadIdx.x >> 5, t = threadIdx.x & 3;
  const int vblk = 16 * nw, nvb = p.V / vblk;
  const int64_t bh = blockIdx.x / nvb;
  const int v0 = (int)(blockIdx.x % nvb) * vblk, vw = 16 * warp;
  const int hh = (int)(bh % p.H);
  const int64_t b = bh / p.H;
  const MmaLayout<K> L(vblk);
  const int V = p.V, NT = p.NT;

  float D[KT][4];  // dS^T
  const int64_t st0 = bh * K * V + v0 + vw;
  load_state<KT>(D, p.dht, st0, V);
  const int lvb = ilog2(vblk * (int)sizeof(T) / 16);
  // as the forward, in reverse: the n-th chunk processed (c = NT - 1 - n) lives in buffer n % ST
#pragma unroll
  for (int n = 0; n < ST - 1; ++n) {
    if (n < NT) fetch<T, K>(p, L, smem + n * L.buf, bh, b, hh, v0, lvb, NT - 1 - n, true);
    cp_commit();
  }
  for (int n = 0; n < NT; ++n) {
    const int c = NT - 1 - n;
    cp_wait<ST - 2>();
    __syncthreads();
    if (n + ST - 1 < NT) fetch<T, K>(p, L, smem + ((n + ST - 1) % ST) * L.buf, bh, b, hh, v0, lvb, c - (ST - 1), true);
    cp_commit();
    const unsigned char* cur = smem + (n % ST) * L.buf;
    const T* qS = reinterpret_cast<const T*>(cur + L.q);
    const T* kS = reinterpret_cast<const T*>(cur + L.k);
    const T* wS = reinterpret_cast<const T*>(cur + L.w);
    const T* aS = reinterpret_cast<const T*>(cur + L.a);
    const T* dS = reinterpret_cast<const T*>(cur + L.e);
    const float gl = reinterpret_cast<const float*>(cur + L.g)[kC - 1];
    const float Gam = __expf(gl);
    const int64_t cidx = bh * NT + c;

    // dS^T and dX^T enter their products as hi + lo pairs: dh0 accumulates every chunk's
    // rounding, and with one 16-bit copy its error was 1.25x fla's (scripts/gpu/gdr_seed_check.py)
    uint32_t DA[KS][4], DL[KS][4];
#pragma unroll
    for (int s = 0; s < KS; ++s) acc_to_a_split<T>(DA[s], DL[s], D[2 * s], D[2 * s + 1]);
    store_acc_t<T, KT>(static_cast<T*>(p.dh) + cidx * K * V + v0 + vw, V, D);
    uint32_t OA[CS][4];  // dO^T (rows v, cols c) as A fragments
    const float* gS = reinterpret_cast<const float*>(cur + L.g);
#pragma unroll
    for (int s = 0; s < CS; ++s) load_a_t(OA[s], dS, L.ldv, vw, 16 * s);

    // dX^T = scale dO^T Aqk + dS^T kt^T
    float X[CT][4];
#pragma unroll
    for (int j = 0; j < CT; ++j) X[j][0] = X[j][1] = X[j][2] = X[j][3] = 0.f;
    // all 16 tiles, zeros included: skipping the 6 zero tiles of Aqk (k-step outer) put products
    // into the same accumulator back to back and measured slower (0.261 against 0.252 ms)
    pipeline<CS * CT / 2, 3>(
        [&](int i, uint32_t* f) { load_b_kmajor(f, aS, L.LDC, 16 * (i / (CT / 2)), 16 * (i % (CT / 2))); },
        [&](int i, const uint32_t* f) {
          const int s = i / (CT / 2), jj = i % (CT / 2);
          mma16816<T>(X[2 * jj], OA[s], f[0], f[1]);
          mma16816<T>(X[2 * jj + 1], OA[s], f[2], f[3]);
        });
#pragma unroll
    for (int j = 0; j < CT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) X[j][e] *= p.scale;
    // + exp(G_last - G_c) (dS^T K^T)[v][c], two c tiles at a time
    float P0[4], P1[4];
    pipeline<CT / 2 * KS, 3>(
        [&](int i, uint32_t* f) { load_b_nmajor(f, kS, L.LDK, 16 * (i % KS), 16 * (i / KS)); },
        [&](int i, const uint32_t* f) {
          const int jj = i / KS, s = i % KS;
          if (s == 0)
#pragma unroll
            for (int e = 0; e < 4; ++e) P0[e] = P1[e] = 0.f;
          mma16816<T>(P0, DA[s], f[0], f[1]);
          mma16816<T>(P1, DA[s], f[2], f[3]);
          mma16816<T>(P0, DL[s], f[0], f[1]);
          mma16816<T>(P1, DL[s], f[2], f[3]);
          if (s == KS - 1) {
            const int c0 = 16 * jj + 2 * t;
            const float e0 = __expf(gl - gS[c0]), e1 = __expf(gl - gS[c0 + 1]);
            const float e2 = __expf(gl - gS[c0 + 8]), e3 = __expf(gl - gS[c0 + 9]);
            X[2 * jj][0] += e0 * P0[0]; X[2 * jj][1] += e1 * P0[1];
            X[2 * jj][2] += e0 * P0[2]; X[2 * jj][3] += e1 * P0[3];
            X[2 * jj + 1][0] += e2 * P1[0]; X[2 * jj + 1][1] += e3 * P1[1];
            X[2 * jj + 1][2] += e2 * P1[2]; X[2 * jj + 1][3] += e3 * P1[3];
          }
        });
    uint32_t XA[CS][4], XL[CS][4];  // -dX^T as hi + lo
#pragma unroll
    for (int s = 0; s < CS; ++s) {
      acc_to_a_split<T>(XA[s], XL[s], X[2 * s], X[2 * s + 1]);
#pragma unroll
      for (int e = 0; e < 4; ++e) XA[s][e] = neg2(XA[s][e]), XL[s][e] = neg2(XL[s][e]);
    }
    store_acc_t<T, CT>(static_cast<T*>(p.dX) + cidx * kC * V + v0 + vw, V, X);

    // dS^T <- Gam dS^T - dX^T w + scale (dO^T e^G) Q (the scaled term two n8 tiles at a time)
#pragma unroll
    for (int j = 0; j < KT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) D[j][e] *= Gam;
    pipeline<CS * KT / 2, 3>(
        [&](int i, uint32_t* f) { load_b_kmajor(f, wS, L.LDK, 16 * (i / (KT / 2)), 16 * (i % (KT / 2))); },
        [&](int i, const uint32_t* f) {
          const int s = i / (KT / 2), jj = i % (KT / 2);
          mma16816<T>(D[2 * jj], XA[s], f[0], f[1]);
          mma16816<T>(D[2 * jj + 1], XA[s], f[2], f[3]);
          mma16816<T>(D[2 * jj], XL[s], f[0], f[1]);
          mma16816<T>(D[2 * jj + 1], XL[s], f[2], f[3]);
        });
    // dO^T e^G, in place: dO^T is not needed any more
#pragma unroll
    for (int s = 0; s < CS; ++s)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c0 = 16 * s + 2 * t + 8 * (e >> 1);
        const float2 x = unpack<T>(OA[s][e]);
        OA[s][e] = pack<T>(x.x * __expf(gS[c0]), x.y * __expf(gS[c0 + 1]));
      }
    pipeline<KT / 2 * CS, 3>(
        [&](int i, uint32_t* f) { load_b_kmajor(f, qS, L.LDK, 16 * (i % CS), 16 * (i / CS)); },
        [&](int i, const uint32_t* f) {
          const int jj = i / CS, s = i % CS;
          if (s == 0)
#pragma unroll
            for (int e = 0; e < 4; ++e) P0[e] = P1[e] = 0.f;
          mma16816<T>(P0, OA[s], f[0], f[1]);
          mma16816<T>(P1, OA[s], f[2], f[3]);
          if (s == CS - 1)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              D[2 * jj][e] += p.scale * P0[e];
              D[2 * jj + 1][e] += p.scale * P1[e];
            }
        });
  }
  store_state<KT>(p.dh0, D, st0, V);
}

// Warps per block: up to 4 (64 columns of V), measured on the H100 (docs/kernels.md): 1-2 warps
// lose by up to 2.8x when the grid fills the GPU, and 2 warps measured no better where 4-warp
// blocks leave SMs idle ((4,2048,8,64,128), (2,8192,16,128,128), (1,16384,16,128,128)). A
// 4-warp block's double buffer (139 KB at K = 128) leaves room for one block per SM, so where
// 4-warp blocks need more than one wave the backward scan takes whole heads (8 warps, 128
// columns, one wave): 0.248 against 0.284 ms at (8,2048,16,128). The forward scan loses with
// 8 warps there (0.296 against 0.278 ms), and both lose at the seed shape (one wave either way).
// ENGRAM_GDR_NW forces a count (tests cover several).
int pick_warps(const Params& p, bool bwd) {
  int nw = 1;
  while (nw < 4 && (p.V / 16) % (2 * nw) == 0) nw *= 2;
  if (bwd && nw == 4 && (p.V / 16) % 8 == 0 &&
      (int64_t)p.B * p.H * (p.V / 64) > device_attribute(cudaDevAttrMultiProcessorCount))
    nw = 8;
  if (const char* e = std::getenv("ENGRAM_GDR_NW")) {
    const int want = std::atoi(e);
    // a power of two: a block's 16 * nw columns are copied as 2 * nw 16-byte vectors per row
    TORCH_CHECK(want >= 1 && want <= kMaxWarps && (want & (want - 1)) == 0 && (p.V / 16) % want == 0, "ENGRAM_GDR_NW=", e,
                " is not usable with V=", p.V);
    nw = want;
  }
  return nw;
}

template <class T, int K>
bool run(const Params& p, cudaStream_t s, bool bwd) {
  const int nw = pick_warps(p, bwd);
  const MmaLayout<K> L(16 * nw);
  // Two buffers: a third (ENGRAM_GDR_STAGES=3) measured no faster at any benchmark shape (the
  // scans are bound by each warp's instruction issue, not by load latency) and costs occupancy.
  int stages = 2;
  if (const char* e = std::getenv("ENGRAM_GDR_STAGES")) stages = std::atoi(e) == 3 ? 3 : 2;
  // a third buffer that does not fit falls back to two: when these scans apply, prep has not
  // made the shared-memory scans' inputs, so refusing here would be an error, not a fallback
  if (stages == 3 && 3 * L.buf > max_smem_per_block()) stages = 2;
  if (2 * L.buf > max_smem_per_block()) return false;
  const int64_t blocks = (int64_t)p.B * p.H * (p.V / (16 * nw));
  if (stages == 3)
    launch_checked(bwd ? bwd_scan_mma<T, K, 3> : fwd_scan_mma<T, K, 3>, blocks, 32 * nw, 3 * L.buf, s, p, "gdr scan");
  else
    launch_checked(bwd ? bwd_scan_mma<T, K, 2> : fwd_scan_mma<T, K, 2>, blocks, 32 * nw, 2 * L.buf, s, p, "gdr scan");
  return true;
}

template <class T>
bool dispatch(const Params& p, cudaStream_t s, bool bwd) {
  switch (p.K) {
    case 64: return run<T, 64>(p, s, bwd);
    case 128: return run<T, 128>(p, s, bwd);
    default: return false;
  }
}

template <int K>
bool fits(const Params& p) {
  const size_t most = std::max(MmaLayout<K>(16 * pick_warps(p, false)).buf, MmaLayout<K>(16 * pick_warps(p, true)).buf);
  return 2 * most <= max_smem_per_block();
}

}  // namespace

bool scan_mma_applies(DType dt, const Params& p) {
  if (dt == kF32 || p.V % 16 != 0 || (p.K != 64 && p.K != 128)) return false;
  if (knob_says_smem("ENGRAM_GDR_SCAN")) return false;
  return p.K == 64 ? fits<64>(p) : fits<128>(p);
}

bool launch_scan_mma(DType dt, const Params& p, cudaStream_t s, bool bwd) {
  // without kt and qg (not made when these scans apply) the shared-memory scans cannot run
  if (p.qg != nullptr && !scan_mma_applies(dt, p)) return false;
  if (p.qg == nullptr && launch_scan_wg(dt, p, s, bwd)) return true;
  const bool ran = dt == kBF16 ? dispatch<__nv_bfloat16>(p, s, bwd) : dispatch<__half>(p, s, bwd);
  TORCH_CHECK(ran || p.qg != nullptr, "gdr scan: the register scans do not fit this shape (K=", p.K, ", V=", p.V, ")");
  return ran;
}

}  // namespace gdr
}  // namespace engram
