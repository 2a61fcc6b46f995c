"""Per-kernel GPU time of Chrome traces from libtorch's profiler (`engram bench gdn --trace`,
`hybrid_torch.py --trace`, torch.profiler's export_chrome_trace), side by side.

    python3 scripts/gpu/trace_summary.py engram.json torch.json [--steps 5] [--top 25]

Kernel names are shortened to their first 60 characters; times are per step (ms) when --steps
is the number of profiled steps.
"""
import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trace_gaps import GPU_CATS, load  # noqa: E402


def kernels(path):
    tot = collections.Counter()
    cnt = collections.Counter()
    for e in load(path):
        if e.get("ph") == "X" and e.get("cat") in GPU_CATS:
            n = e.get("name", "?")[:60]
            tot[n] += e.get("dur", 0) / 1000.0
            cnt[n] += 1
    return tot, cnt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    data = [kernels(p) for p in a.traces]
    for p, (tot, cnt) in zip(a.traces, data):
        print(f"{p}: {sum(tot.values()) / a.steps:.2f} ms of GPU work per step, {sum(cnt.values()) // a.steps} launches per step")
    names = collections.Counter()
    for tot, _ in data:
        names.update(tot)
    head = " | ".join(f"{p} ms/step (launches)" for p in a.traces)
    print(f"| kernel | {head} |\n|---|" + "---|" * len(a.traces))
    for n, _ in names.most_common(a.top):
        cells = " | ".join(f"{tot[n] / a.steps:.3f} ({cnt[n] // a.steps})" for tot, cnt in data)
        print(f"| `{n}` | {cells} |")


if __name__ == "__main__":
    main()
