//! `lab reset`: the appliance back to its first boot. Everything goes through the engine, as
//! `rm`, `network rm` and `gc` would do it: containers (with their mounts, links, rules,
//! leases and cgroups), the PaaS's apps and deployments, user networks, volumes, layer names,
//! the registry's content, images the lab did not ship, then what nothing uses any more. The
//! lab's own images come back if they were removed or retagged, and ctr0 with its rules.

use std::path::Path;
use std::process::Command;

use super::images::LabImage;
use super::LabError;
use crate::engine::Engine;
use crate::network::DEFAULT_NETWORK;

/// The appliance's units that a first boot leaves stopped, and that reset stops: the PaaS
/// would restart its apps, and the registry serves what reset removes.
const ON_DEMAND_UNITS: [&str; 2] = ["shibafu-paas.service", "shibafu-registry.service"];

/// Resets the data root `root`; the lab's images are listed in `images` (images.txt). Tells
/// each thing it removed or restored to `report`, as a line.
pub fn reset(root: &Path, images: &Path, report: &mut dyn FnMut(String)) -> Result<(), LabError> {
    let shipped = super::images::read(images)?;
    stop_units(report);
    let engine = Engine::open(root)?;
    for c in engine.list(true)? {
        engine.rm(&c.id, true, true)?;
        report(format!("removed container {} ({})", c.name, c.image));
    }
    for app in engine.db.apps()? {
        engine.db.delete_app(&app.name)?;
        report(format!("removed app {} and its deployments", app.name));
    }
    remove_dir(
        &root.join("paas"),
        "the PaaS's files (sources, token, sealing key)",
        report,
    )?;
    for (net, _) in engine.network_list()? {
        if net.name != DEFAULT_NETWORK {
            engine.remove_network(&net.name)?;
            report(format!("removed network {} ({})", net.name, net.subnet));
        }
    }
    for volume in engine.volumes()? {
        engine.remove_volume(&volume.name)?;
        report(format!("removed volume {}", volume.name));
    }
    for (name, _) in engine.db.layer_names()? {
        engine.db.unname_layer(&name)?;
        report(format!("removed layer name {name}"));
    }
    clear_registry(&engine, report)?;
    remove_dir(
        &root.join("registry"),
        "the registry's upload sessions",
        report,
    )?;
    restore_images(&engine, &shipped, report)?;
    let collected = engine.gc()?;
    report(format!(
        "removed what nothing uses any more: {} items, {}",
        collected.removed.len(),
        crate::image::progress::layers::human_size(collected.bytes)
    ));
    for line in engine.remove_init_layers()? {
        report(format!("removed {line}"));
    }
    let bridge = engine.network_named(DEFAULT_NETWORK)?;
    engine.ensure_network(&bridge)?;
    report(format!(
        "network {DEFAULT_NETWORK} is up: {} {}",
        bridge.bridge, bridge.gateway
    ));
    if super::record::clear(root)? {
        report("forgot the phases done".into());
    }
    Ok(())
}

/// Stops the on-demand units that run (on a machine with systemd).
fn stop_units(report: &mut dyn FnMut(String)) {
    if !Path::new("/run/systemd/system").exists() {
        return;
    }
    for unit in ON_DEMAND_UNITS {
        let active = Command::new("systemctl")
            .args(["is-active", "--quiet", unit])
            .status()
            .is_ok_and(|s| s.success());
        if active
            && Command::new("systemctl")
                .args(["stop", unit])
                .status()
                .is_ok_and(|s| s.success())
        {
            report(format!("stopped {unit}"));
        }
    }
}

/// Removes a folder and all in it, if it exists.
fn remove_dir(dir: &Path, what: &str, report: &mut dyn FnMut(String)) -> Result<(), LabError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {
            report(format!("removed {what}: {}", dir.display()));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::Io(format!("remove {}", dir.display()), e)),
    }
}

/// Removes every tag, manifest and blob link of the registry.
fn clear_registry(engine: &Engine, report: &mut dyn FnMut(String)) -> Result<(), LabError> {
    let db = &engine.db;
    for repo in db.repositories()? {
        for tag in db.tags(&repo)? {
            db.delete_tag(&repo, &tag)?;
        }
        report(format!("removed registry repository {repo}"));
    }
    for manifest in db.registry_manifests()? {
        db.delete_registry_manifest(&manifest.repo, &manifest.digest)?;
    }
    for (repo, digest) in db.blob_links()? {
        db.unlink_blob(&repo, &digest)?;
    }
    Ok(())
}

/// Removes the images the lab did not ship (or that now name other content), and imports the
/// shipped ones that are missing.
fn restore_images(engine: &Engine, shipped: &[LabImage], report: &mut dyn FnMut(String)) -> Result<(), LabError> {
    let store = engine.images();
    let mut kept = Vec::new();
    for image in engine.db.images()? {
        let reference = image.reference();
        // A list without digests (the Nix module's) keeps whatever the name holds.
        if shipped.iter().any(|s| s.reference == reference && (s.digest == "-" || s.digest == image.manifest_digest)) {
            kept.push(reference);
        } else {
            store.remove(&image, 0)?;
            report(format!("removed image {reference}"));
        }
    }
    for missing in shipped.iter().filter(|s| !kept.contains(&s.reference)) {
        let reference = crate::image::reference::parse(&missing.reference).map_err(|e| LabError::Invalid(format!("the lab's image list names {:?}: {e}", missing.reference)))?;
        store.import_layout(&missing.layout, Some(&reference))?;
        report(format!("restored image {}", missing.reference));
    }
    Ok(())
}
