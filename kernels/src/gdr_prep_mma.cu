// Forward stage 1 for 16-bit inputs with K, V in {64, 128}: gdr_prep.cu's outputs (G, A, Aqk,
// w, u, kt, qg) with the products in mma.sync registers.
//
// One block of 8 warps per (batch, head, chunk), two blocks per SM (three at K = V = 64). Warp w owns rows
// 16*(w/2) .. +15 and one column half (w % 2) of every [C x *] result: K K^T and Q K^T are
// formed in registers, Aqk = tril(Q K^T * decay) goes from there to global memory and only L
// (fp32, for the inverse) to shared memory; w = A (beta e^G K) and u = A (beta V) are formed
// with the row scalings applied to each B fragment in registers
// (mma::scale_b_rows) rather than by a pass over the shared K and V tiles. The inverse is the
// shared fp32 one (invert_unit_lower). The roundings are gdr_prep.cu's: fp32 products, A and
// the scaled K and V rounded to the input type. One rounded A serves both w and u: two copies
// scaled by beta e^G and by beta (one rounding each, 16% faster) moved the seed map's dh0 error
// from 9.0e-3 to 9.8e-3, past fla's, because u - w S then no longer shares A's rounding.
// Aqk, w and u leave through a warp-private shared staging tile (store_acc_staged, in tiles dead
// at that point) as 16-byte row chunks: 4-byte scatters from the accumulators throttled the
// stores (0.279 against 0.222 ms at (8,2048,16,128)).
#include <c10/util/Exception.h>
#include <c10/cuda/CUDAException.h>
#include "gdr.h"
#include "gdr_common.cuh"
#include "gdr_mma.cuh"

namespace engram {
namespace gdr {
namespace {

using namespace mma;
constexpr int kPW = 8;  // warps per block: 4 row strips x 2 column halves

template <int K, int V>
struct PrepMmaLayout {
  static constexpr int LDK = K + 8, LDV = V + 8, LDC = kC + 8, LDF = kC + 4;
  size_t k, q, v, l, a, at, vec, total;
  __host__ __device__ PrepMmaLayout() {
    SmemPlan s;
    k = s.take(2 * kC * LDK);
    q = s.take(2 * kC * LDK);
    v = s.take(2 * kC * LDV);
    l = s.take(4 * kC * LDF);
    a = s.take(4 * kC * LDF);
    at = s.take(2 * kC * LDC);
    vec = s.take(4 * (3 * kC + 768));  // G, beta, beta e^G, the inverse's scratch
    total = s.off;
    // L and the fp32 A (consecutive) stage the w and u stores, A alone the Aqk store
    static_assert(2 * 4 * kC * LDF >= kPW * 16 * ((K > V ? K : V) / 2 + 8) * 2, "w/u staging fits in L and A");
    static_assert(4 * kC * LDF >= kPW * 16 * (kC / 2 + 8) * 2, "Aqk staging fits in A");
  }
};

// acc = A (diag(scale) B) for a warp's 16-row strip r0 and n-columns c0..: A [C x C] row-major
// at As, B [C x N] k-major at Bs; the row scaling goes on each B fragment in registers.
template <class T, int NT8>
__device__ __forceinline__ void a_scaled_b(float (*acc)[4], const T* As, int lda, int r0, const T* Bs, int ldb, int c0,
                                           const float* scale) {
  const int t = threadIdx.x & 3;
  zero<NT8>(acc);
  warp_mm<T, NT8, kC / 16>(acc, [&](uint32_t* a, int k0) { load_a<T>(a, As, lda, r0, k0); },
                           [&](uint32_t* bb, int k0, int n0) {
                             load_b_kmajor<T>(bb, Bs, ldb, k0, c0 + n0);
                             const float* sc = scale + k0 + 2 * t;
                             scale_b_rows<T>(bb, sc[0], sc[1], sc[8], sc[9]);
                           });
}

template <class T, int K, int V>
__global__ void __launch_bounds__(32 * kPW, K * V <= 64 * 64 ? 3 : 2) prep_mma(Params p) {
  using L = PrepMmaLayout<K, V>;
  constexpr int LDK = L::LDK, LDV = L::LDV, LDC = L::LDC, LDF = L::LDF;
  constexpr int KW = K / 2, KT8 = KW / 8, CW = kC / 2, CT8 = CW / 8, VW = V / 2, VT8 = VW / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  const L lay;
  const int tid = threadIdx.x, nt = blockDim.x, warp = tid >> 5, lane = tid & 31;
  const int r0 = 16 * (warp >> 1), half = warp & 1;
  const int kc0 = half * KW, cc0 = half * CW, vc0 = half * VW;
  const int H = p.H;
  const ChunkBlock cb(p);
  const int Lc = cb.Lc;
  const int64_t row0 = cb.row0, cidx = cb.cidx;

  T* Ks = reinterpret_cast<T*>(smem + lay.k);
  T* Qs = reinterpret_cast<T*>(smem + lay.q);
  T* Vs = reinterpret_cast<T*>(smem + lay.v);
  float* Ls = reinterpret_cast<float*>(smem + lay.l);
  float* Af = reinterpret_cast<float*>(smem + lay.a);
  T* ATs = reinterpret_cast<T*>(smem + lay.at);
  float* gS = reinterpret_cast<float*>(smem + lay.vec);
  float* bS = gS + kC;
  float* bgS = bS + kC;
  float* tri = bgS + kC;

  {
    constexpr int LV = ilog2(V * (int)sizeof(T) / 16), LK = ilog2(K * (int)sizeof(T) / 16);
    copy_tile(Ks, LDK, static_cast<const T*>(p.k) + row0 * K, (int64_t)H * K, kC, LK, Lc);
    copy_tile(Qs, LDK, static_cast<const T*>(p.q) + row0 * K, (int64_t)H * K, kC, LK, Lc);
    copy_tile(Vs, LDV, static_cast<const T*>(p.v) + row0 * V, (int64_t)H * V, kC, LV, Lc);
    cp_commit();
  }
  if (tid < kC) {
    const bool ok = tid < Lc;
    gS[tid] = ok ? p.g[row0 + (int64_t)tid * H] : 0.f;  // padded rows: no decay, no write
    bS[tid] = ok ? p.beta[row0 + (int64_t)tid * H] : 0.f;
  }
  __syncthreads();
  if (warp == 0) {  // inclusive scan of the 64 log decays, two per lane
    const float a = gS[2 * lane], s2 = a + gS[2 * lane + 1];
    float x = s2;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float y = __shfl_up_sync(0xffffffffu, x, o);
      if (lane >= o) x += y;
    }
    gS[2 * lane] = x - s2 + a;
    gS[2 * lane + 1] = x;
  }
  cp_wait<0>();
  __syncthreads();  // (1) G and the tiles are visible
  if (tid < kC) {
    p.gc[cidx * kC + tid] = gS[tid];
    bgS[tid] = bS[tid] * __expf(gS[tid]);
  }

