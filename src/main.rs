//! `maskrcnn`: the command-line face of the library.

use std::process::ExitCode;

/// mimalloc with a longer purge delay (see `maskrcnn::allocator` for why).
#[global_allocator]
static ALLOCATOR: maskrcnn::allocator::Allocator = mimalloc::MiMalloc;

fn main() -> ExitCode {
    maskrcnn::allocator::configure();
    // A bug must still end in one readable line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal failure{at}: {msg}");
    }));
    match maskrcnn::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
