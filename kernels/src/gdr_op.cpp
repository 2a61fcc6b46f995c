// The chunked gated delta rule as a differentiable op: input checks, the autograd Function
// with its hand-written backward, the PyTorch dispatcher registration
// (torch.ops.engram.chunk_gated_delta_rule) and the C ABI entry point for engram-core.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/EmptyTensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>
#include <cmath>
#include <optional>
#include <tuple>
#include "engram_abi.h"
#include "gdr.h"

namespace engram {
namespace gdr {
namespace {

using at::Tensor;
constexpr int64_t kChunk = 64;

DType dtype_of(const Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return kF32;
    case at::kHalf: return kF16;
    case at::kBFloat16: return kBF16;
    default: TORCH_CHECK(false, "chunk_gated_delta_rule: q, k, v must be float32, float16 or bfloat16, got ",
                         t.scalar_type());
  }
}

// Contiguous, and 16-byte aligned for the vectorised copies.
Tensor dense(const Tensor& t) {
  Tensor c = t.contiguous();
  if (reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 != 0) c = c.clone();
  return c;
}

struct Shape { int64_t B, T, H, K, V, NT; };

// A new tensor on `like`'s device, straight from the CUDA allocator: at::empty's dispatch took
// about 1.5 of its 3 us on the host, and the event-timed forward pays each one in full.
Tensor alloc(at::IntArrayRef sizes, at::ScalarType dtype, const Tensor& like) {
  return at::detail::empty_cuda(sizes, dtype, like.device(), std::nullopt);
}

Shape check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                   const std::optional<Tensor>& h0, double scale, int64_t chunk) {
  TORCH_CHECK(q.defined() && k.defined() && v.defined() && g.defined() && beta.defined(),
              "chunk_gated_delta_rule: q, k, v, g and beta must be defined");
  TORCH_CHECK(chunk == kChunk, "chunk_gated_delta_rule: the CUDA kernel supports chunk = 64 only, got ", chunk);
  TORCH_CHECK(std::isfinite(scale), "chunk_gated_delta_rule: scale must be finite");
  TORCH_CHECK(q.dim() == 4, "chunk_gated_delta_rule: q must be [B,T,H,K], got ", q.sizes());
  TORCH_CHECK(k.sizes() == q.sizes(), "chunk_gated_delta_rule: k must have q's shape ", q.sizes(), ", got ",
              k.sizes());
  TORCH_CHECK(v.dim() == 4 && v.size(0) == q.size(0) && v.size(1) == q.size(1) && v.size(2) == q.size(2),
              "chunk_gated_delta_rule: v must be [B,T,H,V] with q's B,T,H, got ", v.sizes());
  std::vector<int64_t> bth{q.size(0), q.size(1), q.size(2)};
  TORCH_CHECK(g.sizes() == at::IntArrayRef(bth), "chunk_gated_delta_rule: g must be [B,T,H] = ", bth, ", got ",
              g.sizes());
  TORCH_CHECK(beta.sizes() == at::IntArrayRef(bth), "chunk_gated_delta_rule: beta must be [B,T,H] = ", bth,
              ", got ", beta.sizes());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "chunk_gated_delta_rule: q, k, v must share one dtype, got ", q.scalar_type(), ", ",
              k.scalar_type(), ", ", v.scalar_type());
  dtype_of(q);
  TORCH_CHECK(at::isFloatingType(g.scalar_type()) && at::isFloatingType(beta.scalar_type()),
              "chunk_gated_delta_rule: g and beta must be floating point");
  TORCH_CHECK(q.is_cuda(), "chunk_gated_delta_rule: the kernel needs CUDA tensors, got ", q.device());
  for (const Tensor* t : {&k, &v, &g, &beta})
    TORCH_CHECK(t->device() == q.device(), "chunk_gated_delta_rule: all inputs must be on ", q.device(),
                ", found one on ", t->device());
  Shape s{q.size(0), q.size(1), q.size(2), q.size(3), v.size(3), 0};
  TORCH_CHECK(s.B > 0 && s.T > 0 && s.H > 0, "chunk_gated_delta_rule: empty input ", q.sizes());
  TORCH_CHECK(s.K % 16 == 0 && s.K >= 16 && s.K <= 128,
              "chunk_gated_delta_rule: K must be a multiple of 16 in [16, 128], got ", s.K);
  TORCH_CHECK(s.V % 16 == 0 && s.V >= 16 && s.V <= 512,
              "chunk_gated_delta_rule: V must be a multiple of 16 in [16, 512], got ", s.V);
  if (q.scalar_type() != at::kFloat) {
    TORCH_CHECK(s.V % 32 == 0, "chunk_gated_delta_rule: V must be a multiple of 32 for 16-bit inputs, got ", s.V);
  }
  TORCH_CHECK(s.B * s.T * s.H < (int64_t(1) << 40), "chunk_gated_delta_rule: input too large");
  TORCH_CHECK(s.T <= INT32_MAX - kChunk, "chunk_gated_delta_rule: T too large");
  s.NT = (s.T + kChunk - 1) / kChunk;
  if (h0.has_value() && h0->defined()) {
    TORCH_CHECK(h0->sizes() == at::IntArrayRef({s.B, s.H, s.K, s.V}),
                "chunk_gated_delta_rule: initial state must be [B,H,K,V] = [", s.B, ",", s.H, ",", s.K, ",", s.V,
                "], got ", h0->sizes());
    TORCH_CHECK(h0->device() == q.device(), "chunk_gated_delta_rule: initial state on ", h0->device(),
                ", inputs on ", q.device());
    TORCH_CHECK(at::isFloatingType(h0->scalar_type()), "chunk_gated_delta_rule: initial state must be floating");
  }
  return s;
}

