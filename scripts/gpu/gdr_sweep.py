"""Times engram's kernel under several launch settings (environment knobs), bf16, no fla.

    python3 scripts/gpu/gdr_sweep.py --lib .bundle/kernels/libengram_kernels.so \
        --shapes "1,16384,16,128,128;2,8192,16,128,128" --env "ENGRAM_GDR_NW=1;ENGRAM_GDR_NW=2"

Each --env entry is a comma-separated list of NAME=VALUE pairs; "" is the default choice.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gdr_check import bench, our_calls  # noqa: E402

KNOBS = ("ENGRAM_GDR_NW", "ENGRAM_GDR_SCAN", "ENGRAM_GDR_VB", "ENGRAM_GDR_STAGES", "ENGRAM_GDR_GRAD", "ENGRAM_GDR_PREP",
         "ENGRAM_GDR_GRAD_PERSIST", "ENGRAM_GDR_WG", "ENGRAM_GDR_FUSED")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=".bundle/kernels/libengram_kernels.so")
    ap.add_argument("--shapes", default="8,2048,16,128,128;1,16384,16,128,128")
    ap.add_argument("--env", default=";ENGRAM_GDR_NW=1;ENGRAM_GDR_NW=2;ENGRAM_GDR_NW=4;ENGRAM_GDR_NW=8")
    ap.add_argument("--reps", type=int, default=20, help="timed calls per setting (forward; half, at least 10, for forward+backward)")
    ap.add_argument("--kernel", action="store_true", help="also the forward's kernel time (torch.profiler, summed over its kernels)")
    args = ap.parse_args()
    torch.ops.load_library(args.lib)
    dev = torch.device("cuda")
    if args.kernel:
        from gdr_overhead import kernel_ms
    print("| shape | setting | fwd ms | fwd+bwd ms |" + (" fwd kernels ms |\n|---|---|---|---|---|" if args.kernel else "\n|---|---|---|---|"))
    for spec in args.shapes.split(";"):
        f, _, fb = our_calls(*map(int, spec.split(",")), dev)

        for setting in args.env.split(";"):
            for n in KNOBS:
                os.environ.pop(n, None)
            for kv in filter(None, setting.split(",")):
                n, val = kv.split("=")
                os.environ[n] = val
            try:
                tf, tb = bench(f, args.reps), bench(fb, max(10, args.reps // 2))
                tk = f" {kernel_ms(f, 10):.4f} |" if args.kernel else ""
                print(f"| {spec} | {setting or 'default'} | {tf:.3f} | {tb:.3f} |{tk}", flush=True)
            except RuntimeError as e:
                print(f"| {spec} | {setting} | error: {str(e).splitlines()[0][:100]} | |", flush=True)
    for n in KNOBS:
        os.environ.pop(n, None)


if __name__ == "__main__":
    main()
