"""Where the GPU waits for the host: idle gaps between consecutive GPU activities in Chrome
traces from libtorch's profiler (`engram bench gdn --trace`, `hybrid_torch.py --trace`).

    python3 scripts/gpu/trace_gaps.py engram.json torch.json [--steps 5] [--top 12] [--min-us 20]

Per trace: total GPU busy and idle time per step, idle split into gap sizes, and the largest
gaps with the kernels around them and the host ops that started inside the gap (what the CPU
was doing while the GPU had nothing queued).
"""
import argparse
import collections
import json

GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")


def load(path):
    with open(path) as f:
        ev = json.load(f)
    return ev["traceEvents"] if isinstance(ev, dict) else ev


def summarize(path, steps, top, min_us):
    ev = load(path)
    gpu = sorted((e for e in ev if e.get("ph") == "X" and e.get("cat") in GPU_CATS), key=lambda e: e["ts"])
    cpu = sorted((e for e in ev if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "user_annotation")),
                 key=lambda e: e["ts"])
    if not gpu:
        print(f"{path}: no GPU events")
        return
    busy = sum(e.get("dur", 0) for e in gpu)
    span = gpu[-1]["ts"] + gpu[-1].get("dur", 0) - gpu[0]["ts"]
    gaps = []
    end = gpu[0]["ts"] + gpu[0].get("dur", 0)
    for prev, e in zip(gpu, gpu[1:]):
        if e["ts"] > end:
            gaps.append((e["ts"] - end, end, prev, e))
        end = max(end, e["ts"] + e.get("dur", 0))
    idle = sum(g[0] for g in gaps)
    hist = collections.Counter()
    for g in gaps:
        b = "<5us" if g[0] < 5 else "5-20us" if g[0] < 20 else "20-100us" if g[0] < 100 else ">=100us"
        hist[b] += g[0]
    print(f"## {path}")
    print(f"GPU span {span / 1000 / steps:.2f} ms/step, busy {busy / 1000 / steps:.2f}, idle {idle / 1000 / steps:.2f} "
          f"({len(gaps) / steps:.0f} gaps/step); idle by gap size (ms/step): "
          + ", ".join(f"{k} {v / 1000 / steps:.2f}" for k, v in sorted(hist.items())))
    print("| gap us | after kernel | before kernel | host ops starting in the gap |\n|---|---|---|---|")
    for d, t0, prev, nxt in sorted(gaps, key=lambda g: -g[0])[:top]:
        if d < min_us:
            break
        ops = collections.Counter(c["name"] for c in cpu if t0 <= c["ts"] < t0 + d)
        desc = ", ".join(f"{n} x{k}" for n, k in ops.most_common(6))
        print(f"| {d:.0f} | `{prev['name'][:50]}` | `{nxt['name'][:50]}` | {desc} |")
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--min-us", type=float, default=20.0)
    a = ap.parse_args()
    for p in a.traces:
        summarize(p, a.steps, a.top, a.min_us)


if __name__ == "__main__":
    main()
