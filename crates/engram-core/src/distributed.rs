//! Data-parallel training primitives: a c10d process group (NCCL on GPU, gloo on CPU) from the
//! kernel library, gradient all-reduce in buckets, parameter broadcast, and a launcher that runs
//! one worker process per rank (as `torchrun` does) and stops them all when one fails.
//!
//! tch exposes none of libtorch's c10d, so the collectives live in `kernels/src/dist.cpp` behind
//! the C ABI and are only available when the kernel library is loaded.
//!
//! ```no_run
//! use engram_core::distributed::{Backend, ProcessGroup};
//! // In a worker started by `launch` (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT are set):
//! let pg = ProcessGroup::from_env(Backend::Gloo).unwrap();
//! let mut t = tch::Tensor::ones([4], (tch::Kind::Float, tch::Device::Cpu));
//! pg.all_reduce_mean(&mut [&mut t]).unwrap();
//! ```

use crate::kernels::{check_status, library, ERR_LEN};
use crate::{Error, Result};
use std::ffi::{c_char, c_void, CString};
use std::process::{Child, Command};
use std::time::Duration;
use tch::Tensor;

/// Which collective backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// gloo, for CPU tensors.
    Gloo,
    /// NCCL, for CUDA tensors.
    Nccl,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }
}

/// The rendezvous variables torchrun sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RendezvousEnv {
    /// This process's rank.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Local rank (the CUDA device to use).
    pub local_rank: usize,
    /// Host of rank 0's TCP store.
    pub master_addr: String,
    /// Port of rank 0's TCP store.
    pub master_port: u16,
}

impl RendezvousEnv {
    /// Reads `RANK`, `WORLD_SIZE`, `LOCAL_RANK` (defaults to RANK), `MASTER_ADDR` (default
    /// 127.0.0.1) and `MASTER_PORT` (default 29500).
    pub fn from_env() -> Result<Self> {
        fn var<T: std::str::FromStr>(name: &str, default: Option<T>) -> Result<T> {
            match std::env::var(name) {
                Ok(v) => v.trim().parse().map_err(|_| Error::InvalidArgument(format!("{name}='{v}' is not valid"))),
                Err(_) => default.ok_or_else(|| Error::InvalidArgument(format!("{name} is not set"))),
            }
        }
        let rank: usize = var("RANK", None)?;
        let world_size: usize = var("WORLD_SIZE", None)?;
        if world_size == 0 || rank >= world_size {
            return Err(Error::InvalidArgument(format!("RANK={rank} is out of range for WORLD_SIZE={world_size}")));
        }
        Ok(RendezvousEnv {
            rank,
            world_size,
            local_rank: var("LOCAL_RANK", Some(rank))?,
            master_addr: var("MASTER_ADDR", Some("127.0.0.1".to_string()))?,
            master_port: var("MASTER_PORT", Some(29500))?,
        })
    }
}

type InitFn = unsafe extern "C" fn(*const c_char, *const c_char, i32, i32, i32, i32, i32, *mut *mut c_void, *mut c_char, usize) -> i32;
type TensorsFn = unsafe extern "C" fn(*mut c_void, *mut *mut torch_sys::C_tensor, i32, i32, *mut c_char, usize) -> i32;
type PlainFn = unsafe extern "C" fn(*mut c_void, *mut c_char, usize) -> i32;

/// A process group. Dropping it shuts the backend down.
pub struct ProcessGroup {
    handle: *mut c_void,
    /// This process's rank.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// The backend in use.
    pub backend: Backend,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("backend", &self.backend)
            .finish()
    }
}

// The handle is only used through the C ABI, whose c10d backend is thread-safe.
unsafe impl Send for ProcessGroup {}
// SAFETY: c10d backends serialise their own collectives.
unsafe impl Sync for ProcessGroup {}

impl ProcessGroup {
    /// Joins the group described by the torchrun environment variables.
    pub fn from_env(backend: Backend) -> Result<Self> {
        Self::new(backend, &RendezvousEnv::from_env()?, Duration::from_secs(300))
    }

