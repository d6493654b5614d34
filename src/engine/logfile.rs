//! A container's log on disk: `log.jsonl`, one JSON object per line (time, stream, text),
//! rotated by size like Docker's `max-size`/`max-file` (`log.jsonl.1` is the newest old file),
//! and read back across the rotated files in order, filtered by time and count.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::state::containers::LogOptions;

/// The stream name of the lines the monitor writes about the container (exits, back-offs).
pub const EVENT_STREAM: &str = "event";

/// The longest line kept as one entry; a longer one is split, so a line never outgrows the cap.
pub const MAX_LINE: usize = 16 * 1024;

/// The log file of a container directory.
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join("log.jsonl")
}

/// `--log-opt` values (`max-size=10m`, `max-file=3`, or both joined by a comma) over the
/// defaults (10 MiB, 3 files: the current one and 2 old ones).
pub fn parse_log_opts(values: &[String]) -> Result<LogOptions, String> {
    let mut opts = LogOptions::default();
    for pair in values.iter().flat_map(|v| v.split(',')) {
        match pair.split_once('=') {
            Some(("max-size", size)) => {
                opts.max_size = crate::storage::limits::parse_size(size).ok().filter(|n| *n > 0).ok_or_else(|| format!("invalid --log-opt max-size={size}: give a size like 10m, 512k or 1g"))?;
            }
            Some(("max-file", n)) => {
                opts.max_file = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| format!("invalid --log-opt max-file={n}: give a count of files, 1 or more"))?;
            }
            _ => return Err(format!("invalid --log-opt {pair:?}: use max-size=SIZE or max-file=COUNT")),
        }
    }
    Ok(opts)
}

/// The `n`th old file of a log (1 is the newest).
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The log's files, oldest first: the rotated ones that exist, then the current one.
pub fn files_in_order(path: &Path) -> Vec<PathBuf> {
    let mut old: Vec<PathBuf> = (1..).map(|n| rotated(path, n)).take_while(|p| p.exists()).collect();
    old.reverse();
    old.push(path.to_path_buf());
    old
}

/// Writes log entries, rotating the file before it would pass `max_size`.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    opts: LogOptions,
}

impl LogWriter {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, opts: LogOptions) -> std::io::Result<LogWriter> {
        let file = File::options().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter { path: path.to_path_buf(), file, size, opts })
    }

    /// Appends one entry: `{"time": RFC 3339, "stream": ..., "text": ...}`.
    pub fn write(&mut self, stream: &str, text: &[u8]) {
        let entry = serde_json::json!({
            "time": humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
            "stream": stream,
            "text": String::from_utf8_lossy(text),
        });
        let line = format!("{entry}\n");
        if self.size > 0 && self.size + line.len() as u64 > self.opts.max_size {
            if let Err(e) = self.rotate() {
                eprintln!("shibafu monitor: rotating {}: {e}", self.path.display());
            }
        }
        if self.file.write_all(line.as_bytes()).is_ok() {
            self.size += line.len() as u64;
        }
    }

    /// Shifts the old files up by one (dropping the oldest), the current one to `.1`, and
    /// starts an empty one; with one file only, empties it.
    fn rotate(&mut self) -> std::io::Result<()> {
        let keep_old = self.opts.max_file.saturating_sub(1);
        if keep_old == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        match std::fs::remove_file(rotated(&self.path, keep_old)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for n in (1..keep_old).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = File::options().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// One entry of a log, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When it was written, as written (RFC 3339 with nanoseconds).
    pub time: String,
    /// `stdout`, `stderr` or `event`.
    pub stream: String,
    /// The line, without its newline.
    pub text: String,
}

impl Entry {
    /// Parses one line of the log; `None` for a line that is not an entry.
    pub fn parse(line: &str) -> Option<Entry> {
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).ok()?;
        Some(Entry { time: v["time"].as_str()?.to_string(), stream: v["stream"].as_str()?.to_string(), text: v["text"].as_str().unwrap_or_default().to_string() })
    }

    /// Its time (the epoch for a time that does not parse).
    pub fn when(&self) -> SystemTime {
        humantime::parse_rfc3339_weak(&self.time).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// Which entries `logs` shows.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only entries at or after this time.
    pub since: Option<SystemTime>,
    /// Only entries before this time.
    pub until: Option<SystemTime>,
    /// Only the last this many (of those in the time window).
    pub tail: Option<usize>,
}

impl LogFilter {
    /// Whether an entry's time is in the window.
    pub fn admits(&self, e: &Entry) -> bool {
        let t = e.when();
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }

    /// The entries of the window, from the `tail`th last line the container wrote on (the
    /// monitor's marks among them stay, but do not count as lines).
    pub fn apply(&self, entries: Vec<Entry>) -> Vec<Entry> {
        let mut kept: Vec<Entry> = entries.into_iter().filter(|e| self.admits(e)).collect();
        if let Some(n) = self.tail {
            let lines: Vec<usize> = kept.iter().enumerate().filter(|(_, e)| e.stream != EVENT_STREAM).map(|(i, _)| i).collect();
            let first = match n {
                0 => kept.len(),
                n => lines.len().checked_sub(n).map_or(0, |k| lines[k]),
            };
            kept.drain(..first);
        }
        kept
    }
}

/// A time as `--since`/`--until` take it: RFC 3339, Unix seconds (with a fraction), or a
/// duration back from `now` (`10m`, `1h30m`, `90s`).
pub fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let bad = || format!("invalid time {text:?}: give RFC 3339 (2024-05-01T10:00:00Z), Unix seconds (1714557600) or a duration back from now (10m, 1h30m)");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = text.parse().map_err(|_| bad())?;
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    let back = humantime::parse_duration(text).map_err(|_| bad())?;
    now.checked_sub(back).ok_or_else(bad)
}

