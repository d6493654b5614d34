//! The runtime's security (issue 17) in the appliance, on its Debian kernel with cgroup v2
//! whole: the lab's images (busybox, python, node, nginx, postgres) run under the default
//! seccomp profile, first with the host's user namespace and then with `--userns=auto`, where
//! every process of theirs is an unprivileged host user and the profile still refuses what
//! Docker's refuses; and runc and crun, given the same config.json, refuse the same calls.

use std::time::Duration;

use vmtests::Vm;

/// keyctl(2) is refused by the profile alone (no capability guards it): -1 and EPERM (1).
const KEYCTL: &str = "python3 -c \"import ctypes; l = ctypes.CDLL(None, use_errno=True); print('keyctl', l.syscall(250, 0, -3, 0), ctypes.get_errno())\"";
/// System calls Docker's profile refuses (x86_64 numbers): keyctl, unshare of a user
/// namespace, mount, kexec_load, each as (name, result, errno).
const PROBE: &str = "python3 -c \"import ctypes; l = ctypes.CDLL(None, use_errno=True); print([(n, l.syscall(*a), ctypes.get_errno()) for n, a in (('keyctl', (250, 0, -3, 0)), ('unshare', (272, 0x10000000)), ('mount', (165, b'none', b'/mnt', b'tmpfs', 0, 0)), ('kexec', (246, 0, 0, 0, 0)))])\"";
/// Threads, sqlite and a subprocess.
const PYTHON: &str = "python3 -c \"import threading, sqlite3, subprocess; t = threading.Thread(target=print, args=('thread',)); t.start(); t.join(); print(sqlite3.connect(':memory:').execute('select 6 * 7').fetchone()[0], subprocess.run(['true']).returncode)\"";
/// A worker thread.
const NODE: &str = "node -e \"const {Worker} = require('worker_threads'); new Worker('', {eval: true}).on('exit', c => console.log('worker exit', c))\"";

#[test]
fn lab_images_run_under_the_default_profile_and_in_user_namespaces() {
    let mut vm = Vm::boot("security", Duration::from_secs(1200));
    // Here crun runs too (cgroup v2 is whole): the three runtimes, given the same config.json,
    // refuse the same calls.
    let refused = "[('keyctl', -1, 1), ('unshare', -1, 1), ('mount', -1, 1), ('kexec', -1, 1)]";
    for rt in ["shibafu", "runc", "crun"] {
        let out = vm.sh(&format!("shibafu run --rm --runtime {rt} python:3.11 {PROBE}"));
        vm.check(out.contains(refused), &format!("{rt}: the default profile should refuse {refused}:\n{out}"));
        // Each runtime took the console over for the run; the console's settings (echo off, as
        // this test set them) are as they were (crun 1.8 turned echo on, and the engine puts
        // them back).
        let echo = vm.sh("stty -a | tr ' ;' '\\n\\n' | grep -x -- '-\\?echo'");
        vm.check(echo.trim() == "-echo", &format!("{rt}: the console's echo stays off after the run:\n{echo}"));
    }
    for (mode, port) in [("host", 18080), ("auto", 18081)] {
        let run = format!("shibafu run --rm --userns={mode}");
        let bb = vm.sh(&format!("{run} busybox sh -c 'grep Seccomp: /proc/self/status; cat /proc/self/uid_map; unshare -U true 2>&1; true'"));
        vm.check(bb.contains("Seccomp:\t2") && bb.contains("Operation not permitted"), &format!("{mode}: busybox filtered, unshare refused:\n{bb}"));
        let map = if mode == "auto" { "0     100000      65536" } else { "0          0 4294967295" };
        vm.check(bb.contains(map), &format!("{mode}: the uid map should be {map}:\n{bb}"));
        let py = vm.sh(&format!("{run} python:3.11 {PYTHON}; {run} python:3.11 {KEYCTL}"));
        vm.check(py.contains("thread\n42 0") && py.contains("keyctl -1 1"), &format!("{mode}: python works, keyctl EPERM:\n{py}"));
        let node = vm.sh(&format!("{run} node:18 {NODE}"));
        vm.check(node.contains("worker exit 0"), &format!("{mode}: node's worker thread:\n{node}"));
        vm.sh(&format!("shibafu run -d --name web-{mode} --userns={mode} --publish {port}:80 nginx >/dev/null"));
        let page = vm.sh(&format!("for i in $(seq 60); do curl -sf localhost:{port} && break; sleep 0.5; done"));
        vm.check(page.contains("Welcome to nginx"), &format!("{mode}: nginx on port 80 behind {port}:\n{page}"));
        // postgres under the profile with the host's ids is phases 6 and 8's: here only under auto
        // (its initdb takes a minute under TCG).
        let servers = if mode == "auto" { "web-auto pg-auto" } else { "web-host" };
        if mode == "auto" {
            vm.sh(&format!("shibafu run -d --name pg-{mode} --userns={mode} postgres:15 >/dev/null"));
            let query = format!("shibafu exec pg-{mode} psql -U user -d postgres -tAc 'select 6 * 7'");
            // initdb first: minutes under TCG, so the wait is cut in turns shorter than a command's.
            let mut answer = String::new();
            for _ in 0..8 {
                answer = vm.sh(&format!("for i in $(seq 30); do {query} 2>/dev/null | grep -x 42 && break; sleep 1; done"));
                if answer.contains("42") {
                    break;
                }
            }
            if !answer.contains("42") {
                let logs = vm.sh(&format!("{query} 2>&1; shibafu logs pg-{mode} 2>&1 | tail -5"));
                vm.fail(&format!("{mode}: postgres should answer 42:\n{answer}\n{logs}"));
            }
        }
        // Every process of the servers, as the VM sees them, and their filter mode.
        let seen = vm.sh(&format!(
            "for c in {servers}; do for p in $(cat /sys/fs/cgroup/shibafu/$(shibafu inspect --format '{{{{.Id}}}}' $c)/cgroup.procs); do echo \"$c $(ps -o uid= -p $p | tr -d ' ') $(grep Seccomp: /proc/$p/status | cut -f2)\"; done; done"
        ));
        // (Only the lines of the servers: an echoed command would not be one.)
        let procs: Vec<(u32, &str)> = seen.lines().filter(|l| l.starts_with("web-") || l.starts_with("pg-")).filter_map(|l| l.split_whitespace().collect::<Vec<_>>().get(1..3).map(|w| (w[0].parse().unwrap_or(u32::MAX), w[1]))).collect();
        // nginx's master and a worker per CPU; under auto postgres' too.
        let least = if mode == "auto" { 4 } else { 2 };
        vm.check(procs.len() >= least && procs.iter().all(|(_, seccomp)| *seccomp == "2"), &format!("{mode}: every server process filtered:\n{seen}"));
        // Each auto container has its own range from 100000 up (the second one 165536...).
        let unprivileged = procs.iter().all(|(uid, _)| *uid >= 100_000);
        vm.check(unprivileged == (mode == "auto"), &format!("{mode}: host uids of the servers' processes:\n{seen}"));
        vm.sh(&format!("shibafu rm -f {servers} >/dev/null"));
    }
}
