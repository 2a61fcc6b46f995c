"""Host time per call of engram's chunked gated delta rule against its GPU time, bf16.

A call's CUDA-event time (what gdr_check.py reports) includes the host's work before the first
kernel starts (checks, allocations, tensor maps, launches): the GPU is idle while it runs. This
prints, per shape: the host time of one call with the GPU busy (queued calls, no sync), the
event-timed call, and the sum of its kernels' device times (torch.profiler).

    python3 scripts/gpu/gdr_overhead.py --lib .bundle/kernels/libengram_kernels.so
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile


def event_ms(fn, reps=30):
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2]


def host_ms(fn, n=40):
    for _ in range(5):  # the first call of a kernel loads its module (lazy loading synchronises)
        fn()
    torch.cuda.synchronize()
    # a long kernel first, so that the calls below queue behind it and never wait for the GPU
    torch.cuda._sleep(int(2e8))
    t = time.perf_counter()
    for _ in range(n):
        fn()
    dt = (time.perf_counter() - t) / n
    torch.cuda.synchronize()
    return dt * 1e3


def kernel_ms(fn, n=5):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    return sum(e.device_time_total for e in prof.key_averages() if e.device_time_total > 0) / n / 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=".bundle/kernels/libengram_kernels.so")
    ap.add_argument("--shapes", default="8,2048,16,128,128;4,2048,8,64,128")
    args = ap.parse_args()
    torch.ops.load_library(args.lib)
    print("| shape | pass | host ms per call | event ms | kernels ms |")
    print("|---|---|---|---|---|")
    for spec in args.shapes.split(";"):
        B, T, H, K, V = map(int, spec.split(","))
        dev = "cuda"
        q = torch.randn(B, T, H, K, device=dev, dtype=torch.bfloat16)
        k = F.normalize(torch.randn(B, T, H, K, device=dev), dim=-1).bfloat16()
        v = torch.randn(B, T, H, V, device=dev, dtype=torch.bfloat16)
        g = F.logsigmoid(torch.rand(B, T, H, device=dev))
        beta = torch.rand(B, T, H, device=dev).sigmoid()
        do = torch.randn(B, T, H, V, device=dev, dtype=torch.bfloat16)
        leaves = [x.detach().clone().requires_grad_(True) for x in (q, k, v, g, beta)]
        op = torch.ops.engram.chunk_gated_delta_rule

        def fwd():
            with torch.no_grad():
                op(q, k, v, g, beta, None, K ** -0.5, 64, False)

        def fb():
            o, _ = op(*leaves, None, K ** -0.5, 64, False)
            o.backward(do)
            for x in leaves:
                x.grad = None

        for name, fn in (("fwd", fwd), ("fwd+bwd", fb)):
            print(f"| {spec} | {name} | {host_ms(fn):.3f} | {event_ms(fn):.3f} | {kernel_ms(fn):.3f} |", flush=True)


if __name__ == "__main__":
    main()
