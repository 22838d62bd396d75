//! Where the training loop reports: a progress bar in the command line, a callback in the
//! Python package, nothing in tests.

/// Receives the training loop's progress.
pub trait TrainProgress {
    /// The run has `total` steps and resumes at `position`.
    fn start(&self, total: u64, position: u64);
    fn set_position(&self, position: u64);
    /// The running losses and learning rate, replaced at every step.
    fn set_message(&self, message: String);
    /// A line that must stay visible (epoch summaries, skipped steps, early stopping).
    fn println(&self, line: String);
    /// The run ended; `note` says why when it did not run to completion.
    fn finish(&self, note: Option<&str>);
    /// Polled before each step: whether the caller asked the run to stop (Ctrl-C in Python). The
    /// run then checkpoints where it is and returns an error saying how to continue it.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// Reports nothing.
pub struct SilentProgress;

impl TrainProgress for SilentProgress {
    fn start(&self, _: u64, _: u64) {}
    fn set_position(&self, _: u64) {}
    fn set_message(&self, _: String) {}
    fn println(&self, _: String) {}
    fn finish(&self, _: Option<&str>) {}
}

/// Prints only the lines that must stay visible, to stderr.
pub struct StderrProgress;

impl TrainProgress for StderrProgress {
    fn start(&self, _: u64, _: u64) {}
    fn set_position(&self, _: u64) {}
    fn set_message(&self, _: String) {}
    fn println(&self, line: String) {
        eprintln!("{line}");
    }
    fn finish(&self, note: Option<&str>) {
        if let Some(note) = note {
            eprintln!("{note}");
        }
    }
}
