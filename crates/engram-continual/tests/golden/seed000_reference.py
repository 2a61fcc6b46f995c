"""Seed-000 notebook A, cells In[3], In[5], In[7], In[8], condensed but op-for-op identical.

Run with the project venv (PyTorch 2.11, CPU): prints the published accuracies
97.80/85.88/84.60, 97.40/79.50/67.50, 97.30/97.80/51.00, 97.50/98.00/97.80.
The Rust port (engram_continual::seed000) must consume the generator in the same order.
"""
import torch, torch.nn as nn, torch.optim as optim


def data(task, n=1000, exclude_tr=False):
    X = torch.rand(n, 2) * 2 - 1
    if exclude_tr:
        X = X[~((X[:, 0] > 0) & (X[:, 1] > 0))]
    if task == "A":
        y = ((X[:, 0] > 0) & (X[:, 1] > 0)).float().view(-1, 1)
    else:
        y = ((X[:, 0] < 0) & (X[:, 1] < 0)).float().view(-1, 1)
    return X, y


def simple(h):
    return nn.Sequential(nn.Linear(2, h), nn.ReLU(), nn.Linear(h, 1), nn.Sigmoid())


def acc(m, X, y):
    with torch.no_grad():
        return ((m(X) > 0.5).float() == y).float().mean().item() * 100


def fisher(m, X, y):
    f = {n: torch.zeros_like(p) for n, p in m.named_parameters()}
    c = nn.BCELoss()
    for i in range(len(X)):
        m.zero_grad()
        c(m(X[i:i + 1]), y[i:i + 1]).backward()
        for n, p in m.named_parameters():
            f[n] += p.grad.data ** 2
    for n in f:
        f[n] /= len(X)
    return f


def penalty(m, f, old):
    loss = 0
    for n, p in m.named_parameters():
        loss += (f[n] * (p - old[n]) ** 2).sum()
    return loss


def train(m, opt, X, y, steps, extra=None, clip=None):
    c = nn.BCELoss()
    for _ in range(steps):
        opt.zero_grad()
        loss = c(m(X), y)
        if extra is not None:
            loss = loss + extra()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(m.parameters(), clip)
        opt.step()


def replay():
    torch.manual_seed(42)
    m = simple(64); opt = optim.SGD(m.parameters(), lr=0.1)
    XA, yA = data("A"); train(m, opt, XA, yA, 1000); a0 = acc(m, XA, yA)
    idx = torch.randperm(len(XA))[:300]
    XB, yB = data("B", exclude_tr=True)
    X = torch.cat((XB[:300], XA[idx]), 0); y = torch.cat((yB[:300], yA[idx]), 0)
    train(m, opt, X, y, 1000)
    return a0, acc(m, XB, yB), acc(m, XA, yA)


def ewc(h, lr1, lam, clip):
    torch.manual_seed(42)
    m = simple(h); opt = optim.SGD(m.parameters(), lr=lr1)
    XA, yA = data("A"); train(m, opt, XA, yA, 1000); a0 = acc(m, XA, yA)
    old = {n: p.data.clone() for n, p in m.named_parameters()}
    f = fisher(m, XA, yA)
    XB, yB = data("B"); opt = optim.SGD(m.parameters(), lr=0.01)
    train(m, opt, XB, yB, 2000, extra=lambda: lam * penalty(m, f, old), clip=clip)
    return a0, acc(m, XB, yB), acc(m, XA, yA)


def multihead():
    torch.manual_seed(42)
    shared = nn.Sequential(nn.Linear(2, 512), nn.ReLU())
    ha = nn.Sequential(nn.Linear(512, 1), nn.Sigmoid()); hb = nn.Sequential(nn.Linear(512, 1), nn.Sigmoid())
    opt = optim.SGD(list(shared.parameters()) + list(ha.parameters()) + list(hb.parameters()), lr=0.05)
    ma, mb = nn.Sequential(shared, ha), nn.Sequential(shared, hb)
    XA, yA = data("A"); train(ma, opt, XA, yA, 1000); a0 = acc(ma, XA, yA)
    XB, yB = data("B"); train(mb, opt, XB, yB, 1000)
    return a0, acc(mb, XB, yB), acc(ma, XA, yA)


if __name__ == "__main__":
    for name, r in [("In[3] replay", replay()), ("In[5] EWC-128", ewc(128, 0.1, 2000, None)),
                    ("In[7] EWC-512+clip", ewc(512, 0.05, 500, 1.0)), ("In[8] multi-head", multihead())]:
        print(name, " ".join(f"{v:.2f}" for v in r))