Params base_params(const Shape& s, double scale) {
  Params p;
  p.B = (int)s.B; p.T = (int)s.T; p.H = (int)s.H; p.K = (int)s.K; p.V = (int)s.V; p.NT = (int)s.NT;
  p.scale = (float)scale;
  return p;
}

struct Forward {
  Tensor o, ht, gc, A, Aqk, w, kt, qg, h, X;
};

// q, k, v dense of one dtype; g, beta dense fp32; h0 dense fp32 or undefined. Without `want_ht`
// the kernels skip the final state's store (and ht stays undefined).
Forward run_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                    const Tensor& h0, const Shape& s, double scale, bool save, bool want_ht) {
  const DType dt = dtype_of(q);
  const auto f32 = at::kFloat, tt = q.scalar_type();
  Forward r;
  r.o = alloc({s.B, s.T, s.H, s.V}, tt, q);
  if (want_ht) r.ht = alloc({s.B, s.H, s.K, s.V}, f32, q);
  cudaStream_t st = at::cuda::getCurrentCUDAStream();
  Params p = base_params(s, scale);
  p.q = q.data_ptr(); p.k = k.data_ptr(); p.v = v.data_ptr();
  p.g = g.data_ptr<float>(); p.beta = beta.data_ptr<float>();
  p.h0 = h0.defined() ? h0.data_ptr<float>() : nullptr;
  p.o = r.o.data_ptr(); p.ht = want_ht ? r.ht.data_ptr<float>() : nullptr;
  p.save = save;
  // the fused kernel never forms u; without a gradient it saves nothing
  const bool fused = fwd_fused_applies(dt, p);
  if (fused && !save) {
    launch_fwd_fused(dt, p, st);
    return r;
  }
  r.gc = alloc({s.B, s.H, s.NT, kChunk}, f32, q);
  r.Aqk = alloc({s.B, s.H, s.NT, kChunk, kChunk}, tt, q);
  r.w = alloc({s.B, s.H, s.NT, kChunk, s.K}, tt, q);
  if (save) {
    r.h = alloc({s.B, s.H, s.NT, s.K, s.V}, tt, q);
    r.X = alloc({s.B, s.H, s.NT, kChunk, s.V}, tt, q);
  }
  p.gc = r.gc.data_ptr<float>(); p.Aqk = r.Aqk.data_ptr();
  if (save) {  // only the backward reads A
    const bool a16 = chunk_mma_applies(dt, p);
    r.A = alloc({s.B, s.H, s.NT, kChunk, kChunk}, a16 ? tt : f32, q);
    if (a16) p.A16 = r.A.data_ptr();
    else p.A = r.A.data_ptr<float>();
  }
  p.w = r.w.data_ptr();
  if (save) { p.h = r.h.data_ptr(); p.X = r.X.data_ptr(); }
  if (fused) {
    launch_fwd_fused(dt, p, st);
    return r;
  }
  Tensor u = alloc({s.B, s.H, s.NT, kChunk, s.V}, tt, q);
  p.u = u.data_ptr();
  if (!scan_mma_applies(dt, p)) {  // only the shared-memory scans read the decayed keys and queries
    r.kt = alloc({s.B, s.H, s.NT, kChunk, s.K}, tt, q);
    r.qg = alloc({s.B, s.H, s.NT, kChunk, s.K}, tt, q);
    p.kt = r.kt.data_ptr(); p.qg = r.qg.data_ptr();
  }
  launch_prep(dt, p, st);
  launch_fwd_scan(dt, p, st);
  return r;
}

