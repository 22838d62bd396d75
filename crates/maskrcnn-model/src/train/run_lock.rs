//! One writer per run folder: a second `train` into a folder another run is writing would
//! interleave its `metrics.jsonl` and race its checkpoints.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The lock file inside a run folder; it holds the owner's process id.
pub const LOCK_FILE: &str = ".lock";

/// Held for as long as a run writes to its folder; removed on drop (a killed run leaves a stale
/// lock, which the next run recognises by its dead process id and takes over).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(LOCK_FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    writeln!(file, "{}", std::process::id()).with_context(|| format!("writing {}", path.display()))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u32>().ok());
                    if let Some(pid) = owner.filter(|&pid| pid != std::process::id() && process_is_running(pid)) {
                        bail!(
                            "{}: another training run (process {pid}) is writing to this folder; wait for it to end \
                             or choose another --output (delete {} if that process is not a training run)",
                            run_dir.display(),
                            path.display()
                        );
                    }
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing the stale lock {}", path.display()))?;
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        bail!("{}: could not take the run folder's lock", path.display())
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(target_os = "linux")]
fn process_is_running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Without a portable liveness check a lock is taken as held; its message says how to clear it.
#[cfg(not(target_os = "linux"))]
fn process_is_running(_pid: u32) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_owner_keeps_the_folder_and_a_dead_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        // The same process re-entering (a resumed run in a test) takes the lock over.
        drop(RunLock::acquire(dir.path()).unwrap());
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists());

        // PID 1 is always running on Linux.
        std::fs::write(dir.path().join(LOCK_FILE), "1\n").unwrap();
        if cfg!(target_os = "linux") {
            let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
            assert!(err.contains("another training run (process 1)"), "{err}");
        }
        // A process id that cannot exist is stale.
        std::fs::write(dir.path().join(LOCK_FILE), format!("{}\n", u32::MAX)).unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap().trim(), std::process::id().to_string());
        drop(lock);
    }
}
