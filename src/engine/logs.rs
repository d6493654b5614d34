//! `logs`: what a detached container wrote, from its `log.jsonl`.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use super::monitor::log_path;
use super::{Engine, EngineError, Result};

impl Engine {
    /// Prints the log; with `follow`, keeps printing until the container exits.
    pub fn logs(&self, name: &str, follow: bool, out: &mut impl Write, err: &mut impl Write) -> Result<()> {
        let c = self.find(name)?;
        let path = log_path(&self.container_dir(&c.id));
        // A container that has not written yet has no log: wait for it, or for the exit.
        let file = loop {
            match std::fs::File::open(&path) {
                Ok(f) => break f,
                Err(_) if !follow || !self.is_running_now(&c.id) => return Ok(()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let mut reader = BufReader::new(file);
        // A line the monitor has only half written stays here until its newline arrives.
        let mut pending = String::new();
        loop {
            let n = reader.read_line(&mut pending).map_err(EngineError::io("read log"))?;
            if pending.ends_with('\n') {
                print_entry(&pending, out, err)?;
                pending.clear();
                continue;
            }
            if n > 0 {
                continue;
            }
            // At the end of the file. Check the state first, then read once more: the monitor
            // may have written its last lines just before it exited.
            if !follow || !self.is_running_now(&c.id) {
                let mut rest = String::new();
                std::io::Read::read_to_string(&mut reader, &mut rest).map_err(EngineError::io("read log"))?;
                pending.push_str(&rest);
                for line in pending.lines() {
                    print_entry(line, out, err)?;
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn print_entry(line: &str, out: &mut impl Write, err: &mut impl Write) -> Result<()> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim_end()) else { return Ok(()) };
    let text = v["text"].as_str().unwrap_or_default();
    let sink: &mut dyn Write = if v["stream"] == "stderr" { err } else { out };
    writeln!(sink, "{text}").and_then(|_| sink.flush()).map_err(EngineError::io("write log"))
}
