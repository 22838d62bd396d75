//! Which device the model runs on: the CPU (burn's flex backend, with our own kernels) or a GPU
//! through burn's wgpu backend (Vulkan), chosen at run time with `--device cpu|gpu|auto`.
//!
//! burn's `Device::default()` picks the first compiled backend, which in a build with the `gpu`
//! feature is wgpu: code that means the CPU asks for [`cpu`] instead, and code that means the
//! user's choice asks for [`DeviceChoice::resolve`].

use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use burn::tensor::Device;

/// What `--device` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The CPU cores (burn flex): the reference path, bit-exact resume.
    #[default]
    Cpu,
    /// A Vulkan adapter; an error when there is none.
    Gpu,
    /// A hardware Vulkan adapter when there is one, else the CPU. A software rasteriser
    /// (Mesa's llvmpipe) counts as none: it runs our model slower than the CPU path does.
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            "auto" => Ok(Self::Auto),
            other => Err(format!("unknown device '{other}': expected cpu, gpu or auto")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
            Self::Auto => "auto",
        })
    }
}

/// A device the model can be built on, with the line that tells the user which it is.
#[derive(Debug, Clone)]
pub struct ResolvedDevice {
    pub device: Device,
    /// `"cpu"` or `"gpu (adapter name)"`, plus why `auto` chose the CPU where it did.
    pub description: String,
}

impl ResolvedDevice {
    pub fn is_gpu(&self) -> bool {
        !is_cpu(&self.device)
    }
}

/// The CPU device (flex), whatever else the build holds.
pub fn cpu() -> Device {
    Device::flex()
}

