//! `--device cpu|gpu|auto`: the one flag every command that runs the model takes, and the guard
//! that turns a failure of the GPU backend into one line.

use anyhow::Result;
use burn::tensor::Device;
use maskrcnn_model::device::DeviceChoice;

#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where the model runs: cpu; gpu (a Vulkan adapter, an error without one); or auto (a
    /// hardware GPU when one is found, else the CPU; says which).
    #[arg(long, default_value = "cpu", value_parser = crate::cli::named::<DeviceChoice>(&["cpu", "gpu", "auto"]))]
    pub device: DeviceChoice,
}

impl DeviceArgs {
    /// The chosen device (inference: no autodiff). `gpu`/`auto` print one `device: ...` line on
    /// stderr; the default `cpu` prints nothing, so existing output is unchanged.
    pub fn resolve(&self) -> Result<Device> {
        let resolved = self.device.resolve()?;
        if self.device != DeviceChoice::Cpu {
            eprintln!("device: {}", resolved.description);
        }
        Ok(resolved.device)
    }
}

/// Runs a command; a panic raised after a GPU was opened (burn and cubecl report an exhausted
/// GPU memory or a lost device by panicking) becomes one error line suggesting smaller batches or
/// tiles. Checkpoints and outputs are written atomically, so nothing half-written stays behind.
/// Without a GPU the panic goes on to `main`'s hook as before.
pub fn guard<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    maskrcnn_model::device::guard_gpu_panics("maskrcnn", f)
}
