//! The root-test harness: every test runs its shell script in private mount, network and PID
//! namespaces (unshare), with a temp data root. When the script ends, the kernel kills every
//! process left in its PID namespace and drops its mounts, so nothing survives a test.

#![allow(dead_code)]

pub mod hostile;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

static BUILD_IMAGE: Once = Once::new();

/// The busybox rootfs tarball, built once per test run by images/busybox/build.
pub fn busybox_tar() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = manifest.join("target/test-images/busybox.tar");
    BUILD_IMAGE.call_once(|| {
        let status = Command::new(manifest.join("images/busybox/build")).arg(&out).status().expect("run images/busybox/build");
        assert!(status.success(), "images/busybox/build failed");
    });
    out
}

/// Shell lines that copy the host's python 3.11 (binary, standard library, shared libraries)
/// into $LAB/python-3.11, ready for `prepare-layer`.
pub const PYTHON_DIR: &str = r#"
    mkdir -p $LAB/python-3.11/usr/bin $LAB/python-3.11/usr/lib
    cp -a /usr/bin/python3.11 $LAB/python-3.11/usr/bin/ && ln -s python3.11 $LAB/python-3.11/usr/bin/python
    tar -C /usr/lib --exclude=test --exclude=__pycache__ --exclude=dist-packages -cf - python3.11 | tar -C $LAB/python-3.11/usr/lib -xf -
    for lib in $(ldd /usr/bin/python3.11 | grep -o '/[^ ]*'); do
        mkdir -p $LAB/python-3.11$(dirname $lib) && cp -L $lib $LAB/python-3.11$lib
    done
"#;

/// Shell lines that stand up the pretend internet of the appliance (images/appliance/lab-internet,
/// the same script) inside the lab's own namespaces: a namespace "internet" at 198.51.100.1 that
/// answers every DNS name with itself, ping, and HTTP. /run and /etc/resolv.conf are the lab's
/// own copies, so the host sees none of it.
pub fn internet() -> String {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/appliance");
    format!(
        r#"
mount -t tmpfs tmpfs /run
: > "$LAB/resolv.conf" && mount --bind "$LAB/resolv.conf" /etc/resolv.conf
cp -r {www} "$LAB/www" && export LAB_INTERNET_WWW="$LAB/www"
{script} up
ip netns exec internet {script} dns >"$LAB/dns.log" 2>&1 &
ip netns exec internet {script} http >"$LAB/http.log" 2>&1 &
for i in $(seq 100); do
    ip netns exec internet ss -ltnu | grep -q '198.51.100.1:53 ' && ip netns exec internet ss -ltn | grep -q '198.51.100.1:80 ' && break
    sleep 0.05
done
"#,
        www = app.join("www").display(),
        script = app.join("lab-internet").display(),
    )
}

/// A throwaway lab: a temp dir holding the data root and scratch files.
pub struct Lab {
    /// The temp dir.
    pub dir: tempfile::TempDir,
}

/// When a script ends with containers still running, the kernel kills them with their PID
/// namespace, but their cgroups (which are the host's) stay: remove them here, even when the
/// test failed, and their `shibafu` parent once empty. runc leaves that parent behind in every
/// hierarchy it used (each v1 controller on a hybrid host): remove it too when empty (an
/// rmdir fails while another test's container still lives there).
impl Drop for Lab {
    fn drop(&mut self) {
        for cgroup in self.runtime_cgroups() {
            for _ in 0..2000 {
                let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
                match std::fs::remove_dir(&cgroup) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(std::time::Duration::from_millis(1)),
                    _ => break,
                }
            }
            if let Some(parent) = cgroup.parent().filter(|p| p.ends_with("shibafu")) {
                let _ = std::fs::remove_dir(parent);
            }
        }
        let top = std::path::PathBuf::from("/sys/fs/cgroup");
        let hierarchies = std::fs::read_dir(&top).into_iter().flatten().flatten().map(|e| e.path());
        for hierarchy in std::iter::once(top.clone()).chain(hierarchies) {
            let _ = std::fs::remove_dir(hierarchy.join("shibafu"));
        }
    }
}

/// What a script printed and how it ended.
pub struct Ran {
    /// Standard output.
    pub out: String,
    /// Standard error.
    pub err: String,
    /// Exit code.
    pub code: i32,
}

impl Lab {
    /// A new lab with busybox imported on every script start.
    pub fn new() -> Lab {
        busybox_tar();
        Lab { dir: tempfile::Builder::new().prefix("shibafu-test-").tempdir().expect("temp dir") }
    }

    /// Runs `script` with bash -e in fresh namespaces; `shibafu` is on PATH, SHIBAFU_ROOT is
    /// set, busybox is imported, and $LAB names the lab dir.
    pub fn sh(&self, script: &str) -> Ran {
        let out: Output = self.command(script).output().expect("run unshare");
        Ran {
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code().unwrap_or(-1),
        }
    }

