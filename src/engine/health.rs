//! Health checks, as Docker's: a command run in the container (by `exec`, without a terminal)
//! every interval, with a timeout; the container is `starting` until a check passes
//! (`healthy`), and `unhealthy` after `retries` failures in a row (failures during the start
//! period do not count). The monitor keeps a checker process (`shibafu monitor --health ID`)
//! beside a running container and kills it when the container exits.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use super::{Engine, EngineError, Result};
use crate::state::containers::{HealthProbe, HealthRecord, Healthcheck};

/// Docker's defaults.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Docker's default timeout of one check.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Docker's default failures in a row before `unhealthy`.
pub const DEFAULT_RETRIES: u32 = 3;
/// Results kept.
pub const KEPT_RESULTS: usize = 5;
/// Output kept of one check.
pub const MAX_OUTPUT: usize = 4096;

/// The health flags of `run`, as given.
#[derive(Debug, Clone, Default)]
pub struct HealthFlags {
    /// `--health-cmd`: a shell command.
    pub cmd: Option<String>,
    /// `--health-interval`.
    pub interval: Option<String>,
    /// `--health-timeout`.
    pub timeout: Option<String>,
    /// `--health-start-period`.
    pub start_period: Option<String>,
    /// `--health-retries`.
    pub retries: Option<u32>,
    /// `--no-healthcheck`: none, not even the image's.
    pub none: bool,
}

impl HealthFlags {
    /// The check a container gets: the flags over the image's (each field on its own, as
    /// Docker merges them), with Docker's defaults for what neither gives; `None` for no check.
    pub fn resolve(&self, image: Option<&Healthcheck>) -> Result<Option<Healthcheck>> {
        let given = self.check()?;
        if self.none {
            return Ok(None);
        }
        let interval = parse_positive("--health-interval", self.interval.as_deref())?;
        let timeout = parse_positive("--health-timeout", self.timeout.as_deref())?;
        let start_period = self.start_period.as_deref().map(|t| parse_duration("--health-start-period", t)).transpose()?;
        let test = match (&self.cmd, image) {
            (Some(cmd), _) => vec!["CMD-SHELL".to_string(), cmd.clone()],
            (None, Some(hc)) => hc.test.clone(),
            (None, None) if given => return Err(EngineError::Invalid("--health-* flags need a check: give --health-cmd (the image has no HEALTHCHECK)".into())),
            (None, None) => return Ok(None),
        };
        check_test(&test)?;
        if test.first().map(String::as_str) == Some("NONE") {
            return Ok(None);
        }
        let from_image = |pick: fn(&Healthcheck) -> u64| image.map(pick).filter(|n| *n > 0);
        Ok(Some(Healthcheck {
            test,
            interval: interval.map(nanos).or(from_image(|h| h.interval)).unwrap_or(nanos(DEFAULT_INTERVAL)),
            timeout: timeout.map(nanos).or(from_image(|h| h.timeout)).unwrap_or(nanos(DEFAULT_TIMEOUT)),
            start_period: start_period.map(nanos).or(from_image(|h| h.start_period)).unwrap_or(0),
            retries: self.retries.or(image.map(|h| h.retries).filter(|n| *n > 0)).unwrap_or(DEFAULT_RETRIES),
        }))
    }
}

