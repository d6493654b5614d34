//! The explain trail: every kernel-facing step, told as the command a person would type.
//!
//! `--explain` turns it on; each step then goes to stderr as `+ COMMAND`. When
//! `SHIBAFU_EXPLAIN_FILE` names a file, steps are appended there as well, so tests can read them.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the trail on or off for this process and every process it forks.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether steps are being reported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed) || std::env::var_os("SHIBAFU_EXPLAIN_FILE").is_some()
}

/// Reports one step. The closure only runs when the trail is on, so building the text costs
/// nothing otherwise.
pub fn step(command: impl FnOnce() -> String) {
    if !enabled() {
        return;
    }
    let line = format!("+ {}\n", command());
    if ENABLED.load(Ordering::Relaxed) {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    if let Some(path) = std::env::var_os("SHIBAFU_EXPLAIN_FILE") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}
