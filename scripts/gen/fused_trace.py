#!/usr/bin/env python3
"""Builds the kernel library with clock64 stamps in the fused forward (gdr_fwd_fused.cu), for
scripts/gpu/gdr_trace.py: per chunk, thread 0 of the producer stamps its phases (the wait for
the consumers, the next tiles' request and the consumers' G tables (until 8a9b75c also the G
scan), the wait for the tiles, K K^T and Q K^T (or K [K; Q]^T), their epilogue, the diagonal
inverse, the two halvings, the hand-over) and the first thread of each consumer group its waits
and its chunk step. The stamps go to the final-state buffer (int64, 16 per chunk from each
(batch, head)'s start), so a traced call must ask for the final state, and its state is not
the state. Only for measurement: the stamps' stores perturb the kernel a little.

    cargo xtask kernels                       # the other objects, in target/kernels/obj
    python3 scripts/gen/fused_trace.py .bundle/k/trace.so
    (GPU host) python3 scripts/gpu/gdr_trace.py .bundle/k/trace.so

The patch matches the kernel's text and stops with the line it could not find when the kernel
has changed.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kbuild  # noqa: E402


PATCHES = []  # (text in the kernel, its traced form, how many times it occurs)


def rep(a, b, cnt=1):
    PATCHES.append((a, b, cnt))


rep("__device__ __forceinline__ void invert_in_halvings(const float* L, float* A, unsigned char* ab, const float* beta, int tid,\n",
    "__device__ __forceinline__ void invert_in_halvings(const float* L, float* A, unsigned char* ab, const float* beta, int tid, long long* tr,\n")
rep("""  invert_diagonal_blocks(L, kLDL, A, [](int i, int j) { return a_at(i, j); }, tid);
  producer_sync();
""", """  invert_diagonal_blocks(L, kLDL, A, [](int i, int j) { return a_at(i, j); }, tid);
  producer_sync();
  if (tr) tr[6] = clock64();
""")
rep("""  producer_sync();
  {
    const int bi = 2 + (warp >> 1), bj = warp & 1;""", """  producer_sync();
  if (tr) tr[7] = clock64();
  {
    const int bi = 2 + (warp >> 1), bj = warp & 1;""")
rep("""    for (int j = 0; j < 2; ++j) store_neg(O[j], 16 * bi, 16 * bj + 8 * j);
  }
  if (warp == 1) slack();
  producer_sync();
}""", """    for (int j = 0; j < 2; ++j) store_neg(O[j], 16 * bi, 16 * bj + 8 * j);
  }
  if (warp == 1) slack();
  producer_sync();
  if (tr) tr[8] = clock64();
}""")
rep("""  for (int n = 0; n < NT; ++n) {
    unsigned char* in = fb.in(n);
    unsigned char* out = fb.out(n);
    float* gS""", """  long long* trb = (tid == 0 && p.ht) ? reinterpret_cast<long long*>(p.ht) + fb.bh * (K * p.V / 2) : nullptr;
  for (int n = 0; n < NT; ++n) {
    long long* tr = trb ? trb + 16 * n : nullptr;
    if (tr) tr[0] = clock64();
    unsigned char* in = fb.in(n);
    unsigned char* out = fb.out(n);
    float* gS""")
rep("""    if (n >= L::kOut) tma::wait(&fb.done[n % L::kOut], ((n - L::kOut) / L::kOut) & 1);
""", """    if (n >= L::kOut) tma::wait(&fb.done[n % L::kOut], ((n - L::kOut) / L::kOut) & 1);
    if (tr) tr[1] = clock64();
""")
rep("""    }
    tma::wait(&fb.full[n % L::kIn], (n / L::kIn) & 1);
""", """    }
    if (tr) tr[2] = clock64();
    tma::wait(&fb.full[n % L::kIn], (n / L::kIn) & 1);
    if (tr) tr[3] = clock64();
""")
rep("""      wg::wait<0>();
      wg::pin<32>(acc);
      wg::pin<32>(qk);
""", """      wg::wait<0>();
      wg::pin<32>(acc);
      wg::pin<32>(qk);
      if (tr) tr[4] = clock64();
""")
rep("""      wg::wait<0>();
      wg::pin<64>(acc);
""", """      wg::wait<0>();
      wg::pin<64>(acc);
      if (tr) tr[4] = clock64();
""")
rep("""    producer_sync();  // L is visible
""", """    producer_sync();  // L is visible
    if (tr) tr[5] = clock64();
""")
rep("invert_in_halvings<T, Save>(Ls, Af, out + L::ab, bW, tid, [&] {", "invert_in_halvings<T, Save>(Ls, Af, out + L::ab, bW, tid, tr, [&] {")
rep("""    wg::fence_smem();  // the consumers' wgmma reads what these threads wrote
    tma::arrive(&fb.ready[n % L::kOut]);
""", """    wg::fence_smem();  // the consumers' wgmma reads what these threads wrote
    tma::arrive(&fb.ready[n % L::kOut]);
    if (tr) tr[9] = clock64();
""")
rep("""  for (int n = 0; n < p.NT; ++n) {
    unsigned char* in = fb.in(n);
    const unsigned char* out = fb.out(n);
    tma::wait(&fb.full[n % L::kIn], (n / L::kIn) & 1);
    tma::wait(&fb.ready[n % L::kOut], (n / L::kOut) & 1);
""", """  const int ct = threadIdx.x == 128 ? 0 : threadIdx.x == 256 ? 1 : -1;
  long long* trb = (ct >= 0 && p.ht) ? reinterpret_cast<long long*>(p.ht) + fb.bh * (K * p.V / 2) : nullptr;
  for (int n = 0; n < p.NT; ++n) {
    long long* tr = trb ? trb + 16 * n : nullptr;
    if (tr && ct == 0) tr[10] = clock64();
    unsigned char* in = fb.in(n);
    const unsigned char* out = fb.out(n);
    tma::wait(&fb.full[n % L::kIn], (n / L::kIn) & 1);
    if (tr && ct == 0) tr[11] = clock64();
    tma::wait(&fb.ready[n % L::kOut], (n / L::kOut) & 1);
    if (tr) tr[12 + 2 * ct] = clock64();
""")
rep("""    tma::arrive(&fb.done[n % L::kOut]);
""", """    tma::arrive(&fb.done[n % L::kOut]);
    if (tr) tr[13 + 2 * ct] = clock64();
""")
# the stamps are in the final state's buffer: the state is not stored
rep("""  if (p.ht != nullptr) mma::store_state<K / 8>(p.ht, S, st0, p.V);  // null: no final state asked for
""", "")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = os.path.abspath(sys.argv[1])
    kbuild.build_patched("fused_trace", "gdr_fwd_fused.cu", PATCHES, out, tag="trace")
    print("fused_trace: wrote", out)


if __name__ == "__main__":
    main()
