"""Checks and times engram's CUDA chunked gated delta rule on a GPU host, beside fla and SDPA.

Run on the GPU machine from the repository root:
    python3 scripts/gpu/gdr_check.py --lib .bundle/kernels/libengram_kernels.so [--no-bench] [--no-fla]
Correctness: every path is compared with a float64 token-by-token recurrence (forward, final state
and the gradients of q, k, v, g, beta, h0, with random output and final-state gradients).
fp32 inputs: max-abs error < 1e-4 (o, state) and < 1e-3 (gradients), the issue's tolerances.
16-bit inputs: fla's own test thresholds on RMS(err)/RMS(ref): o, state < 0.005; dq, dk, dv,
dh0 < 0.008; dg, dbeta < 0.02. Timing: CUDA-event medians after warm-up, bf16, the issue's shapes.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

C = 64


def reference(q, k, v, g, beta, h0, scale):
    """Token-by-token gated delta rule in float64: S_t = e^{g_t}(I - b k k^T) S + b k v^T, o = scale S^T q."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    q, k, v, g, beta = (x.double() for x in (q, k, v, g, beta))
    S = h0.double() if h0 is not None else q.new_zeros(B, H, K, V, dtype=torch.float64)
    outs = []
    for t in range(T):
        kt, vt, qt = k[:, t], v[:, t], q[:, t]  # [B,H,K]
        bt, gt = beta[:, t][..., None, None], g[:, t].exp()[..., None, None]
        S = gt * S
        kS = torch.einsum("bhk,bhkv->bhv", kt, S)
        S = S + bt * kt[..., :, None] * (vt - kS)[..., None, :]
        outs.append(scale * torch.einsum("bhk,bhkv->bhv", qt, S))
    return torch.stack(outs, 1), S


