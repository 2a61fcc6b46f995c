"""Golden numbers for engram-moe, produced with PyTorch 2.11 on CPU.

Run: /work/main/.venv/bin/python crates/engram-moe/tests/golden/gen_golden.py
Writes golden.json next to this file. Every model is built exactly as in the seeds
(seed 001 In[6..8], seed 000 notebook B In[2], In[4], In[7]) so that the Rust port, consuming
libtorch's generator in the same order, must reproduce these numbers.
"""
import json, math, os
import torch, torch.nn as nn, torch.nn.functional as F, torch.optim as optim

torch.set_num_threads(1)
out = {}

# ---- seed 001: raw attention ----
class RawAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.Wq = nn.Linear(1, 1, bias=False); self.Wk = nn.Linear(1, 1, bias=False); self.Wv = nn.Linear(1, 1, bias=False)
    def forward(self, x):
        t = torch.stack([x[:, 0:1], x[:, 1:2]], dim=1)
        Q, K, V = self.Wq(t), self.Wk(t), self.Wv(t)
        return torch.matmul(torch.matmul(Q, K.transpose(1, 2)), V).squeeze(-1)
class Top(nn.Module):
    def __init__(self):
        super().__init__(); self.raw_attention = RawAttention(); self.attn_out = nn.Linear(2, 1)
    def forward(self, x):
        return self.attn_out(self.raw_attention(x) + x)

X = torch.tensor([[0., 0.], [0., 1.], [1., 0.], [1., 1.]])
TARGETS = {"xor": torch.tensor([[0.], [1.], [1.], [0.]]), "nand": torch.tensor([[1.], [1.], [1.], [0.]])}

def params(m):
    return [p.detach().reshape(-1).tolist() for p in m.parameters()]

def run_first_order(task, opt_name, steps):
    torch.manual_seed(0)
    y = TARGETS[task]
    m = Top()
    init = params(m)
    if opt_name == "adamw": o = optim.AdamW(m.parameters(), lr=5e-2)
    elif opt_name == "adam": o = optim.Adam(m.parameters(), lr=5e-2)
    elif opt_name == "sgd": o = optim.SGD(m.parameters(), lr=5e-2)
    losses = []
    for _ in range(steps):
        o.zero_grad(); loss = F.mse_loss(m(X), y); losses.append(loss.item()); loss.backward(); o.step()
    return {"init": init, "losses": losses, "final": params(m)}

def run_lbfgs(task, steps):
    torch.manual_seed(0)
    y = TARGETS[task]; m = Top()
    o = optim.LBFGS(m.parameters(), lr=0.05, max_iter=20, history_size=100)
    losses = []
    for _ in range(steps):
        def closure():
            o.zero_grad(); l = F.mse_loss(m(X), y); l.backward(); return l
        losses.append(o.step(closure).item())
    return {"losses": losses, "final": params(m)}

def run_polyak(task, steps):
    torch.manual_seed(0)
    y = TARGETS[task]; m = Top(); losses = []
    for _ in range(steps):
        m.zero_grad(); l = F.mse_loss(m(X), y); losses.append(l.item()); l.backward()
        g2 = sum((p.grad ** 2).sum() for p in m.parameters())
        if g2.item() < 1e-12: break
        with torch.no_grad():
            for p in m.parameters(): p -= (l / g2) * p.grad
    return {"losses": losses, "final": params(m)}

out["xor_adamw"] = run_first_order("xor", "adamw", 500)
out["xor_adam"] = run_first_order("xor", "adam", 300)
out["xor_sgd"] = run_first_order("xor", "sgd", 300)
out["nand_adamw"] = run_first_order("nand", "adamw", 300)
out["xor_lbfgs"] = run_lbfgs("xor", 30)
out["nand_lbfgs"] = run_lbfgs("nand", 30)
out["xor_polyak"] = run_polyak("xor", 100)

# ---- seed 000 notebook B In[4]: the Bat Cave ----
class SelfAttention(nn.Module):
    def __init__(self, e, h):
        super().__init__(); self.head_dim = h
        self.query = nn.Linear(e, h); self.key = nn.Linear(e, h); self.value = nn.Linear(e, h)
    def forward(self, x):
        Q, K, V = self.query(x), self.key(x), self.value(x)
        w = F.softmax(torch.matmul(Q, K.transpose(-2, -1)) / math.sqrt(self.head_dim), dim=-1)
        return torch.matmul(w, V), w

