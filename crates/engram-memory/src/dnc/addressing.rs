//! The DNC's memory addressing (Graves et al. 2016, Methods): content lookup, usage and
//! allocation, the temporal link matrix with precedence, and directional read weights.
//! Shapes: batch `B`, slots `N`, word `W`, read heads `R`.

use tch::{Kind, Tensor};

const EPS: f64 = 1e-6;

/// `softmax_n(β · cos(M[n], k))`: `memory [B, N, W]`, `keys [B, H, W]`, `strengths [B, H]` → `[B, H, N]`.
pub fn content_weights(memory: &Tensor, keys: &Tensor, strengths: &Tensor) -> Tensor {
    let dots = keys.matmul(&memory.transpose(1, 2));
    let mnorm = memory.square().sum_dim_intlist([-1].as_slice(), false, Kind::Float).sqrt().unsqueeze(1);
    let knorm = keys.square().sum_dim_intlist([-1].as_slice(), false, Kind::Float).sqrt().unsqueeze(-1);
    let cos = dots / (mnorm * knorm + EPS);
    (cos * strengths.unsqueeze(-1)).softmax(-1, Kind::Float)
}

/// `u_t = (u + w_w − u∘w_w) ∘ ψ`, `ψ = Π_i (1 − f_i w_r,i)`: `usage [B, N]`, previous write
/// weights `[B, N]`, free gates `[B, R]`, previous read weights `[B, R, N]`.
pub fn update_usage(usage: &Tensor, prev_write: &Tensor, free_gates: &Tensor, prev_read: &Tensor) -> Tensor {
    let keep: Tensor = 1.0 - free_gates.unsqueeze(-1) * prev_read;
    let psi = keep.prod_dim_int(1, false, Kind::Float);
    (usage + prev_write - usage * prev_write) * psi
}

/// Allocation weights from a sorted free list: with `φ` the slots in increasing usage,
/// `a[φ_j] = (1 − u[φ_j]) Π_{i<j} u[φ_i]`. Gradients flow through the sorted values, not the order.
pub fn allocation_weights(usage: &Tensor) -> Tensor {
    let u = usage * (1.0 - EPS) + EPS;
    let (sorted, order) = u.sort(-1, false);
    let n = sorted.size()[1];
    let shifted = Tensor::cat(&[Tensor::ones([sorted.size()[0], 1], (Kind::Float, sorted.device())), sorted.narrow(1, 0, n - 1)], 1);
    let free: Tensor = 1.0 - &sorted;
    let a_sorted = free * shifted.cumprod(1, Kind::Float);
    a_sorted.zeros_like().scatter(1, &order, &a_sorted)
}

/// `w_w = g_w (g_a a + (1 − g_a) c_w)`: gates `[B, 1]`, weights `[B, N]`.
pub fn write_weights(write_gate: &Tensor, alloc_gate: &Tensor, alloc: &Tensor, content: &Tensor) -> Tensor {
    write_gate * (alloc_gate * alloc + (1.0 - alloc_gate) * content)
}

/// `M ∘ (1 − w eᵀ) + w vᵀ`: `memory [B, N, W]`, `write [B, N]`, `erase`/`vector [B, W]`.
pub fn write_memory(memory: &Tensor, write: &Tensor, erase: &Tensor, vector: &Tensor) -> Tensor {
    let w = write.unsqueeze(-1);
    memory * (1.0 - w.matmul(&erase.unsqueeze(1))) + w.matmul(&vector.unsqueeze(1))
}

/// `L_t[i,j] = (1 − w[i] − w[j]) L[i,j] + w[i] p_{t−1}[j]`, diagonal zero: `link [B, N, N]`,
/// `write [B, N]`, previous precedence `[B, N]`.
pub fn update_link(link: &Tensor, write: &Tensor, prev_precedence: &Tensor) -> Tensor {
    let n = write.size()[1];
    let wi = write.unsqueeze(-1);
    let wj = write.unsqueeze(1);
    let new = (1.0 - &wi - &wj) * link + &wi * prev_precedence.unsqueeze(1);
    new * (1.0 - Tensor::eye(n, (Kind::Float, write.device())))
}

/// `p_t = (1 − Σ w) p_{t−1} + w`.
pub fn update_precedence(precedence: &Tensor, write: &Tensor) -> Tensor {
    (1.0 - write.sum_dim_intlist([-1].as_slice(), true, Kind::Float)) * precedence + write
}

/// Forward (`L w`) and backward (`Lᵀ w`) weights for read weights `[B, R, N]`.
pub fn directional_weights(link: &Tensor, prev_read: &Tensor) -> (Tensor, Tensor) {
    let forward = prev_read.matmul(&link.transpose(1, 2));
    let backward = prev_read.matmul(link);
    (forward, backward)
}

/// `π₁ b + π₂ c + π₃ f` with read modes `[B, R, 3]` (backward, content, forward).
pub fn read_weights(modes: &Tensor, backward: &Tensor, content: &Tensor, forward: &Tensor) -> Tensor {
    modes.select(-1, 0).unsqueeze(-1) * backward + modes.select(-1, 1).unsqueeze(-1) * content + modes.select(-1, 2).unsqueeze(-1) * forward
}
