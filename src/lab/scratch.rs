//! A scratch appliance for `lab check`: a shell in private mount, network and PID namespaces
//! (`unshare`), with a data root of its own bound over /var/lib/shibafu, and what a boot of
//! the appliance starts (the pretend internet, ctr0, the DNS, the proxy) started again inside.
//! The learner's containers, networks, rules and files are out of its sight, and it leaves
//! nothing: when its shell ends, the kernel ends every process of its PID namespace, and its
//! mounts and links go with its namespaces.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::play::{self, Console, Options, Outcome};
use super::scenario::Scenario;
use super::shell::{self, Shell};
use super::LabError;

/// The lab's image list (images/build-all's images.txt: `NAME:TAG PATH DIGEST`, paths relative
/// to the list), as the appliance ships it.
const IMAGES: &str = "/usr/share/shibafu/images/images.txt";

/// The pretend internet's script (images/appliance/lab-internet), as the appliance ships it.
const INTERNET: &str = "/usr/local/lib/shibafu/lab-internet";

/// Where the pieces of a scratch check come from; the environment may point elsewhere (the
/// root tests point at the repository).
pub struct Sources {
    /// `SHIBAFU_LAB_IMAGES`: the image list.
    pub images: PathBuf,
    /// `SHIBAFU_LAB_INTERNET`: the pretend internet's script.
    pub internet: PathBuf,
}

impl Sources {
    /// The appliance's, unless the environment names others.
    pub fn from_env() -> Sources {
        let var = |name, default: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        Sources {
            images: var("SHIBAFU_LAB_IMAGES", IMAGES),
            internet: var("SHIBAFU_LAB_INTERNET", INTERNET),
        }
    }
}

/// Checks `scenario` in a fresh scratch appliance, telling each step's outcome to `report`.
/// The setup's failure, if any, comes back as the only outcome.
pub fn check(
    scenario: &Scenario,
    sources: &Sources,
    report: &mut dyn FnMut(&Outcome),
) -> Result<Vec<Outcome>, LabError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::Invalid("lab check makes namespaces, mounts and links: run it as root (sudo shibafu lab check ...)".into()));
    }
    let imports = super::images::find(&scenario.images, &sources.images)?;
    let units = unit_lines(&scenario.units)?;
    let dir = tempfile::Builder::new()
        .prefix("shibafu-lab-")
        .tempdir_in("/var/tmp")
        .map_err(|e| LabError::Io("make a scratch folder in /var/tmp".into(), e))?;
    shell::stop_on_signals();
    let outcomes = {
        let mut shell = start(dir.path())?;
        let made = prepare(
            &mut shell,
            dir.path(),
            sources,
            &imports,
            &units,
            &scenario.setup,
        );
        let outcomes = match made {
            Err(outcome) => {
                report(&outcome);
                vec![outcome]
            }
            Ok(()) => {
                let options = Options {
                    trail_dir: dir.path().join("trail").display().to_string(),
                    appliance: false,
                };
                play::play(&mut shell, &scenario.steps, &options, report)
            }
        };
        // Containers go through rm, so their cgroups (the host's) go too; after Ctrl-C as well.
        let stopped = shell::take_interrupt();
        let _ = shell.sh_status("shibafu rm -f $(shibafu list -aq) >/dev/null 2>&1; true");
        (outcomes, stopped)
    };
    // The kernel ended the containers' processes with the PID namespace, but cgroups are the
    // host's (`rm` removes them too, when a check ends at a prompt; a check stopped while a
    // step ran ends without it).
    crate::engine::gc::remove_cgroups_of(&dir.path().join("root"));
    dir.close()
        .map_err(|e| LabError::Io("remove the scratch folder".into(), e))?;
    match outcomes {
        (_, true) => Err(LabError::Invalid(
            "interrupted: the scratch appliance is removed".into(),
        )),
        (outcomes, false) => Ok(outcomes),
    }
}

/// bash as PID 1 of new mount, network and PID namespaces; killed with `unshare`.
fn start(dir: &Path) -> Result<Shell, LabError> {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--net",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--propagation",
        "private",
        "bash",
    ]);
    cmd.current_dir(dir)
        .env("SHIBAFU_ROOT", "/var/lib/shibafu")
        .env_remove("SHIBAFU_EXPLAIN_FILE");
    Shell::start(cmd).map_err(LabError::Console)
}

