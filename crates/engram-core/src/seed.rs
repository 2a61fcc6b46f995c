//! Seeding that matches PyTorch's `torch.manual_seed`: the same seed and the same sequence of
//! draws give bit-identical numbers in Rust and in Python (both go through libtorch's CPU
//! generator, a Mersenne twister).

/// Seeds libtorch's CPU generator and every CUDA generator, as `torch.manual_seed` does.
///
/// ```
/// engram_core::seed::manual_seed(0);
/// let a = tch::Tensor::rand([3], (tch::Kind::Float, tch::Device::Cpu));
/// engram_core::seed::manual_seed(0);
/// let b = tch::Tensor::rand([3], (tch::Kind::Float, tch::Device::Cpu));
/// assert!(a.equal(&b));
/// ```
pub fn manual_seed(seed: u64) {
    tch::manual_seed(seed as i64);
}

/// libtorch's generator is process-global and `cargo test` runs tests on several threads: code
/// that seeds and then draws (tests, reproductions) holds this lock so that no other thread
/// consumes numbers in between.
///
/// ```
/// let _guard = engram_core::seed::global_rng_lock();
/// engram_core::seed::manual_seed(1);
/// ```
pub fn global_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A small deterministic RNG for host-side choices (data shuffles, trial generation) that must
/// not consume libtorch's generator. SplitMix64: tiny, fast, good enough for sampling.
#[derive(Debug, Clone)]
pub struct HostRng(u64);

impl HostRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        HostRng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)` (Lemire's multiply-shift; bias is below 2^-32 for any usable n).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "HostRng::below(0)");
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Fisher–Yates shuffle in place.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn manual_seed_is_repeatable() {
        let _g = global_rng_lock();
        manual_seed(42);
        let a = tch::Tensor::randn([4], (tch::Kind::Float, tch::Device::Cpu));
        manual_seed(42);
        let b = tch::Tensor::randn([4], (tch::Kind::Float, tch::Device::Cpu));
        assert!(a.equal(&b));
    }
    #[test]
    fn matches_pytorch_first_draws() {
        // torch.manual_seed(42); torch.rand(3) == tensor([0.8823, 0.9150, 0.3829])
        let _g = global_rng_lock();
        manual_seed(42);
        let a = tch::Tensor::rand([3], (tch::Kind::Float, tch::Device::Cpu));
        let v: Vec<f32> = Vec::try_from(&a).unwrap();
        let want = [0.882_269_8_f32, 0.915_003_5, 0.382_863_6];
        for (x, y) in v.iter().zip(want) {
            assert!((x - y).abs() < 1e-6, "{v:?}");
        }
    }
    #[test]
    fn host_rng_below_in_range_and_shuffle_is_permutation() {
        let mut r = HostRng::new(1);
        for n in 1..50 {
            assert!(r.below(n) < n);
        }
        let mut xs: Vec<u32> = (0..100).collect();
        r.shuffle(&mut xs);
        let mut s = xs.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
    }
}