struct Prepared {
  Tensor q, k, v, g, beta, h0;
};

Prepared prepare(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                 const std::optional<Tensor>& h0) {
  Prepared r;
  r.q = dense(q); r.k = dense(k); r.v = dense(v);
  r.g = dense(g.to(at::kFloat)); r.beta = dense(beta.to(at::kFloat));
  if (h0.has_value() && h0->defined()) r.h0 = dense(h0->to(at::kFloat));
  return r;
}

struct GdrFunction : public torch::autograd::Function<GdrFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const Tensor& q,
                                                const Tensor& k, const Tensor& v, const Tensor& g,
                                                const Tensor& beta, const std::optional<Tensor>& h0, double scale,
                                                int64_t chunk) {
    Shape s = check_inputs(q, k, v, g, beta, h0, scale, chunk);
    c10::cuda::CUDAGuard guard(q.device());
    Prepared in = prepare(q, k, v, g, beta, h0);
    Forward f = run_forward(in.q, in.k, in.v, in.g, in.beta, in.h0, s, scale, true, true);
    ctx->save_for_backward({in.q, in.k, in.v, in.beta, f.gc, f.A, f.Aqk, f.w, f.h, f.X, f.kt, f.qg});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["has_h0"] = in.h0.defined();
    ctx->saved_data["g_dtype"] = g.scalar_type();
    ctx->saved_data["beta_dtype"] = beta.scalar_type();
    ctx->saved_data["h0_dtype"] = in.h0.defined() ? h0->scalar_type() : at::kFloat;
    ctx->set_materialize_grads(false);
    return {f.o, f.ht};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto sv = ctx->get_saved_variables();
    const Tensor &q = sv[0], &k = sv[1], &v = sv[2], &beta = sv[3], &gc = sv[4], &A = sv[5], &Aqk = sv[6],
                 &w = sv[7], &h = sv[8], &X = sv[9], &kt = sv[10], &qg = sv[11];
    const double scale = ctx->saved_data["scale"].toDouble();
    Shape s{q.size(0), q.size(1), q.size(2), q.size(3), v.size(3), gc.size(2)};
    c10::cuda::CUDAGuard guard(q.device());
    const DType dt = dtype_of(q);
    Tensor dO = grads[0].defined() ? dense(grads[0].to(q.scalar_type())) : at::zeros_like(v);
    Tensor dht = grads[1].defined() ? dense(grads[1].to(at::kFloat)) : Tensor();
    const auto f32 = at::kFloat;
    Tensor dh = alloc({s.B, s.H, s.NT, s.K, s.V}, q.scalar_type(), q);
    Tensor dX = alloc({s.B, s.H, s.NT, kChunk, s.V}, q.scalar_type(), q);
    Tensor dh0 = alloc({s.B, s.H, s.K, s.V}, f32, q);
    Tensor dq = alloc(q.sizes(), q.scalar_type(), q), dk = alloc(k.sizes(), k.scalar_type(), k),
           dv = alloc(v.sizes(), v.scalar_type(), v);
    Tensor dbeta = alloc({s.B, s.T, s.H}, f32, q), dg = alloc({s.B, s.T, s.H}, f32, q);
    Params p = base_params(s, scale);
    p.q = q.data_ptr(); p.k = k.data_ptr(); p.v = v.data_ptr(); p.beta = beta.data_ptr<float>();
    p.gc = gc.data_ptr<float>(); p.Aqk = Aqk.data_ptr(); p.w = w.data_ptr();
    if (A.scalar_type() == at::kFloat) p.A = A.data_ptr<float>();
    else p.A16 = A.data_ptr();
    p.h = h.data_ptr(); p.X = X.data_ptr(); p.kt = kt.defined() ? kt.data_ptr() : nullptr;
    p.qg = qg.defined() ? qg.data_ptr() : nullptr;
    p.dO = dO.data_ptr(); p.dht = dht.defined() ? dht.data_ptr<float>() : nullptr;
    p.dh = dh.data_ptr(); p.dX = dX.data_ptr(); p.dh0 = dh0.data_ptr<float>();
    p.dq = dq.data_ptr(); p.dk = dk.data_ptr(); p.dv = dv.data_ptr();
    p.dbeta = dbeta.data_ptr<float>(); p.dg = dg.data_ptr<float>();
    cudaStream_t st = at::cuda::getCurrentCUDAStream();
    launch_bwd_scan(dt, p, st);
    launch_bwd_grad(dt, p, st);
    const bool has_h0 = ctx->saved_data["has_h0"].toBool();
    Tensor dh0_out = has_h0 ? dh0.to(ctx->saved_data["h0_dtype"].toScalarType()) : Tensor();
    return {dq, dk, dv, dg.to(ctx->saved_data["g_dtype"].toScalarType()),
            dbeta.to(ctx->saved_data["beta_dtype"].toScalarType()), dh0_out, Tensor(), Tensor()};
  }
};