impl HealthFlags {
    /// Checks the flags on their own (before the image is known); true when any was given.
    pub fn check(&self) -> Result<bool> {
        let given = self.cmd.is_some() || self.interval.is_some() || self.timeout.is_some() || self.start_period.is_some() || self.retries.is_some();
        if self.none && given {
            return Err(EngineError::Invalid("--no-healthcheck conflicts with the other --health-* flags".into()));
        }
        parse_positive("--health-interval", self.interval.as_deref())?;
        parse_positive("--health-timeout", self.timeout.as_deref())?;
        if let Some(t) = &self.start_period {
            parse_duration("--health-start-period", t)?;
        }
        if self.retries == Some(0) {
            return Err(EngineError::Invalid("--health-retries must be 1 or more".into()));
        }
        if self.cmd.as_ref().is_some_and(|c| c.trim().is_empty()) {
            return Err(EngineError::Invalid("--health-cmd is empty".into()));
        }
        Ok(given)
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// A Go-style duration (`30s`, `1m30s`, `500ms`).
fn parse_duration(flag: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text.trim()).map_err(|_| EngineError::Invalid(format!("invalid {flag} {text:?}: give a duration like 30s, 1m30s or 500ms")))
}

fn parse_positive(flag: &str, text: Option<&str>) -> Result<Option<Duration>> {
    let Some(text) = text else { return Ok(None) };
    let d = parse_duration(flag, text)?;
    if d < Duration::from_millis(1) {
        return Err(EngineError::Invalid(format!("{flag} must be at least 1ms, not {text:?}")));
    }
    Ok(Some(d))
}

/// `["CMD", prog, ...]`, `["CMD-SHELL", command]` or `["NONE"]`.
fn check_test(test: &[String]) -> Result<()> {
    match test.first().map(String::as_str) {
        Some("NONE") => Ok(()),
        Some("CMD") if test.len() > 1 => Ok(()),
        Some("CMD-SHELL") if test.len() == 2 => Ok(()),
        _ => Err(EngineError::Invalid(format!("a health check test must be [\"CMD\", prog, args...], [\"CMD-SHELL\", command] or [\"NONE\"], not {test:?}"))),
    }
}

/// The command line a test runs in the container.
pub fn command_of(test: &[String]) -> Vec<String> {
    match test.first().map(String::as_str) {
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        _ => test[1..].to_vec(),
    }
}

/// A container's health after one more result. A failure in the start period does not
/// count while the container has not been healthy yet.
pub fn record_result(mut health: HealthRecord, probe: HealthProbe, in_start_period: bool, retries: u32) -> HealthRecord {
    let passed = probe.exit_code == 0;
    health.log.push(probe);
    let extra = health.log.len().saturating_sub(KEPT_RESULTS);
    health.log.drain(..extra);
    if passed {
        health.status = "healthy".into();
        health.failing_streak = 0;
    } else if !(in_start_period && health.status == "starting") {
        health.failing_streak += 1;
        if health.failing_streak >= retries {
            health.status = "unhealthy".into();
        }
    }
    health
}

/// Starts the checker of a container with a health check (`None` without one).
pub fn spawn_checker(engine: &Engine, id: &str) -> Option<Child> {
    let row = engine.db.containers_by_id(id).ok()?.pop()?;
    row.healthcheck.as_ref()?;
    let exe = std::env::current_exe().ok()?;
    // Its messages go where ours go (monitor.log).
    let spawned = Command::new(exe).arg("--root").arg(&engine.root).args(["monitor", "--health", "--runtime", &row.runtime, id]).stdin(Stdio::null()).spawn();
    spawned.inspect_err(|e| eprintln!("shibafu monitor: start the health checker: {e}")).ok()
}

/// The checker process (`shibafu monitor --health ID`): checks until it is killed.
pub fn serve_checks(root: &Path, id: &str) -> i32 {
    match check_forever(root, id) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shibafu health checker: {e}");
            1
        }
    }
}

fn check_forever(root: &Path, id: &str) -> Result<()> {
    let engine = Engine::open(root)?;
    let started = Instant::now();
    loop {
        let row = engine.find(id)?;
        let Some(hc) = row.healthcheck else { return Ok(()) };
        std::thread::sleep(Duration::from_nanos(hc.interval));
        let probe = probe(root, id, &hc);
        let in_start_period = started.elapsed() < Duration::from_nanos(hc.start_period);
        let now = engine.find(id)?;
        let health = now.health.unwrap_or(HealthRecord { status: "starting".into(), failing_streak: 0, log: Vec::new() });
        engine.db.set_health(id, &record_result(health, probe, in_start_period, hc.retries))?;
    }
}

/// Runs the check once, through `shibafu exec`, and reports what it did.
fn probe(root: &Path, id: &str, hc: &Healthcheck) -> HealthProbe {
    let start = SystemTime::now();
    let timeout = Duration::from_nanos(hc.timeout);
    let (exit_code, output) = match exec_with_timeout(root, id, &command_of(&hc.test), timeout) {
        Ok(Some((code, out))) => (code, out),
        Ok(None) => (-1, format!("Health check exceeded timeout ({})", humantime::format_duration(timeout))),
        Err(e) => (-1, format!("the health check could not run: {e}")),
    };
    HealthProbe {
        start: humantime::format_rfc3339_nanos(start).to_string(),
        end: humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
        exit_code,
        output: truncate(&output, MAX_OUTPUT),
    }
}

/// The exit code and output (stdout and stderr together) of the command, or `None` when it
/// ran out of time (then it is sent SIGTERM, and SIGKILL a second later).
fn exec_with_timeout(root: &Path, id: &str, command: &[String], timeout: Duration) -> std::io::Result<Option<(i32, String)>> {
    let (reader, writer) = std::io::pipe()?;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe).arg("--root").arg(root).arg("exec").arg(id).args(command).stdin(Stdio::null()).stdout(writer.try_clone()?).stderr(writer).spawn()?;
    let deadline = Instant::now() + timeout;
    let mut output = Vec::new();
    let mut reader_open = true;
    loop {
        if reader_open {
            reader_open = read_some(&reader, &mut output, Duration::from_millis(20));
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(status) = child.try_wait()? {
            // What is still in the pipe (a process left behind may hold it open: no waiting).
            while reader_open && read_some(&reader, &mut output, Duration::ZERO) {}
            return Ok(Some((status.code().unwrap_or(-1), String::from_utf8_lossy(&output).into_owned())));
        }
        if Instant::now() >= deadline {
            end(&mut child);
            return Ok(None);
        }
    }
}