    /// Joins a group (rank 0 hosts the TCP store; every rank blocks until all have joined).
    pub fn new(backend: Backend, env: &RendezvousEnv, timeout: Duration) -> Result<Self> {
        let lib = library().ok_or_else(|| {
            Error::Kernel(format!(
                "distributed training needs the kernel library ({}); build it with `cargo xtask kernels`",
                crate::kernels::load_error().unwrap_or_default()
            ))
        })?;
        // SAFETY: signature fixed by kernels/src/dist.cpp.
        let init: InitFn = unsafe { lib.symbol("engram_dist_init")? };
        let be = CString::new(backend.name()).expect("static name");
        let addr = CString::new(env.master_addr.clone())
            .map_err(|_| Error::InvalidArgument("MASTER_ADDR contains a NUL byte".into()))?;
        let mut handle: *mut c_void = std::ptr::null_mut();
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: all pointers are valid for the call; the error buffer has ERR_LEN bytes.
        let code = unsafe {
            init(
                be.as_ptr(),
                addr.as_ptr(),
                env.master_port as i32,
                env.rank as i32,
                env.world_size as i32,
                env.local_rank as i32,
                timeout.as_secs().max(1) as i32,
                &mut handle,
                err.as_mut_ptr().cast(),
                err.len(),
            )
        };
        check_status(code, &err)?;
        Ok(ProcessGroup { handle, rank: env.rank, world_size: env.world_size, backend })
    }

    fn tensors_call(&self, symbol: &str, tensors: &mut [&mut Tensor], arg: i32) -> Result<()> {
        if tensors.is_empty() {
            return Ok(());
        }
        for t in tensors.iter() {
            if !t.is_contiguous() {
                return Err(Error::InvalidArgument("collectives need contiguous tensors".into()));
            }
        }
        let lib = library().ok_or_else(|| Error::Kernel("kernel library unloaded".into()))?;
        // SAFETY: signature fixed by kernels/src/dist.cpp.
        let f: TensorsFn = unsafe { lib.symbol(symbol)? };
        let mut ptrs: Vec<*mut torch_sys::C_tensor> = tensors.iter().map(|t| t.as_ptr() as *mut _).collect();
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: the tensors outlive the call, which modifies them in place.
        let code = unsafe { f(self.handle, ptrs.as_mut_ptr(), ptrs.len() as i32, arg, err.as_mut_ptr().cast(), err.len()) };
        check_status(code, &err)
    }

    /// In-place sum over ranks.
    pub fn all_reduce_sum(&self, tensors: &mut [&mut Tensor]) -> Result<()> {
        self.tensors_call("engram_dist_allreduce", tensors, 0)
    }

    /// In-place mean over ranks (what gradient averaging needs).
    pub fn all_reduce_mean(&self, tensors: &mut [&mut Tensor]) -> Result<()> {
        self.tensors_call("engram_dist_allreduce", tensors, 1)
    }

    /// In-place broadcast from `root`.
    pub fn broadcast(&self, tensors: &mut [&mut Tensor], root: usize) -> Result<()> {
        self.tensors_call("engram_dist_broadcast", tensors, root as i32)
    }

    /// Blocks until every rank arrives.
    pub fn barrier(&self) -> Result<()> {
        let lib = library().ok_or_else(|| Error::Kernel("kernel library unloaded".into()))?;
        // SAFETY: signature fixed by kernels/src/dist.cpp.
        let f: PlainFn = unsafe { lib.symbol("engram_dist_barrier")? };
        let mut err = vec![0u8; ERR_LEN];
        // SAFETY: valid handle and buffer.
        check_status(unsafe { f(self.handle, err.as_mut_ptr().cast(), err.len()) }, &err)
    }

    /// Broadcasts every parameter from rank 0, so all ranks start identical.
    pub fn broadcast_parameters(&self, params: &[Tensor]) -> Result<()> {
        tch::no_grad(|| {
            let mut ps: Vec<Tensor> = params.iter().map(|p| p.shallow_clone()).collect();
            let mut refs: Vec<&mut Tensor> = ps.iter_mut().collect();
            self.broadcast(&mut refs, 0)
        })
    }

