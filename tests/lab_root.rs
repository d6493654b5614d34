//! Root tests of `shibafu lab check` (issue 18): every phase passes in a scratch appliance on a
//! clean machine and leaves the machine as it was; with a piece broken on purpose (the bridge
//! removed, a layer deleted, the DNS service stopped) the phase fails at the right step with
//! that step's hint from the phase's own definition; `--mine` judges the learner's state.
//! The scratch appliances take their images from images/build and the pretend internet from
//! images/appliance, as the appliance takes them from /usr/share and /usr/local.

mod common;

use std::path::Path;
use std::process::Command;

/// One scratch check at a time: each runs the phases' servers (postgres, node builds) with
/// their waits sized for a machine that runs one of them.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `shibafu lab ARGS` with the repository's images and pretend internet; (status, output).
fn lab(args: &[&str]) -> (i32, String) {
    common::lab_image("busybox");
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_shibafu"))
        .arg("lab")
        .args(args)
        .env("SHIBAFU_LAB_IMAGES", repo.join("images/build/images.txt"))
        .env(
            "SHIBAFU_LAB_INTERNET",
            repo.join("images/appliance/lab-internet"),
        )
        .env("LAB_INTERNET_WWW", repo.join("images/appliance/www"))
        .output()
        .expect("run shibafu lab");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// What on the host a check could touch: links, routes, named namespaces, iptables rules and
/// mounts. (Scratch folders and cgroups are checked in the VM test, where no other check runs
/// beside it.)
fn host_state() -> String {
    let sh = "ip -o link | cut -d: -f2; ip route; ip netns list; iptables-save | grep -v '^#'; \
              cut -d' ' -f2,3 /proc/self/mounts | grep -v '^/proc/'; true";
    String::from_utf8_lossy(
        &Command::new("sh")
            .arg("-c")
            .arg(sh)
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

/// A phase's definition with `line` put before the step that runs `before`: the break.
fn broken(phase: u8, before: &str, line: &str) -> tempfile::NamedTempFile {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("src/lab/phases/phase{phase}.toml"));
    let text = std::fs::read_to_string(path).unwrap();
    let at = text
        .find(&format!("[[step]]\nrun = \"{before}"))
        .unwrap_or_else(|| panic!("phase {phase} has no step `{before}`"));
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        file.path(),
        format!("{}[[step]]\nrun = {line:?}\n\n{}", &text[..at], &text[at..]),
    )
    .unwrap();
    file
}

#[test]
fn every_phase_passes_in_a_scratch_appliance_and_the_host_is_left_as_it_was() {
    let before = host_state();
    let (status, out) = lab(&["check", "all"]);
    assert!(
        status == 0 && out.contains("all 9 phases passed"),
        "lab check all:\n{out}"
    );
    for phase in 0..9 {
        assert!(
            out.contains(&format!("phase {phase}: passed")),
            "phase {phase}:\n{out}"
        );
    }
    assert_eq!(before, host_state(), "lab check all changed the host");
}

#[test]
fn the_bridge_removed_fails_phase_2_at_its_first_step_with_its_hint() {
    let file = broken(2, "ip link show ctr0", "ip link del ctr0");
    let (status, out) = lab(&["check", file.path().to_str().unwrap()]);
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains("  FAIL  ip link show ctr0") && out.contains("expected: exit status 0"),
        "{out}"
    );
    assert!(
        out.contains(
            "hint:     the appliance makes ctr0 at boot: systemctl restart shibafu-network"
        ),
        "{out}"
    );
    assert!(out.contains("phase 2: FAILED after 1 of 10 steps"), "{out}");
}

#[test]
fn a_layer_deleted_fails_phase_3_at_the_run_with_its_hint() {
    let file = broken(
        3,
        "./container-tool run --layers",
        "./container-tool layer rm app-code",
    );
    let (status, out) = lab(&["check", file.path().to_str().unwrap()]);
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains(
            "  FAIL  ./container-tool run --layers alpine-base,python-3.11,app-code python app.py"
        ),
        "{out}"
    );
    assert!(
        out.contains("app-code"),
        "the error names the missing layer:\n{out}"
    );
    assert!(out.contains("hint:     run --layers mounts the layers bottom first with overlay: is each one prepared?"), "{out}");
}

#[test]
fn the_dns_stopped_fails_phase_6_at_the_name_with_the_explain_trail_and_hint() {
    let file = broken(
        6,
        "./container-tool exec api ping -c 3 postgres.backend.local",
        "pkill -f 'shibafu dns serve'",
    );
    let (status, out) = lab(&["check", file.path().to_str().unwrap()]);
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains("  FAIL  ./container-tool exec api ping -c 3 postgres.backend.local"),
        "{out}"
    );
    assert!(out.contains("hint:     postgres.backend.local does not resolve: the DNS for containers answers on each network's gateway (systemctl status shibafu-dns)"), "{out}");
}

