//! User namespaces for engine-made containers: `--userns=host` (the default: the container's
//! root is the host's, held in by capabilities, seccomp and the rest), `--userns=auto` (a
//! range of 65536 host ids no other container has, from 100000 up, as Podman's `auto`), or
//! explicit `--uidmap`/`--gidmap CONTAINER:HOST:SIZE` lines. The maps go into config.json; the
//! image's layers are seen through idmapped mounts, so they stay shared on disk.

use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Spec};

use super::{EngineError, Result};
use crate::runtime::userns::IdMaps;
use crate::storage::idmap::Idmapped;

/// The annotation that records a container's mode (`auto` or `private`).
pub const ANNOTATION: &str = "io.shibafu.userns";

/// The first host id `auto` hands out.
pub const AUTO_BASE: u32 = 100_000;
/// The ids one `auto` container gets: 0 to 65535 inside.
pub const AUTO_SIZE: u32 = 65_536;
/// How many `auto` ranges there are.
pub const AUTO_RANGES: u32 = 60_000;

/// Which user namespace a container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UsernsMode {
    /// The host's.
    #[default]
    Host,
    /// A free range, allocated when the container is made.
    Auto,
    /// These maps.
    Maps(IdMaps),
}

/// The maps of an `auto` range starting at `start`.
pub fn auto(start: u32) -> IdMaps {
    IdMaps { uids: vec![(0, start, AUTO_SIZE)], gids: vec![(0, start, AUTO_SIZE)] }
}

/// The maps a container's spec carries, if it has a user namespace.
pub fn of_spec(spec: &Spec) -> Option<IdMaps> {
    crate::runtime::userns::maps(spec, true).ok().flatten()
}

/// What the overlay needs to show the layers to a container with `maps`: a user namespace
/// with them, and the host ids of its root.
pub fn idmapped(maps: &IdMaps) -> Result<Idmapped> {
    let owner = root_ids(maps).ok_or_else(|| EngineError::Invalid("the user namespace maps no root (0) to own the container's files".into()))?;
    Ok(Idmapped { userns: crate::runtime::userns::hold(maps)?, owner })
}

/// The host (uid, gid) of the root of the container whose bundle is `dir`, if it has a user
/// namespace: who must own what the engine hands it (its stdio pipes, its new directories).
pub fn root_owner(dir: &std::path::Path) -> Result<Option<(u32, u32)>> {
    Ok(of_spec(&crate::runtime::spec::load(dir)?).as_ref().and_then(root_ids))
}

/// The host (uid, gid) that `maps` give the namespace's root (0), if they map it.
fn root_ids(maps: &IdMaps) -> Option<(u32, u32)> {
    let root = |list: &[(u32, u32, u32)]| crate::runtime::userns::to_host(list, 0);
    root(&maps.uids).zip(root(&maps.gids))
}

impl UsernsMode {
    /// Reads `--userns`, `--uidmap` and `--gidmap` (a gid map defaults to the uid map).
    pub fn parse(userns: Option<&str>, uidmap: &[String], gidmap: &[String]) -> Result<UsernsMode> {
        let lines = |flag: &str, list: &[String]| list.iter().map(|l| parse_line(flag, l)).collect::<Result<Vec<_>>>();
        let (uids, gids) = (lines("--uidmap", uidmap)?, lines("--gidmap", gidmap)?);
        match (userns, uids.is_empty() && gids.is_empty()) {
            (Some("host") | None, true) => Ok(UsernsMode::Host),
            (Some("auto"), true) => Ok(UsernsMode::Auto),
            (None, false) => {
                if uids.is_empty() {
                    return Err(EngineError::Invalid("--gidmap needs --uidmap beside it".into()));
                }
                let gids = if gids.is_empty() { uids.clone() } else { gids };
                let maps = IdMaps { uids, gids };
                check(&maps)?;
                Ok(UsernsMode::Maps(maps))
            }
            (Some(mode @ ("host" | "auto")), false) => Err(EngineError::Invalid(format!("--userns={mode} and --uidmap/--gidmap do not go together: the maps make a user namespace of their own"))),
            (Some(other), _) => Err(EngineError::Invalid(format!("--userns={other:?} is invalid: shibafu takes host or auto (or --uidmap/--gidmap)"))),
        }
    }

    /// What `inspect` shows (HostConfig.UsernsMode): "" for the host's, as Docker.
    pub fn name(&self) -> &'static str {
        match self {
            UsernsMode::Host => "",
            UsernsMode::Auto => "auto",
            UsernsMode::Maps(_) => "private",
        }
    }
}

