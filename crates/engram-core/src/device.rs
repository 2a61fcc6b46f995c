//! Device selection: `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available, else CPU).

use crate::{Error, Result};
use std::str::FromStr;
use tch::Device;

/// What the user asked for on the command line (`--device cpu|cuda|auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA device 0 when available, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl DeviceChoice {
    /// Resolves the choice to a tch device; asking for CUDA where none exists is an error.
    ///
    /// ```
    /// use engram_core::device::DeviceChoice;
    /// assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), tch::Device::Cpu);
    /// ```
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda(i) => {
                let n = tch::Cuda::device_count() as usize;
                if n == 0 {
                    Err(Error::Device("CUDA was requested but no CUDA device is available (is libtorch_cuda linked, is a GPU present?)".into()))
                } else if i >= n {
                    Err(Error::Device(format!("cuda:{i} requested but only {n} CUDA device(s) exist")))
                } else {
                    Ok(Device::Cuda(i))
                }
            }
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(DeviceChoice::Cuda(i)),
                _ => Err(Error::InvalidArgument(format!("unknown device '{s}': expected cpu, cuda, cuda:N or auto"))),
            },
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Auto => write!(f, "auto"),
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Checks that every tensor lives on `dev`, naming the first that does not.
pub fn ensure_same_device(dev: Device, tensors: &[(&str, &tch::Tensor)]) -> Result<()> {
    for (name, t) in tensors {
        if t.device() != dev {
            return Err(Error::Device(format!("{name} is on {:?} but expected {:?}", t.device(), dev)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_choices() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("CUDA".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(3));
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }
    #[test]
    fn cuda_out_of_range_is_an_error() {
        assert!(DeviceChoice::Cuda(999).resolve().is_err());
    }
}