/// Reads what the pipe has within `wait`; false once it is closed (or has nothing more to
/// give after a zero wait).
fn read_some(mut pipe: &std::io::PipeReader, output: &mut Vec<u8>, wait: Duration) -> bool {
    let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::try_from(wait.as_millis() as i32).unwrap_or(PollTimeout::ZERO)).unwrap_or(0);
    if ready == 0 {
        return !wait.is_zero();
    }
    let mut buf = [0u8; 4096];
    match pipe.read(&mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            if output.len() < MAX_OUTPUT * 2 {
                output.extend_from_slice(&buf[..n]);
            }
            true
        }
    }
}

/// SIGTERM (which `exec` passes on to the command), then SIGKILL after a second.
fn end(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    let grace = Instant::now() + Duration::from_secs(1);
    while Instant::now() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i32) -> HealthProbe {
        HealthProbe { start: String::new(), end: String::new(), exit_code: code, output: String::new() }
    }

    fn starting() -> HealthRecord {
        HealthRecord { status: "starting".into(), failing_streak: 0, log: Vec::new() }
    }

    #[test]
    fn flags_make_a_shell_check_with_docker_defaults() {
        let hc = HealthFlags { cmd: Some("test -f /ok".into()), ..Default::default() }.resolve(None).unwrap().unwrap();
        assert_eq!(hc.test, ["CMD-SHELL", "test -f /ok"]);
        assert_eq!((hc.interval, hc.timeout, hc.start_period, hc.retries), (30_000_000_000, 30_000_000_000, 0, 3));
        assert_eq!(command_of(&hc.test), ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(command_of(&["CMD".into(), "true".into()]), ["true"]);
    }

    #[test]
    fn flags_override_the_image_field_by_field() {
        let image = Healthcheck { test: vec!["CMD".into(), "/check".into()], interval: 5_000_000_000, timeout: 0, start_period: 0, retries: 7 };
        let flags = HealthFlags { timeout: Some("2s".into()), ..Default::default() };
        let hc = flags.resolve(Some(&image)).unwrap().unwrap();
        assert_eq!(hc.test, ["CMD", "/check"]);
        assert_eq!((hc.interval, hc.timeout, hc.retries), (5_000_000_000, 2_000_000_000, 7));
        assert_eq!(HealthFlags { none: true, ..Default::default() }.resolve(Some(&image)).unwrap(), None);
        let none = Healthcheck { test: vec!["NONE".into()], ..Default::default() };
        assert_eq!(HealthFlags::default().resolve(Some(&none)).unwrap(), None);
        assert_eq!(HealthFlags::default().resolve(None).unwrap(), None);
    }

    #[test]
    fn bad_health_flags_are_refused() {
        let with = |f: HealthFlags| HealthFlags { cmd: Some("true".into()), ..f }.resolve(None).unwrap_err().to_string();
        assert!(with(HealthFlags { interval: Some("0".into()), ..Default::default() }).contains("--health-interval must be at least 1ms"));
        assert!(with(HealthFlags { interval: Some("0s".into()), ..Default::default() }).contains("--health-interval"));
        assert!(with(HealthFlags { timeout: Some("soon".into()), ..Default::default() }).contains("invalid --health-timeout"));
        assert!(with(HealthFlags { retries: Some(0), ..Default::default() }).contains("--health-retries"));
        assert!(with(HealthFlags { none: true, ..Default::default() }).contains("conflicts"));
        let lonely = HealthFlags { interval: Some("1s".into()), ..Default::default() }.resolve(None).unwrap_err().to_string();
        assert!(lonely.contains("give --health-cmd"), "{lonely}");
        let bad_image = Healthcheck { test: vec!["CMD".into()], ..Default::default() };
        assert!(HealthFlags::default().resolve(Some(&bad_image)).is_err());
    }

    #[test]
    fn a_pass_makes_it_healthy_and_retries_failures_unhealthy() {
        let h = record_result(starting(), probe(0), false, 3);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        let h = record_result(h, probe(1), false, 3);
        let h = record_result(h, probe(1), false, 3);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 2));
        let h = record_result(h, probe(1), false, 3);
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 3));
        let h = record_result(h, probe(0), false, 3);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let mut h = starting();
        for _ in 0..5 {
            h = record_result(h, probe(1), true, 1);
        }
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        let h = record_result(h, probe(1), false, 1);
        assert_eq!(h.status, "unhealthy");
    }

    #[test]
    fn only_the_last_five_results_stay() {
        let mut h = starting();
        for code in 0..8 {
            h = record_result(h, probe(code), false, 100);
        }
        assert_eq!(h.log.iter().map(|p| p.exit_code).collect::<Vec<_>>(), [3, 4, 5, 6, 7]);
    }

    #[test]
    fn output_is_cut_at_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