def make_inputs(B, T, H, K, V, dtype, dev, gate_scale=1.0, with_h0=True, seed=0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
    v = torch.randn(B, T, H, V, generator=gen)
    g = F.logsigmoid(torch.rand(B, T, H, generator=gen)) * gate_scale
    beta = torch.rand(B, T, H, generator=gen).sigmoid()
    h0 = torch.randn(B, H, K, V, generator=gen) * 0.5 if with_h0 else None
    cast = lambda x: x.to(dev, dtype)
    return (cast(q), cast(k), cast(v), g.to(dev), beta.to(dev), h0.to(dev) if h0 is not None else None)


def run_ours(q, k, v, g, beta, h0, scale, final=True):
    o, ht = torch.ops.engram.chunk_gated_delta_rule(q, k, v, g, beta, h0, scale, C, final)
    return o, ht


def rel_rms(a, b):
    a, b = a.double(), b.double()
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def max_abs(a, b):
    return (a.double() - b.double()).abs().max().item()


def check_case(B, T, H, K, V, dtype, dev, gate_scale=1.0, with_h0=True, seed=0):
    q, k, v, g, beta, h0 = make_inputs(B, T, H, K, V, dtype, dev, gate_scale, with_h0, seed)
    scale = K ** -0.5
    leaves = [q, k, v, g, beta] + ([h0] if h0 is not None else [])
    names = ["dq", "dk", "dv", "dg", "dbeta"] + (["dh0"] if h0 is not None else [])
    # reference on the same (rounded) inputs, in float64
    ref_in = [x.detach().double().requires_grad_(True) for x in leaves]
    rq, rk, rv, rg, rb = ref_in[:5]
    rh = ref_in[5] if h0 is not None else None
    ro, rht = reference(rq, rk, rv, rg, rb, rh, scale)
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    do = torch.randn(ro.shape, generator=gen).to(dev)
    dht = torch.randn(rht.shape, generator=gen).to(dev)
    (ro * do.double()).sum().backward(retain_graph=True)
    (rht * dht.double()).sum().backward()
    ref_grads = [x.grad for x in ref_in]
    ours_in = [x.detach().clone().requires_grad_(True) for x in leaves]
    oq, ok_, ov, og, ob = ours_in[:5]
    oh = ours_in[5] if h0 is not None else None
    o, ht = run_ours(oq, ok_, ov, og, ob, oh, scale)
    assert o.dtype == dtype and ht.dtype == torch.float32
    torch.autograd.backward([o, ht], [do.to(dtype), dht])
    our_grads = [x.grad for x in ours_in]
    res = {"case": f"{dtype_name(dtype)} B={B} T={T} H={H} K={K} V={V} gate*{gate_scale} h0={with_h0}"}
    pairs = [("o", o, ro), ("ht", ht, rht)] + [(n, a, b) for n, a, b in zip(names, our_grads, ref_grads)]
    return judge(res, pairs, dtype)


def judge(res, pairs, dtype):
    """Records each (name, ours, reference) in res against its threshold (module docstring) and
    sets res["pass"]; returns res."""
    ok = True
    for n, a, b in pairs:
        finite = bool(torch.isfinite(a).all().item())
        ma, rr = max_abs(a, b), rel_rms(a, b)
        if dtype == torch.float32:
            tol = 1e-4 if n in ("o", "ht") else 1e-3
            good = finite and ma < tol
        else:
            tol = 0.005 if n in ("o", "ht") else (0.02 if n in ("dg", "dbeta") else 0.008)
            good = finite and rr < tol
        ok &= good
        res[n] = {"max_abs": ma, "rel_rms": rr, "ref_max": b.abs().max().item(), "pass": good}
    res["pass"] = ok
    return res


def check_forward_case(B, T, H, K, V, dtype, dev, gate_scale=1.0, with_h0=True, seed=0):
    """The forward without a gradient (no intermediates saved: the fused kernel where it applies)
    against the float64 reference, o and final state, with the thresholds of check_case."""
    q, k, v, g, beta, h0 = make_inputs(B, T, H, K, V, dtype, dev, gate_scale, with_h0, seed)
    scale = K ** -0.5
    with torch.no_grad():
        ro, rht = reference(q, k, v, g, beta, h0, scale)
        o, ht = run_ours(q, k, v, g, beta, h0, scale)
        # without the final state asked for, the kernels skip its store; o must not change
        o2, ht2 = run_ours(q, k, v, g, beta, h0, scale, False)
    res = {"case": f"no-grad {dtype_name(dtype)} B={B} T={T} H={H} K={K} V={V} gate*{gate_scale} h0={with_h0}"}
    res = judge(res, (("o", o, ro), ("ht", ht, rht)), dtype)
    if ht2 is not None or not torch.equal(o, o2):
        res["pass"] = False
        res["case"] += " (output_final_state=False: o differs or a state came back)"
    return res


def check_deterministic(B, T, H, K, V, dtype, dev):
    """Two backward passes on the same inputs give bitwise equal gradients (no atomics anywhere)."""
    grads = []
    for _ in range(2):
        leaves = [x.detach().clone().requires_grad_(True) for x in make_inputs(B, T, H, K, V, dtype, dev)]
        o, ht = run_ours(*leaves, K ** -0.5)
        gen = torch.Generator(device="cpu").manual_seed(7)
        torch.autograd.backward([o, ht], [torch.randn(o.shape, generator=gen).to(dev, dtype),
                                          torch.randn(ht.shape, generator=gen).to(dev)])
        grads.append([x.grad for x in leaves])
    return all(torch.equal(a, b) for a, b in zip(*grads))


def dtype_name(d):
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[d]


def check_errors(dev):
    """Bad input must raise a clear RuntimeError, never crash."""
    q, k, v, g, beta, h0 = make_inputs(1, 70, 2, 64, 64, torch.bfloat16, dev)
    cases = {
        "chunk 32": lambda: run_ours(q, k, v, g, beta, h0, 0.1) if False else torch.ops.engram.chunk_gated_delta_rule(q, k, v, g, beta, h0, 0.1, 32, True),
        "k shape": lambda: run_ours(q, k[:, :, :1], v, g, beta, h0, 0.1),
        "mixed dtype": lambda: run_ours(q, k.float(), v, g, beta, h0, 0.1),
        "cpu": lambda: run_ours(q.cpu(), k.cpu(), v.cpu(), g.cpu(), beta.cpu(), None, 0.1),
        "h0 shape": lambda: run_ours(q, k, v, g, beta, h0[:, :, :8], 0.1),
        "K=72": lambda: run_ours(torch.zeros(1, 8, 1, 72, device=dev), torch.zeros(1, 8, 1, 72, device=dev),
                                 torch.zeros(1, 8, 1, 64, device=dev), torch.zeros(1, 8, 1, device=dev),
                                 torch.zeros(1, 8, 1, device=dev), None, 0.1),
    }

    def knob_between_passes():
        # the forward saves A in 16 bits for the register gradient kernel; forcing the
        # shared-memory one before the backward must be refused, not read fp32 from 16 bits
        leaves = [x.detach().clone().requires_grad_(True) for x in (q, k, v, g, beta)]
        o, _ = run_ours(*leaves, None, 0.1)
        os.environ["ENGRAM_GDR_GRAD"] = "smem"
        try:
            o.sum().backward()
        finally:
            os.environ.pop("ENGRAM_GDR_GRAD", None)

    cases["grad knob between passes"] = knob_between_passes
    out = {}
    for name, f in cases.items():
        try:
            f()
            torch.cuda.synchronize()
            out[name] = "NO ERROR (bad)"
        except RuntimeError as e:
            out[name] = "ok: " + str(e).split("\n")[0][:120]
    return out


def warm_up(fn, warm=3, warm_s=0.3):
    """warm calls and at least warm_s seconds of calls: the GPU's clocks ramp up over a fraction
    of a second (without it, the first setting timed in a process reads up to 10% slower)."""
    t0 = time.time()
    n = 0
    while n < warm or time.time() - t0 < warm_s:
        fn()
        n += 1
        if n % 8 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()


def event_ms(fn):
    """One call's CUDA-event time from an idle GPU, in ms."""
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    fn()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e)