/// `--tail`: a count, or `all`.
pub fn parse_tail(text: &str) -> Result<Option<usize>, String> {
    match text {
        "all" => Ok(None),
        n => n.parse().map(Some).map_err(|_| format!("invalid --tail {text:?}: give a number of lines or all")),
    }
}

/// Every entry of the log's files, oldest first.
pub fn read_all(path: &Path) -> Vec<Entry> {
    read_then_follow(path).0
}

/// Every entry of the log's files, oldest first, and a follower that goes on exactly where
/// the reading stopped.
pub fn read_then_follow(path: &Path) -> (Vec<Entry>, Follower) {
    let files = files_in_order(path);
    let mut entries = Vec::new();
    for file in &files[..files.len() - 1] {
        let Ok(f) = File::open(file) else { continue };
        entries.extend(BufReader::new(f).lines().map_while(|l| l.ok()).filter_map(|l| Entry::parse(&l)));
    }
    let mut follower = Follower { path: path.to_path_buf(), reader: None, inode: 0, pending: String::new() };
    if let Ok(file) = File::open(path) {
        follower.inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
        follower.reader = Some(BufReader::new(file));
    }
    entries.extend(follower.drain());
    (entries, follower)
}

/// Reads what is appended to the log from a point on, following it to the new file when the
/// monitor rotates it.
pub struct Follower {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    inode: u64,
    pending: String,
}

impl Follower {
    /// The entries written since the last call (a half-written line waits for its newline).
    pub fn poll(&mut self) -> Vec<Entry> {
        let mut out = self.drain();
        // Emptied in place (a log kept in one file): read it again from its start.
        if let Some(reader) = self.reader.as_mut() {
            let len = reader.get_ref().metadata().map(|m| m.len()).unwrap_or(0);
            if reader.stream_position().is_ok_and(|at| at > len) && reader.seek(std::io::SeekFrom::Start(0)).is_ok() {
                self.pending.clear();
                out.extend(self.drain());
            }
        }
        // Rotated away (or made): finish the old file, then read the new one from its start.
        let now = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        if now.is_some_and(|ino| ino != self.inode) {
            if let Ok(file) = File::open(&self.path) {
                self.inode = now.unwrap_or(0);
                self.reader = Some(BufReader::new(file));
                self.pending.clear();
                out.extend(self.drain());
            }
        }
        out
    }

    fn drain(&mut self) -> Vec<Entry> {
        let mut out = Vec::new();
        let Some(reader) = self.reader.as_mut() else { return out };
        let mut chunk = String::new();
        let _ = reader.read_to_string(&mut chunk);
        self.pending.push_str(&chunk);
        while let Some(pos) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=pos).collect();
            out.extend(Entry::parse(&line));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn entry(secs: u64, text: &str) -> Entry {
        Entry { time: humantime::format_rfc3339_nanos(at(secs)).to_string(), stream: "stdout".into(), text: text.into() }
    }

    #[test]
    fn times_parse_as_rfc3339_unix_seconds_or_durations_back() {
        let now = at(1_000_000);
        assert_eq!(parse_time("1714557600", now).unwrap(), at(1_714_557_600));
        assert_eq!(parse_time("10.5", now).unwrap(), at(10) + Duration::from_millis(500));
        assert_eq!(parse_time("1970-01-01T00:01:40Z", now).unwrap(), at(100));
        assert_eq!(parse_time("10m", now).unwrap(), at(1_000_000 - 600));
        assert_eq!(parse_time("1h30m", now).unwrap(), at(1_000_000 - 5400));
        for bad in ["", "yesterday", "10x", "-5"] {
            assert!(parse_time(bad, now).unwrap_err().contains("invalid time"), "{bad}");
        }
    }

