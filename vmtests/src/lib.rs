//! Tier 3 of shibafu's tests: boot the appliance (throwaway, `./run-vm --no-build`) and drive
//! its serial console with rexpect, as a person at the lab would. Each scenario gets a fresh VM.
//! A failing step panics with the whole console transcript; a scenario that hangs runs into its
//! own time limit and fails the same way, and QEMU is killed when the `Vm` is dropped.
//! The phases' steps come from the binary's own definitions (src/lab/phases/*.toml), played by
//! its own player, so `shibafu lab check` and these tests type the same commands.

#[path = "../../src/lab/play.rs"]
pub mod play;
#[path = "../../src/lab/scenario.rs"]
pub mod scenario;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rexpect::process::{Signal, WaitStatus};
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

use play::{Console, Outcome};

/// The end of the prompt the tests set (`<STATUS>VM# `), a marker no program prints. The
/// command that sets it spells it in two pieces, so its echo does not match.
const PROMPT_END: &str = ">VM# ";

/// Whether the appliance is built (scripts/build-vm); the tests need it.
pub fn appliance() -> Option<PathBuf> {
    let vm = repo().join("build/vm");
    vm.join("root.qcow2").is_file().then_some(vm)
}

/// The repository's top folder.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("vmtests sits in the repo").to_path_buf()
}

/// A booted appliance with root's shell on its serial console.
pub struct Vm {
    session: PtySession,
    scenario: String,
    /// Everything the console printed (carriage returns dropped).
    transcript: String,
    /// What was printed since the last match.
    pending: String,
    /// When the whole scenario's time is up.
    deadline: Instant,
}

impl Vm {
    /// Boots a throwaway VM for `scenario`, waits for root's prompt and sets up a shell the
    /// test can read: no echo, a prompt that carries the exit status. The whole scenario must
    /// end within `limit`.
    /// The VM gets no network device (`--no-forward`): a test leaves the host's ports alone.
    pub fn boot(scenario: &str, limit: Duration) -> Vm {
        Vm::boot_disk(scenario, limit, None, false)
    }

    /// `boot` as `./run-vm` boots by default: 127.0.0.1:8080 and :8088 of this machine lead
    /// into the VM (they must be free).
    pub fn boot_forwarding(scenario: &str, limit: Duration) -> Vm {
        Vm::boot_disk(scenario, limit, None, true)
    }

    /// `boot`, on a disk kept in `dir` across boots (`./run-vm --persist`): made from the
    /// appliance at the first boot, used as it was left at the next.
    pub fn boot_persistent(scenario: &str, limit: Duration, dir: &std::path::Path) -> Vm {
        Vm::boot_disk(scenario, limit, Some(dir), false)
    }

    fn boot_disk(scenario: &str, limit: Duration, kept: Option<&std::path::Path>, forward: bool) -> Vm {
        assert!(appliance().is_some(), "{scenario}: no appliance: build it first (sudo scripts/build-vm)");
        let mut cmd = Command::new(repo().join("run-vm"));
        cmd.arg("--no-build").current_dir(repo());
        if !forward {
            cmd.arg("--no-forward");
        }
        if let Some(dir) = kept {
            cmd.arg("--persist").env("SHIBAFU_VM_PERSIST_DIR", dir);
        }
        let started = Instant::now();
        let mut vm = Vm::attach(clone_command(&cmd), scenario, limit);
        // Under TCG a guest now and then stalls at boot (every vCPU in a soft lockup, before
        // any unit of ours runs): such a VM is killed and booted once more; a second stall fails.
        if let Err(why) = vm.try_wait_for("[shibafu-lab ~]# ", Duration::from_secs(180)) {
            eprintln!("vmtests: {scenario}: {why}; booting once more\n----- console transcript -----\n{}\n----- end of transcript -----", vm.transcript);
            drop(vm);
            vm = Vm::attach(cmd, scenario, limit);
            vm.wait_for("[shibafu-lab ~]# ", Duration::from_secs(180));
        }
        let accel = if vm.transcript.contains("(kvm,") { "KVM" } else { "TCG" };
        eprintln!("vmtests: {scenario}: root prompt {:.1} s after ./run-vm started ({accel})", started.elapsed().as_secs_f64());
        vm.send("bind 'set enable-bracketed-paste off' 2>/dev/null; stty -echo cols 250; export PS1='<$?>V''M# '");
        vm.wait_for(PROMPT_END, Duration::from_secs(30));
        vm
    }