/// `CONTAINER:HOST:SIZE`.
fn parse_line(flag: &str, text: &str) -> Result<(u32, u32, u32)> {
    let bad = || EngineError::Invalid(format!("{flag} {text:?} is invalid: it takes CONTAINER_ID:HOST_ID:SIZE, such as 0:100000:65536"));
    let parts: Vec<u32> = text.split(':').map(|p| p.parse::<u32>().map_err(|_| bad())).collect::<Result<_>>()?;
    match parts[..] {
        [inside, outside, count] => Ok((inside, outside, count)),
        _ => Err(bad()),
    }
}

/// The runtime's checks, and one of ours: root inside is mapped (it owns the container's
/// files) and not to the host's root (or the namespace would protect nothing).
fn check(maps: &IdMaps) -> Result<()> {
    for (what, list) in [("--uidmap", &maps.uids), ("--gidmap", &maps.gids)] {
        crate::runtime::userns::check(what, list).map_err(|e| EngineError::Invalid(e.to_string()))?;
        match crate::runtime::userns::to_host(list, 0) {
            None => return Err(EngineError::Invalid(format!("{what} maps no container id 0: the container's root must be someone on the host"))),
            Some(0) => return Err(EngineError::Invalid(format!("{what} maps the container's root to the host's root: that is --userns=host"))),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Gives the spec a new user namespace with `maps`.
pub fn set_maps(spec: &mut Spec, maps: &IdMaps) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|n| n.typ() != LinuxNamespaceType::User);
    namespaces.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User).build().expect("namespace builds"));
    linux.set_namespaces(Some(namespaces));
    let lines = |list: &[(u32, u32, u32)]| list.iter().map(|&(c, h, n)| LinuxIdMappingBuilder::default().container_id(c).host_id(h).size(n).build().expect("mapping builds")).collect::<Vec<_>>();
    linux.set_uid_mappings(Some(lines(&maps.uids)));
    linux.set_gid_mappings(Some(lines(&maps.gids)));
    spec.set_linux(Some(linux));
}

/// Refuses, with the directory to fix, a data root the container's root could not walk down
/// to its rootfs: every directory above it must be searchable by others.
pub fn check_reachable(rootfs: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for dir in rootfs.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else { continue };
        if meta.permissions().mode() & 0o001 == 0 {
            return Err(EngineError::Invalid(format!(
                "{} is not searchable by others (mode {:o}): a container in a user namespace could not reach its rootfs below it; chmod o+x it, or run with --userns=host",
                dir.display(),
                meta.permissions().mode() & 0o7777
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(list: &[&str]) -> Vec<String> {
        list.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn modes_are_read_as_docker_and_podman_write_them() {
        assert_eq!(UsernsMode::parse(None, &[], &[]).unwrap(), UsernsMode::Host);
        assert_eq!(UsernsMode::parse(Some("host"), &[], &[]).unwrap(), UsernsMode::Host);
        assert_eq!(UsernsMode::parse(Some("auto"), &[], &[]).unwrap(), UsernsMode::Auto);
        let maps = UsernsMode::parse(None, &s(&["0:200000:1000"]), &[]).unwrap();
        assert_eq!(maps, UsernsMode::Maps(IdMaps { uids: vec![(0, 200000, 1000)], gids: vec![(0, 200000, 1000)] }));
        for (userns, uid, gid, why) in [
            (Some("keep-id"), &[][..], &[][..], "is invalid"),
            (Some("auto"), &["0:1:2"][..], &[][..], "do not go together"),
            (None, &["0:100000"][..], &[][..], "CONTAINER_ID:HOST_ID:SIZE"),
            (None, &["1:100000:10"][..], &[][..], "maps no container id 0"),
            (None, &["0:0:10"][..], &[][..], "host's root"),
            (None, &[][..], &["0:100000:10"][..], "needs --uidmap"),
            (None, &["0:100000:10", "5:200000:10"][..], &[][..], "overlaps"),
        ] {
            let err = UsernsMode::parse(userns, &s(uid), &s(gid)).unwrap_err().to_string();
            assert!(err.contains(why), "{userns:?} {uid:?}: {err}");
        }
    }

    #[test]
    fn maps_go_into_the_spec_and_come_back() {
        let mut spec = crate::runtime::spec::default_spec();
        set_maps(&mut spec, &auto(165_536));
        assert_eq!(of_spec(&spec), Some(auto(165_536)));
        assert!(spec.linux().as_ref().unwrap().namespaces().as_ref().unwrap().iter().any(|n| n.typ() == LinuxNamespaceType::User));
        assert_eq!(of_spec(&crate::runtime::spec::default_spec()), None);
    }
}