    #[test]
    fn log_options_parse_over_the_defaults() {
        assert_eq!(parse_log_opts(&[]).unwrap(), LogOptions { max_size: 10 << 20, max_file: 3 });
        assert_eq!(parse_log_opts(&["max-size=1k,max-file=2".into()]).unwrap(), LogOptions { max_size: 1024, max_file: 2 });
        assert_eq!(parse_log_opts(&["max-file=5".into()]).unwrap().max_file, 5);
        for bad in ["max-size=0", "max-size=lots", "max-file=0", "max-file=-1", "mode=non-blocking", "max-size"] {
            assert!(parse_log_opts(&[bad.into()]).unwrap_err().contains("invalid --log-opt"), "{bad}");
        }
    }

    #[test]
    fn tail_takes_a_count_or_all() {
        assert_eq!(parse_tail("all").unwrap(), None);
        assert_eq!(parse_tail("3").unwrap(), Some(3));
        assert!(parse_tail("-1").is_err());
        assert!(parse_tail("some").is_err());
    }

    #[test]
    fn the_filter_takes_the_window_then_the_tail() {
        let entries: Vec<Entry> = (1..=10).map(|i| entry(i, &i.to_string())).collect();
        let texts = |f: LogFilter| f.apply(entries.clone()).into_iter().map(|e| e.text).collect::<Vec<_>>().join(",");
        assert_eq!(texts(LogFilter { since: Some(at(4)), until: Some(at(7)), tail: None }), "4,5,6");
        assert_eq!(texts(LogFilter { tail: Some(2), ..Default::default() }), "9,10");
        assert_eq!(texts(LogFilter { until: Some(at(6)), tail: Some(2), ..Default::default() }), "4,5");
        assert_eq!(texts(LogFilter { tail: Some(0), ..Default::default() }), "");
        assert_eq!(texts(LogFilter { tail: Some(50), ..Default::default() }), "1,2,3,4,5,6,7,8,9,10");
    }

    #[test]
    fn marks_do_not_count_as_lines_for_the_tail() {
        let mark = |secs, text: &str| Entry { stream: EVENT_STREAM.into(), ..entry(secs, text) };
        let entries = vec![entry(1, "a"), mark(2, "exit"), entry(3, "b"), mark(4, "exit"), entry(5, "c"), mark(6, "exit")];
        let texts = |n| LogFilter { tail: Some(n), ..Default::default() }.apply(entries.clone()).into_iter().map(|e| e.text).collect::<Vec<_>>().join(",");
        assert_eq!(texts(1), "c,exit");
        assert_eq!(texts(2), "b,exit,c,exit");
        assert_eq!(texts(0), "");
    }

    #[test]
    fn rotation_keeps_the_cap_and_reading_spans_the_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path());
        let opts = LogOptions { max_size: 400, max_file: 3 };
        let mut w = LogWriter::open(&path, opts).unwrap();
        for i in 0..100 {
            w.write("stdout", format!("line {i:03}").as_bytes());
        }
        let files = files_in_order(&path);
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(!rotated(&path, 3).exists());
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 400, "{f:?}");
        }
        let texts: Vec<String> = read_all(&path).into_iter().map(|e| e.text).collect();
        assert_eq!(texts.last().unwrap(), "line 099");
        let numbers: Vec<u32> = texts.iter().map(|t| t[5..].parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "in order, none missing between kept ones: {numbers:?}");
        let tail = LogFilter { tail: Some(2), ..Default::default() }.apply(read_all(&path));
        assert_eq!(tail.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["line 098", "line 099"]);
    }

    #[test]
    fn one_file_only_is_emptied_instead() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path());
        let mut w = LogWriter::open(&path, LogOptions { max_size: 200, max_file: 1 }).unwrap();
        for i in 0..20 {
            w.write("stderr", format!("l{i}").as_bytes());
        }
        assert_eq!(files_in_order(&path), vec![path.clone()]);
        assert!(std::fs::metadata(&path).unwrap().len() <= 200);
        assert_eq!(read_all(&path).last().unwrap().text, "l19");
        let (_, mut f) = read_then_follow(&path);
        let mut seen = Vec::new();
        for i in 20..30 {
            w.write("stderr", format!("l{i}").as_bytes());
            seen.extend(f.poll().into_iter().map(|e| e.text));
        }
        assert_eq!(seen, (20..30).map(|i| format!("l{i}")).collect::<Vec<_>>(), "followed across the emptying");
    }

    #[test]
    fn the_follower_goes_on_in_the_new_file_after_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path());
        let mut w = LogWriter::open(&path, LogOptions { max_size: 300, max_file: 2 }).unwrap();
        w.write("stdout", b"before");
        let (before, mut f) = read_then_follow(&path);
        assert_eq!(before.len(), 1);
        let mut seen = Vec::new();
        for i in 0..6 {
            w.write("stdout", format!("after {i}").as_bytes());
            seen.extend(f.poll().into_iter().map(|e| e.text));
        }
        assert!(rotated(&path, 1).exists(), "it rotated");
        assert_eq!(seen, (0..6).map(|i| format!("after {i}")).collect::<Vec<_>>());
    }
}
