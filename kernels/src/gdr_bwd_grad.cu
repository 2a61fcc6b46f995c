// Backward stage 2: all input gradients, one block per (batch, head, chunk), fully parallel.
// Inputs per chunk: q, k, v, dO (user layout), X = v_new, dX, h (state entering), dh (gradient
// of the state leaving), A, G, beta. With S0 = h, dSC = dh, M_ij = exp(G_i - G_j) (j <= i),
// K~ = K exp(G_last - G), W = A (beta exp(G) K), dW = -dX S0^T, P = scale M * (dO X^T):
//   dQ = scale exp(G) (dO S0^T) + P K
//   dK = P^T Q + exp(G_last - G) (X dSC^T) + beta exp(G) A^T dW + R K + R^T K
//   dV = beta A^T dX,  dA = dW (beta exp(G) K)^T + dX (beta V)^T,  dL = -A^T dA A^T,
//   R = strict-lower(dL * beta_i exp(G_i - G_j)),
// and dG collects every place G appears (the decays in P, L, W, K~, exp(G) Q S0 and
// exp(G_last) S0), then dg is its reverse cumulative sum inside the chunk.
// Phase 1 loops over V in tiles of VT and accumulates every product that contracts over V.
#include <c10/util/Exception.h>
#include <c10/cuda/CUDAException.h>
#include "gdr.h"
#include "gdr_common.cuh"

