// Fused optimizer steps that tch cannot reach: libtorch's multi-tensor `_fused_adamw_` (the
// kernel behind `torch.optim.AdamW(fused=True)`) applied to a whole parameter list in a few
// launches instead of ~10 eager ops per parameter.
#include <ATen/ATen.h>

#include <vector>

#include "engram_abi.h"

namespace {
std::vector<at::Tensor> list(at::Tensor** ts, int n, const char* what) {
  TORCH_CHECK(ts != nullptr, what, " is null");
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; ++i) {
    TORCH_CHECK(ts[i] != nullptr && ts[i]->defined(), what, "[", i, "] is undefined");
    v.push_back(*ts[i]);
  }
  return v;
}
}  // namespace

// One AdamW step (decoupled weight decay, bias-corrected, as torch.optim.AdamW) on n parameters.
// `steps` are float32 scalar tensors on the parameters' device holding the step count *after*
// this update (the caller increments them), exactly as torch's fused path expects.
ENGRAM_EXPORT int engram_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs,
                                     at::Tensor** exp_avg_sqs, at::Tensor** steps, int n, double lr,
                                     double beta1, double beta2, double weight_decay, double eps,
                                     char* err, size_t err_len) {
  return engram::guarded(err, err_len, [&] {
    TORCH_CHECK(n >= 0, "negative parameter count");
    if (n == 0) return;
    auto p = list(params, n, "params");
    auto g = list(grads, n, "grads");
    auto m = list(exp_avgs, n, "exp_avgs");
    auto v = list(exp_avg_sqs, n, "exp_avg_sqs");
    auto s = list(steps, n, "steps");
    for (int i = 0; i < n; ++i) {
      TORCH_CHECK(p[i].is_cuda(), "fused AdamW needs CUDA tensors (params[", i, "] is on ", p[i].device(), ")");
      TORCH_CHECK(p[i].sizes() == g[i].sizes() && p[i].sizes() == m[i].sizes() && p[i].sizes() == v[i].sizes(),
                  "params[", i, "]: parameter, gradient and moments differ in shape");
    }
    at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                      /*maximize=*/false);
  });
}