    /// Averages the gradients of `params` over ranks, in buckets of about `bucket_bytes`
    /// (flattened per dtype and device, one collective per bucket, as DDP does).
    pub fn average_gradients(&self, params: &[Tensor], bucket_bytes: usize) -> Result<()> {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
            for bucket in buckets(&grads, bucket_bytes) {
                let flat = Tensor::cat(&bucket.iter().map(|g| g.flatten(0, -1)).collect::<Vec<_>>(), 0);
                let mut flat = flat.contiguous();
                self.all_reduce_mean(&mut [&mut flat])?;
                let mut offset = 0;
                for g in &bucket {
                    let n = g.numel() as i64;
                    let mut g = g.shallow_clone();
                    g.copy_(&flat.narrow(0, offset, n).view_as(&g));
                    offset += n;
                }
            }
            Ok(())
        })
    }
}

/// Groups tensors into buckets of the same dtype and device, each about `bucket_bytes`.
fn buckets(ts: &[Tensor], bucket_bytes: usize) -> Vec<Vec<Tensor>> {
    let mut out: Vec<Vec<Tensor>> = Vec::new();
    let mut size = 0usize;
    for t in ts {
        let bytes = t.numel() * t.kind().elt_size_in_bytes();
        let fits = out.last().is_some_and(|b: &Vec<Tensor>| {
            b[0].kind() == t.kind() && b[0].device() == t.device() && size + bytes <= bucket_bytes.max(1)
        });
        if fits {
            out.last_mut().expect("checked").push(t.shallow_clone());
            size += bytes;
        } else {
            out.push(vec![t.shallow_clone()]);
            size = bytes;
        }
    }
    out
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(lib) = library() {
            // SAFETY: signature fixed by kernels/src/dist.cpp; handle owned by self.
            if let Ok(f) = unsafe { lib.symbol::<PlainFn>("engram_dist_destroy") } {
                let mut err = vec![0u8; ERR_LEN];
                unsafe { f(self.handle, err.as_mut_ptr().cast(), err.len()) };
            }
        }
    }
}

/// Starts `nproc` copies of `program args` with the torchrun variables set, waits for all, and
/// kills the rest as soon as one fails (so a crashed rank never leaves the others hanging in a
/// collective). Returns an error naming the first failing rank.
pub fn launch(nproc: usize, program: &std::path::Path, args: &[String], master_port: u16) -> Result<()> {
    if nproc == 0 {
        return Err(Error::InvalidArgument("--nproc must be at least 1".into()));
    }
    let mut children: Vec<Option<Child>> = Vec::new();
    for rank in 0..nproc {
        let child = Command::new(program)
            .args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", master_port.to_string())
            .spawn();
        match child {
            Ok(c) => children.push(Some(c)),
            Err(e) => {
                kill_all(&mut children);
                return Err(Error::Io(e));
            }
        }
    }
    let mut failure: Option<String> = None;
    while children.iter().any(Option::is_some) {
        for (rank, slot) in children.iter_mut().enumerate() {
            if let Some(c) = slot {
                if let Ok(Some(status)) = c.try_wait() {
                    *slot = None;
                    if !status.success() && failure.is_none() {
                        failure = Some(format!("rank {rank} exited with {status}"));
                    }
                }
            }
        }
        if failure.is_some() {
            kill_all(&mut children);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match failure {
        Some(f) => Err(Error::InvalidArgument(format!("distributed run failed: {f}; the other ranks were stopped"))),
        None => Ok(()),
    }
}

fn kill_all(children: &mut [Option<Child>]) {
    for c in children.iter_mut().flatten() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn buckets_split_by_size_and_dtype() {
        let f = |n| Tensor::zeros([n], (Kind::Float, Device::Cpu));
        let d = Tensor::zeros([2], (Kind::Double, Device::Cpu));
        let b = buckets(&[f(10), f(10), f(100), d, f(1)], 80);
        let sizes: Vec<usize> = b.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 1, 1, 1]);
    }

    #[test]
    fn launch_reports_the_failing_rank_and_stops_others() {
        let sh = std::path::Path::new("/bin/sh");
        // rank 1 fails at once; rank 0 would sleep for a minute but must be stopped.
        let script = "if [ \"$RANK\" = 1 ]; then exit 3; else sleep 60; fi".to_string();
        let start = std::time::Instant::now();
        let e = launch(2, sh, &["-c".into(), script], 29999).unwrap_err().to_string();
        assert!(e.contains("rank 1"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(20));
        assert!(launch(2, sh, &["-c".into(), "exit 0".into()], 29999).is_ok());
        assert!(launch(0, sh, &[], 1).is_err());
    }
}