/// Whether `device` (with or without autodiff) is the CPU backend, where our host kernels
/// (RoIAlign, conv backward, the host optimiser) apply.
pub fn is_cpu(device: &Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

impl DeviceChoice {
    /// The device this choice stands for on this machine. `gpu` without a usable adapter is a
    /// one-line error saying what is missing; `auto` falls back to the CPU and says so in
    /// `description`.
    pub fn resolve(self) -> Result<ResolvedDevice> {
        match self {
            Self::Cpu => Ok(ResolvedDevice { device: cpu(), description: "cpu".into() }),
            Self::Gpu => {
                let gpu = gpu()?;
                Ok(ResolvedDevice { description: format!("gpu ({})", gpu.name), device: gpu.device })
            }
            Self::Auto => match gpu() {
                Ok(gpu) if !gpu.software => {
                    Ok(ResolvedDevice { description: format!("gpu ({})", gpu.name), device: gpu.device })
                }
                Ok(gpu) => Ok(ResolvedDevice {
                    device: cpu(),
                    description: format!(
                        "cpu (the Vulkan adapter, {}, is a software renderer; --device gpu uses it anyway)",
                        gpu.name
                    ),
                }),
                Err(e) => Ok(ResolvedDevice { device: cpu(), description: format!("cpu ({e:#})") }),
            },
        }
    }
}

/// The GPU as it was opened: one per process, since wgpu's runtime is initialised once.
#[derive(Debug, Clone)]
pub struct GpuDevice {
    pub device: Device,
    pub name: String,
    /// No card behind it (llvmpipe, SwiftShader): Vulkan emulated on the CPU.
    pub software: bool,
}

/// Opens the Vulkan adapter wgpu prefers (a discrete GPU first; `CUBECL_WGPU_DEFAULT_DEVICE`
/// overrides), once per process.
pub fn gpu() -> Result<GpuDevice> {
    #[cfg(feature = "gpu")]
    {
        static GPU: std::sync::OnceLock<std::result::Result<GpuDevice, String>> = std::sync::OnceLock::new();
        GPU.get_or_init(open_gpu).clone().map_err(anyhow::Error::msg)
    }
    #[cfg(not(feature = "gpu"))]
    {
        anyhow::bail!("this build has no GPU support: rebuild maskrcnn with `--features gpu`")
    }
}

#[cfg(feature = "gpu")]
const INSTALL_HINT: &str = "install a Vulkan driver and loader (Debian/Ubuntu: `apt-get install libvulkan1` plus \
     the GPU vendor's Vulkan driver, or mesa-vulkan-drivers for the software one)";

#[cfg(feature = "gpu")]
fn open_gpu() -> std::result::Result<GpuDevice, String> {
    use burn::tensor::wgpu::WgpuBackend;
    // Kernel autotuning is compiled out (burn's `autotune` feature is off): on a software
    // adapter one matmul's tuning took ~40 s and a whole run hung, and tuned kernels differ from
    // run to run. burn's default kernel choices run instead.
    let api = if cfg!(target_os = "macos") { WgpuBackend::Auto } else { WgpuBackend::Vulkan };
    // wgpu panics on some driver failures instead of returning an error; either way the user
    // gets one line.
    let opened = std::panic::catch_unwind(|| Device::wgpu_options().graphics_api(api).init());
    let device = match opened {
        Ok(Ok(device)) => device,
        Ok(Err(e)) => return Err(format!("no usable Vulkan adapter ({e}); {INSTALL_HINT}")),
        Err(panic) => {
            return Err(format!("opening the Vulkan adapter failed ({}); {INSTALL_HINT}", panic_message(&*panic)))
        }
    };
    let identity = std::panic::catch_unwind(|| device.identity())
        .map_err(|panic| format!("the Vulkan adapter failed to start ({}); {INSTALL_HINT}", panic_message(&*panic)))?;
    let (name, software) = match identity {
        Some(id) => {
            let lower = id.name.to_ascii_lowercase();
            let software = id.physical.is_none()
                || ["llvmpipe", "lavapipe", "swiftshader", "softpipe"].iter().any(|s| lower.contains(s));
            (id.name, software)
        }
        None => ("unnamed adapter".to_string(), false),
    };
    GPU_OPENED.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(GpuDevice { device, name, software })
}

/// The text of a caught panic (`&str` or `String` payloads; anything else is named as such).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

static GPU_OPENED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs `f`; once a GPU has been opened in this process, a panic inside it (burn and cubecl
/// report an exhausted GPU memory or a lost device by panicking, not with an error) comes back
/// as a one-line error instead, and the process's panic hook stays silent for it. Until then,
/// and on the CPU path, panics go on unchanged: there they are bugs, reported by the hook.
pub fn guard_gpu_panics<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    use std::sync::atomic::Ordering;
    let previous = std::sync::Arc::new(std::panic::take_hook());
    let chained = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        if !GPU_OPENED.load(Ordering::Relaxed) {
            chained(info);
        }
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    // Restore the hook that was there (ours holds the only other reference to it).
    let _ = std::panic::take_hook();
    let previous = std::sync::Arc::try_unwrap(previous).unwrap_or_else(|_| Box::new(|_| {}));
    std::panic::set_hook(previous);
    match outcome {
        Ok(result) => result,
        Err(panic) if GPU_OPENED.load(Ordering::Relaxed) => {
            Err(anyhow::anyhow!(gpu_failure_message(what, &panic_message(&*panic))))
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// One line for a failure on the GPU: out of memory gets the flags that lower memory use.
pub fn gpu_failure_message(what: &str, detail: &str) -> String {
    let lower = detail.to_ascii_lowercase();
    let first_line = detail.lines().next().unwrap_or(detail).trim();
    if ["out of memory", "outofmemory", "out_of_memory", "allocation", "oom", "memory limit", "exceeds the max"]
        .iter()
        .any(|s| lower.contains(s))
    {
        format!(
            "{what}: the GPU ran out of memory ({first_line}); try a smaller --batch-size or --tile-size, \
             or --device cpu"
        )
    } else {
        format!("{what}: the GPU backend failed ({first_line}); --device cpu runs the same model on the CPU")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_print() {
        for (text, choice) in [("cpu", DeviceChoice::Cpu), ("GPU", DeviceChoice::Gpu), (" auto", DeviceChoice::Auto)] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), choice);
            assert_eq!(choice.to_string().parse::<DeviceChoice>().unwrap(), choice);
        }
        let err = "cuda".parse::<DeviceChoice>().unwrap_err();
        assert!(err.contains("cuda") && err.contains("cpu, gpu or auto"), "{err}");
        let json: DeviceChoice = serde_json::from_str("\"auto\"").unwrap();
        assert_eq!(json, DeviceChoice::Auto);
    }

    #[test]
    fn cpu_is_flex_with_or_without_autodiff() {
        assert!(is_cpu(&cpu()));
        assert!(is_cpu(&cpu().autodiff()));
        let resolved = DeviceChoice::Cpu.resolve().unwrap();
        assert!(!resolved.is_gpu());
        assert_eq!(resolved.description, "cpu");
    }

    #[test]
    fn out_of_memory_suggests_smaller_batches() {
        let m = gpu_failure_message("train", "Unable to allocate 4 GiB: out of memory\nbacktrace...");
        assert!(m.contains("--batch-size") && m.contains("--tile-size") && !m.contains('\n'), "{m}");
        let m = gpu_failure_message("predict", "shader compile error");
        assert!(m.contains("--device cpu") && !m.contains("--batch-size"), "{m}");
    }

    #[test]
    fn guard_passes_results_through() {
        assert_eq!(guard_gpu_panics("x", || Ok(3)).unwrap(), 3);
        assert!(guard_gpu_panics::<()>("x", || anyhow::bail!("plain error")).is_err());
    }
}