/// Makes the scratch appliance: private /run, /tmp, /home, /opt and /var/lib (the data root
/// bound over /var/lib/shibafu), the binary as ./shibafu and on PATH, what a boot starts, the
/// scenario's units and images, then the scenario's setup.
fn prepare(
    shell: &mut Shell,
    dir: &Path,
    sources: &Sources,
    imports: &[super::images::LabImage],
    units: &[String],
    setup: &[String],
) -> Result<(), Outcome> {
    let exe = std::env::current_exe()
        .map_err(|e| setup_failure("find the shibafu binary", e.to_string()))?;
    let d = dir.display();
    // The host's tree as it was, before /tmp and the rest are hidden: the binary, the images
    // and the pretend internet may live there (a checkout in /tmp), and are reached through it.
    let host = dir.join("host");
    let mut lines = vec![
        format!("mkdir -p {d}/host && mount --rbind / {d}/host && mount --make-rprivate {d}/host"),
        format!("mkdir -p {d}/root {d}/bin {d}/home {d}/trail && ln -s {exe} {d}/bin/shibafu && ln -s {exe} {d}/bin/container-tool", exe = seen_from(&host, &exe).display()),
        format!("[ -z \"${{LAB_INTERNET_WWW:-}}\" ] || export LAB_INTERNET_WWW={d}/host$LAB_INTERNET_WWW"),
        format!("ln -s {d}/bin/shibafu {d}/home/shibafu && ln -s {d}/bin/shibafu {d}/home/container-tool"),
        // As root, sudo only runs the command: a machine without it gets that.
        format!("command -v sudo >/dev/null || {{ printf '#!/bin/sh\\nexec \"$@\"\\n' > {d}/bin/sudo && chmod +x {d}/bin/sudo; }}"),
        format!("export PATH={d}/bin:$PATH HOME={d}/home && cd {d}/home"),
        "ip link set lo up".into(),
        "for m in /run /tmp /home /opt /var/lib; do [ -d $m ] && mount -t tmpfs lab-scratch $m; done".into(),
        format!("mkdir /var/lib/shibafu && ln -s shibafu /var/lib/container-tool && mount --bind {d}/root /var/lib/shibafu"),
        format!(": > {d}/resolv.conf && mount --bind {d}/resolv.conf /etc/resolv.conf"),
    ];
    lines.extend(boot_lines(dir, &seen_from(&host, &sources.internet)));
    lines.extend(units.iter().cloned());
    lines.extend(imports.iter().map(|i| format!("shibafu image import {} {} >/dev/null", seen_from(&host, &i.layout).display(), i.reference)));
    play::setup(shell, &lines)?;
    play::setup(shell, setup)
}

/// What the appliance's boot starts (shibafu-lab.target): the pretend internet
/// (lab-internet*.service), ctr0 (shibafu-network), the DNS (shibafu-dns) and the proxy
/// (shibafu-proxy), each waited for. The servers are disowned, as units are no jobs of the
/// learner's shell: a step's `wait` or `kill %1` means the step's own jobs.
fn boot_lines(dir: &Path, internet: &Path) -> Vec<String> {
    let (d, script) = (dir.display(), internet.display());
    vec![
        format!("{script} up"),
        format!("ip netns exec internet {script} dns >{d}/internet-dns.log 2>&1 & disown"),
        format!("ip netns exec internet {script} http >{d}/internet-http.log 2>&1 & disown"),
        "for i in $(seq 100); do ip netns exec internet ss -ltnu | grep -q '198.51.100.1:53 ' && ip netns exec internet ss -ltn | grep -q '198.51.100.1:80 ' && break; sleep 0.05; done".into(),
        "shibafu network up bridge >/dev/null".into(),
        format!("shibafu dns serve --proxy-domain platform.local --host-address 127.0.0.53 >{d}/dns.log 2>&1 & disown"),
        "printf 'nameserver 127.0.0.53\\n%s\\n' \"$(cat /etc/resolv.conf)\" > /etc/resolv.conf".into(),
        format!("shibafu proxy serve --port 80 --domain platform.local >{d}/proxy.log 2>&1 & disown"),
        "for i in $(seq 100); do ss -ltnu | grep -q '127.0.0.53:53 ' && ss -ltn | grep -q ':80 ' && break; sleep 0.05; done".into(),
    ]
}

/// The commands of the appliance's units a scenario asks for, started in the background.
fn unit_lines(units: &[String]) -> Result<Vec<String>, LabError> {
    let mut lines = Vec::new();
    for unit in units {
        let servers: &[&str] = match unit.as_str() {
            "shibafu-registry.service" => &["registry serve --port 5000"],
            // The unit wants the registry: the PaaS pushes its builds there.
            "shibafu-paas.service" => &["registry serve --port 5000", "paas serve --port 8080 --domain platform.local"],
            other => return Err(LabError::Invalid(format!("a scratch check cannot stand up {other}: it knows shibafu-registry.service and shibafu-paas.service"))),
        };
        for server in servers {
            let log = server.split(' ').next().unwrap_or("server");
            let line = format!("shibafu {server} >/var/lib/shibafu/{log}.log 2>&1 & disown");
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    Ok(lines)
}

/// Where `path` of the host's tree is seen inside the scratch appliance (under `host`).
fn seen_from(host: &Path, path: &Path) -> PathBuf {
    host.join(path.strip_prefix("/").unwrap_or(path))
}

/// An outcome for a setup step the check could not even start.
fn setup_failure(what: &str, why: String) -> Outcome {
    let failure = play::Failure {
        expected: what.to_string(),
        came: why,
        trail: String::new(),
        hint: String::new(),
    };
    Outcome {
        run: what.to_string(),
        failure: Some(failure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_are_reached_under_the_scratch_folder() {
        assert_eq!(seen_from(Path::new("/var/tmp/s/host"), Path::new("/tmp/repo/x")), PathBuf::from("/var/tmp/s/host/tmp/repo/x"));
    }

    #[test]
    fn units_become_their_servers_once_and_unknown_ones_are_refused() {
        let lines = unit_lines(&[
            "shibafu-registry.service".into(),
            "shibafu-paas.service".into(),
        ])
        .unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].starts_with("shibafu paas serve --port 8080"),
            "{lines:?}"
        );
        assert!(unit_lines(&["ssh.service".into()])
            .unwrap_err()
            .to_string()
            .contains("cannot stand up ssh.service"));
    }
}
