//! Progress on a terminal. `Progress`: a one-line report of one transfer (`pushing
//! sha256:1a2b3c4d5e6f  12.0/40.2 MB`), redrawn at most ten times a second, and nothing at all
//! when stderr is not a terminal. `layers`: the board of a pull, one line per layer.

pub mod layers;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The progress of one transfer.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    last: Option<Instant>,
    shown: bool,
}

impl Progress {
    /// A transfer of `total` bytes, described by `label`.
    pub fn new(label: String, total: u64) -> Progress {
        Progress { label, total, done: 0, last: None, shown: std::io::stderr().is_terminal() }
    }

    /// Counts `n` more bytes.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.shown && self.last.is_none_or(|t| t.elapsed() > Duration::from_millis(100)) {
            self.last = Some(Instant::now());
            self.draw();
        }
    }

    /// The last line, with the total reached.
    pub fn finish(&mut self, outcome: &str) {
        if self.shown {
            self.draw();
            let _ = writeln!(std::io::stderr(), " {outcome}");
        }
    }

    fn draw(&self) {
        let mb = |b: u64| b as f64 / 1e6;
        let _ = write!(std::io::stderr(), "\r{}  {:.1}/{:.1} MB", self.label, mb(self.done), mb(self.total));
    }
}
