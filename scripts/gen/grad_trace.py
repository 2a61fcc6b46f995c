#!/usr/bin/env python3
"""Builds the kernel library with clock64 stamps in the gradient kernel (gdr_grad_wg.cu), for
`scripts/gpu/gdr_trace.py --grad`: per chunk, the first lane of every warp stamps the loop head,
the V-side tiles' wait, the six block barriers and the points between the products and their
epilogues. The stamps go to dh0's buffer (int64, STAMPS per chunk and warp, at
((block * MAX_CHUNKS + chunk of the block) * WARPS + warp) * STAMPS), so a traced call needs an
initial state and its dh0 is not the gradient. Only for measurement: the stamps' stores perturb the kernel a
little.

    cargo xtask kernels                      # the other objects, in target/kernels/obj
    python3 scripts/gen/grad_trace.py .bundle/k/gtrace.so
    (GPU host) python3 scripts/gpu/gdr_trace.py --grad .bundle/k/gtrace.so

The patch matches the kernel's text and stops with the text it could not find when the kernel
has changed.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kbuild  # noqa: E402

MAX_CHUNKS, WARPS, STAMPS = 40, 8, 16  # the stamp buffer's shape per block (gdr_trace.py reads it)
PATCHES = []  # (text in the kernel, its traced form, how many times it occurs: once)


def stamp_after(anchor, i):
    PATCHES.append((anchor, anchor + f"    if (tr) tr[{i}] = clock64();\n", 1))


def stamp_before(anchor, i):
    PATCHES.append((anchor, f"    if (tr) tr[{i}] = clock64();\n" + anchor, 1))


PATCHES.append(("""    const ChunkBlock cb(p, blk);
""", f"""    const ChunkBlock cb(p, blk);
    long long* tr = (p.dh0 != nullptr && lane == 0 && it < {MAX_CHUNKS})
                        ? reinterpret_cast<long long*>(p.dh0) +
                              (((int64_t)blockIdx.x * {MAX_CHUNKS} + it) * {WARPS} + warp) * {STAMPS}
                        : nullptr;
    if (tr) tr[0] = clock64();
""", 1))
stamp_after("""    cp_wait<0>();
""", 1)
stamp_after("""    barrier();  // (1) the V-side tiles, g and beta are visible
""", 2)
stamp_before("""      wg::pin<KT8 * 4>(&aq[0][0]);
      wg::pin<KT8 * 4>(&aw[0][0]);
""", 3)
stamp_after("""      tma::wait(fullQ, it & 1);
""", 4)
stamp_after("""        load_k(nb, odd ? K0s : K1s);
      }
""", 5)
stamp_before("""    wg::wait<1>();
    wg::pin<CT8 * 4>(&pa[0][0]);
""", 6)
stamp_before("""    wg::pin<CT8 * 4>(&da[0][0]);
    wg::pin<VT8 * 4>(&dv[0][0]);
""", 7)
stamp_before("""    barrier();  // (3) dW and P are visible; dO, X, dX and V are consumed
""", 8)
stamp_after("""    if (more && issuer) load_dx(nb);
""", 9)
stamp_before("""    barrier();  // (4) dA is visible; P, q and dW are consumed
""", 10)
stamp_before("""
    // ---- 3: A^T dA and K K^T; then dL = -(A^T dA) A^T
""", 11)
stamp_before("""    barrier();  // (5) A^T dA is visible; dA is consumed
""", 12)
stamp_before("""    barrier();  // (6) R is visible; A is consumed
""", 13)
stamp_after("""    if (more && issuer) load_a(nb);
""", 14)
stamp_before("""    wg::wait<0>();
    wg::pin<KT8 * 4>(&ak[0][0]);
    store_acc<T, KT8>(static_cast<T*>(p.dk)""", 15)

NAMES = ["V-side tiles' wait", "barrier 1", "1a products + <S0, dS> (warp 0: the last chunk's dbeta, dg)",
         "q, k, A wait", "barrier 2 (+ dS, S0, k loads)", "dW store, 1b issue, dQ/dK row sums",
         "P and Q K^T epilogue", "dV sums and store", "barrier 3 (+ loads)", "2: dA, A^T dW, P K, P^T Q",
         "barrier 4 (+ q load)", "3: A^T dA, K K^T", "barrier 5, dL, E and R", "barrier 6 (+ A load)",
         "4: R K + R^T K issue", "wait + dK store (to the next chunk)"]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = os.path.abspath(sys.argv[1])
    for line in kbuild.build_patched("grad_trace", "gdr_grad_wg.cu", PATCHES, out, tag="gtrace"):
        print(line)
    print("grad_trace: wrote", out)


if __name__ == "__main__":
    main()
