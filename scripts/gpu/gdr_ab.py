"""A/B of kernel libraries on a GPU host: each library in its own process (torch.ops.engram is
registered once per process), alternated for a number of rounds, so drifts of the GPU's clocks
and of the host fall on every library alike. Per library and shape it prints the event-timed
forward without a gradient (what gdr_check.py's table reports), the kernel time of that forward
and of the training forward (torch.profiler, the sum of the call's kernels) and the event-timed
forward+backward, then the kernel time of forward+backward and each of its kernels, in ms.

    python3 scripts/gpu/gdr_ab.py .bundle/k/old.so .bundle/k/new.so [--rounds 3] [--shapes 8,2048,16,128,128]

Libraries come from scripts/gen/kernel_variant.py (one source replaced) or `cargo xtask kernels`.
"""
import argparse
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gdr_check import bench, our_calls  # noqa: E402
from gdr_overhead import kernel_ms, kernels_ms  # noqa: E402


def short(name):
    """bwd_grad_wg, at::native::... from a kernel's demangled name ("void ns::(anonymous namespace)::f<...>(...)")."""
    head = name.removeprefix("void ").split("<")[0]
    return head.split("::")[-1] or head


def measure(lib, shapes):
    torch.ops.load_library(lib)
    dev = torch.device("cuda")
    name = os.path.basename(lib)
    for spec in shapes.split(";"):
        fwd, train_fwd, fwd_bwd = our_calls(*map(int, spec.split(",")), dev)
        row = (bench(fwd, 40), kernel_ms(fwd, 10), kernel_ms(train_fwd, 10), bench(fwd_bwd, 20))
        ks = kernels_ms(fwd_bwd, 10)
        per = ", ".join(f"{short(k)} {v:.4f}" for k, v in sorted(ks.items(), key=lambda kv: -kv[1]))
        print(f"| {name} | {spec} | " + " | ".join(f"{x:.4f}" for x in row) + f" | {sum(ks.values()):.4f} | {per} |",
              flush=True)


def main():
    ap = argparse.ArgumentParser(usage=__doc__)
    ap.add_argument("libs", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shapes", default="8,2048,16,128,128", help="B,T,H,K,V separated by ';'")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: measure libs[0]
    a = ap.parse_args()
    if a.one:
        measure(a.libs[0], a.shapes)
        return
    print("| library | shape | event fwd | kernel fwd | kernel train fwd | event f+b | kernel f+b | its kernels |\n"
          "|---|---|---|---|---|---|---|---|",
          flush=True)
    for _ in range(a.rounds):
        for lib in a.libs:
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", lib, "--shapes", a.shapes])
            if r.returncode != 0:
                sys.exit(f"gdr_ab: {lib} failed")


if __name__ == "__main__":
    main()
