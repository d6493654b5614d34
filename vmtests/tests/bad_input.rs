//! Bad input to the appliance's own scripts: a machine without QEMU or without the build tools
//! is told what to install, and an unknown option is refused; nothing is booted or built.

use std::os::unix::fs::symlink;
use std::process::Command;

/// Runs a repo script with a PATH that holds only `tools` (and the shell).
fn run_with_only(script: &str, args: &[&str], tools: &[&str]) -> (i32, String) {
    let bin = tempfile_dir();
    for t in tools.iter().chain(&["sh", "dirname", "id", "cat", "sed", "date"]) {
        let found = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"].iter().map(|d| format!("{d}/{t}")).find(|p| std::path::Path::new(p).exists());
        if let Some(p) = found {
            let _ = symlink(p, bin.join(t));
        }
    }
    let out = Command::new("/bin/sh").arg(vmtests::repo().join(script)).args(args).env("PATH", &bin).current_dir(vmtests::repo()).output().expect("run the script");
    std::fs::remove_dir_all(&bin).unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vmtests-path-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn run_vm_without_qemu_says_what_to_install() {
    let (code, err) = run_with_only("run-vm", &["--no-build"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("needs QEMU: apt-get install qemu-system-x86"), "{err}");
}

#[test]
fn run_vm_refuses_an_unknown_option() {
    let (code, err) = run_with_only("run-vm", &["--bogus"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown option --bogus"), "{err}");
}

#[test]
fn build_vm_without_mmdebstrap_says_what_to_install() {
    let (code, err) = run_with_only("scripts/build-vm", &[], &[]);
    assert_eq!(code, 1, "{err}");
    // As root it names the missing tool; as anyone else it asks for root first.
    assert!(err.contains("needs mmdebstrap: apt-get install mmdebstrap") || err.contains("must run as root"), "{err}");
}