  // K K^T and Q K^T: L = strict-lower(beta_i decay K K^T) to shared memory (fp32), Aqk to global
  {
    float kk[CT8][4], qk[CT8][4];
    zero<CT8>(kk);
    zero<CT8>(qk);
    warp_mm<T, CT8, K / 16>(kk, [&](uint32_t* a, int k0) { load_a<T>(a, Ks, LDK, r0, k0); },
                            [&](uint32_t* bb, int k0, int n0) { load_b_nmajor<T>(bb, Ks, LDK, k0, cc0 + n0); });
    warp_mm<T, CT8, K / 16>(qk, [&](uint32_t* a, int k0) { load_a<T>(a, Qs, LDK, r0, k0); },
                            [&](uint32_t* bb, int k0, int n0) { load_b_nmajor<T>(bb, Ks, LDK, k0, cc0 + n0); });
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < CT8; ++j)
#pragma unroll
      for (int hlf = 0; hlf < 2; ++hlf) {
        const int i = r0 + g + 8 * hlf, col = cc0 + 8 * j + 2 * t;
        float lv[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int jj = col + e;
          const float d = jj <= i ? __expf(gS[i] - gS[jj]) : 0.f;
          qk[j][2 * hlf + e] *= d;
          lv[e] = jj < i ? bS[i] * d * kk[j][2 * hlf + e] : 0.f;
        }
        *reinterpret_cast<float2*>(Ls + i * LDF + col) = make_float2(lv[0], lv[1]);
      }
    // staged in the inverse's output tile, which is not written before barrier (2)
    store_acc_staged<T, CT8>(static_cast<T*>(p.Aqk) + cidx * kC * kC + r0 * kC + cc0, kC, qk,
                             reinterpret_cast<T*>(Af) + warp * 16 * (CW + 8));
  }
  if (p.kt != nullptr) store_decayed_kq(p, Ks, Qs, LDK, K, gS, cidx);  // only for the shared-memory scans
  __syncthreads();  // (2) L is visible
  invert_unit_lower(Ls, Af, LDF, tri);
  {
    const int64_t a0 = cidx * kC * kC;
    for (int e = tid; e < kC * kC / 2; e += nt) {
      const int i = (2 * e) / kC, j = (2 * e) % kC;
      const float2 a = *reinterpret_cast<const float2*>(Af + i * LDF + j);
      const uint32_t at = pack<T>(a.x, a.y);
      *reinterpret_cast<uint32_t*>(ATs + i * LDC + j) = at;
      if (!p.save) continue;  // only the backward reads A: as T where its register kernel runs
      if (p.A16 != nullptr) *reinterpret_cast<uint32_t*>(static_cast<T*>(p.A16) + a0 + i * kC + j) = at;
      else *reinterpret_cast<float2*>(p.A + a0 + i * kC + j) = a;
    }
  }
  __syncthreads();  // (3) A (as T) is visible; L and the fp32 A are dead: w and u are staged there
  T* stage = reinterpret_cast<T*>(Ls) + warp * 16 * ((KW > VW ? KW : VW) + 8);
  {
    float w[KT8][4];
    a_scaled_b<T, KT8>(w, ATs, LDC, r0, Ks, LDK, kc0, bgS);  // w = A (beta e^G K)
    store_acc_staged<T, KT8>(static_cast<T*>(p.w) + cidx * kC * K + r0 * K + kc0, K, w, stage);
  }
  {
    float u[VT8][4];
    a_scaled_b<T, VT8>(u, ATs, LDC, r0, Vs, LDV, vc0, bS);  // u = A (beta V)
    store_acc_staged<T, VT8>(static_cast<T*>(p.u) + cidx * kC * V + r0 * V + vc0, V, u, stage);
  }
}

template <class T, int K, int V>
struct Launch {
  static void run(const Params& p, cudaStream_t s) {
    launch_checked(prep_mma<T, K, V>, (int64_t)p.B * p.H * p.NT, 32 * kPW, PrepMmaLayout<K, V>().total, s, p, "gdr prep (mma)");
  }
};

}  // namespace

bool launch_prep_mma(DType dt, const Params& p, cudaStream_t s) { return launch_16bit_kv<Launch>(dt, p, s, "ENGRAM_GDR_PREP"); }

}  // namespace gdr
}  // namespace engram
