//! One writer per run folder: a second `train` into a folder another run is writing would
//! interleave its `metrics.jsonl` and race its checkpoints.

use std::path::Path;

use anyhow::Result;
use maskrcnn_data::process_lock::ProcessLock;

/// The lock file inside a run folder; it holds the owner's process id.
pub const LOCK_FILE: &str = ".lock";

/// Held for as long as a run writes to its folder; removed on drop (a killed run leaves a stale
/// lock, which the next run recognises by its dead process id and takes over).
#[derive(Debug)]
pub struct RunLock {
    _lock: ProcessLock,
}

impl RunLock {
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(LOCK_FILE);
        let lock = ProcessLock::acquire(&path, |pid| {
            format!(
                "{}: another training run (process {pid}) is writing to this folder; wait for it to end or choose \
                 another --output (delete {} if that process is not a training run)",
                run_dir.display(),
                path.display()
            )
        })?;
        Ok(Self { _lock: lock })
    }
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
