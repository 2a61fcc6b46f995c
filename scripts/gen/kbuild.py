"""Builds a variant of the kernel library: the objects of `cargo xtask kernels` with one source
replaced (a patched or experimental copy), and what ptxas says of that source's kernels (registers,
spills, serialised wgmma). Shared by fused_trace.py and kernel_variant.py; the compile flags are
xtask/src/kernels.rs's.

    cargo xtask kernels        # the other objects, in target/kernels/obj
    python3 scripts/gen/kernel_variant.py OUT.so --src my_fused.cu [--include DIR]
"""
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARCH = "-gencode=arch=compute_90a,code=sm_90a"


def site_packages():
    found = glob.glob(os.path.join(ROOT, ".venv/lib/python3*/site-packages"))
    if not found:
        sys.exit("kbuild: no .venv (run cargo xtask setup)")
    return found[0]


def compile_flags(include):
    site = site_packages()
    nv, ti = os.path.join(site, "nvidia/cu13"), os.path.join(site, "torch/include")
    flags = ["-std=c++17", "-O3", "-Xcompiler", "-fPIC,-Wno-interference-size", "-D_GLIBCXX_USE_CXX11_ABI=1",
             "--expt-relaxed-constexpr", f"-I{ti}", f"-I{ti}/torch/csrc/api/include", f"-I{nv}/include",
             f"-I{include or os.path.join(ROOT, 'kernels/include')}", ARCH]
    return os.path.join(nv, "bin/nvcc"), flags


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
    """Compiles source_text in place of kernels/src/<replaces> and links the library at out."""
    work = os.path.join(ROOT, "target/kernels/variants")
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, f"{tag}_{replaces}")
    with open(src, "w") as f:
        f.write(source_text)
    obj = src.rsplit(".", 1)[0] + ".o"
    nvcc, flags = compile_flags(include)
    r = subprocess.run([nvcc, *flags, "-Xptxas", "-v", "-c", src, "-o", obj], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"kbuild: {src} did not compile:\n{r.stderr[-3000:]}")
    replaced = replaces.replace(".", "_")
    stems = [os.path.basename(p).replace(".", "_") for p in glob.glob(os.path.join(ROOT, "kernels/src/*"))]
    objs = [os.path.join(ROOT, "target/kernels/obj", s + ".o") for s in stems if s != replaced]
    missing = [o for o in objs if not os.path.exists(o)]
    if missing:
        sys.exit(f"kbuild: run cargo xtask kernels first (missing {missing[0]})")
    site = site_packages()
    subprocess.run([nvcc, "-shared", ARCH, *objs, obj, f"-L{site}/torch/lib", f"-L{site}/nvidia/cu13/lib", "-ltorch",
                    "-ltorch_cpu", "-ltorch_cuda", "-lc10", "-lc10_cuda", "-l:libcudart.so.13", "-o", out], check=True)
    return ptxas_summary(r.stderr)
