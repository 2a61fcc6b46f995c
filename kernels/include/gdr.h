// Host-side interface of the chunked gated-delta-rule kernels (gdr_*.cu), used by gdr_op.cpp.
//
// Shapes: q,k [B,T,H,K], v [B,T,H,V] (one dtype T: fp32, fp16 or bf16), g and beta [B,T,H]
// fp32, h0/ht [B,H,K,V] fp32. Per-chunk intermediates live in a [B,H,NT,...] layout with the
// tail chunk zero-padded to C = 64 rows, so that only the stages reading or writing the user's
// [B,T,H,*] tensors need to know about tails. All offsets are 64-bit.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace engram {
namespace gdr {

enum DType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

struct Params {
  int B = 0, T = 0, H = 0, K = 0, V = 0, NT = 0;
  float scale = 1.f;
  // user tensors
  const void *q = nullptr, *k = nullptr, *v = nullptr;  // T
  const float *g = nullptr, *beta = nullptr;            // [B,T,H] fp32
  const float* h0 = nullptr;                            // [B,H,K,V] fp32 or null
  void* o = nullptr;                                    // T [B,T,H,V]
  float* ht = nullptr;                                  // [B,H,K,V] fp32, or null: not stored
  // per-chunk intermediates
  float* gc = nullptr;    // [B,H,NT,C]    chunk-local cumulative log decay
  float* A = nullptr;     // [B,H,NT,C,C]  (I + L)^-1, saved for the backward (null: A16 or not saved)
  void* A16 = nullptr;    // T [B,H,NT,C,C] the same rounded to T, where both register chunk stages run
  void* Aqk = nullptr;    // T [B,H,NT,C,C] tril(Q K^T * decay), diagonal included
  void* w = nullptr;      // T [B,H,NT,C,K]  A (beta exp(G) K)
  void* u = nullptr;      // T [B,H,NT,C,V]  A (beta V)
  void* kt = nullptr;     // T [B,H,NT,C,K]  K exp(G_last - G): the state update's keys (null: not made)
  void* qg = nullptr;     // T [B,H,NT,C,K]  Q exp(G): the state read's queries (null: not made)
  void* h = nullptr;      // T [B,H,NT,K,V]  state entering each chunk (saved for backward)
  void* X = nullptr;      // T [B,H,NT,C,V]  v_new = u - w S (saved for backward)
  bool save = false;      // forward scan stores h and X
  // backward
  const void* dO = nullptr;    // T [B,T,H,V]
  const float* dht = nullptr;  // [B,H,K,V] or null
  void* dh = nullptr;          // T [B,H,NT,K,V] gradient w.r.t. the state leaving each chunk
  void* dX = nullptr;          // T [B,H,NT,C,V]
  float* dh0 = nullptr;        // [B,H,K,V]
  void *dq = nullptr, *dk = nullptr, *dv = nullptr;  // T, user layout
  float *dbeta = nullptr, *dg = nullptr;             // [B,T,H]
};

// Each throws (c10::Error) on an unsupported shape or a failed launch.
void launch_prep(DType dt, const Params& p, cudaStream_t s);      // gc, A, Aqk, w, u
void launch_fwd_scan(DType dt, const Params& p, cudaStream_t s);  // o, ht (+ h, X when save)
void launch_bwd_scan(DType dt, const Params& p, cudaStream_t s);  // dh, dX, dh0
void launch_bwd_grad(DType dt, const Params& p, cudaStream_t s);  // dq, dk, dv, dbeta, dg
// The register-resident scans (gdr_scan_mma.cu) for 16-bit inputs with K in {64, 128}; false
// when they do not apply (the shared-memory scans run instead). ENGRAM_GDR_SCAN=smem disables them.
bool launch_scan_mma(DType dt, const Params& p, cudaStream_t s, bool bwd);
// Whether the register scans run for this problem (both directions). They read the user's q and
// k, so the forward allocates kt and qg (and prep writes them) only when this is false.
bool scan_mma_applies(DType dt, const Params& p);
// The scans with warpgroup products and TMA loads (gdr_scan_wg.cu): 16-bit inputs, K in
// {64, 128}, V a multiple of 64, on sm_90. launch_scan_mma runs them first; ENGRAM_GDR_SCAN=mma
// (or smem) disables them.
bool scan_wg_applies(DType dt, const Params& p);
bool launch_scan_wg(DType dt, const Params& p, cudaStream_t s, bool bwd);
// The forward fused into one kernel (gdr_fwd_fused.cu): 16-bit inputs, K in {64, 128}, V a
// multiple of 128, on sm_90, when there are at least 3/4 as many (batch, head, 128 columns) as
// SMs. With p.save it writes gc, A16, Aqk, w, h and X (what the backward reads; A16 only, so
// only where chunk_mma_applies). ENGRAM_GDR_FUSED=0|1 disables or forces it; the knobs that
// disable the wgmma scans or the register prep disable it too.
bool fwd_fused_applies(DType dt, const Params& p);
void launch_fwd_fused(DType dt, const Params& p, cudaStream_t s);  // o, ht (+ saved); only where it applies
// The register-resident gradient stage (gdr_grad_mma.cu) for 16-bit inputs with K, V in {64, 128};
// false when it does not apply (gdr_bwd_grad.cu runs instead). ENGRAM_GDR_GRAD=smem disables it.
bool launch_bwd_grad_mma(DType dt, const Params& p, cudaStream_t s);
// The gradient stage with warpgroup products (gdr_grad_wg.cu): 16-bit inputs, K in {64, 128},
// V = 128, A saved in T, sm_90; false when it does not apply. ENGRAM_GDR_GRAD=mma (or smem)
// disables it.
bool launch_bwd_grad_wg(DType dt, const Params& p, cudaStream_t s);
// The register-resident prep stage (gdr_prep_mma.cu), same conditions; ENGRAM_GDR_PREP=smem disables it.
bool launch_prep_mma(DType dt, const Params& p, cudaStream_t s);
// Whether both register per-chunk stages (prep and gradients) run: then A is saved for the
// backward in the input type (the gradient kernel rounds it to T anyway), half the bytes of fp32.
bool chunk_mma_applies(DType dt, const Params& p);

}  // namespace gdr
}  // namespace engram
