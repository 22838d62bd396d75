//! What a program running commands in-process (the Python package) receives from them: progress
//! in place of the terminal's bars, and a way to stop a long run between tiles or steps.
//!
//! The hooks are per thread: a command runs its loop on the calling thread, and two threads of one
//! process may run two commands, each reporting to its own caller.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::{bail, Result};

use crate::train::progress::TrainProgress;

/// Receives a command's progress. Every method has a do-nothing default.
pub trait CommandHooks {
    /// A detect run finished another tile.
    fn detect_progress(&self, _progress: &maskrcnn_geo::Progress) {}
    /// A detect run wrote its output: the final counts (objects held at tile seams until their
    /// neighbours are done are written after the last tile's progress).
    fn detect_finished(&self, _summary: &maskrcnn_geo::DetectSummary) {}
    /// Where training reports instead of its progress bar (it also says when to stop).
    fn train_progress(&self) -> Option<&dyn TrainProgress> {
        None
    }
    /// Polled between tiles: whether the caller asked the run to stop.
    fn stop_requested(&self) -> bool {
        false
    }
}

thread_local! {
    static HOOKS: RefCell<Option<Rc<dyn CommandHooks>>> = const { RefCell::new(None) };
}

/// Runs `f` with `hooks` receiving the progress of the commands it runs on this thread.
pub fn with_hooks<R>(hooks: Rc<dyn CommandHooks>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Rc<dyn CommandHooks>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            HOOKS.with(|h| *h.borrow_mut() = previous);
        }
    }
    let _restore = Restore(HOOKS.with(|h| h.borrow_mut().replace(hooks)));
    f()
}

/// The hooks installed on this thread, if any.
pub fn current() -> Option<Rc<dyn CommandHooks>> {
    HOOKS.with(|h| h.borrow().clone())
}

pub fn detect_progress(progress: &maskrcnn_geo::Progress) {
    if let Some(hooks) = current() {
        hooks.detect_progress(progress);
    }
}

pub fn detect_finished(summary: &maskrcnn_geo::DetectSummary) {
    if let Some(hooks) = current() {
        hooks.detect_finished(summary);
    }
}

/// An error when the caller asked the run to stop.
pub fn check_stop() -> Result<()> {
    if current().is_some_and(|h| h.stop_requested()) {
        bail!("interrupted");
    }
    Ok(())
}

/// Arguments the command line does not accept (clap's first line, without `error: `), from
/// [`crate::cli::run_from`]: the caller's mistake rather than the data's.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `MASKRCNN_PROGRESS=lines`: progress as plain stderr lines, for a program reading the command's
/// output through a pipe (the QGIS plugin), where the terminal's bars are not drawn:
///
/// ```text
/// progress: tiles 3/16 objects 41
/// progress: step 5/100 loss 1.234 (obj ...) lr 1.00e-04
/// ```
///
/// Lines a run prints for the user (epoch summaries) come out unchanged.
pub struct LineProgress {
    total: std::cell::Cell<u64>,
    message: RefCell<String>,
}

/// The environment variable that selects [`LineProgress`].
pub const PROGRESS_ENV: &str = "MASKRCNN_PROGRESS";

impl LineProgress {
    /// Line progress when `MASKRCNN_PROGRESS=lines`.
    pub fn from_env() -> Option<Self> {
        (std::env::var(PROGRESS_ENV).ok()?.trim() == "lines")
            .then(|| Self { total: std::cell::Cell::new(0), message: RefCell::new(String::new()) })
    }
}

impl CommandHooks for LineProgress {
    fn detect_progress(&self, p: &maskrcnn_geo::Progress) {
        eprintln!("progress: tiles {}/{} objects {}", p.tiles_done, p.tiles_total, p.features_emitted);
    }
    fn train_progress(&self) -> Option<&dyn TrainProgress> {
        Some(self)
    }
}

impl TrainProgress for LineProgress {
    fn start(&self, total: u64, position: u64) {
        self.total.set(total);
        eprintln!("progress: step {position}/{total}");
    }
    fn set_position(&self, position: u64) {
        eprintln!("progress: step {position}/{} {}", self.total.get(), self.message.borrow());
    }
    fn set_message(&self, message: String) {
        *self.message.borrow_mut() = message;
    }
    fn println(&self, line: String) {
        eprintln!("{line}");
    }
    fn finish(&self, note: Option<&str>) {
        if let Some(note) = note {
            eprintln!("{note}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct StopAfter(Cell<usize>);

    impl CommandHooks for StopAfter {
        fn stop_requested(&self) -> bool {
            let left = self.0.get();
            self.0.set(left.saturating_sub(1));
            left == 0
        }
    }

    #[test]
    fn hooks_apply_inside_and_are_removed_after() {
        assert!(check_stop().is_ok());
        let hooks = Rc::new(StopAfter(Cell::new(1)));
        with_hooks(hooks, || {
            assert!(check_stop().is_ok());
            assert_eq!(check_stop().unwrap_err().to_string(), "interrupted");
            // Another thread has none.
            std::thread::spawn(|| assert!(current().is_none())).join().unwrap();
        });
        assert!(current().is_none());
    }
}
