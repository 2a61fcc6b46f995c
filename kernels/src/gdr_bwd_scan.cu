// Backward stage 1: the reverse pass over chunks, one block per (batch, head, V-block), keeping
// the fp32 state gradient dS [K x VB] in shared memory. For chunk c (last to first), with
// dS = gradient w.r.t. the state leaving the chunk:
//   dX = scale Aqk^T dO + (K exp(G_last - G)) dS            (stored: the gradient of v_new)
//   dS <- exp(G_last) dS + scale (exp(G) Q)^T dO - w^T dX   (the gradient entering the chunk)
// and dS before the update is stored as dh[c]. What is left at the end is dh0.
#include <c10/util/Exception.h>
#include <c10/cuda/CUDAException.h>
#include <cstdlib>
#include "gdr.h"
#include "gdr_common.cuh"

namespace engram {
namespace gdr {
namespace {

template <class T, int VB>
struct BScanLayout {
  static constexpr int NBUF = sizeof(T) == 4 ? 1 : 2;
  size_t S, ST, buf0, bufsz, X, XT, total;
  size_t q, k, w, d, a, g;
  int ldk, ldvb_f, ldvb_t, lda;
  __host__ __device__ BScanLayout(int K) {
    const int pt = Pad<T>::t, pf = Pad<T>::f;
    ldk = K + pt; ldvb_f = VB + pf; ldvb_t = VB + pt; lda = kC + pt;
    SmemPlan in;
    q = in.take(sizeof(T) * kC * ldk);
    k = in.take(sizeof(T) * kC * ldk);
    w = in.take(sizeof(T) * kC * ldk);
    d = in.take(sizeof(T) * kC * ldvb_t);
    a = in.take(sizeof(T) * kC * lda);
    g = in.take(sizeof(float) * kC);
    SmemPlan s;
    S = s.take(sizeof(float) * K * ldvb_f);
    ST = s.take(sizeof(T) * K * ldvb_t);
    bufsz = (in.off + 127) / 128 * 128;
    buf0 = s.take(bufsz * NBUF);
    X = s.take(sizeof(float) * kC * ldvb_f);
    XT = s.take(sizeof(T) * kC * ldvb_t);
    total = s.off;
  }
};

template <class T, int VB>
__device__ __forceinline__ void fetch_chunk(const Params& p, const BScanLayout<T, VB>& L, unsigned char* buf,
                                            int64_t b, int hh, int64_t bh, int vb, int c) {
  const int K = p.K, V = p.V, H = p.H;
  const int t0 = c * kC, Lc = min(kC, p.T - t0);
  const int64_t row0 = (b * p.T + t0) * H + hh;
  const int64_t cidx = bh * p.NT + c;
  load_tile_async(reinterpret_cast<T*>(buf + L.q), L.ldk, static_cast<const T*>(p.qg) + cidx * kC * K, K, kC, K, kC);
  load_tile_async(reinterpret_cast<T*>(buf + L.k), L.ldk, static_cast<const T*>(p.kt) + cidx * kC * K, K, kC, K, kC);
  load_tile_async(reinterpret_cast<T*>(buf + L.w), L.ldk, static_cast<const T*>(p.w) + cidx * kC * K, K, kC, K, kC);
  load_tile_async(reinterpret_cast<T*>(buf + L.d), L.ldvb_t, static_cast<const T*>(p.dO) + row0 * V + vb * VB,
                  (int64_t)H * V, kC, VB, Lc);
  load_tile_async(reinterpret_cast<T*>(buf + L.a), L.lda, static_cast<const T*>(p.Aqk) + cidx * kC * kC, kC, kC, kC,
                  kC);
  load_tile_async(reinterpret_cast<float*>(buf + L.g), kC, p.gc + cidx * kC, kC, 1, kC, 1);
}

template <class T, int VB>
__global__ void __launch_bounds__(kThreads, 1) bwd_scan_kernel(Params p) {
  extern __shared__ __align__(128) unsigned char smem[];
  using Lay = BScanLayout<T, VB>;
  const int K = p.K, V = p.V, H = p.H, NT = p.NT, nvb = V / VB;
  const int64_t blk = blockIdx.x;
  const int vb = (int)(blk % nvb);
  const int64_t bh = blk / nvb;
  const int hh = (int)(bh % H);
  const int64_t b = bh / H;
  Lay L(K);
  float* S = reinterpret_cast<float*>(smem + L.S);
  T* ST = reinterpret_cast<T*>(smem + L.ST);
  float* X = reinterpret_cast<float*>(smem + L.X);
  T* XT = reinterpret_cast<T*>(smem + L.XT);
  const int tid = threadIdx.x;
  const int64_t state0 = bh * K * V + vb * VB;
  for (int e = tid; e < K * VB; e += kThreads) {
    int i = e / VB, j = e % VB;
    S[i * L.ldvb_f + j] = p.dht ? p.dht[state0 + (int64_t)i * V + j] : 0.f;
  }
  fetch_chunk<T, VB>(p, L, smem + L.buf0 + (Lay::NBUF == 2 ? ((NT - 1) & 1) : 0) * L.bufsz, b, hh, bh, vb, NT - 1);
  cp_commit();
  for (int c = NT - 1; c >= 0; --c) {
    unsigned char* cur = smem + L.buf0 + (Lay::NBUF == 2 ? (c & 1) : 0) * L.bufsz;
    if (Lay::NBUF == 2 && c > 0) {
      fetch_chunk<T, VB>(p, L, smem + L.buf0 + ((c - 1) & 1) * L.bufsz, b, hh, bh, vb, c - 1);
      cp_commit();
      cp_wait<1>();
    } else {
      if (Lay::NBUF == 1 && c < NT - 1) {
        fetch_chunk<T, VB>(p, L, cur, b, hh, bh, vb, c);
        cp_commit();
      }
      cp_wait<0>();
    }
    __syncthreads();
    T* qS = reinterpret_cast<T*>(cur + L.q);
    T* kS = reinterpret_cast<T*>(cur + L.k);
    T* wS = reinterpret_cast<T*>(cur + L.w);
    T* dS_ = reinterpret_cast<T*>(cur + L.d);
    T* aS = reinterpret_cast<T*>(cur + L.a);
    float* gS = reinterpret_cast<float*>(cur + L.g);
    const float Gam = __expf(gS[kC - 1]);
    const int64_t cidx = bh * NT + c;
    for2d(K, VB, [&](int i, int j) {
      float s = S[i * L.ldvb_f + j];
      ST[i * L.ldvb_t + j] = from_f<T>(s);
      S[i * L.ldvb_f + j] = Gam * s;
    });
    __syncthreads();
    store_tile_t<T>(static_cast<T*>(p.dh) + cidx * K * V + vb * VB, V, ST, L.ldvb_t, K, VB, K);
    mm<T, true, false>(X, L.ldvb_f, aS, L.lda, dS_, L.ldvb_t, kC, VB, kC, false, p.scale);
    mm<T>(X, L.ldvb_f, kS, L.ldk, ST, L.ldvb_t, kC, VB, K, true);
    mm<T, true, false>(S, L.ldvb_f, qS, L.ldk, dS_, L.ldvb_t, K, VB, kC, true, p.scale);
    __syncthreads();
    for2d(kC, VB, [&](int i, int j) { XT[i * L.ldvb_t + j] = from_f<T>(X[i * L.ldvb_f + j]); });
    __syncthreads();
    store_tile_t<T>(static_cast<T*>(p.dX) + cidx * kC * V + vb * VB, V, XT, L.ldvb_t, kC, VB, kC);
    mm<T, true, false>(S, L.ldvb_f, wS, L.ldk, XT, L.ldvb_t, K, VB, kC, true, -1.f);
    __syncthreads();
  }
  for (int e = tid; e < K * VB; e += kThreads) {
    int i = e / VB, j = e % VB;
    p.dh0[state0 + (int64_t)i * V + j] = S[i * L.ldvb_f + j];
  }
}

template <class T, int VB>
void run_scan(const Params& p, cudaStream_t s) {
  const int64_t blocks = (int64_t)p.B * p.H * (p.V / VB);
  launch_checked(bwd_scan_kernel<T, VB>, blocks, kThreads, BScanLayout<T, VB>(p.K).total, s, p, "gdr backward scan");
}

template <class T>
void pick_vb(const Params& p, cudaStream_t s) {
  if (smem_scan_width(p) == 32) return run_scan<T, 32>(p, s);
  return run_scan<T, 16>(p, s);
}

}  // namespace

void launch_bwd_scan(DType dt, const Params& p, cudaStream_t s) {
  if (launch_scan_mma(dt, p, s, true)) return;
  switch (dt) {
    case kF32: return pick_vb<float>(p, s);
    case kF16: return pick_vb<__half>(p, s);
    case kBF16: return pick_vb<__nv_bfloat16>(p, s);
  }
  TORCH_CHECK(false, "gdr: unsupported dtype");
}

}  // namespace gdr
}  // namespace engram
