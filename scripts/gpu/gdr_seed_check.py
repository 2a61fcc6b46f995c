"""bf16 error of the seed variant (GroundThink v7) through the standard kernel, ours beside fla.

The seed recurrence S_t = g S + b k (v - S^T k)^T, o = S^T k maps exactly to the standard rule with
q = k, log decay log g, beta' = b / g and v' = g v (engram_core::ops::delta_rule's seed map). This
script builds the seed problem of crates/engram-core/tests/delta_rule_cuda.rs (k L2-normalised,
g = sigmoid(U + 1), b = sigmoid(U), h0 = 0.1 N(0, 1)), casts q, k, v' to bf16 and reports
RMS(err)/RMS(ref) of o, the final state and dh0 for our kernel and fla's, against a float64
recurrence on (a) the fp32 inputs and (b) the bf16-rounded inputs.

    python3 scripts/gpu/gdr_seed_check.py --lib .bundle/kernels/libengram_kernels.so
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gdr_check import reference, rel_rms  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=".bundle/kernels/libengram_kernels.so")
    ap.add_argument("--shape", default="2,256,4,64,128")
    args = ap.parse_args()
    torch.ops.load_library(args.lib)
    fla_fn = None
    try:
        import fla.ops.common.chunk_o as cho
        cho.TRITON_ABOVE_3_7_1 = True  # lifts fla's Hopper/Triton-3.6 backward guard (toolchain.md)
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_fn
    except Exception as e:  # noqa: BLE001
        print("fla unavailable:", e)
    B, T, H, K, V = map(int, args.shape.split(","))
    dev = "cuda"
    gen = torch.Generator().manual_seed(7)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
    v = torch.randn(B, T, H, V, generator=gen)
    g = (torch.rand(B, T, H, generator=gen) + 1.0).sigmoid()
    b = torch.rand(B, T, H, generator=gen).sigmoid()
    h0 = torch.randn(B, H, K, V, generator=gen) * 0.1
    # the exact map to the standard rule, in fp32
    gl, bm, vm = g.log(), b / g, g[..., None] * v
    do = torch.randn(B, T, H, V, generator=gen)
    dht = torch.randn(B, H, K, V, generator=gen)

    def ref(kk, vv):
        leaves = [x.double().requires_grad_(True) for x in (kk, vv, gl, bm, h0)]
        o, ht = reference(leaves[0], leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], 1.0)
        ((o * do.double()).sum() + (ht * dht.double()).sum()).backward()
        return o.detach(), ht.detach(), leaves[4].grad

    kb, vb = k.bfloat16(), vm.bfloat16()
    refs = {"fp32 inputs": ref(k, vm), "bf16-rounded inputs": ref(kb.float(), vb.float())}

    def run(fn):
        kk = kb.to(dev).requires_grad_(True)
        vv = vb.to(dev).requires_grad_(True)
        h = h0.to(dev).requires_grad_(True)
        o, ht = fn(kk, vv, gl.to(dev), bm.to(dev), h)
        torch.autograd.backward([o.float(), ht.float()], [do.to(dev), dht.to(dev)])
        return o.detach().cpu(), ht.detach().cpu(), h.grad.cpu()

    runs = {"engram": run(lambda kk, vv, g_, b_, h: torch.ops.engram.chunk_gated_delta_rule(
        kk, kk, vv, g_, b_, h, 1.0, 64, True))}
    if fla_fn is not None:
        runs["fla"] = run(lambda kk, vv, g_, b_, h: fla_fn(kk, kk, vv, g_, b_, scale=1.0, initial_state=h,
                                                           output_final_state=True))
    print(f"seed variant, shape {args.shape}, bf16: RMS(err)/RMS(ref)")
    print("| kernel | reference | o | final state | dh0 |\n|---|---|---|---|---|")
    for kname, r in runs.items():
        for rname, rr in refs.items():
            print(f"| {kname} | {rname} | " + " | ".join(f"{rel_rms(a, b):.2e}" for a, b in zip(r, rr)) + " |")


if __name__ == "__main__":
    main()
