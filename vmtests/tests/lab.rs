//! `shibafu lab` in the appliance (issue 18): the listing and the banner from the phases'
//! definitions, `lab check all` (every phase in a scratch appliance of its own, leaving the
//! learner's state as it was), `lab check --mine` on the learner's own work, before, after
//! and when a piece is broken on purpose, and `lab reset` after phases 3, 5 and 8 were done
//! for real (and passed --mine), which leaves what the first boot had.

use std::time::Duration;

use vmtests::Vm;

/// What the learner's work changes and a reset must undo: containers, networks, images,
/// layers, volumes, the registry's unit, links, shibafu's rules and the data root's top.
const STATE: &str = "shibafu list -a; shibafu network ls; shibafu images | awk '{print $1, $2, $3}'; shibafu layers; shibafu volume ls; \
    systemctl is-active shibafu-registry shibafu-paas; ip -o link | cut -d: -f2; \
    iptables-save | grep SHIBAFU | sed 's/\\[[0-9:]*\\]//'; ls /var/lib/shibafu";

#[test]
fn lab_checks_every_phase_in_scratch_and_the_learners_own_work() {
    let mut vm = Vm::boot("lab", Duration::from_secs(1800));
    vm.check(
        vm.transcript().contains("`shibafu lab check N`")
            && vm.transcript().contains("phase 8  ready"),
        "the banner shows the lab commands and the phases",
    );
    let listing = vm.sh("shibafu lab");
    vm.check(
        listing.contains("phase 3  ready")
            && listing
                .contains("try:     ./container-tool prepare-layer alpine-base /tmp/alpine-rootfs"),
        &format!("lab lists the phases:\n{listing}"),
    );

    let first_boot = vm.sh(STATE);
    let started = std::time::Instant::now();
    let (status, all) = vm.sh_status_within("shibafu lab check all 2>&1", Duration::from_secs(1200));
    eprintln!("vmtests: lab: lab check all took {:.0} s", started.elapsed().as_secs_f64());
    vm.check(
        status == 0 && all.contains("all 9 phases passed"),
        &format!("lab check all:\n{all}"),
    );
    let after = vm.sh(STATE);
    vm.check(
        first_boot == after,
        &format!("lab check changed the learner's state:\n{first_boot}\n-- after --\n{after}"),
    );
    let left = vm.sh("ls /var/tmp | grep -c shibafu-lab; ls /sys/fs/cgroup/shibafu 2>/dev/null | grep -c '^[0-9a-f]\\{64\\}$'; true");
    vm.check(
        left.split_whitespace().all(|n| n == "0"),
        &format!("lab check left scratch folders or cgroups: {left}"),
    );

    // The learner's own work: none yet, then phase 2's container, then the bridge broken.
    let (status, mine) = vm.sh_status("shibafu lab check --mine 2");
    vm.check(
        status == 1 && mine.contains("hint:     run the plan's container first"),
        &format!("--mine before the work:\n{mine}"),
    );
    vm.sh("./container-tool run -d --name mycontainer busybox sleep 1000");
    let (status, mine) = vm.sh_status("shibafu lab check --mine 2");
    vm.check(
        status == 0 && mine.contains("phase 2: passed"),
        &format!("--mine after the work:\n{mine}"),
    );
    let listing = vm.sh("shibafu lab --brief");
    vm.check(
        listing.contains("phase 2  done by you"),
        &format!("lab shows the phase as done:\n{listing}"),
    );
    vm.sh("ip link del ctr0");
    let (status, mine) = vm.sh_status("shibafu lab check --mine 2");
    vm.check(
        status == 1 && mine.contains("ctr0 is gone: systemctl restart shibafu-network"),
        &format!("--mine with ctr0 removed:\n{mine}"),
    );

    // The hint's way back, then phases done for real, then the reset.
    vm.sh("systemctl restart shibafu-network");
    vm.play_phase(3);
    let (status, mine) = vm.sh_status("shibafu lab check --mine 3");
    vm.check(status == 0 && mine.contains("phase 3: passed"), &format!("--mine 3 after phase 3:\n{mine}"));
    vm.play_phase(5);
    let (status, mine) = vm.sh_status("shibafu lab check --mine 5");
    vm.check(status == 0 && mine.contains("phase 5: passed"), &format!("--mine 5 after phase 5:\n{mine}"));
    vm.play_phase(8);
    let (status, mine) = vm.sh_status("shibafu lab check --mine 8");
    vm.check(status == 0 && mine.contains("phase 8: passed"), &format!("--mine 8 after phase 8:\n{mine}"));
    let (status, reset) = vm.sh_status("shibafu lab reset --yes");
    vm.check(
        status == 0
            && reset.contains("removed container mycontainer")
            && reset.contains("removed registry repository apps/python-app")
            && reset.contains("stopped shibafu-registry.service")
            && reset.contains("stopped shibafu-paas.service")
            && reset.contains("removed app myapp and its deployments"),
        &format!("lab reset:\n{reset}"),
    );
    let after = vm.sh(STATE);
    vm.check(
        first_boot == after,
        &format!(
            "lab reset should leave what the first boot had:\n{first_boot}\n-- after --\n{after}"
        ),
    );
}
