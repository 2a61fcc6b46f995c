//! A key/value cache for incremental decoding.

use crate::util::{ensure, ensure_shape};
use engram_core::Result;
use tch::Tensor;

/// Holds the keys and values (`[B, Hkv, L, D]`, keys already position-encoded) of every token
/// seen so far, so that decoding one token costs one projection instead of re-running the
/// prefix. With `max_len` set (sliding-window models), only the last `max_len` entries are kept;
/// [`KvCache::position`] still counts every token seen, which is what RoPE needs. Trimming is
/// exact for causal and sliding-window masks whose window fits in `max_len` minus the chunk
/// length; a prefix-LM mask needs the untrimmed cache.
///
/// ```
/// use engram_layers::attention::KvCache;
/// let mut c = KvCache::new(None);
/// let k = tch::Tensor::zeros([1, 2, 3, 4], tch::kind::FLOAT_CPU);
/// let (ka, _va) = c.append(&k, &k).unwrap();
/// assert_eq!(ka.size()[2], 3);
/// assert_eq!(c.position(), 3);
/// ```
#[derive(Debug, Default)]
pub struct KvCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    seen: i64,
    max_len: Option<i64>,
}

impl KvCache {
    /// An empty cache; `max_len` bounds how many entries are kept.
    pub fn new(max_len: Option<i64>) -> Self {
        KvCache { k: None, v: None, seen: 0, max_len }
    }

    /// Tokens appended so far (the absolute position of the next token).
    pub fn position(&self) -> i64 {
        self.seen
    }

    /// Entries currently held.
    pub fn len(&self) -> i64 {
        self.k.as_ref().map_or(0, |k| k.size()[2])
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Clears the cache.
    pub fn reset(&mut self) {
        *self = KvCache::new(self.max_len);
    }

    /// Appends `k, v [B, Hkv, l, D]` and returns the cached keys and values including them.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (ks, vs) = (k.size(), v.size());
        ensure_shape(ks.len() == 4 && vs.len() == 4 && ks[..3] == vs[..3], || {
            format!("KvCache: k {ks:?} and v {vs:?} must be [B, Hkv, l, D]")
        })?;
        if let Some(old) = &self.k {
            let os = old.size();
            let ovs = self.v.as_ref().map(|t| t.size()).unwrap_or_default();
            ensure_shape(os[0] == ks[0] && os[1] == ks[1] && os[3] == ks[3] && ovs[3] == vs[3], || {
                format!("KvCache: new k {ks:?}/v {vs:?} do not extend cached {os:?}/{ovs:?}")
            })?;
        }
        let cat = |old: &Option<Tensor>, new: &Tensor| match old {
            Some(o) => Tensor::cat(&[o, new], 2),
            None => new.shallow_clone(),
        };
        let mut kk = cat(&self.k, k);
        let mut vv = cat(&self.v, v);
        if let Some(m) = self.max_len {
            ensure(m > 0, || format!("KvCache: max_len must be positive, got {m}"))?;
            let l = kk.size()[2];
            if l > m {
                kk = kk.narrow(2, l - m, m);
                vv = vv.narrow(2, l - m, m);
            }
        }
        self.seen += ks[2];
        self.k = Some(kk.shallow_clone());
        self.v = Some(vv.shallow_clone());
        Ok((kk, vv))
    }
}