    /// What the console has shown so far.
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// Starts `cmd` on a pseudo-terminal as the console of `scenario`, which must end within
    /// `limit`.
    pub fn attach(cmd: Command, scenario: &str, limit: Duration) -> Vm {
        let options = Options::new().timeout_ms(Some(limit.as_millis() as u64)).strip_ansi_escape_codes(true);
        let session = spawn_with_options(cmd, options).unwrap_or_else(|e| panic!("{scenario}: cannot start the VM: {e}"));
        Vm { session, scenario: scenario.into(), transcript: String::new(), pending: String::new(), deadline: Instant::now() + limit }
    }

    /// Runs a shell command, asserts it succeeded, returns its output.
    pub fn sh(&mut self, command: &str) -> String {
        let (status, out) = self.sh_status(command);
        if status != 0 {
            self.fail(&format!("`{command}` exited with {status}:\n{out}"));
        }
        out
    }

    /// Runs a shell command; returns its exit status and output.
    pub fn sh_status(&mut self, command: &str) -> (i32, String) {
        self.sh_status_within(command, Duration::from_secs(120))
    }

    /// `sh_status` for a command that may take up to `limit`.
    pub fn sh_status_within(&mut self, command: &str, limit: Duration) -> (i32, String) {
        self.send(command);
        self.wait_prompt_within(&format!("`{command}`"), limit)
    }

    /// Waits for the VM shell's prompt (after `what`); returns the exit status it shows and
    /// the output before it.
    pub fn wait_prompt(&mut self, what: &str) -> (i32, String) {
        self.wait_prompt_within(what, Duration::from_secs(120))
    }

    /// `wait_prompt`, for up to `limit`.
    pub fn wait_prompt_within(&mut self, what: &str, limit: Duration) -> (i32, String) {
        let out = self.wait_for(PROMPT_END, limit);
        let Some(open) = out.rfind('<') else { self.fail(&format!("no exit status before the prompt after {what}")) };
        let status = out[open + 1..].parse().unwrap_or_else(|_| self.fail(&format!("unreadable exit status {:?}", &out[open..])));
        (status, out[..open].to_string())
    }

    /// Sends one line to the console.
    pub fn send(&mut self, line: &str) {
        if let Err(e) = self.session.send_line(line) {
            self.fail(&format!("cannot write to the console: {e}"));
        }
    }

