// Stage 1 of the chunked gated delta rule: per (batch, head, chunk), fully parallel.
// Chunk-local cumulative log decay G, L = strictly-lower(beta_i exp(G_i - G_j) k_i.k_j),
// A = (I + L)^-1 (blocked forward substitution in fp32), w = A (beta exp(G) K),
// u = A (beta V), and Aqk = tril(Q K^T * exp(G_i - G_j)) for the output stage.
#include <c10/util/Exception.h>
#include <c10/cuda/CUDAException.h>
#include "gdr.h"
#include "gdr_common.cuh"

namespace engram {
namespace gdr {
namespace {

template <class T>
struct PrepLayout {
  size_t k, q, v, ff, at, g, b, tri, total;
  int ldk, ldv, ldf, ldo, ldat;
  __host__ __device__ PrepLayout(int K, int V) {
    const int pt = Pad<T>::t, pf = Pad<T>::f;
    ldk = K + pt; ldv = V + pt; ldf = kC + pf; ldat = kC + pt;
    ldo = (K > V ? K : V) + pf;
    SmemPlan s;
    k = s.take(sizeof(T) * kC * ldk);
    q = s.take(sizeof(T) * kC * ldk);
    v = s.take(sizeof(T) * kC * ldv);
    size_t two = 2 * sizeof(float) * kC * ldf, out = sizeof(float) * kC * ldo;
    ff = s.take(two > out ? two : out);  // F1 | F2, later the fp32 product w or u
    at = s.take(sizeof(T) * kC * ldat);
    g = s.take(sizeof(float) * kC);
    b = s.take(sizeof(float) * 2 * kC);  // beta, then beta exp(G)
    tri = s.take(sizeof(float) * 3 * 256);
    total = s.off;
  }
};

template <class T>
__global__ void __launch_bounds__(kThreads) prep_kernel(Params p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int K = p.K, V = p.V, H = p.H;
  const ChunkBlock cb(p);
  const int Lc = cb.Lc;
  const int64_t row0 = cb.row0, cidx = cb.cidx;
  PrepLayout<T> L(K, V);
  T* kS = reinterpret_cast<T*>(smem + L.k);
  T* qS = reinterpret_cast<T*>(smem + L.q);
  T* vS = reinterpret_cast<T*>(smem + L.v);
  float* F1 = reinterpret_cast<float*>(smem + L.ff);
  float* F2 = F1 + kC * L.ldf;
  float* OUT = F1;
  T* AT = reinterpret_cast<T*>(smem + L.at);
  float* gS = reinterpret_cast<float*>(smem + L.g);
  float* bS = reinterpret_cast<float*>(smem + L.b);
  float* tri = reinterpret_cast<float*>(smem + L.tri);
  const int tid = threadIdx.x;

  load_tile_async(kS, L.ldk, static_cast<const T*>(p.k) + row0 * K, (int64_t)H * K, kC, K, Lc);
  load_tile_async(qS, L.ldk, static_cast<const T*>(p.q) + row0 * K, (int64_t)H * K, kC, K, Lc);
  load_tile_async(vS, L.ldv, static_cast<const T*>(p.v) + row0 * V, (int64_t)H * V, kC, V, Lc);
  cp_commit();
  if (tid < kC) {
    bool ok = tid < Lc;
    gS[tid] = ok ? p.g[row0 + (int64_t)tid * H] : 0.f;  // padded rows: no decay, no write
    bS[tid] = ok ? p.beta[row0 + (int64_t)tid * H] : 0.f;
  }
  __syncthreads();
  if (tid < 32) {  // inclusive scan of 64 values in one warp
    float a = gS[2 * tid], s2 = a + gS[2 * tid + 1];
    float x = s2;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      float y = __shfl_up_sync(0xffffffffu, x, o);
      if (tid >= o) x += y;
    }
    float excl = x - s2;
    gS[2 * tid] = excl + a;
    gS[2 * tid + 1] = x;
  }
  cp_wait<0>();
  __syncthreads();
  if (tid < kC) p.gc[cidx * kC + tid] = gS[tid];
  mm<T, false, true>(F1, L.ldf, kS, L.ldk, kS, L.ldk, kC, kC, K);  // K K^T
  mm<T, false, true>(F2, L.ldf, qS, L.ldk, kS, L.ldk, kC, kC, K);  // Q K^T
  __syncthreads();
  T* aqk = static_cast<T*>(p.Aqk) + cidx * kC * kC;
  for2d(kC, kC, [&](int i, int j) {
    float d = j <= i ? __expf(gS[i] - gS[j]) : 0.f;
    F1[i * L.ldf + j] = j < i ? bS[i] * d * F1[i * L.ldf + j] : 0.f;
    aqk[i * kC + j] = from_f<T>(F2[i * L.ldf + j] * d);
  });
  if (p.kt != nullptr) store_decayed_kq(p, kS, qS, L.ldk, K, gS, cidx);
  __syncthreads();
  invert_unit_lower(F1, F2, L.ldf, tri);  // A = (I + L)^-1 into F2
  float* Ag = p.A + cidx * kC * kC;
  for2d(kC, kC, [&](int i, int j) {
    float a = F2[i * L.ldf + j];
    if (p.save) Ag[i * kC + j] = a;  // only the backward reads A
    AT[i * L.ldat + j] = from_f<T>(a);
  });
  if (tid < kC) bS[tid + kC] = bS[tid] * __expf(gS[tid]);  // beta exp(G), one exp per row
  __syncthreads();
  for2d(kC, K, [&](int i, int j) { kS[i * L.ldk + j] = from_f<T>(to_f(kS[i * L.ldk + j]) * bS[kC + i]); });
  for2d(kC, V, [&](int i, int j) { vS[i * L.ldv + j] = from_f<T>(to_f(vS[i * L.ldv + j]) * bS[i]); });
  __syncthreads();
  mm<T>(OUT, L.ldo, AT, L.ldat, kS, L.ldk, kC, K, kC);
  __syncthreads();
  store_tile<T>(static_cast<T*>(p.w) + cidx * kC * K, K, OUT, L.ldo, kC, K, kC);
  __syncthreads();
  mm<T>(OUT, L.ldo, AT, L.ldat, vS, L.ldv, kC, V, kC);
  __syncthreads();
  store_tile<T>(static_cast<T*>(p.u) + cidx * kC * V, V, OUT, L.ldo, kC, V, kC);
}

template <class T>
void run_prep(const Params& p, cudaStream_t s) {
  TORCH_CHECK(!p.save || p.A != nullptr, "gdr prep: this stage saves A in fp32; the forward asked for 16 bits");
  launch_checked(prep_kernel<T>, (int64_t)p.B * p.H * p.NT, kThreads, PrepLayout<T>(p.K, p.V).total, s, p, "gdr prep");
}

}  // namespace

void launch_prep(DType dt, const Params& p, cudaStream_t s) {
  if (launch_prep_mma(dt, p, s)) return;
  switch (dt) {
    case kF32: return run_prep<float>(p, s);
    case kF16: return run_prep<__half>(p, s);
    case kBF16: return run_prep<__nv_bfloat16>(p, s);
  }
  TORCH_CHECK(false, "gdr: unsupported dtype");
}

}  // namespace gdr
}  // namespace engram