namespace engram {
namespace gdr {
namespace {

template <class T>
struct GradLayout {
  static constexpr int VT = sizeof(T) == 4 ? 16 : 32;
  size_t DOS, DXS, XDS, DOX, DXV, AT, vec, work, total;
  // phase 1 (inside work)
  size_t doT, xT, dxT, vT, s0T, dsT, tmp;
  // phase 2 (inside work)
  size_t qS, kS, W1;
  int ldk_f, ldc_f, ldat, ldvt_t, ldvt_f, ldk_t;
  __host__ __device__ GradLayout(int K) {
    const int pt = Pad<T>::t, pf = Pad<T>::f;
    ldk_f = K + pf; ldc_f = kC + pf; ldat = kC + pt; ldvt_t = VT + pt; ldvt_f = VT + pf; ldk_t = K + pt;
    SmemPlan s;
    DOS = s.take(sizeof(float) * kC * ldk_f);
    DXS = s.take(sizeof(float) * kC * ldk_f);
    XDS = s.take(sizeof(float) * kC * ldk_f);
    DOX = s.take(sizeof(float) * kC * ldc_f);
    DXV = s.take(sizeof(float) * kC * ldc_f);
    AT = s.take(sizeof(T) * kC * ldat);
    vec = s.take(sizeof(float) * (9 * kC + 32));
    SmemPlan p1;
    doT = p1.take(sizeof(T) * kC * ldvt_t);
    xT = p1.take(sizeof(T) * kC * ldvt_t);
    dxT = p1.take(sizeof(T) * kC * ldvt_t);
    vT = p1.take(sizeof(T) * kC * ldvt_t);
    s0T = p1.take(sizeof(T) * K * ldvt_t);
    dsT = p1.take(sizeof(T) * K * ldvt_t);
    tmp = p1.take(sizeof(float) * kC * ldvt_f);
    SmemPlan p2;
    // qS is reused as a C x C tile (tT) late in phase 2: for K < C it must hold that too
    qS = p2.take(sizeof(T) * kC * (ldk_t > ldat ? ldk_t : ldat));
    kS = p2.take(sizeof(T) * kC * ldk_t);
    W1 = p2.take(sizeof(float) * kC * ldc_f);
    work = s.take(p1.off > p2.off ? p1.off : p2.off);
    total = s.off;
  }
};

template <class T>
__device__ __forceinline__ void to_t(T* dst, int ldd, const float* src, int lds, int rows, int cols, float alpha) {
  for2d(rows, cols, [&](int i, int j) { dst[i * ldd + j] = from_f<T>(alpha * src[i * lds + j]); });
}

template <class T>
__global__ void __launch_bounds__(kThreads, 1) bwd_grad_kernel(Params p) {
  extern __shared__ __align__(128) unsigned char smem[];
  using Lay = GradLayout<T>;
  constexpr int VT = Lay::VT;
  const int K = p.K, V = p.V, H = p.H;
  const ChunkBlock cb(p);
  const int Lc = cb.Lc;
  const int64_t row0 = cb.row0, cidx = cb.cidx;
  Lay L(K);
  float* DOS = reinterpret_cast<float*>(smem + L.DOS);
  float* DXS = reinterpret_cast<float*>(smem + L.DXS);
  float* XDS = reinterpret_cast<float*>(smem + L.XDS);
  float* DOX = reinterpret_cast<float*>(smem + L.DOX);
  float* DXV = reinterpret_cast<float*>(smem + L.DXV);
  T* AT = reinterpret_cast<T*>(smem + L.AT);
  float* gS = reinterpret_cast<float*>(smem + L.vec);
  float* bS = gS + kC;
  float* dG = bS + kC;
  float* dB = dG + kC;
  float* cS = dB + kC;  // c_j = exp(G_last - G_j) k_j . (X dSC^T)_j
  float* eS = cS + kC;  // k_i . (A^T dW)_i
  float* colZ = eS + kC;  // column sums of Z (the decay share of P)
  float* rowE = colZ + kC;
  float* colE = rowE + kC;  // beta-weighted column sums of E (the decay share of dL)
  float* misc = colE + kC;
  unsigned char* work = smem + L.work;
  const int tid = threadIdx.x;

  // ---- phase 0: A (as T), G, beta
  const float* Ag = p.A + cidx * kC * kC;
  for2d(kC, kC, [&](int i, int j) { AT[i * L.ldat + j] = from_f<T>(Ag[i * kC + j]); });
  if (tid < kC) {
    gS[tid] = p.gc[cidx * kC + tid];
    bS[tid] = tid < Lc ? p.beta[row0 + (int64_t)tid * H] : 0.f;
    dG[tid] = 0.f; dB[tid] = 0.f; cS[tid] = 0.f; eS[tid] = 0.f; rowE[tid] = 0.f;
  }
  if (tid < 32) misc[tid] = 0.f;
  __syncthreads();
  const float gl = gS[kC - 1];
  const float Gam = __expf(gl);

  // ---- phase 1: products that contract over V
  {
    T* doT = reinterpret_cast<T*>(work + L.doT);
    T* xT = reinterpret_cast<T*>(work + L.xT);
    T* dxT = reinterpret_cast<T*>(work + L.dxT);
    T* vT = reinterpret_cast<T*>(work + L.vT);
    T* s0T = reinterpret_cast<T*>(work + L.s0T);
    T* dsT = reinterpret_cast<T*>(work + L.dsT);
    float* tmp = reinterpret_cast<float*>(work + L.tmp);
    float frob = 0.f;
    for (int v0 = 0; v0 < V; v0 += VT) {
      load_tile_async(doT, L.ldvt_t, static_cast<const T*>(p.dO) + row0 * V + v0, (int64_t)H * V, kC, VT, Lc);
      load_tile_async(vT, L.ldvt_t, static_cast<const T*>(p.v) + row0 * V + v0, (int64_t)H * V, kC, VT, Lc);
      load_tile_async(xT, L.ldvt_t, static_cast<const T*>(p.X) + cidx * kC * V + v0, V, kC, VT, kC);
      load_tile_async(dxT, L.ldvt_t, static_cast<const T*>(p.dX) + cidx * kC * V + v0, V, kC, VT, kC);
      load_tile_async(s0T, L.ldvt_t, static_cast<const T*>(p.h) + cidx * K * V + v0, V, K, VT, K);
      load_tile_async(dsT, L.ldvt_t, static_cast<const T*>(p.dh) + cidx * K * V + v0, V, K, VT, K);
      cp_commit();
      cp_wait<0>();
      __syncthreads();
      const bool acc = v0 > 0;
      mm<T, false, true>(DOS, L.ldk_f, doT, L.ldvt_t, s0T, L.ldvt_t, kC, K, VT, acc);
      mm<T, false, true>(DXS, L.ldk_f, dxT, L.ldvt_t, s0T, L.ldvt_t, kC, K, VT, acc);
      mm<T, false, true>(XDS, L.ldk_f, xT, L.ldvt_t, dsT, L.ldvt_t, kC, K, VT, acc);
      mm<T, false, true>(DOX, L.ldc_f, doT, L.ldvt_t, xT, L.ldvt_t, kC, kC, VT, acc);
      mm<T, false, true>(DXV, L.ldc_f, dxT, L.ldvt_t, vT, L.ldvt_t, kC, kC, VT, acc);
      mm<T, true, false>(tmp, L.ldvt_f, AT, L.ldat, dxT, L.ldvt_t, kC, VT, kC);  // A^T dX
      for2d(K, VT, [&](int i, int j) {
        frob += to_f(s0T[i * L.ldvt_t + j]) * to_f(dsT[i * L.ldvt_t + j]);
      });
      __syncthreads();
      store_tile<T>(static_cast<T*>(p.dv) + row0 * V + v0, (int64_t)H * V, tmp, L.ldvt_f, kC, VT, Lc, 1.f, bS);
      row_dot_add(dB, vT, L.ldvt_t, tmp, L.ldvt_f, kC, VT, [](int) { return 1.f; });
      __syncthreads();
    }
#pragma unroll
    for (int o = 16; o; o >>= 1) frob += __shfl_xor_sync(0xffffffffu, frob, o);
    if ((tid & 31) == 0) atomicAdd(&misc[0], frob);
  }

  // ---- phase 2
  T* qS = reinterpret_cast<T*>(work + L.qS);
  T* kS = reinterpret_cast<T*>(work + L.kS);
  float* W1 = reinterpret_cast<float*>(work + L.W1);
  load_tile_async(qS, L.ldk_t, static_cast<const T*>(p.q) + row0 * K, (int64_t)H * K, kC, K, Lc);
  load_tile_async(kS, L.ldk_t, static_cast<const T*>(p.k) + row0 * K, (int64_t)H * K, kC, K, Lc);
  cp_commit();
  cp_wait<0>();
  __syncthreads();
  mm<T, false, true>(W1, L.ldc_f, qS, L.ldk_t, kS, L.ldk_t, kC, kC, K);  // Q K^T
  for2d(kC, K, [&](int i, int j) {  // scale exp(G) dO S0^T
    DOS[i * L.ldk_f + j] *= p.scale * __expf(gS[i]);
  });
  __syncthreads();
  for2d(kC, kC, [&](int i, int j) {
    float m = j <= i ? __expf(gS[i] - gS[j]) : 0.f;
    float pm = p.scale * m * DOX[i * L.ldc_f + j];
    W1[i * L.ldc_f + j] *= pm;  // Z_ij: the decay's share of the gradient
    DOX[i * L.ldc_f + j] = pm;
    DXV[i * L.ldc_f + j] *= bS[j];
  });
  row_dot_add(dG, qS, L.ldk_t, DOS, L.ldk_f, kC, K, [](int) { return 1.f; });
  row_dot_add(cS, kS, L.ldk_t, XDS, L.ldk_f, kC, K, [&](int j) { return __expf(gl - gS[j]); });
  __syncthreads();
  row_sum_add(dG, W1, L.ldc_f, kC, kC);
  col_sum(colZ, W1, L.ldc_f, kC, kC, [](int) { return 1.f; });
  for2d(kC, K, [&](int i, int j) {
    XDS[i * L.ldk_f + j] *= __expf(gl - gS[i]);
  });
  __syncthreads();
  T* PmT = reinterpret_cast<T*>(W1);
  to_t(PmT, L.ldat, DOX, L.ldc_f, kC, kC, 1.f);
  __syncthreads();
  mm<T>(DOS, L.ldk_f, PmT, L.ldat, kS, L.ldk_t, kC, K, kC, true);                 // dQ
  mm<T, true, false>(XDS, L.ldk_f, PmT, L.ldat, qS, L.ldk_t, kC, K, kC, true);    // dK += P^T Q
  __syncthreads();
  store_tile<T>(static_cast<T*>(p.dq) + row0 * K, (int64_t)H * K, DOS, L.ldk_f, kC, K, Lc);
  T* NDW = qS;  // q is done
  to_t(NDW, L.ldk_t, DXS, L.ldk_f, kC, K, -1.f);
  __syncthreads();
  float* AtdW = DOS;
  mm<T, true, false>(AtdW, L.ldk_f, AT, L.ldat, NDW, L.ldk_t, kC, K, kC);
  __syncthreads();
  row_dot_add(eS, kS, L.ldk_t, AtdW, L.ldk_f, kC, K, [](int) { return 1.f; });
  for2d(kC, K, [&](int i, int j) {
    XDS[i * L.ldk_f + j] += bS[i] * __expf(gS[i]) * AtdW[i * L.ldk_f + j];
  });
  __syncthreads();
  T* BGK = reinterpret_cast<T*>(DOS);
  for2d(kC, K, [&](int i, int j) {
    BGK[i * L.ldk_t + j] = from_f<T>(to_f(kS[i * L.ldk_t + j]) * bS[i] * __expf(gS[i]));
  });
  __syncthreads();
  mm<T, false, true>(DXV, L.ldc_f, NDW, L.ldk_t, BGK, L.ldk_t, kC, kC, K, true);  // dA
  __syncthreads();
  T* dAT = reinterpret_cast<T*>(DOX);
  to_t(dAT, L.ldat, DXV, L.ldc_f, kC, kC, 1.f);
  __syncthreads();
  mm<T, true, false>(W1, L.ldc_f, AT, L.ldat, dAT, L.ldat, kC, kC, kC);  // A^T dA
  __syncthreads();
  T* tT = qS;
  to_t(tT, L.ldat, W1, L.ldc_f, kC, kC, 1.f);
  __syncthreads();
  mm<T, false, true>(DXV, L.ldc_f, tT, L.ldat, AT, L.ldat, kC, kC, kC, false, -1.f);  // dL
  mm<T, false, true>(W1, L.ldc_f, kS, L.ldk_t, kS, L.ldk_t, kC, kC, K);                // K K^T
  __syncthreads();
  T* RT = reinterpret_cast<T*>(DOX);
  for2d(kC, kC, [&](int i, int j) {
    float E = 0.f, R = 0.f;
    if (j < i) {
      float d = __expf(gS[i] - gS[j]);
      float dl = DXV[i * L.ldc_f + j];
      E = dl * d * W1[i * L.ldc_f + j];
      R = dl * bS[i] * d;
    }
    W1[i * L.ldc_f + j] = E;
    RT[i * L.ldat + j] = from_f<T>(R);
  });
  __syncthreads();
  row_sum_add(rowE, W1, L.ldc_f, kC, kC);
  col_sum(colE, W1, L.ldc_f, kC, kC, [&](int i) { return bS[i]; });
  mm<T>(XDS, L.ldk_f, RT, L.ldat, kS, L.ldk_t, kC, K, kC, true);
  mm<T, true, false>(XDS, L.ldk_f, RT, L.ldat, kS, L.ldk_t, kC, K, kC, true);
  __syncthreads();
  store_tile<T>(static_cast<T*>(p.dk) + row0 * K, (int64_t)H * K, XDS, L.ldk_f, kC, K, Lc);
  if (tid < kC) {
    const float ga = __expf(gS[tid]);
    dB[tid] += rowE[tid] + ga * eS[tid];
    dG[tid] += bS[tid] * rowE[tid] - colE[tid] + bS[tid] * ga * eS[tid] - cS[tid] - colZ[tid];
  }
  __syncthreads();
  if (tid == 0) {
    float csum = 0.f;
    for (int j = 0; j < kC; ++j) csum += cS[j];
    dG[Lc - 1] += Gam * misc[0] + csum;
    float run = 0.f;
    for (int i = Lc - 1; i >= 0; --i) {
      run += dG[i];
      dG[i] = run;
    }
  }
  __syncthreads();
  if (tid < Lc) {
    p.dg[row0 + (int64_t)tid * H] = dG[tid];
    p.dbeta[row0 + (int64_t)tid * H] = dB[tid];
  }
}

template <class T>
void run_grad(const Params& p, cudaStream_t s) {
  TORCH_CHECK(p.A != nullptr, "gdr backward: A was saved in 16 bits for the register gradient kernel; "
              "set ENGRAM_GDR_GRAD=smem before the forward, not between forward and backward");
  TORCH_CHECK(p.V % GradLayout<T>::VT == 0, "gdr backward: V must be a multiple of ", GradLayout<T>::VT);
  launch_checked(bwd_grad_kernel<T>, (int64_t)p.B * p.H * p.NT, kThreads, GradLayout<T>(p.K).total, s, p,
                 "gdr backward");
}

}  // namespace

void launch_bwd_grad(DType dt, const Params& p, cudaStream_t s) {
  if (launch_bwd_grad_wg(dt, p, s) || launch_bwd_grad_mma(dt, p, s)) return;
  switch (dt) {
    case kF32: return run_grad<float>(p, s);
    case kF16: return run_grad<__half>(p, s);
    case kBF16: return run_grad<__nv_bfloat16>(p, s);
  }
  TORCH_CHECK(false, "gdr: unsupported dtype");
}

}  // namespace gdr
}  // namespace engram