def bench(fn, reps, warm=3, warm_s=0.3):
    """CUDA-event median of reps calls after warm_up."""
    warm_up(fn, warm, warm_s)
    ts = sorted(event_ms(fn) for _ in range(reps))
    return ts[len(ts) // 2]


def bench_pair(fa, fb, reps):
    """CUDA-event medians of fa and fb timed alternately (a b, b a, a b, ...), so that drifts of
    the GPU's clocks or of the host within the run fall on both alike: timed one after the other,
    two kernels' ratio moved by up to 40% between runs on one machine (2026-11-25)."""
    warm_up(fa)
    warm_up(fb)
    ta, tb = [], []
    for i in range(reps):
        for f, ts in ((fa, ta), (fb, tb)) if i % 2 == 0 else ((fb, tb), (fa, ta)):
            ts.append(event_ms(f))
    ta.sort()
    tb.sort()
    return ta[len(ta) // 2], tb[len(tb) // 2]


def bench_inputs(B, T, H, K, V, dev):
    """The timing table's bf16 inputs at one shape: (q, k, v, g, beta), a gradient for o, and leaf
    copies of the five that take gradients."""
    q, k, v, g, beta, _ = make_inputs(B, T, H, K, V, torch.bfloat16, dev, with_h0=False)
    do = torch.randn(B, T, H, V, device=dev, dtype=torch.bfloat16)
    leaves = [x.detach().clone().requires_grad_(True) for x in (q, k, v, g, beta)]
    return (q, k, v, g, beta), do, leaves


def timed_calls(op, inputs, do, leaves):
    """op(q, k, v, g, beta) -> o as the three calls the tables time: the forward without a
    gradient, the training forward, and forward+backward (gradients dropped after each)."""
    def fwd():
        with torch.no_grad():
            op(*inputs)

    def train_fwd():
        return op(*leaves)

    def fwd_bwd():
        op(*leaves).backward(do)
        for x in leaves:
            x.grad = None

    return fwd, train_fwd, fwd_bwd


def our_calls(B, T, H, K, V, dev):
    """timed_calls of ours at one shape (scale K^-0.5, no initial or final state)."""
    return timed_calls(lambda *x: run_ours(*x, None, K ** -0.5, False)[0], *bench_inputs(B, T, H, K, V, dev))


def flops_fwd(B, T, H, K, V):
    # anchors.md: about 6 D^2 + 10 C D + (2/3) C^2 per token and head (D^2 -> K V, D -> (K+V)/2)
    return B * T * H * (6 * K * V + 10 * C * (K + V) / 2 + (2 / 3) * C * C)


def run_bench(shapes, dev, use_fla, reps_f=30, reps_b=20):
    rows = []
    fla_fn = None
    if use_fla:
        try:
            import fla.ops.common.chunk_o as cho
            cho.TRITON_ABOVE_3_7_1 = True  # timing only: lifts fla's Hopper/Triton-3.6 guard (toolchain.md)
            from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_fn
        except Exception as e:  # noqa: BLE001
            print("fla unavailable:", e)
    for (B, T, H, K, V) in shapes:
        inputs, do, leaves = bench_inputs(B, T, H, K, V, dev)
        q, k, v = inputs[:3]
        scale = K ** -0.5
        row = {"B": B, "T": T, "H": H, "K": K, "V": V}
        ours_f, _, ours_fb = timed_calls(lambda *x: run_ours(*x, None, scale, False)[0], inputs, do, leaves)
        fla_ok = False
        if fla_fn is not None:
            fla_f, _, fla_fb = timed_calls(lambda *x: fla_fn(*x, scale=scale)[0], inputs, do, leaves)
            try:
                fla_f()
                fla_fb()
                fla_ok = True
            except Exception as e:  # noqa: BLE001
                print("fla failed at", row, e)
        if fla_ok:  # ours and fla alternated call by call
            row["ours_fwd"], row["fla_fwd"] = bench_pair(ours_f, fla_f, reps_f)
            row["ours_fb"], row["fla_fb"] = bench_pair(ours_fb, fla_fb, reps_b)
        else:
            row["ours_fwd"] = bench(ours_f, reps_f)
            row["ours_fb"] = bench(ours_fb, reps_b)
        if K == V:
            qkv = tuple(x.transpose(1, 2).contiguous() for x in (q, k, v))
            sl = [x.detach().clone().requires_grad_(True) for x in qkv]
            sd_f, _, sd_fb = timed_calls(lambda *x: F.scaled_dot_product_attention(*x, is_causal=True), qkv,
                                         do.transpose(1, 2).contiguous(), sl)
            row["sdpa_fwd"] = bench(sd_f, reps_f)
            row["sdpa_fb"] = bench(sd_fb, reps_b)
        fl = flops_fwd(B, T, H, K, V)
        byt = B * T * H * (2 * K + 2 * V) * 2
        row["ours_fwd_tflops"] = fl / row["ours_fwd"] / 1e9
        row["ours_fwd_gbs"] = byt / row["ours_fwd"] / 1e6
        row["ours_fb_tflops"] = 3 * fl / row["ours_fb"] / 1e9
        row["ours_fb_gbs"] = (byt + B * T * H * (3 * K + 4 * V) * 2) / row["ours_fb"] / 1e6
        row["tokens_per_s_fwd"] = B * T / row["ours_fwd"] * 1e3
        row["tokens_per_s_fb"] = B * T / row["ours_fb"] * 1e3
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def wgmma_layout_test():
    """Compiles and runs scripts/gpu/wgmma_layout_test.cu (the wgmma descriptors and fragment
    layouts against a host product); None when no nvcc is on PATH."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(here, "wgmma_layout_test.cu")
    inc = os.path.join(here, "..", "..", "kernels", "include")
    exe = os.path.join("/tmp", f"wgmma_layout_test_{os.getpid()}")
    r = subprocess.run([nvcc, "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a", "-I" + inc, src, "-o", exe],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return False, "compile failed: " + r.stderr[-500:]
    r = subprocess.run([exe], capture_output=True, text=True)
    return r.returncode == 0, r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-500:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=".bundle/kernels/libengram_kernels.so")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--bench-only", action="store_true", help="skip the correctness cases (repeat timings)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--shapes", default="8,2048,16,128,128;4,4096,16,128,128;2,8192,16,128,128;1,16384,16,128,128;"
                    "8,2048,32,64,64;4,2048,8,64,128", help="benchmark shapes B,T,H,K,V separated by ';'")
    args = ap.parse_args()
    torch.ops.load_library(args.lib)
    dev = torch.device("cuda")
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    t0 = time.time()
    results = []
    cases = [
        # fp32: the tolerances
        (2, 200, 3, 64, 128, torch.float32, 1.0, True),
        (1, 64, 2, 128, 128, torch.float32, 1.0, True),
        (2, 75, 2, 128, 64, torch.float32, 1.0, False),
        (1, 130, 2, 64, 64, torch.float32, 10.0, True),
        (1, 63, 2, 128, 128, torch.float32, 0.01, True),
        # 16-bit: fla's thresholds
        (2, 256, 4, 64, 64, torch.bfloat16, 1.0, False),
        (2, 300, 2, 128, 128, torch.bfloat16, 1.0, True),
        (1, 500, 2, 64, 128, torch.float16, 1.0, True),
        (2, 75, 2, 128, 64, torch.float16, 10.0, True),
        (1, 1000, 1, 128, 128, torch.bfloat16, 0.1, True),
        (3, 1, 2, 64, 64, torch.bfloat16, 1.0, True),
        (1, 100, 2, 32, 64, torch.bfloat16, 1.0, True),  # K outside {64, 128}: shared-memory scans
        (1, 100, 2, 16, 32, torch.float32, 1.0, True),
        (1, 70, 1, 48, 64, torch.float16, 1.0, False),
    ]
    # 16-bit inputs with K in {64, 128} run the register-resident scans, whose warps per block
    # come from the shape; force each count, and the shared-memory scans with both V-block widths
    # (the forward's mma.sync scan only with ENGRAM_GDR_SCAN=mma: where it applies, the wgmma forward scan runs)
    env_cases = [({"ENGRAM_GDR_NW": nw, "ENGRAM_GDR_SCAN": "mma"}, (2, 300, 2, 128, 128, torch.bfloat16, 1.0, True))
                 for nw in ("1", "2", "4", "8")]
    env_cases += [({"ENGRAM_GDR_NW": nw, "ENGRAM_GDR_SCAN": "mma"}, (2, 75, 2, 64, 64, torch.float16, 10.0, False))
                  for nw in ("1", "4")]
    # the wgmma forward scan with one and two warpgroups per block
    env_cases += [({"ENGRAM_GDR_WG": n}, c) for n in ("1", "2")
                  for c in ((2, 300, 2, 128, 128, torch.bfloat16, 1.0, True), (1, 130, 2, 64, 128, torch.float16, 10.0, False),
                            (1, 1000, 1, 128, 128, torch.bfloat16, 0.1, True))]
    env_cases += [({"ENGRAM_GDR_STAGES": "3"}, (2, 300, 2, 128, 128, torch.bfloat16, 1.0, True))]
    env_cases += [({"ENGRAM_GDR_SCAN": "smem", "ENGRAM_GDR_VB": vb}, (2, 300, 2, 128, 128, torch.bfloat16, 1.0, True))
                  for vb in ("32", "16")]
    env_cases += [({"ENGRAM_GDR_SCAN": "smem", "ENGRAM_GDR_VB": vb}, (2, 75, 2, 128, 64, torch.float16, 10.0, False))
                  for vb in ("32", "16")]
    env_cases += [({"ENGRAM_GDR_VB": vb}, (1, 200, 2, 64, 128, torch.float32, 1.0, True)) for vb in ("32", "16")]
    # the shared-memory prep and gradient stages that the register-resident ones replaced for 16-bit K, V in {64, 128}
    env_cases += [({"ENGRAM_GDR_PREP": "smem"}, c) for c in ((2, 300, 2, 128, 128, torch.bfloat16, 1.0, True),
                                                             (1, 130, 2, 64, 128, torch.float16, 10.0, False))]
    env_cases += [({"ENGRAM_GDR_GRAD": "smem"}, c) for c in ((2, 300, 2, 128, 128, torch.bfloat16, 1.0, True),
                                                             (2, 75, 2, 128, 64, torch.float16, 10.0, False))]
    # the mma.sync gradient kernel (at V = 128 the wgmma one runs unless ENGRAM_GDR_GRAD=mma) with
    # one block per chunk and with persistent blocks
    env_cases += [({"ENGRAM_GDR_GRAD_PERSIST": pf, "ENGRAM_GDR_GRAD": "mma"}, c) for pf in ("0", "1")
                  for c in ((2, 300, 2, 128, 128, torch.bfloat16, 1.0, True), (1, 130, 2, 64, 128, torch.float16, 10.0, False),
                            (2, 75, 2, 64, 64, torch.bfloat16, 1.0, True))]
    # more chunks (297) than an H100 has SMs, so that persistent blocks walk several (both parities
    # of their double buffers) and a tail chunk
    env_cases += [({"ENGRAM_GDR_GRAD_PERSIST": "1", "ENGRAM_GDR_GRAD": "mma"}, c)
                  for c in ((3, 2100, 3, 128, 128, torch.bfloat16, 1.0, True), (3, 2100, 3, 64, 128, torch.float16, 1.0, False))]
    # the wgmma gradient kernel (K in {64, 128}, V = 128, A saved in 16 bits): persistent blocks
    # walking several chunks with a tail, fp16, and T below one chunk
    env_cases += [({}, c) for c in ((3, 2100, 3, 128, 128, torch.bfloat16, 1.0, True),
                                    (3, 2100, 3, 128, 128, torch.float16, 10.0, False),
                                    (2, 37, 3, 128, 128, torch.float16, 1.0, True),
                                    (3, 2100, 3, 64, 128, torch.bfloat16, 1.0, True))]
    # the forward without a gradient: the fused kernel forced (small shapes have too few heads to
    # pick it), at its default (102 heads: picked on a 132-SM H100), and the split kernels
    fwd_only = [(2, 300, 2, 128, 128, torch.bfloat16, 1.0, True), (1, 1000, 1, 128, 128, torch.bfloat16, 0.1, True),
                (1, 130, 2, 64, 128, torch.float16, 10.0, False), (2, 75, 2, 128, 256, torch.bfloat16, 1.0, True),
                (3, 1, 2, 64, 128, torch.bfloat16, 1.0, True), (1, 64, 2, 128, 128, torch.float16, 1.0, True),
                (3, 2100, 3, 128, 128, torch.bfloat16, 1.0, True), (2, 200, 2, 64, 256, torch.float16, 0.01, True)]
    fused = [({"ENGRAM_GDR_FUSED": "1"}, c) for c in fwd_only] + [({}, (6, 200, 17, 128, 128, torch.bfloat16, 1.0, True))]
    # the same with a gradient: the fused forward of a training step (it saves what the backward
    # reads; V = 256 falls back to the split kernels: the register gradient stage needs V <= 128)
    env_cases += fused
    cases = [] if args.bench_only else [({}, c) for c in cases] + env_cases
    fwd_cases = [] if args.bench_only else fused + [({"ENGRAM_GDR_FUSED": "0"}, c) for c in fwd_only[:2]]
    knobs = ("ENGRAM_GDR_VB", "ENGRAM_GDR_NW", "ENGRAM_GDR_SCAN", "ENGRAM_GDR_STAGES", "ENGRAM_GDR_GRAD", "ENGRAM_GDR_PREP",
             "ENGRAM_GDR_GRAD_PERSIST", "ENGRAM_GDR_WG", "ENGRAM_GDR_FUSED")
    allok = True
    if not args.bench_only:
        lt = wgmma_layout_test()
        if lt is None:
            print("wgmma layout test: skipped (no nvcc on PATH)", flush=True)
        else:
            print("wgmma layout test:", "PASS" if lt[0] else "FAIL", lt[1], flush=True)
            allok &= lt[0]
    for env, case, check in [(e, c, check_case) for e, c in cases] + [(e, c, check_forward_case) for e, c in fwd_cases]:
        B, T, H, K, V, dt, gs, wh = case
        for n in knobs:
            os.environ.pop(n, None)
        os.environ.update(env)
        try:
            r = check(B, T, H, K, V, dt, dev, gs, wh)
        except Exception as e:  # noqa: BLE001
            r = {"case": f"{dtype_name(dt)} B={B} T={T} H={H} K={K} V={V}", "pass": False, "error": str(e)[:2000]}
        if env:
            r["case"] += " " + " ".join(f"{n[11:]}={v}" for n, v in env.items())
        allok &= r["pass"]
        line = r["case"] + (" PASS" if r["pass"] else " FAIL")
        if "error" in r:
            line += " " + r["error"]
        else:
            line += " | " + " ".join(f"{n}:{r[n]['max_abs']:.1e}/{r[n]['rel_rms']:.1e}" for n in r if isinstance(r[n], dict))
        print(line, flush=True)
        results.append(r)
    for n in knobs:
        os.environ.pop(n, None)
    for case in () if args.bench_only else ((2, 300, 2, 128, 128, torch.bfloat16), (1, 200, 3, 64, 128, torch.float16),
                                            (3, 2100, 3, 128, 128, torch.bfloat16)):
        same = check_deterministic(*case, dev)
        allok &= same
        print(f"deterministic gradients {dtype_name(case[-1])} {case[:5]}: {'PASS' if same else 'FAIL'}", flush=True)
    errs = {} if args.bench_only else check_errors(dev)
    for n, m in errs.items():
        print("error case", n, "->", m)
        allok &= m.startswith("ok")
    print(f"correctness: {'ALL PASS' if allok else 'FAILURES'} ({time.time() - t0:.1f}s)", flush=True)
    rows = []
    if not args.no_bench:
        shapes = [tuple(map(int, spec.split(","))) for spec in args.shapes.split(";")]
        rows = run_bench(shapes, dev, not args.no_fla)
        print("\n| B | T | H | K | V | ours fwd | fla fwd | sdpa fwd | ours f+b | fla f+b | sdpa f+b | fwd x fla | f+b x fla |")
        for r in rows:
            ff = r.get("fla_fwd", float("nan")); fb = r.get("fla_fb", float("nan"))
            print(f"| {r['B']} | {r['T']} | {r['H']} | {r['K']} | {r['V']} | {r['ours_fwd']:.3f} | {ff:.3f} | "
                  f"{r.get('sdpa_fwd', float('nan')):.3f} | {r['ours_fb']:.3f} | {fb:.3f} | "
                  f"{r.get('sdpa_fb', float('nan')):.3f} | {ff / r['ours_fwd']:.2f} | {fb / r['ours_fb']:.2f} |")
    with open(os.path.join(args.out, "gdr_results.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "correctness": results, "errors": errs, "bench": rows}, f,
                  indent=1, default=str)


if __name__ == "__main__":
    main()
