//! `logs`: what a detached container wrote, from its log files (see `logfile`), with Docker's
//! `--tail`, `--since`, `--until`, `-t`; `-f` follows across restarts, the monitor's marks of
//! each exit and back-off included, until the container stops for good or is removed.

use std::io::Write;
use std::time::{Duration, SystemTime};

use super::logfile::{log_path, read_then_follow, Entry, LogFilter, EVENT_STREAM};
use super::{Engine, EngineError, Result};

/// How `logs` shows the log.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    /// Keep printing what comes.
    pub follow: bool,
    /// Which entries.
    pub filter: LogFilter,
    /// Each line after its time.
    pub timestamps: bool,
}

impl Engine {
    /// Prints the log: the container's stdout to `out`, its stderr and the monitor's marks
    /// (`[shibafu] exited with code 1; restarting in 200ms (restart 2)`) to `err`.
    pub fn logs(&self, name: &str, opts: &LogsOptions, out: &mut impl Write, err: &mut impl Write) -> Result<()> {
        let c = self.find(name)?;
        let path = log_path(&self.container_dir(&c.id));
        let (entries, mut follower) = read_then_follow(&path);
        for e in opts.filter.apply(entries) {
            print_entry(&e, opts.timestamps, out, err)?;
        }
        if !opts.follow {
            return Ok(());
        }
        let window = LogFilter { tail: None, ..opts.filter.clone() };
        loop {
            // The state first, then the file: the monitor's last lines come before its exit.
            let active = self.is_active_now(&c.id);
            for e in follower.poll().into_iter().filter(|e| window.admits(e)) {
                print_entry(&e, opts.timestamps, out, err)?;
            }
            if !active || opts.filter.until.is_some_and(|u| SystemTime::now() >= u) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn print_entry(e: &Entry, timestamps: bool, out: &mut impl Write, err: &mut impl Write) -> Result<()> {
    let (sink, mark): (&mut dyn Write, &str) = match e.stream.as_str() {
        "stderr" => (err, ""),
        EVENT_STREAM => (err, "[shibafu] "),
        _ => (out, ""),
    };
    let time = if timestamps { format!("{} ", e.time) } else { String::new() };
    writeln!(sink, "{time}{mark}{}", e.text).and_then(|_| sink.flush()).map_err(EngineError::io("write log"))
}
