#!/usr/bin/env python3
"""PyTorch + fla peer of `engram bench gdn`: the same hybrid GDN + SWA model (the seed's "GS"
config: d=512, H=8, K=64, V=128, vocab 50257, window 64, shifted values, tied embedding:
33,217,560 parameters), trained on random tokens with the same step: bf16 autocast over fp32
weights, loss in fp32, global-norm clipping at 1, fused AdamW. Prints steps/s, tokens/s and
peak memory (torch's allocated/reserved peaks and nvidia-smi's process figure, the one
`engram bench gdn` reports).

The seed recurrence S_t = g S + β k (v − Sᵀk) runs through fla's `chunk_gated_delta_rule` with
the exact map q=k, v'=g·v, log-decay ln g, β'=β/g, scale 1 (anchors.md). The S layer's state read
is causal by default (o_t = S_tᵀ relu(q_t), a second fla call with the retrieval queries), as in
engram; `--seed-compat` reads the final state at every position as the seed did.

fla 0.6.0 refuses its gated backward on Hopper with Triton 3.4–3.7.0 (wrong gradients, fla
issue #640). `--lift-hopper-guard` (default on) lifts it for timing only; never train with it.

Usage: python3 hybrid_torch.py [--shapes 4x2048,8x4096] [--warmup 5] [--steps 20] [--json out.json]
"""
import argparse
import json
import os
import subprocess
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight).to(x.dtype)