    /// Waits until the console prints `needle`; returns what came before it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        self.try_wait_for(needle, timeout).unwrap_or_else(|why| self.fail(&why))
    }

    /// `wait_for`, returning why it gave up instead of failing the scenario.
    pub fn try_wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(c) = self.session.try_read() {
                if c != '\r' {
                    self.pending.push(c);
                    self.transcript.push(c);
                }
            }
            if let Some(at) = self.pending.find(needle) {
                let before = self.pending[..at].to_string();
                self.pending.drain(..at + needle.len());
                return Ok(before);
            }
            if Instant::now() > self.deadline {
                return Err(format!("the scenario's time ran out waiting for {needle:?}"));
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {} s waiting for {needle:?}", timeout.as_secs()));
            }
            if self.session.process().status().is_some_and(|s| !matches!(s, WaitStatus::StillAlive)) {
                return Err(format!("QEMU exited while waiting for {needle:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Powers the VM off (`poweroff`, so the guest syncs its disk) and waits for QEMU to exit.
    pub fn poweroff(&mut self) {
        self.send("poweroff");
        let deadline = Instant::now() + Duration::from_secs(180);
        while self.session.process().status().is_some_and(|s| matches!(s, WaitStatus::StillAlive)) {
            while let Some(c) = self.session.try_read() {
                self.transcript.push(c);
            }
            if Instant::now() > deadline {
                self.fail("QEMU did not exit within 180 s of poweroff");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails the scenario with the whole console transcript.
    pub fn fail(&self, why: &str) -> ! {
        panic!("VM scenario {:?} failed: {why}\n----- console transcript -----\n{}\n----- end of transcript -----", self.scenario, self.transcript)
    }

    /// Plays phase `n`'s scenario as the learner would: starts its units, runs its setup, types
    /// each step (the appliance's own checks too) and fails at the first step that fails.
    pub fn play_phase(&mut self, n: u8) {
        let scenario = scenario::phase(n).unwrap_or_else(|e| self.fail(&e.to_string()));
        for unit in &scenario.units {
            self.sh(&format!("systemctl start {unit}"));
        }
        if let Err(outcome) = play::setup(self, &scenario.setup) {
            self.fail(&format!("phase {n}'s setup failed: {}", describe(&outcome)));
        }
        self.sh("mkdir -p /tmp/lab-trail");
        let options = play::Options { trail_dir: "/tmp/lab-trail".into(), appliance: true };
        let outcomes = play::play(self, &scenario.steps, &options, &mut |o| eprintln!("vmtests: phase {n}: {}", describe(o)));
        if let Some(failed) = outcomes.iter().find(|o| o.failure.is_some()) {
            self.fail(&format!("phase {n}: {}", describe(failed)));
        }
    }

    /// Asserts `cond`, failing with the transcript.
    pub fn check(&self, cond: bool, what: &str) {
        if !cond {
            self.fail(what);
        }
    }
}

impl Console for Vm {
    fn sh_status(&mut self, line: &str) -> Result<(i32, String), String> {
        Ok(Vm::sh_status(self, line))
    }
    fn send(&mut self, line: &str) -> Result<(), String> {
        Vm::send(self, line);
        Ok(())
    }
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        self.try_wait_for(needle, timeout)
    }
    fn wait_prompt(&mut self) -> Result<(i32, String), String> {
        Ok(Vm::wait_prompt(self, "a step"))
    }
}

/// A step's outcome in a line or a few: `ok` or what failed, what came, the trail and hint.
fn describe(o: &Outcome) -> String {
    match &o.failure {
        None => format!("ok `{}`", o.run),
        Some(f) => format!("FAILED `{}`\n  expected: {}\n  came: {}\n  trail: {}\n  hint: {}", o.run, f.expected, f.came, f.trail, f.hint),
    }
}

/// The same program, arguments, folder and environment as `cmd` (a `Command` is not `Clone`).
fn clone_command(cmd: &Command) -> Command {
    let mut copy = Command::new(cmd.get_program());
    copy.args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        copy.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => copy.env(key, v),
            None => copy.env_remove(key),
        };
    }
    copy
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Throwaway: nothing to save, so QEMU is simply stopped.
        let _ = self.session.process_mut().kill(Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A console that prints, then hangs: the scenario's own limit ends it, the failure carries
    /// the transcript, and dropping the `Vm` kills what ran on the console.
    #[test]
    fn a_hanging_scenario_fails_with_its_transcript_and_is_killed() {
        let pidfile = std::env::temp_dir().join(format!("vmtests-hang-{}", std::process::id()));
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!("echo $$ > {}; echo booting the pretend VM; sleep 60", pidfile.display()));
        // The expected panic is read below, not printed.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let mut vm = Vm::attach(cmd, "hang", Duration::from_secs(2));
            vm.wait_for("a prompt that never comes", Duration::from_secs(30));
        }))
        .expect_err("the scenario should fail");
        std::panic::set_hook(hook);
        let message = failure.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("time ran out"), "{message}");
        assert!(message.contains("console transcript") && message.contains("booting the pretend VM"), "{message}");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        std::fs::remove_file(&pidfile).unwrap();
        assert!(!std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(), "the console's process survived");
    }
}
