// Stage 2 of the forward: the sequential pass over chunks, one block per (batch, head, V-block).
// The fp32 state slice S [K x VB] never leaves shared memory; per chunk, with qg = exp(G) Q and
// kt = exp(G_last - G) K from the prep stage:
//   X = u - w S,  O = scale [qg S + Aqk X],  S <- exp(G_last) S + kt^T X.
// The next chunk's tiles are prefetched with cp.async while this one is computed (16-bit types).
#include <c10/util/Exception.h>
#include <c10/cuda/CUDAException.h>
#include <cstdlib>
#include "gdr.h"
#include "gdr_common.cuh"

namespace engram {
namespace gdr {
namespace {

template <class T, int VB>
struct ScanLayout {
  static constexpr int NBUF = sizeof(T) == 4 ? 1 : 2;
  size_t S, ST, buf0, bufsz, X, XT, O, total;
  size_t q, k, w, u, a, g;  // offsets inside one buffer
  int ldk, ldvb_f, ldvb_t, lda;
  __host__ __device__ ScanLayout(int K) {
    const int pt = Pad<T>::t, pf = Pad<T>::f;
    ldk = K + pt; ldvb_f = VB + pf; ldvb_t = VB + pt; lda = kC + pt;
    SmemPlan in;
    q = in.take(sizeof(T) * kC * ldk);
    k = in.take(sizeof(T) * kC * ldk);
    w = in.take(sizeof(T) * kC * ldk);
    u = in.take(sizeof(T) * kC * ldvb_t);
    a = in.take(sizeof(T) * kC * lda);
    g = in.take(sizeof(float) * kC);
    SmemPlan s;
    S = s.take(sizeof(float) * K * ldvb_f);
    ST = s.take(sizeof(T) * K * ldvb_t);
    bufsz = (in.off + 127) / 128 * 128;
    buf0 = s.take(bufsz * NBUF);
    X = s.take(sizeof(float) * kC * ldvb_f);
    XT = s.take(sizeof(T) * kC * ldvb_t);
    O = s.take(sizeof(float) * kC * ldvb_f);
    total = s.off;
  }
};

template <class T, int VB>
__device__ __forceinline__ void fetch_chunk(const Params& p, const ScanLayout<T, VB>& L, unsigned char* buf,
                                            int64_t b, int hh, int64_t bh, int vb, int c) {
  // every tile comes from the prep stage's chunk layout (already zero-padded)
  const int K = p.K, V = p.V;
  const int64_t cidx = bh * p.NT + c;
  load_tile_async(reinterpret_cast<T*>(buf + L.q), L.ldk, static_cast<const T*>(p.qg) + cidx * kC * K, K, kC, K, kC);
  load_tile_async(reinterpret_cast<T*>(buf + L.k), L.ldk, static_cast<const T*>(p.kt) + cidx * kC * K, K, kC, K, kC);
  load_tile_async(reinterpret_cast<T*>(buf + L.w), L.ldk, static_cast<const T*>(p.w) + cidx * kC * K, K, kC, K, kC);
  load_tile_async(reinterpret_cast<T*>(buf + L.u), L.ldvb_t, static_cast<const T*>(p.u) + cidx * kC * V + vb * VB, V,
                  kC, VB, kC);
  load_tile_async(reinterpret_cast<T*>(buf + L.a), L.lda, static_cast<const T*>(p.Aqk) + cidx * kC * kC, kC, kC, kC,
                  kC);
  load_tile_async(reinterpret_cast<float*>(buf + L.g), kC, p.gc + cidx * kC, kC, 1, kC, 1);
}

template <class T, int VB>
__global__ void __launch_bounds__(kThreads, 1) fwd_scan_kernel(Params p) {
  extern __shared__ __align__(128) unsigned char smem[];
  using Lay = ScanLayout<T, VB>;
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
  float* O = reinterpret_cast<float*>(smem + L.O);
  const int tid = threadIdx.x;
  const int64_t state0 = bh * K * V + vb * VB;  // (b, hh, 0, vb*VB) in [B,H,K,V]
  for (int e = tid; e < K * VB; e += kThreads) {
    int i = e / VB, j = e % VB;
    S[i * L.ldvb_f + j] = p.h0 ? p.h0[state0 + (int64_t)i * V + j] : 0.f;
  }
  fetch_chunk<T, VB>(p, L, smem + L.buf0, b, hh, bh, vb, 0);
  cp_commit();
  for (int c = 0; c < NT; ++c) {
    unsigned char* cur = smem + L.buf0 + (Lay::NBUF == 2 ? (c & 1) : 0) * L.bufsz;
    if (Lay::NBUF == 2 && c + 1 < NT) {
      fetch_chunk<T, VB>(p, L, smem + L.buf0 + ((c + 1) & 1) * L.bufsz, b, hh, bh, vb, c + 1);
      cp_commit();
      cp_wait<1>();
    } else {
      if (Lay::NBUF == 1 && c > 0) {  // single buffer: the previous chunk is done with it
        fetch_chunk<T, VB>(p, L, cur, b, hh, bh, vb, c);
        cp_commit();
      }
      cp_wait<0>();
    }
    __syncthreads();
    T* qS = reinterpret_cast<T*>(cur + L.q);
    T* kS = reinterpret_cast<T*>(cur + L.k);
    T* wS = reinterpret_cast<T*>(cur + L.w);
    T* uS = reinterpret_cast<T*>(cur + L.u);
    T* aS = reinterpret_cast<T*>(cur + L.a);
    float* gS = reinterpret_cast<float*>(cur + L.g);
    const float Gam = __expf(gS[kC - 1]);  // padded rows carry no decay: the last real row's G
    const int t0 = c * kC, Lc = min(kC, p.T - t0);
    const int64_t cidx = bh * NT + c;
    // ST = S (operand copy), S <- Gam S, K~ = K exp(G_last - G)
    for2d(K, VB, [&](int i, int j) {
      float s = S[i * L.ldvb_f + j];
      ST[i * L.ldvb_t + j] = from_f<T>(s);
      S[i * L.ldvb_f + j] = Gam * s;
    });
    __syncthreads();
    if (p.save) store_tile_t<T>(static_cast<T*>(p.h) + cidx * K * V + vb * VB, V, ST, L.ldvb_t, K, VB, K);
    mm<T>(X, L.ldvb_f, wS, L.ldk, ST, L.ldvb_t, kC, VB, K);
    mm<T>(O, L.ldvb_f, qS, L.ldk, ST, L.ldvb_t, kC, VB, K, false, 1.f, (kC / 16) * (VB / 16));  // other warps
    __syncthreads();
    for2d(kC, VB, [&](int i, int j) {
      XT[i * L.ldvb_t + j] = from_f<T>(to_f(uS[i * L.ldvb_t + j]) - X[i * L.ldvb_f + j]);
    });
    __syncthreads();
    if (p.save) store_tile_t<T>(static_cast<T*>(p.X) + cidx * kC * V + vb * VB, V, XT, L.ldvb_t, kC, VB, kC);
    mm<T>(O, L.ldvb_f, aS, L.lda, XT, L.ldvb_t, kC, VB, kC, true);
    mm<T, true, false>(S, L.ldvb_f, kS, L.ldk, XT, L.ldvb_t, K, VB, kC, true);
    __syncthreads();
    store_tile<T>(static_cast<T*>(p.o) + ((b * p.T + t0) * H + hh) * V + vb * VB, (int64_t)H * V, O, L.ldvb_f, kC,
                  VB, Lc, p.scale);
    // the next iteration's first barrier orders these reads of O before it is overwritten
  }
  __syncthreads();
  if (p.ht == nullptr) return;  // no final state asked for
  for (int e = tid; e < K * VB; e += kThreads) {
    int i = e / VB, j = e % VB;
    p.ht[state0 + (int64_t)i * V + j] = S[i * L.ldvb_f + j];
  }
}

template <class T, int VB>
void run_scan(const Params& p, cudaStream_t s) {
  const int64_t blocks = (int64_t)p.B * p.H * (p.V / VB);
  launch_checked(fwd_scan_kernel<T, VB>, blocks, kThreads, ScanLayout<T, VB>(p.K).total, s, p, "gdr forward scan");
}

template <class T>
void pick_vb(const Params& p, cudaStream_t s) {
  if (smem_scan_width(p) == 32) return run_scan<T, 32>(p, s);
  return run_scan<T, 16>(p, s);
}

}  // namespace

void launch_fwd_scan(DType dt, const Params& p, cudaStream_t s) {
  if (launch_scan_mma(dt, p, s, false)) return;
  switch (dt) {
    case kF32: return pick_vb<float>(p, s);
    case kF16: return pick_vb<__half>(p, s);
    case kBF16: return pick_vb<__nv_bfloat16>(p, s);
  }
  TORCH_CHECK(false, "gdr: unsupported dtype");
}

}  // namespace gdr
}  // namespace engram