torch.manual_seed(42)
att = SelfAttention(4, 4)
inp = torch.randn(1, 3, 4)
ctx, w = att(inp)
out["bat_cave"] = {"input": inp[0].tolist(), "weights": w[0].tolist(), "context": ctx[0].tolist()}

# ---- In[7]: 3-D river/money with frozen identity V ----
torch.manual_seed(42)
m3 = SelfAttention(3, 3)
m3.value.weight.data = torch.eye(3); m3.value.bias.data.fill_(0.0)
m3.value.weight.requires_grad = False; m3.value.bias.requires_grad = False
o3 = optim.Adam(filter(lambda p: p.requires_grad, m3.parameters()), lr=0.05)
r, mo, b = [1., 0., 0.], [0., 1., 0.], [0., 0., 1.]
iA, tA, iB, tB = torch.tensor([[r, b]]), torch.tensor([[r, r]]), torch.tensor([[mo, b]]), torch.tensor([[mo, mo]])
l3 = []
for _ in range(500):
    o3.zero_grad(); l = F.mse_loss(m3(iA)[0], tA) + F.mse_loss(m3(iB)[0], tB); l3.append(l.item()); l.backward(); o3.step()
out["river3d"] = {"losses": l3, "att_river": m3(iA)[1][0, 1, 0].item(), "att_money": m3(iB)[1][0, 1, 0].item()}

# ---- In[2]: fork-in-the-road MoE, seeded with manual_seed(0) (the notebook had no seed) ----
class Expert(nn.Module):
    def __init__(self, d): super().__init__(); self.net = nn.Linear(d, d)
    def forward(self, x): return self.net(x)
class MoE(nn.Module):
    def __init__(self, d, n=2):
        super().__init__(); self.experts = nn.ModuleList([Expert(d) for _ in range(n)]); self.gate = nn.Linear(d, n)
    def forward(self, x):
        g = F.softmax(self.gate(x), dim=-1)
        eo = torch.stack([e(x) for e in self.experts], dim=1)
        return (g.unsqueeze(-1) * eo).sum(dim=1), g
torch.manual_seed(0)
moe = MoE(4, 2); om = optim.Adam(moe.parameters(), lr=0.01); lm = []
for _ in range(1001):
    x = torch.randn(128, 4) * 2
    pos = (x[:, 0] > 0).float().unsqueeze(1)
    y = (x + 1) * pos + (x - 1) * (1 - pos)
    om.zero_grad(); l = F.mse_loss(moe(x)[0], y); lm.append(l.item()); l.backward(); om.step()
out["fork_moe_seed0"] = {"losses": lm, "pos_gate": moe(torch.tensor([[5., 0, 0, 0]]))[1][0].tolist(),
    "neg_gate": moe(torch.tensor([[-5., 0, 0, 0]]))[1][0].tolist(),
    "expert_weights": [e.net.weight.detach().tolist() for e in moe.experts],
    "expert_biases": [e.net.bias.detach().tolist() for e in moe.experts]}

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json"), "w") as f:
    json.dump(out, f)
xa = out["xor_adamw"]["losses"]
print("xor adamw", [f"{xa[i]:.4f}" for i in range(0, 401, 50)])
print("bat", [[round(v, 2) for v in r] for r in out["bat_cave"]["weights"]])
print("3d", [f"{l3[i]:.4f}" for i in range(0, 500, 100)], out["river3d"]["att_river"], out["river3d"]["att_money"])
print("lbfgs", out["xor_lbfgs"]["losses"][:5], out["xor_lbfgs"]["losses"][-1])
print("polyak", out["xor_polyak"]["losses"][:5], out["xor_polyak"]["losses"][-1], len(out["xor_polyak"]["losses"]))
print("fork", [f"{lm[i]:.4f}" for i in range(0, 1001, 200)], out["fork_moe_seed0"]["pos_gate"], out["fork_moe_seed0"]["neg_gate"])
