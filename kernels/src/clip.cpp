// Global gradient-norm clipping without a host sync: PyTorch's foreach path of
// `torch.nn.utils.clip_grad_norm_` (torch/nn/utils/clip_grad.py, 2.11), reached through the kernel
// library because tch has no binding for `_foreach_norm` / `_foreach_mul_(TensorList, Tensor)`.
//
//   norms = torch._foreach_norm(grads)                  # per (device, dtype) group
//   total = torch.linalg.vector_norm(torch.stack(norms))
//   coef  = (max_norm / (total + 1e-6)).clamp(max=1.0)
//   torch._foreach_mul_(grads, coef)
//
// Everything stays on the device; nothing is read back to the host.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <iterator>
#include <utility>
#include <vector>

#include "engram_abi.h"

// Total L2 norm of the n gradients (as if concatenated into one vector), returned in *out_total
// as a new 0-dim float32 tensor on their device (the caller owns it). When max_norm > 0 every
// gradient is then multiplied in place by min(max_norm / (total + 1e-6), 1); when max_norm <= 0
// only the norm is computed. Gradients are grouped by dtype as PyTorch does (per-tensor norms are
// computed in each gradient's dtype, the total in their promoted dtype, then converted to
// float32 for the output); all of them must be on one device. With n == 0 the total is a CPU
// zero and nothing else happens. Non-finite norms are not an error (PyTorch's default
// error_if_nonfinite=False): the gradients are scaled by the resulting NaN coefficient.
ENGRAM_EXPORT int engram_clip_grad_norm(at::Tensor** grads, size_t n, double max_norm, at::Tensor** out_total,
                                        char* err, size_t err_len) {
  return engram::guarded(err, err_len, [&] {
    TORCH_CHECK(out_total != nullptr, "engram_clip_grad_norm: out_total is null");
    *out_total = nullptr;
    if (n == 0) {
      *out_total = new at::Tensor(at::zeros({}, at::TensorOptions().dtype(at::kFloat)));
      return;
    }
    TORCH_CHECK(grads != nullptr, "engram_clip_grad_norm: grads is null");
    c10::NoGradGuard no_grad;
    std::vector<at::Tensor> all;
    all.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      TORCH_CHECK(grads[i] != nullptr && grads[i]->defined(), "engram_clip_grad_norm: grads[", i, "] is undefined");
      const at::Tensor& g = *grads[i];
      TORCH_CHECK(at::isFloatingType(g.scalar_type()), "engram_clip_grad_norm: grads[", i,
                  "] has dtype ", g.scalar_type(), ", expected a floating-point gradient");
      TORCH_CHECK(all.empty() || g.device() == all.front().device(),
                  "engram_clip_grad_norm: all gradients must be on one device (grads[0] is on ",
                  all.empty() ? g.device() : all.front().device(), ", grads[", i, "] on ", g.device(), ")");
      all.push_back(g);
    }
    // Groups by dtype, in order of first appearance.
    std::vector<std::pair<at::ScalarType, std::vector<at::Tensor>>> groups;
    for (const auto& g : all) {
      auto it = groups.begin();
      while (it != groups.end() && it->first != g.scalar_type()) ++it;
      if (it == groups.end()) {
        groups.emplace_back(g.scalar_type(), std::vector<at::Tensor>{});
        it = std::prev(groups.end());
      }
      it->second.push_back(g);
    }
    std::vector<at::Tensor> norms;
    norms.reserve(n);
    for (const auto& grp : groups) {
      auto ns = at::_foreach_norm(grp.second, 2);
      norms.insert(norms.end(), ns.begin(), ns.end());
    }
    at::Tensor total = at::linalg_vector_norm(at::stack(norms), 2);
    if (max_norm > 0) {
      // Python's `max_norm / t` is `t.reciprocal() * max_norm`.
      at::Tensor coef = at::clamp_max((total + 1e-6).reciprocal() * max_norm, 1.0);
      for (auto& grp : groups) at::_foreach_mul_(grp.second, coef);
    }
    *out_total = new at::Tensor(total.to(at::kFloat));
  });
}