bool needs_grad(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                const std::optional<Tensor>& h0) {
  if (!at::GradMode::is_enabled()) return false;
  bool any = q.requires_grad() || k.requires_grad() || v.requires_grad() || g.requires_grad() ||
             beta.requires_grad();
  if (h0.has_value() && h0->defined()) any = any || h0->requires_grad();
  return any;
}

}  // namespace

// o [B,T,H,V] in q's dtype; the final state [B,H,K,V] fp32 when asked for (else undefined).
std::tuple<Tensor, Tensor> chunk_gated_delta_rule(const Tensor& q, const Tensor& k, const Tensor& v,
                                                  const Tensor& g, const Tensor& beta,
                                                  const std::optional<Tensor>& h0, double scale, int64_t chunk,
                                                  bool output_final_state) {
  if (needs_grad(q, k, v, g, beta, h0)) {
    auto out = GdrFunction::apply(q, k, v, g, beta, h0, scale, chunk);
    return {out[0], output_final_state ? out[1] : Tensor()};
  }
  Shape s = check_inputs(q, k, v, g, beta, h0, scale, chunk);
  c10::cuda::CUDAGuard guard(q.device());
  Prepared in = prepare(q, k, v, g, beta, h0);
  Forward f = run_forward(in.q, in.k, in.v, in.g, in.beta, in.h0, s, scale, false, output_final_state);
  return {f.o, output_final_state ? f.ht : Tensor()};
}

}  // namespace gdr
}  // namespace engram

TORCH_LIBRARY(engram, m) {
  m.def(
      "chunk_gated_delta_rule(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, Tensor? h0, float scale, "
      "int chunk, bool output_final_state) -> (Tensor, Tensor)",
      &engram::gdr::chunk_gated_delta_rule);
}

ENGRAM_EXPORT int engram_gdr_forward(at::Tensor* q, at::Tensor* k, at::Tensor* v, at::Tensor* g, at::Tensor* beta,
                                     at::Tensor* h0_or_null, double scale, int64_t chunk, int32_t want_final_state,
                                     at::Tensor** out_o, at::Tensor** out_state_or_null, char* err, size_t err_len) {
  return engram::guarded(err, err_len, [&] {
    TORCH_CHECK(q && k && v && g && beta && out_o, "engram_gdr_forward: null tensor pointer");
    TORCH_CHECK(!want_final_state || out_state_or_null,
                "engram_gdr_forward: want_final_state set but out_state_or_null is null");
    std::optional<at::Tensor> h0;
    if (h0_or_null) h0 = *h0_or_null;
    auto [o, st] = engram::gdr::chunk_gated_delta_rule(*q, *k, *v, *g, *beta, h0, scale, chunk, want_final_state != 0);
    *out_o = new at::Tensor(std::move(o));
    if (out_state_or_null) *out_state_or_null = want_final_state ? new at::Tensor(std::move(st)) : nullptr;
  });
}