#[test]
fn bad_requests_are_refused_with_the_reason() {
    let (status, out) = lab(&["check", "12"]);
    assert!(
        status == 125 && out.contains("no phase 12: the lab has phases 0 to 8"),
        "{out}"
    );
    let (status, out) = lab(&["check", "/nonexistent.toml"]);
    assert!(
        status == 125 && out.contains("neither a phase (0 to 8, or all) nor a scenario file"),
        "{out}"
    );
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), "phase = 9\ntitle = \"t\"\nteaches = \"t\"\nnext = \"n\"\nimages = [\"alpine:3\"]\n[[step]]\nrun = \"true\"\n").unwrap();
    let (status, out) = lab(&["check", file.path().to_str().unwrap()]);
    assert!(status == 125 && out.contains("has no alpine:3"), "{out}");
}

#[test]
fn reset_undoes_the_learners_work_and_leaves_what_a_first_boot_has() {
    let lab = common::Lab::new();
    let (busybox, nginx) = (common::lab_image("busybox"), common::lab_image("nginx"));
    let ran = lab.sh(&format!(
        r#"
echo "busybox:latest {busybox} $(sed -n 's/^busybox:latest [^ ]* //p' {list})" > $LAB/images.txt
export SHIBAFU_LAB_IMAGES=$LAB/images.txt
state() {{
    shibafu list -a; shibafu network ls; shibafu images; shibafu layers; shibafu volume ls
    iptables-save | grep -v '^#' | sed 's/\[[0-9:]*\]//'; ip -o link | cut -d: -f2; ls $SHIBAFU_ROOT
}}
shibafu lab reset --yes >/dev/null
state > $LAB/first-boot
# The learner's work: a network, a container publishing a port, a volume, a layer, a retagged
# and a foreign image, the registry's content, an app's files, a phase done.
shibafu network create frontend 172.21.0.0/24 >/dev/null
shibafu run -d --name web --network frontend -p 8080:80 busybox httpd -f -p 80 >/dev/null
shibafu volume create data >/dev/null
shibafu run --name once -v data:/data busybox sh -c 'echo x > /data/x'
mkdir $LAB/l && echo hi > $LAB/l/f && shibafu prepare-layer mine $LAB/l >/dev/null
shibafu commit once busybox:latest >/dev/null
shibafu image import {nginx} nginx:latest >/dev/null
shibafu registry serve --port 5000 2>/dev/null & for i in $(seq 50); do curl -sf localhost:5000/v2/ >/dev/null && break; sleep 0.1; done
shibafu push nginx localhost:5000/apps/web:1 >/dev/null; kill %1; wait
mkdir -p $SHIBAFU_ROOT/paas && echo token > $SHIBAFU_ROOT/paas/api.token
echo "2 1700000000" > $SHIBAFU_ROOT/lab-done
ip link del ctr0
echo '--- reset'
shibafu lab reset </dev/null && echo "not refused without --yes"
shibafu lab reset --yes
state > $LAB/after
diff $LAB/first-boot $LAB/after && echo SAME
"#,
        list = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/build/images.txt").display(),
        busybox = busybox.display(),
        nginx = nginx.display(),
    ));
    let out = format!("{}{}", ran.out, ran.err);
    assert!(
        ran.code == 0 && out.contains("SAME"),
        "reset left another state:\n{out}"
    );
    assert!(
        !out.contains("not refused") && out.contains("lab reset asks before it removes anything"),
        "{out}"
    );
    for said in [
        "removed container web (busybox:latest)",
        "removed container once (busybox:latest)",
        "removed the PaaS's files",
        "removed network frontend (172.21.0.0/24)",
        "removed volume data",
        "removed layer name mine",
        "removed registry repository apps/web",
        "removed image busybox:latest",
        "removed image nginx:latest",
        "restored image busybox:latest",
        "network bridge is up: ctr0 172.20.0.1",
        "forgot the phases done",
    ] {
        assert!(out.contains(said), "reset should say {said:?}:\n{out}");
    }
}

#[test]
fn the_checks_of_the_learners_work_pass_after_the_phases_own_steps() {
    // Phases 3, 5 and 8 leave their work in place (the others remove theirs at the end): their
    // mine checks, played as steps after the phase's own, in the same scratch appliance.
    for phase in [3, 5, 8] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("src/lab/phases/phase{phase}.toml"));
        let text = std::fs::read_to_string(path).unwrap().replace("[[mine]]", "[[step]]").replace("[[mine.expect]]", "[[step.expect]]");
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), text).unwrap();
        let (status, out) = lab(&["check", file.path().to_str().unwrap()]);
        assert!(status == 0 && out.contains(&format!("phase {phase}: passed")), "phase {phase} with its mine checks:\n{out}");
    }
}
