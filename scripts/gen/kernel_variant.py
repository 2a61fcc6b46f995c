#!/usr/bin/env python3
"""Builds the kernel library with one source replaced, for an A/B on a GPU host
(scripts/gpu/gdr_ab.py), and prints what ptxas says of that source's kernels.

    cargo xtask kernels                                     # the other objects
    python3 scripts/gen/kernel_variant.py .bundle/k/new.so --src /tmp/my_fused.cu
    python3 scripts/gen/kernel_variant.py .bundle/k/old.so --rev HEAD~1   # a committed version
options: --replace FILE (default gdr_fwd_fused.cu), --include DIR (headers instead of
kernels/include; with --rev, that revision's headers are used). Only the replaced source is
compiled here: the library's other objects are the current build's.
"""
import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kbuild  # noqa: E402


def main():
    ap = argparse.ArgumentParser(usage=__doc__)
    ap.add_argument("out")
    ap.add_argument("--src", help="the replacing source file")
    ap.add_argument("--rev", help="take the source (and its headers) from this git revision")
    ap.add_argument("--replace", default="gdr_fwd_fused.cu")
    ap.add_argument("--include")
    a = ap.parse_args()
    if bool(a.src) == bool(a.rev):
        sys.exit("kernel_variant: give one of --src and --rev")
    include = a.include
    if a.rev:
        show = lambda path: subprocess.run(["git", "-C", kbuild.ROOT, "show", f"{a.rev}:{path}"], check=True,
                                           capture_output=True, text=True).stdout
        text = show(f"kernels/src/{a.replace}")
        if include is None:
            include = tempfile.mkdtemp(prefix="kinc_")
            names = subprocess.run(["git", "-C", kbuild.ROOT, "ls-tree", "--name-only", a.rev, "kernels/include/"],
                                   check=True, capture_output=True, text=True).stdout.split()
            for n in names:
                with open(os.path.join(include, os.path.basename(n)), "w") as f:
                    f.write(show(n))
    else:
        with open(a.src) as f:
            text = f.read()
    tag = os.path.splitext(os.path.basename(a.out))[0]
    for line in kbuild.build_variant(text, a.replace, os.path.abspath(a.out), include, tag):
        print(line)
    print("kernel_variant: wrote", a.out)


if __name__ == "__main__":
    main()
