//! A lock file held by one process at a time (a training run's folder, a detect run's journal):
//! it holds the owner's process id, is removed on drop, and a killed owner's stale lock is taken
//! over by the next process, which sees that process gone. Shared here because both the model
//! crate and the geo crate depend on this one.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Held while its owner writes; the file is removed on drop.
#[derive(Debug)]
pub struct ProcessLock {
    path: PathBuf,
}

impl ProcessLock {
    /// Creates `path` holding this process's id. A lock held by another live process is an
    /// error, worded by `busy` from that process's id; a dead owner's lock is taken over.
    pub fn acquire(path: &Path, busy: impl Fn(u32) -> String) -> Result<ProcessLock> {
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    writeln!(file, "{}", std::process::id()).with_context(|| format!("writing {}", path.display()))?;
                    return Ok(ProcessLock { path: path.to_path_buf() });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<u32>().ok());
                    if let Some(pid) = owner.filter(|&pid| pid != std::process::id() && process_is_running(pid)) {
                        bail!("{}", busy(pid));
                    }
                    std::fs::remove_file(path)
                        .with_context(|| format!("removing the stale lock {}", path.display()))?;
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        bail!("{}: could not take the lock", path.display())
    }
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` exists (Linux: `/proc/<pid>`).
#[cfg(target_os = "linux")]
pub fn process_is_running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Without a portable liveness check every process is taken as running: locks stay held (their
/// messages say how to clear them) and other processes' temporaries are kept.
#[cfg(not(target_os = "linux"))]
pub fn process_is_running(_pid: u32) -> bool {
    true
}
