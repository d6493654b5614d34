//! Restart policies, as Docker's: `no`, `on-failure[:N]`, `always`, `unless-stopped`; and the
//! back-off between restarts: 100 ms, doubling up to a minute, back to 100 ms after a run of
//! 10 seconds or more.

use std::time::Duration;

use super::{EngineError, Result};

/// When a container's monitor starts it again after it exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Never.
    #[default]
    No,
    /// After a non-zero exit, at most this many times (0: no limit).
    OnFailure(u32),
    /// Always, unless the user stopped it; it also comes back when the machine boots.
    Always,
    /// Always, unless the user stopped it; it comes back at boot unless the user stopped it.
    UnlessStopped,
}

/// The first back-off.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A run at least this long starts the back-off over.
pub const STABLE_RUN: Duration = Duration::from_secs(10);

impl RestartPolicy {
    /// Parses `no`, `on-failure`, `on-failure:N`, `always` or `unless-stopped`.
    pub fn parse(text: &str) -> Result<RestartPolicy> {
        let bad = || EngineError::Invalid(format!("invalid restart policy {text:?}: use no, on-failure[:N] (N >= 0), always or unless-stopped"));
        match text.split_once(':') {
            None => match text {
                "" | "no" => Ok(RestartPolicy::No),
                "on-failure" => Ok(RestartPolicy::OnFailure(0)),
                "always" => Ok(RestartPolicy::Always),
                "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
                _ => Err(bad()),
            },
            Some(("on-failure", n)) => n.parse::<u32>().map(RestartPolicy::OnFailure).map_err(|_| bad()),
            Some((name @ ("always" | "unless-stopped" | "no"), _)) => {
                Err(EngineError::Invalid(format!("invalid restart policy {text:?}: a retry count goes only with on-failure, not {name}")))
            }
            Some(_) => Err(bad()),
        }
    }

    /// Whether the monitor restarts a container that exited with `code`, after `restarts`
    /// restarts so far; never once the user stopped it.
    pub fn should_restart(&self, code: i32, restarts: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match *self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => code != 0 && (max == 0 || restarts < max),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }

    /// The policy's name without a retry count (`restart-policy=` filters match it).
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure(_) => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// Docker's most retries (`HostConfig.RestartPolicy.MaximumRetryCount`).
    pub fn maximum_retry_count(&self) -> u32 {
        match self {
            RestartPolicy::OnFailure(n) => *n,
            _ => 0,
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::OnFailure(n) if *n > 0 => write!(f, "on-failure:{n}"),
            other => f.write_str(other.name()),
        }
    }
}

/// The back-off before the next restart, from the one before (`None`: none yet) and how long
/// the container ran this time.
pub fn next_backoff(previous: Option<Duration>, ran: Duration) -> Duration {
    match previous {
        Some(d) if ran < STABLE_RUN => (d * 2).min(MAX_BACKOFF),
        _ => FIRST_BACKOFF,
    }
}

/// `1.5s`, `200ms`, `1m`: a back-off as people write it.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..1000 => format!("{ms}ms"),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{:.1}s", ms as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print_back() {
        for text in ["no", "always", "unless-stopped", "on-failure", "on-failure:2"] {
            assert_eq!(RestartPolicy::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(RestartPolicy::parse("on-failure:0").unwrap(), RestartPolicy::OnFailure(0));
        assert_eq!(RestartPolicy::parse("").unwrap(), RestartPolicy::No);
    }

    #[test]
    fn bad_policies_are_refused_with_the_choices() {
        for text in ["sometimes", "on-failure:-1", "on-failure:x", "on-failure:", "always:3", "ALWAYS"] {
            let err = RestartPolicy::parse(text).unwrap_err().to_string();
            assert!(err.contains("invalid restart policy"), "{text}: {err}");
        }
    }

    #[test]
    fn on_failure_stops_after_its_count_and_on_success() {
        let p = RestartPolicy::OnFailure(2);
        assert!(p.should_restart(1, 0, false));
        assert!(p.should_restart(1, 1, false));
        assert!(!p.should_restart(1, 2, false));
        assert!(!p.should_restart(0, 0, false));
        assert!(RestartPolicy::OnFailure(0).should_restart(3, 1000, false));
    }

    #[test]
    fn a_user_stop_ends_every_policy() {
        for p in [RestartPolicy::Always, RestartPolicy::UnlessStopped, RestartPolicy::OnFailure(0)] {
            assert!(!p.should_restart(1, 0, true));
        }
        assert!(RestartPolicy::Always.should_restart(0, 5, false));
        assert!(!RestartPolicy::No.should_restart(1, 0, false));
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_a_stable_run() {
        let quick = Duration::from_millis(5);
        let mut d = next_backoff(None, quick);
        let mut seen = vec![d];
        for _ in 0..12 {
            d = next_backoff(Some(d), quick);
            seen.push(d);
        }
        let ms: Vec<u128> = seen.iter().map(|d| d.as_millis()).collect();
        assert_eq!(&ms[..6], &[100, 200, 400, 800, 1600, 3200]);
        assert_eq!(*ms.last().unwrap(), 60_000);
        assert_eq!(next_backoff(Some(MAX_BACKOFF), STABLE_RUN), FIRST_BACKOFF);
        assert_eq!(next_backoff(Some(Duration::from_millis(800)), Duration::from_millis(9999)), Duration::from_millis(1600));
    }

    #[test]
    fn durations_show_as_people_write_them() {
        assert_eq!(show_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(show_duration(Duration::from_millis(1600)), "1.6s");
        assert_eq!(show_duration(Duration::from_millis(6400)), "6.4s");
        assert_eq!(show_duration(Duration::from_secs(25)), "25s");
        assert_eq!(show_duration(Duration::from_secs(60)), "1m");
    }
}
