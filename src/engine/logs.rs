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
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(_) if !follow => return Ok(()),
            Err(_) => {
                // A container that has not written yet: wait for the file or the exit.
                loop {
                    if let Ok(f) = std::fs::File::open(&path) {
                        break f;
                    }
                    if !self.still_running(&c.id) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(EngineError::io("read log"))?;
            if n > 0 && line.ends_with('\n') {
                print_entry(&line, out, err)?;
                continue;
            }
            if !follow {
                return Ok(());
            }
            let running = self.still_running(&c.id);
            if !running {
                // One last read: the monitor may have flushed between our read and its exit.
                let mut rest = String::new();
                std::io::Read::read_to_string(&mut reader, &mut rest).map_err(EngineError::io("read log"))?;
                for l in format!("{line}{rest}").lines() {
                    print_entry(l, out, err)?;
                }
                return Ok(());
            }
            // Keep a partial line for the next round.
            if n > 0 {
                let mut more = String::new();
                std::thread::sleep(Duration::from_millis(50));
                reader.read_line(&mut more).map_err(EngineError::io("read log"))?;
                line.push_str(&more);
                if line.ends_with('\n') {
                    print_entry(&line, out, err)?;
                }
                continue;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn still_running(&self, id: &str) -> bool {
        self.db.containers_by_id(id).ok().and_then(|mut v| v.pop()).is_some_and(|c| self.is_running(&c))
    }
}

fn print_entry(line: &str, out: &mut impl Write, err: &mut impl Write) -> Result<()> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim_end()) else { return Ok(()) };
    let text = v["text"].as_str().unwrap_or_default();
    let sink: &mut dyn Write = if v["stream"] == "stderr" { err } else { out };
    writeln!(sink, "{text}").and_then(|_| sink.flush()).map_err(EngineError::io("write log"))
}
