"""Bitwise comparison of two builds of the kernel library: outputs, final states and gradients of
fixed cases (the fused forward with and without a gradient, K = 64 and 128, gates x0.01 and x10,
the split path with its register and shared-memory stages). A change meant to keep the numbers
(a reordered loop, another load or store instruction) must print "=" everywhere.

    python3 scripts/gpu/gdr_bitwise.py dump LIB OUT.pt      (one process per library: both
    python3 scripts/gpu/gdr_bitwise.py compare A.pt B.pt     register torch.ops.engram)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gdr_check import make_inputs, run_ours  # noqa: E402

# name, (B, T, H, K, V), with gradients, environment, gate scale
CASES = [("fused_nograd", (8, 2048, 16, 128, 128), False, {}, 1.0),
         ("fused_nograd_k64", (16, 512, 16, 64, 128), False, {}, 1.0),
         ("fused_nograd_gate10", (8, 512, 16, 128, 128), False, {}, 10.0),
         ("fused_nograd_gate0.01", (8, 512, 16, 128, 128), False, {}, 0.01),
         ("fused_train", (8, 512, 16, 128, 128), True, {}, 1.0),
         ("split_train", (2, 600, 4, 128, 128), True, {"ENGRAM_GDR_FUSED": "0"}, 1.0),
         ("split_train_smem", (2, 600, 4, 64, 64), True, {"ENGRAM_GDR_FUSED": "0", "ENGRAM_GDR_PREP": "smem"}, 1.0)]


def dump(lib, path):
    torch.ops.load_library(lib)
    out = {}
    for name, (B, T, H, K, V), grad, env, gs in CASES:
        for knob in ("ENGRAM_GDR_FUSED", "ENGRAM_GDR_PREP"):
            os.environ.pop(knob, None)
        os.environ.update(env)
        q, k, v, g, beta, h0 = make_inputs(B, T, H, K, V, torch.bfloat16, "cuda", gate_scale=gs, seed=1)
        if grad:
            leaves = [x.clone().requires_grad_(True) for x in (q, k, v, g, beta, h0)]
            o, ht = run_ours(*leaves, K ** -0.5, True)
            (o.float().square().sum() + ht.square().sum()).backward()
            out[name] = [o, ht] + [x.grad for x in leaves]
        else:
            with torch.no_grad():
                out[name] = list(run_ours(q, k, v, g, beta, h0, K ** -0.5, True))
    torch.save({n: [t.cpu() for t in ts] for n, ts in out.items()}, path)


def compare(pa, pb):
    a, b = torch.load(pa), torch.load(pb)
    same = True
    for name in a:
        parts = []
        for x, y in zip(a[name], b[name]):
            if torch.equal(x, y):
                parts.append("=")
            else:
                same = False
                x, y = x.double(), y.double()
                parts.append(f"{((x - y).norm() / y.norm().clamp_min(1e-30)).item():.1e}")
        print(f"{name:24s} {' '.join(parts)}  (o, state, then dq dk dv dg dbeta dh0)")
    print("bitwise the same" if same else "DIFFERENT")
    return same


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("dump", "compare"):
        sys.exit(__doc__)
    if sys.argv[1] == "dump":
        dump(sys.argv[2], sys.argv[3])
    else:
        sys.exit(0 if compare(sys.argv[2], sys.argv[3]) else 1)
