//! A local shell (bash) on a pseudo-terminal: the console `lab check` types the steps into,
//! the way the VM tests type them into the appliance's serial console.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rexpect::process::{Signal, WaitStatus};
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

use super::play::Console;

/// The end of the prompt the shell is given (`<STATUS>LAB# `); the line that sets it spells it
/// in two pieces, so its echo never matches.
const PROMPT_END: &str = ">LAB# ";

/// The longest one command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// Set by SIGINT or SIGTERM once `stop_on_signals` ran: every wait ends, so the check can
/// clean up before it exits.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn interrupted(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Makes Ctrl-C (and SIGTERM) end the waits of every shell instead of the process, so what
/// the shells made is removed before the process exits.
pub fn stop_on_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(interrupted),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// Whether a signal asked the lab to stop.
fn interrupted_by_signal() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Whether a signal asked the lab to stop; the shells answer again after this (to clean up).
pub fn take_interrupt() -> bool {
    INTERRUPTED.swap(false, Ordering::Relaxed)
}

/// bash on a terminal, in the folder and with the environment given.
pub struct Shell {
    session: PtySession,
    /// What came since the last match (carriage returns dropped).
    pending: String,
}

impl Shell {
    /// Starts `bash` (no rc files) as `cmd` describes it (folder, environment) and sets it up
    /// to be read: no echo, a prompt carrying the exit status.
    pub fn start(mut cmd: Command) -> Result<Shell, String> {
        cmd.args(["--norc", "--noprofile", "-i"]);
        let options = Options::new()
            .timeout_ms(Some(COMMAND_LIMIT.as_millis() as u64))
            .strip_ansi_escape_codes(true);
        let session = spawn_with_options(cmd, options)
            .map_err(|e| format!("cannot start bash on a terminal: {e}"))?;
        let mut shell = Shell {
            session,
            pending: String::new(),
        };
        shell.send("bind 'set enable-bracketed-paste off' 2>/dev/null; stty -echo cols 250 rows 50; PS2=; PS1='<$?>LA''B# '")?;
        shell.wait_for(PROMPT_END, Duration::from_secs(30))?;
        Ok(shell)
    }
}

impl Console for Shell {
    fn sh_status(&mut self, line: &str) -> Result<(i32, String), String> {
        self.send(line)?;
        self.wait_prompt()
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        self.session
            .send_line(line)
            .map(|_| ())
            .map_err(|e| format!("cannot write to the shell: {e}"))
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(c) = self.session.try_read() {
                if c != '\r' {
                    self.pending.push(c);
                }
            }
            if let Some(at) = self.pending.find(needle) {
                let before = self.pending[..at].to_string();
                self.pending.drain(..at + needle.len());
                return Ok(before);
            }
            if interrupted_by_signal() {
                return Err("interrupted (Ctrl-C or SIGTERM)".into());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nothing for {} s: waited for {needle:?} after:\n{}",
                    timeout.as_secs(),
                    self.pending
                ));
            }
            if self
                .session
                .process()
                .status()
                .is_some_and(|s| !matches!(s, WaitStatus::StillAlive))
            {
                return Err(format!("the shell exited while waiting for {needle:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_prompt(&mut self) -> Result<(i32, String), String> {
        let out = self.wait_for(PROMPT_END, COMMAND_LIMIT)?;
        let open = out.rfind('<').ok_or("no exit status before the prompt")?;
        let status = out[open + 1..]
            .parse()
            .map_err(|_| format!("unreadable exit status {:?}", &out[open..]))?;
        Ok((status, out[..open].to_string()))
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.session.process_mut().kill(Signal::SIGKILL);
    }
}
