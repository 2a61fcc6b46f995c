"""Builds a variant of the kernel library: the objects of `cargo xtask kernels` with one source
replaced (a patched or experimental copy), and what ptxas says of that source's kernels (registers,
spills, serialised wgmma). Shared by fused_trace.py and kernel_variant.py. The nvcc command lines
are the ones xtask last built the library with (target/kernels/nvcc.args), so a variant differs
from the library only in its source.

    cargo xtask kernels        # the other objects, in target/kernels/obj, and nvcc.args
    python3 scripts/gen/kernel_variant.py OUT.so --src my_fused.cu [--include DIR]
"""
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INCLUDE = os.path.join(ROOT, "kernels/include")


def nvcc_args():
    """(nvcc, compile arguments, link arguments after the objects) from xtask's record."""
    path = os.path.join(ROOT, "target/kernels/nvcc.args")
    if not os.path.exists(path):
        sys.exit("kbuild: run cargo xtask kernels first (no target/kernels/nvcc.args)")
    nvcc, compile_args, link_args = None, [], []
    with open(path) as f:
        for line in f.read().splitlines():
            kind, _, arg = line.partition(" ")
            if kind == "nvcc":
                nvcc = arg
            elif kind == "compile":
                compile_args.append(arg)
            elif kind == "link":
                link_args.append(arg)
    return nvcc, compile_args, link_args


def ptxas_summary(log):
    """One line per kernel of ptxas -v's output: registers, spills, and whether its wgmma are serialised."""
    lines, name, serial = [], None, set()
    for ln in log.splitlines():
        m = re.search(r"C7512.*function '([^']+)'", ln)
        if m:
            serial.add(m.group(1))
        m = re.search(r"Compiling entry function '([^']+)'", ln)
        if m:
            name = m.group(1)
        m = re.search(r"(\d+) bytes spill stores", ln)
        if m and name:
            spills = int(m.group(1))
        m = re.search(r"Used (\d+) registers", ln)
        if m and name:
            lines.append((name, f"{demangle(name)}: {m.group(1)} registers, {spills} spilled bytes"))
            name = None
    return [f"{txt}{', wgmma serialised' if n in serial else ''}" for n, txt in lines]


def demangle(name):
    """The kernel's name and template arguments (c++filt where there is one)."""
    try:
        full = subprocess.run(["c++filt", name], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return name
    m = re.search(r"::(\w+<[^>]*>)\(", full)
    return m.group(1) if m else full


def build_variant(source_text, replaces, out, include=None, tag="variant"):
    """Compiles source_text in place of kernels/src/<replaces> (with the headers in include, if
    given, instead of kernels/include) and links the library at out."""
    work = os.path.join(ROOT, "target/kernels/variants")
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, f"{tag}_{replaces}")
    with open(src, "w") as f:
        f.write(source_text)
    obj = src.rsplit(".", 1)[0] + ".o"
    nvcc, compile_args, link_args = nvcc_args()
    if include:
        if f"-I{INCLUDE}" not in compile_args:
            sys.exit(f"kbuild: nvcc.args has no -I{INCLUDE} to replace with {include}")
        compile_args = [f"-I{include}" if a == f"-I{INCLUDE}" else a for a in compile_args]
    r = subprocess.run([nvcc, *compile_args, "-Xptxas", "-v", "-c", src, "-o", obj], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"kbuild: {src} did not compile:\n{r.stderr[-3000:]}")
    replaced = replaces.replace(".", "_")
    stems = [os.path.basename(p).replace(".", "_") for p in glob.glob(os.path.join(ROOT, "kernels/src/*"))]
    objs = [os.path.join(ROOT, "target/kernels/obj", s + ".o") for s in stems if s != replaced]
    missing = [o for o in objs if not os.path.exists(o)]
    if missing:
        sys.exit(f"kbuild: run cargo xtask kernels first (missing {missing[0]})")
    arch = [a for a in compile_args if a.startswith("-gencode")]
    subprocess.run([nvcc, "-shared", *arch, *objs, obj, *link_args, "-o", out], check=True)
    return ptxas_summary(r.stderr)


def build_patched(who, replaces, patches, out, tag):
    """Builds the library with kernels/src/<replaces> patched: each (text, its replacement, count)
    must occur exactly count times, else `who` stops naming the text (the kernel has changed).
    Returns ptxas's summary of the patched source."""
    with open(os.path.join(ROOT, "kernels/src", replaces)) as f:
        s = f.read()
    for a, b, cnt in patches:
        if s.count(a) != cnt:
            sys.exit(f"{who}: the kernel's text changed; not found {cnt} time(s):\n{a}")
        s = s.replace(a, b)
    return build_variant(s, replaces, out, tag=tag)
