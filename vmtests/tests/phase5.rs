//! Phase 5 of shared/PHASES.md, as written (alpine-base = the busybox rootfs, python-3.11 = the
//! python image's python3.11 files): our own registry, layers pushed to it, an image made of
//! them in the registry, and run from there. Then the same registry as the appliance's unit.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase5_our_own_oci_registry() {
    let mut vm = Vm::boot("phase5", Duration::from_secs(900));
    vm.make_layer_sources();
    vm.sh("./container-tool prepare-layer alpine-base /tmp/alpine-rootfs");
    vm.sh("./container-tool prepare-layer python-3.11 /opt/python-3.11");
    // The plan runs the server in a terminal of its own; here it runs in the background.
    vm.sh("./container-tool registry serve --port 5000 2>/tmp/registry.log & for i in $(seq 50); do curl -sf localhost:5000/v2/ >/dev/null && break; sleep 0.2; done");
    vm.sh("./container-tool push-layer alpine-base localhost:5000/base/alpine:latest");
    vm.sh("./container-tool push-layer python-3.11 localhost:5000/runtime/python:3.11");
    vm.sh("./container-tool create-manifest \\\n  --layers base/alpine:latest,runtime/python:3.11 \\\n  localhost:5000/apps/python-app:v1");
    let version = vm.sh("./container-tool run localhost:5000/apps/python-app:v1 python --version");
    vm.check(version.contains("Python 3.11."), &format!("the image from the registry should run python:\n{version}"));
    let catalog = vm.sh("curl -s localhost:5000/v2/_catalog");
    vm.check(catalog.contains("apps/python-app") && catalog.contains("base/alpine"), &format!("the catalog:\n{catalog}"));
    // The appliance's unit serves the same data root.
    vm.sh("kill %1; wait; systemctl start shibafu-registry.service");
    let tags = vm.sh("for i in $(seq 50); do curl -sf localhost:5000/v2/apps/python-app/tags/list && break; sleep 0.2; done");
    vm.check(tags.contains("\"v1\""), &format!("the unit's registry should serve the pushed image:\n{tags}"));
}