    /// Starts `script` as `sh` runs it, without waiting. The `unshare` process it returns is
    /// in the script's network namespace (/proc/PID/ns/net); killing it ends the script and
    /// every process of its PID namespace.
    pub fn spawn(&self, script: &str) -> std::process::Child {
        let log = std::fs::File::create(self.dir.path().join("script.log")).expect("script log");
        self.command(script).stdout(log.try_clone().expect("log")).stderr(log).spawn().expect("run unshare")
    }

    fn command(&self, script: &str) -> Command {
        let bin = Path::new(env!("CARGO_BIN_EXE_shibafu"));
        let prelude = format!(
            "set -eu\nexport LAB={lab}\nexport BUSYBOX_TAR={tar}\nexport SHIBAFU_ROOT={lab}/root\nexport PATH={bindir}:$PATH\nip link set lo up\nshibafu image import {tar} busybox >/dev/null\n",
            lab = self.dir.path().display(),
            bindir = bin.parent().unwrap().display(),
            tar = busybox_tar().display(),
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private", "bash", "-c"]).arg(format!("{prelude}{script}"));
        cmd
    }

    /// The cgroups of the lab's runtime containers (from every runtime record under the lab).
    fn runtime_cgroups(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut dirs = vec![(self.dir.path().to_path_buf(), 0)];
        while let Some((dir, depth)) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else { continue };
                if kind.is_dir() && depth < 4 && entry.file_name() != "layers" && entry.file_name() != "blobs" {
                    dirs.push((path, depth + 1));
                } else if kind.is_file() && entry.file_name() == "state.json" {
                    let record: serde_json::Value = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
                    if let Some(cgroup) = record.get("cgroup").and_then(|c| c.as_str()) {
                        out.push(PathBuf::from(cgroup));
                    }
                }
            }
        }
        out
    }

    /// Like `sh`, but fails the test unless the script exits 0.
    pub fn ok(&self, script: &str) -> String {
        let r = self.sh(script);
        assert_eq!(r.code, 0, "script failed ({}):\n{script}\n--- stdout\n{}\n--- stderr\n{}", r.code, r.out, r.err);
        r.out
    }
}

static BUILD_LAB_IMAGES: Once = Once::new();

/// One of the lab's images (images/build/oci/NAME: nginx, node, python, ...), as an OCI
/// layout. scripts/test builds them before the root tests; a test run alone builds them here
/// once (images/build-all, which needs root and the Debian mirror, and skips what is built).
pub fn lab_image(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = manifest.join("images/build");
    BUILD_LAB_IMAGES.call_once(|| {
        if !build.join("images.txt").exists() {
            let status = Command::new(manifest.join("images/build-all")).status().expect("run images/build-all");
            assert!(status.success(), "images/build-all failed");
        }
    });
    let dir = build.join("oci").join(name);
    assert!(dir.join("oci-layout").exists(), "{} is not an OCI layout: is {name} one of the images images/build-all makes?", dir.display());
    dir
}

/// Shell lines: the runtime images, the proxy and the API, and helpers. `deploy FILE ARGS...`
/// posts a deploy and prints the HTTP code and answer; `settle ID` waits for a deployment to
/// end building and starting and prints its status; `get APP [PATH]` asks the proxy.
pub fn platform() -> String {
    format!(
        r#"
        shibafu image import {nginx} nginx:latest >/dev/null
        shibafu image import {node} node:18 >/dev/null
        shibafu image import {python} python:3.11 >/dev/null
        shibafu proxy serve --port 80 --domain platform.local 2>$LAB/proxy.log &
        shibafu registry serve --port 5000 2>$LAB/registry.log &
        for i in $(seq 100); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && break; sleep 0.1; done
        shibafu paas serve --port 8080 --max-upload 8m --check-interval 500ms --check-retries 2 2>$LAB/paas.log &
        for i in $(seq 100); do curl -sf http://127.0.0.1:8080/api/apps >/dev/null && break; sleep 0.1; done
        api=http://127.0.0.1:8080/api
        deploy() {{ f=$1; shift; curl -s -o $LAB/answer -w '%{{http_code}}' "$@" -F code=@$f $api/deploy; echo " $(cat $LAB/answer)"; }}
        settle() {{
            for i in $(seq 600); do
                s=$(curl -s $api/deployments/$1 | jq -r .status)
                case $s in building|starting) sleep 0.1;; *) break;; esac
            done
            echo $s
        }}
        get() {{ curl -s --max-time 5 -H "Host: $1.platform.local" http://127.0.0.1/${{2:-}}; }}
        "#,
        nginx = lab_image("nginx").display(),
        node = lab_image("node").display(),
        python = lab_image("python").display(),
    )
}
