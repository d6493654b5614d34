//! `lab reset`: the appliance back to its first boot. Everything goes through the engine, as
//! `rm`, `network rm` and `gc` would do it: containers (with their mounts, links, rules,
//! leases and cgroups), the PaaS's apps and deployments, user networks, volumes, layer names,
//! the registry's content, images the lab did not ship, then what nothing uses any more. The
//! lab's own images come back if they were removed or retagged, and ctr0 with its rules.

use std::path::Path;
use std::process::Command;

use super::LabError;
use crate::engine::Engine;
use crate::network::DEFAULT_NETWORK;

/// The appliance's units that a first boot leaves stopped, and that reset stops: the PaaS
/// would restart its apps, and the registry serves what reset removes.
const ON_DEMAND_UNITS: [&str; 2] = ["shibafu-paas.service", "shibafu-registry.service"];

/// Resets the data root `root`; the lab's images are listed in `images` (images.txt). Tells
/// each thing it removed or restored to `report`, as a line.
pub fn reset(root: &Path, images: &Path, report: &mut dyn FnMut(String)) -> Result<(), LabError> {
    let shipped = shipped_images(images)?;
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
        crate::cli::image::human_size(collected.bytes as i64)
    ));
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

/// The lab's images from its list: (NAME:TAG, layout path, manifest digest).
fn shipped_images(list: &Path) -> Result<Vec<(String, std::path::PathBuf, String)>, LabError> {
    let text = std::fs::read_to_string(list).map_err(|e| {
        LabError::Io(
            format!(
                "read the lab's image list {} (SHIBAFU_LAB_IMAGES names another)",
                list.display()
            ),
            e,
        )
    })?;
    let base = list.parent().unwrap_or(Path::new("/"));
    Ok(text
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [name, path, digest, ..] => {
                Some((name.to_string(), base.join(path), digest.to_string()))
            }
            _ => None,
        })
        .collect())
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
fn restore_images(
    engine: &Engine,
    shipped: &[(String, std::path::PathBuf, String)],
    report: &mut dyn FnMut(String),
) -> Result<(), LabError> {
    let store = engine.images();
    let is_shipped = |reference: &str, digest: &str| {
        shipped
            .iter()
            .any(|(name, _, d)| name == reference && d == digest)
    };
    for image in engine.db.images()? {
        if !is_shipped(&image.reference(), &image.manifest_digest) {
            store.remove(&image, 0)?;
            report(format!("removed image {}", image.reference()));
        }
    }
    let present: Vec<String> = engine.db.images()?.iter().map(|i| i.reference()).collect();
    for (name, layout, _) in shipped
        .iter()
        .filter(|(name, _, _)| !present.contains(name))
    {
        let reference = crate::image::reference::parse(name)
            .map_err(|e| LabError::Invalid(format!("the lab's image list names {name:?}: {e}")))?;
        store.import_layout(layout, Some(&reference))?;
        report(format!("restored image {name}"));
    }
    Ok(())
}
