"""Where the fused forward's time goes, per chunk: reads the clock64 stamps of a library built by
scripts/gen/fused_trace.py and prints the producer's phases and the first consumer group's waits
and chunk step, in SM cycles (mean, 10th and 90th percentile over (batch, head) blocks and
chunks 2.., at (8,2048,16,128) bf16). With --grad, the same of the gradient kernel's phases
(bwd_grad_wg, stamps from scripts/gen/grad_trace.py): when each warp reaches each point of
the chunk, which shows who the block barriers wait for.

    python3 scripts/gpu/gdr_trace.py .bundle/k/trace.so
    python3 scripts/gpu/gdr_trace.py --grad .bundle/k/gtrace.so

The producer bounds the kernel when the consumers wait for it ("ready-wait"), the consumers when
the producer waits for them ("done-wait").
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gdr_check import make_inputs  # noqa: E402

PRODUCER = ["done-wait", "tile request + G tables (G scan)", "full-wait (tiles)", "K K^T, Q K^T (wgmma)",
            "their epilogue + barrier", "diagonal inverse + barrier", "halving 1 + barrier", "halving 2 + barrier",
            "fence + hand-over"]


def grad_main(lib):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gen"))
    from grad_trace import MAX_CHUNKS, NAMES, STAMPS, WARPS
    torch.ops.load_library(lib)
    B, T, H, K, V = 8, 2048, 16, 128, 128
    q, k, v, g, beta, h0 = make_inputs(B, T, H, K, V, torch.bfloat16, "cuda", with_h0=True)
    leaves = [x.requires_grad_(True) for x in (q, k, v, g, beta, h0)]
    do = torch.randn(B, T, H, V, device="cuda", dtype=torch.bfloat16)
    for _ in range(10):
        for x in leaves:
            x.grad = None
        o, _ = torch.ops.engram.chunk_gated_delta_rule(*leaves, K ** -0.5, 64, False)
        o.backward(do)
    torch.cuda.synchronize()
    blocks = torch.cuda.get_device_properties(0).multi_processor_count
    per = (B * H * (T // 64)) // blocks  # chunks every block walks
    tr = h0.grad.view(torch.int64).reshape(-1)[: blocks * MAX_CHUNKS * WARPS * STAMPS]
    tr = tr.reshape(blocks, MAX_CHUNKS, WARPS, STAMPS)
    tr = tr[:, :per].cpu().numpy().astype(np.float64)
    # each stamp relative to warp 0's loop head of the same chunk; the next chunk's head as stamp STAMPS
    head = tr[:, :, :1, :1]
    nxt = np.concatenate([tr[:, 1:, :, :1], tr[:, -1:, :, :1] * np.nan], axis=1)
    st = (np.concatenate([tr, nxt], axis=3) - head)[:, 2:-1]
    print("| stamp (the phase that ends there) | " + " | ".join(f"warp {w}" for w in range(WARPS)) + " |")
    print("|---|" + "---|" * WARPS)
    for i in range(1, STAMPS + 1):
        print(f"| {i}: {NAMES[i - 1]} | " + " | ".join(f"{st[:, :, w, i].mean():.0f}" for w in range(WARPS)) + " |")
    period = st[:, :, 0, STAMPS]
    print(f"\nchunk period (warp 0): {period.mean():.0f} cycles (p10 {np.percentile(period, 10):.0f}, "
          f"p90 {np.percentile(period, 90):.0f}); stamps are cycles after warp 0's loop head, means over blocks and "
          "chunks 2..")


def main():
    if len(sys.argv) < 2 or (sys.argv[1] == "--grad" and len(sys.argv) < 3):
        sys.exit(__doc__)
    if sys.argv[1] == "--grad":
        return grad_main(sys.argv[2])
    torch.ops.load_library(sys.argv[1])
    B, T, H, K, V = 8, 2048, 16, 128, 128
    q, k, v, g, beta, _ = make_inputs(B, T, H, K, V, torch.bfloat16, "cuda", with_h0=False)
    for _ in range(20):
        _, ht = torch.ops.engram.chunk_gated_delta_rule(q, k, v, g, beta, None, K ** -0.5, 64, True)
    torch.cuda.synchronize()
    NT = T // 64
    tr = ht.view(torch.int64).reshape(B * H, -1)[:, : NT * 16].reshape(B * H, NT, 16).cpu().numpy().astype(np.float64)
    c = tr[:, 2:, :]

    def row(name, d):
        print(f"| {name} | {d.mean():.0f} | {np.percentile(d, 10):.0f} | {np.percentile(d, 90):.0f} |")

    print("| producer phase | cycles | p10 | p90 |\n|---|---|---|---|")
    for s, name in enumerate(PRODUCER, start=1):
        row(name, c[:, :, s] - c[:, :, s - 1])
    row("chunk period", tr[:, 3:, 0] - tr[:, 2:-1, 0])
    print("\n| consumer group 0 | cycles | p10 | p90 |\n|---|---|---|---|")
    row("full-wait (tiles)", c[:, :, 11] - c[:, :, 10])
    row("ready-wait (producer)", c[:, :, 12] - c[:, :, 11])
    row("chunk step", c[:, :, 13] - c[:, :, 12])
    row("chunk period", tr[:, 3:, 10] - tr[:, 2:-1, 10])
    print(f"\nconsumer group 1's chunk step: {(c[:, :, 15] - c[:, :, 14]).mean():.0f} cycles")


if __name__ == "__main__":
    main()
