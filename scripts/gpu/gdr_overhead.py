"""Host time per call of engram's chunked gated delta rule against its GPU time, bf16.

A call's CUDA-event time (what gdr_check.py reports) includes the host's work before the first
kernel starts (checks, allocations, tensor maps, launches): the GPU is idle while it runs. This
prints, per shape: the host time of one call with the GPU busy (queued calls, no sync), the
event-timed call, and the sum of its kernels' device times (torch.profiler).

    python3 scripts/gpu/gdr_overhead.py --lib .bundle/kernels/libengram_kernels.so
"""
import argparse
import os
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gdr_check import bench, our_calls  # noqa: E402  (the same event timing and calls as the benchmark table)


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


def kernels_ms(fn, n=5):
    """{kernel name: device ms per call} of fn's kernels (torch.profiler over n calls)."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    return {e.key: e.device_time_total / n / 1000 for e in prof.key_averages() if e.device_time_total > 0}


def kernel_ms(fn, n=5):
    return sum(kernels_ms(fn, n).values())


def call_stats(events):
    """From a chrome trace's complete events: per "call" range after the first, when its first
    kernel starts after the call begins (us), the GPU's idle time between its kernels, their busy
    time, and the longest CPU ops that start before that first kernel. A call's kernels are those
    that start before the next call does (they may run past its range: the sync is outside it)."""
    calls = sorted((e for e in events if e["name"] == "call" and e.get("cat") == "user_annotation"),
                   key=lambda e: e["ts"])
    kern = sorted((e for e in events if e.get("cat") == "kernel"), key=lambda e: e["ts"])
    cpu = [e for e in events if e.get("cat") in ("cpu_op", "cuda_runtime", "cuda_driver")]
    out = []
    for c, nxt in zip(calls[1:], calls[2:] + [None]):
        t0, t_next = c["ts"], (nxt["ts"] if nxt is not None else float("inf"))
        ks = [k for k in kern if t0 <= k["ts"] < t_next]
        if not ks:
            continue
        first = ks[0]["ts"] - t0
        idle = sum(max(0.0, b["ts"] - (a["ts"] + a["dur"])) for a, b in zip(ks, ks[1:]))
        busy = sum(k["dur"] for k in ks)
        before = sorted((e for e in cpu if t0 <= e["ts"] < ks[0]["ts"]), key=lambda e: -e["dur"])[:6]
        out.append((first, idle, busy, [(e["name"][:40], round(e["dur"], 1)) for e in before]))
    return out


def timeline(fn, n=6):
    """call_stats of n calls of fn under torch.profiler, each in its own "call" range."""
    import json
    import tempfile
    from torch.profiler import record_function
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            with record_function("call"):
                fn()
            torch.cuda.synchronize()
    path = os.path.join(tempfile.mkdtemp(), "t.json")
    prof.export_chrome_trace(path)
    with open(path) as f:
        return call_stats([e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=".bundle/kernels/libengram_kernels.so")
    ap.add_argument("--shapes", default="8,2048,16,128,128;4,2048,8,64,128")
    ap.add_argument("--timeline", action="store_true", help="also print each call's timeline (torch.profiler trace)")
    args = ap.parse_args()
    torch.ops.load_library(args.lib)
    print("| shape | pass | host ms per call | event ms | kernels ms |")
    print("|---|---|---|---|---|")
    for spec in args.shapes.split(";"):
        fwd, tf, fb = our_calls(*map(int, spec.split(",")), torch.device("cuda"))
        for name, fn in (("fwd", fwd), ("training fwd", tf), ("fwd+bwd", fb)):
            print(f"| {spec} | {name} | {host_ms(fn):.3f} | {bench(fn, 30):.3f} | {kernel_ms(fn):.3f} |", flush=True)
        if args.timeline:
            for name, fn in (("fwd", fwd), ("fwd+bwd", fb)):
                for first, idle, busy, before in timeline(fn):
                    print(f"  {spec} {name}: first kernel {first:.1f} us after the call, GPU idle between kernels "
                          f"{idle:.1f} us, kernels {busy:.1f} us; longest CPU ops before it: {before}")


if __name__ == "__main__":
    main()
