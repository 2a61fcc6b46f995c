"""Per-kernel CUDA times of engram's chunked gated delta rule (torch.profiler), bf16.

    python3 scripts/gpu/gdr_profile.py --lib .bundle/kernels/libengram_kernels.so
"""
import argparse

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=".bundle/kernels/libengram_kernels.so")
    ap.add_argument("--shapes", default="8,2048,16,128,128;1,16384,16,128,128;4,2048,8,64,128")
    args = ap.parse_args()
    torch.ops.load_library(args.lib)
    for spec in args.shapes.split(";"):
        B, T, H, K, V = map(int, spec.split(","))
        dev = "cuda"
        q = torch.randn(B, T, H, K, device=dev, dtype=torch.bfloat16).requires_grad_()
        k = F.normalize(torch.randn(B, T, H, K, device=dev), dim=-1).bfloat16().requires_grad_()
        v = torch.randn(B, T, H, V, device=dev, dtype=torch.bfloat16).requires_grad_()
        g = F.logsigmoid(torch.rand(B, T, H, device=dev)).requires_grad_()
        beta = torch.rand(B, T, H, device=dev).sigmoid().requires_grad_()
        do = torch.randn(B, T, H, V, device=dev, dtype=torch.bfloat16)

        def step():
            o, _ = torch.ops.engram.chunk_gated_delta_rule(q, k, v, g, beta, None, K ** -0.5, 64, False)
            o.backward(do)

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                step()
            torch.cuda.synchronize()
        print(f"== B={B} T={T} H={H} K={K} V={V}: per-kernel CUDA time, mean of 5 fwd+bwd")
        rows = []
        for e in prof.key_averages():
            if e.device_time_total > 0:
                rows.append((e.device_time_total / 5 / 1000, e.count // 5, e.key[:90]))
        for t, n, name in sorted(rows, reverse=True)[:12]:
            print(f"{t:8.3f} ms  x{n}  {name}")


if __name__ == "__main__":
    main()