class SwiGLU(nn.Module):
    def __init__(self, d):
        super().__init__()
        hidden = ((d * 8 // 3 + 63) // 64) * 64
        self.w1 = nn.Linear(d, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d, bias=False)
        self.w3 = nn.Linear(d, hidden, bias=False)
        self.norm = RMSNorm(d)

    def forward(self, x):
        h = self.norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


def seed_to_standard(k, v, g, beta, floor=1e-6):
    g = g.float().clamp_min(floor)
    return k, k, v * g.unsqueeze(-1).to(v.dtype), g.log(), beta.float() / g


class SeedGDN(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, h, k, v = c["d"], c["h"], c["k"], c["v"]
        self.h, self.k, self.v = h, k, v
        self.norm = RMSNorm(d)
        self.k_proj = nn.Linear(d, h * k, bias=False)
        self.v_proj = nn.Linear(d, h * v, bias=False)
        self.o_proj = nn.Linear(h * v, d, bias=False)
        self.beta_proj = nn.Linear(d, h)
        self.g_proj = nn.Linear(d, h)
        nn.init.constant_(self.beta_proj.bias, -2.0)
        nn.init.constant_(self.g_proj.bias, 2.0)

    def forward(self, x, rule):
        B, T, _ = x.shape
        xn = self.norm(x)
        k = F.normalize(self.k_proj(xn).view(B, T, self.h, self.k).float(), dim=-1).to(x.dtype)
        v = self.v_proj(xn).view(B, T, self.h, self.v)
        beta = torch.sigmoid(self.beta_proj(xn))
        g = torch.sigmoid(self.g_proj(xn))
        # Shifted values: step t writes (k_{t-1}, v_t) with the gates of t-1; step 0 is identity.
        k = torch.cat([torch.zeros_like(k[:, :1]), k[:, :-1]], 1)
        beta = torch.cat([torch.zeros_like(beta[:, :1]), beta[:, :-1]], 1)
        g = torch.cat([torch.ones_like(g[:, :1]), g[:, :-1]], 1)
        q, kk, vv, lg, bb = seed_to_standard(k, v, g, beta)
        o, state = rule(q, kk, vv, lg, bb, scale=1.0, output_final_state=True)
        out = x + self.o_proj(o.to(x.dtype).reshape(B, T, self.h * self.v))
        return out, (kk, vv, lg, bb, state)


class SWA(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, h, k, v = c["d"], c["h"], c["k"], c["v"]
        self.h, self.k, self.v, self.window = h, k, v, c["window"]
        self.norm = RMSNorm(d)
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.global_q_proj = nn.Linear(d, h * k, bias=False)
        nn.init.normal_(self.global_q_proj.weight, std=0.02)
        self.retrieval_o_proj = nn.Linear(h * v, d, bias=False)
        self.gate_proj = nn.Linear(d, h)
        nn.init.constant_(self.gate_proj.bias, 1.0)

    def forward(self, x, writes, rule, seed_compat):
        B, T, D = x.shape
        xn = self.norm(x)
        hd = D // self.h
        q = self.q_proj(xn).view(B, T, self.h, hd).transpose(1, 2)
        k = self.k_proj(xn).view(B, T, self.h, hd).transpose(1, 2)
        v = self.v_proj(xn).view(B, T, self.h, hd).transpose(1, 2)
        i = torch.arange(T, device=x.device)
        diff = i[:, None] - i[None, :]
        mask = (diff >= 0) & (diff <= self.window)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = x + self.o_proj(att.transpose(1, 2).reshape(B, T, D))
        if writes is not None:
            kk, vv, lg, bb, state = writes
            qg = F.relu(self.global_q_proj(xn).view(B, T, self.h, self.k))
            if seed_compat:
                r = torch.einsum("bhkv,bthk->bthv", state.to(qg.dtype), qg)
            else:
                r, _ = rule(qg.to(kk.dtype), kk, vv, lg, bb, scale=1.0, output_final_state=False)
            r = self.retrieval_o_proj(r.to(x.dtype).reshape(B, T, self.h * self.v))
            out = out + torch.sigmoid(self.gate_proj(xn)).mean(-1, keepdim=True) * r
        return out


class Hybrid(nn.Module):
    def __init__(self, c, rule, seed_compat=False):
        super().__init__()
        self.c, self.rule, self.seed_compat = c, rule, seed_compat
        self.embed = nn.Embedding(c["vocab"], c["d"])
        nn.init.normal_(self.embed.weight, std=0.02)
        self.mixers = nn.ModuleList()
        self.ffns = nn.ModuleList()
        for p in c["pattern"]:
            self.mixers.append(SeedGDN(c) if p == "G" else SWA(c))
            self.ffns.append(SwiGLU(c["d"]))
        self.norm_f = RMSNorm(c["d"])

    def forward(self, tokens):
        x = self.embed(tokens)
        writes = None
        for m, f in zip(self.mixers, self.ffns):
            if isinstance(m, SeedGDN):
                x, writes = m(x, self.rule)
            else:
                x = m(x, writes, self.rule, self.seed_compat)
            x = f(x)
        return self.norm_f(x) @ self.embed.weight.to(x.dtype).t()


def fla_rule(lift_guard):
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    if lift_guard:
        import fla.ops.common.chunk_o as chunk_o
        chunk_o.TRITON_ABOVE_3_7_1 = True

    def rule(q, k, v, g, beta, scale, output_final_state):
        dt = torch.bfloat16
        return chunk_gated_delta_rule(q.to(dt), k.to(dt), v.to(dt), g.float(), beta.float(), scale=scale,
                                      output_final_state=output_final_state)
    return rule


def nvidia_smi_mib():
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, check=True).stdout
    except Exception:
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if parts and parts[0] == str(os.getpid()):
            return float(parts[1])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="4x2048,8x4096")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed-compat", action="store_true")
    ap.add_argument("--no-lift-hopper-guard", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--trace", help="Chrome trace of the first shape's timed steps (torch.profiler)")
    a = ap.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    c = dict(d=512, h=8, k=64, v=128, vocab=50257, pattern="GS", window=64)
    rule = fla_rule(not a.no_lift_hopper_guard)
    rows = []
    for si, shape in enumerate(a.shapes.split(",")):
        prof = None
        B, T = (int(s) for s in shape.split("x"))
        torch.manual_seed(0)
        model = Hybrid(c, rule, a.seed_compat).cuda()
        params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
        torch.cuda.reset_peak_memory_stats()
        losses = []
        for i in range(a.warmup + a.steps):
            if i == a.warmup:
                torch.cuda.synchronize()
                if a.trace and si == 0:
                    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                              torch.profiler.ProfilerActivity.CUDA])
                    prof.__enter__()
                t0 = time.perf_counter()
            tok = torch.randint(0, c["vocab"], (B, T + 1), device="cuda")
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(tok[:, :-1])
            loss = F.cross_entropy(logits.float().view(-1, c["vocab"]), tok[:, 1:].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if i >= a.warmup:
                losses.append(loss.detach())
        torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        if prof is not None:
            prof.__exit__(None, None, None)
            prof.export_chrome_trace(a.trace)
        row = dict(batch=B, seq_len=T, parameters=params, steps_per_s=a.steps / secs, tokens_per_s=a.steps * B * T / secs,
                   loss=torch.stack(losses).mean().item(),
                   max_allocated_mib=torch.cuda.max_memory_allocated() / 2**20,
                   max_reserved_mib=torch.cuda.max_memory_reserved() / 2**20, process_gpu_mib=nvidia_smi_mib())
        rows.append(row)
        print(json.dumps(row))
        del model, opt
        torch.cuda.empty_cache()
    print("| B | T | params | steps/s | tokens/s | loss | max allocated MiB | max reserved MiB | process GPU MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['seq_len']} | {r['parameters']} | {r['steps_per_s']:.2f} | {r['tokens_per_s']:.0f} | "
              f"{r['loss']:.3f} | {r['max_allocated_mib']:.0f} | {r['max_reserved_mib']:.0f} | {r['process_gpu_mib']} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
