//! What `-v/--volume` and `--mount` ask for, parsed and checked as Docker does, before anything
//! is made: binds of host paths, named and anonymous volumes, and tmpfs mounts.

use std::path::{Component, Path, PathBuf};

/// What kind of mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A volume under the data root (named, or anonymous when its source is empty).
    Volume,
    /// A fresh tmpfs.
    Tmpfs,
}

impl MountKind {
    /// Docker's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// One mount a container asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// Bind, volume or tmpfs.
    pub kind: MountKind,
    /// A bind's host path, a volume's name ("" for an anonymous volume), nothing for tmpfs.
    pub source: String,
    /// The path inside the container (absolute, no `..`).
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
    /// A bind's missing host path is made as a directory (`-v`), not refused (`--mount`).
    pub create_source: bool,
    /// Do not seed a new volume from the image (`nocopy`, `volume-nocopy`).
    pub no_copy: bool,
    /// A bind's propagation (`rprivate` unless asked).
    pub propagation: Option<String>,
    /// tmpfs size in bytes.
    pub tmpfs_size: Option<u64>,
    /// tmpfs mode (default 1777).
    pub tmpfs_mode: Option<u32>,
}

impl MountRequest {
    fn new(kind: MountKind, source: String, target: PathBuf) -> MountRequest {
        MountRequest { kind, source, target, read_only: false, create_source: false, no_copy: false, propagation: None, tmpfs_size: None, tmpfs_mode: None }
    }
}

/// Errors in mount flags.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The flag does not parse or asks for something impossible.
    #[error("invalid {flag} {spec:?}: {why}")]
    Invalid { flag: &'static str, spec: String, why: String },
}

const PROPAGATIONS: [&str; 6] = ["private", "rprivate", "shared", "rshared", "slave", "rslave"];

/// Parses `-v`: `CTR` (an anonymous volume), `NAME:CTR[:OPTS]` or `/HOST:CTR[:OPTS]`, where
/// OPTS are `ro`, `rw`, `nocopy` and a propagation, separated by commas.
pub fn parse_volume(spec: &str) -> Result<MountRequest, MountError> {
    let bad = |why: String| MountError::Invalid { flag: "--volume", spec: spec.to_string(), why };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => return Err(bad("use [HOST-PATH|NAME:]CONTAINER-PATH[:ro|rw]".into())),
    };
    if source.is_empty() && parts.len() > 1 {
        return Err(bad("the source before ':' is empty".into()));
    }
    let kind = if source.starts_with('/') { MountKind::Bind } else { MountKind::Volume };
    let mut m = MountRequest::new(kind, source.to_string(), check_target(target).map_err(bad)?);
    m.create_source = kind == MountKind::Bind;
    if kind == MountKind::Bind {
        m.source = check_host_path(source).map_err(bad)?;
    } else if !source.is_empty() {
        check_volume_name(source).map_err(bad)?;
    }
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" | "readonly" => m.read_only = true,
            "rw" => m.read_only = false,
            "nocopy" if kind == MountKind::Volume => m.no_copy = true,
            p if PROPAGATIONS.contains(&p) && kind == MountKind::Bind => m.propagation = Some(p.to_string()),
            "z" | "Z" => return Err(bad("SELinux relabelling (z, Z) is not supported: this appliance has no SELinux".into())),
            other => return Err(bad(format!("unknown option {other:?}: use ro, rw, nocopy (volumes) or a propagation (binds)"))),
        }
    }
    Ok(m)
}

/// Parses `--mount type=bind|volume|tmpfs,source=..,target=..[,readonly][,...]`, with Docker's
/// key names and aliases (`src`, `dst`, `destination`, `ro`).
pub fn parse_mount(spec: &str) -> Result<MountRequest, MountError> {
    let bad = |why: String| MountError::Invalid { flag: "--mount", spec: spec.to_string(), why };
    let mut kind = MountKind::Volume;
    let (mut source, mut target) = (String::new(), None);
    let mut m = MountRequest::new(kind, String::new(), PathBuf::new());
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_lowercase(), Some(v.trim())),
            None => (field.trim().to_lowercase(), None),
        };
        let need = || value.ok_or_else(|| bad(format!("{key} needs a value ({key}=...)")));
        match key.as_str() {
            "type" => {
                kind = match need()? {
                    "bind" => MountKind::Bind,
                    "volume" => MountKind::Volume,
                    "tmpfs" => MountKind::Tmpfs,
                    other => return Err(bad(format!("unknown type {other:?}: use bind, volume or tmpfs"))),
                }
            }
            "source" | "src" => source = need()?.to_string(),
            "target" | "destination" | "dst" => target = Some(need()?.to_string()),
            "readonly" | "ro" => m.read_only = boolean(value).map_err(bad)?,
            "volume-nocopy" => m.no_copy = boolean(value).map_err(bad)?,
            "bind-propagation" => {
                let p = need()?;
                if !PROPAGATIONS.contains(&p) {
                    return Err(bad(format!("unknown bind-propagation {p:?}: use one of {}", PROPAGATIONS.join(", "))));
                }
                m.propagation = Some(p.to_string());
            }
            "tmpfs-size" => m.tmpfs_size = Some(crate::storage::limits::parse_size(need()?).map_err(bad)?),
            "tmpfs-mode" => m.tmpfs_mode = Some(u32::from_str_radix(need()?, 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| bad("tmpfs-mode is an octal mode such as 1777".into()))?),
            other => return Err(bad(format!("unknown key {other:?}"))),
        }
    }
    let target = target.ok_or_else(|| bad("give the path inside the container: target=/PATH".into()))?;
    m.kind = kind;
    m.target = check_target(&target).map_err(bad)?;
    let only = |ok: bool, what: &str| if ok { Ok(()) } else { Err(bad(format!("{what} does not go with type={}", kind.as_str()))) };
    only(kind == MountKind::Tmpfs || (m.tmpfs_size.is_none() && m.tmpfs_mode.is_none()), "tmpfs-size or tmpfs-mode")?;
    only(kind == MountKind::Volume || !m.no_copy, "volume-nocopy")?;
    only(kind == MountKind::Bind || m.propagation.is_none(), "bind-propagation")?;
    match kind {
        MountKind::Bind if source.is_empty() => return Err(bad("a bind needs source=/HOST/PATH".into())),
        MountKind::Bind => {
            m.source = check_host_path(&source).map_err(bad)?;
            if !Path::new(&m.source).exists() {
                return Err(bad(format!("bind source path does not exist: {source}")));
            }
        }
        MountKind::Volume if !source.is_empty() => {
            check_volume_name(&source).map_err(bad)?;
            m.source = source;
        }
        MountKind::Tmpfs if !source.is_empty() => return Err(bad("a tmpfs takes no source".into())),
        _ => {}
    }
    Ok(m)
}

/// Parses `--tmpfs PATH[:OPTIONS]`, OPTIONS among `size=`, `mode=`, `ro`, `rw` (commas).
pub fn parse_tmpfs(spec: &str) -> Result<MountRequest, MountError> {
    let bad = |why: String| MountError::Invalid { flag: "--tmpfs", spec: spec.to_string(), why };
    let (path, options) = spec.split_once(':').unwrap_or((spec, ""));
    let mut m = MountRequest::new(MountKind::Tmpfs, String::new(), check_target(path).map_err(bad)?);
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("size", v)) => m.tmpfs_size = Some(crate::storage::limits::parse_size(v).map_err(bad)?),
            Some(("mode", v)) => m.tmpfs_mode = Some(u32::from_str_radix(v, 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| bad("mode is an octal mode such as 1777".into()))?),
            None if opt == "ro" => m.read_only = true,
            None if opt == "rw" => m.read_only = false,
            _ => return Err(bad(format!("unknown option {opt:?}: use size=, mode=, ro or rw"))),
        }
    }
    Ok(m)
}

/// Refuses two mounts on one path, as Docker does ("Duplicate mount point").
pub fn check_unique(mounts: &[MountRequest]) -> Result<(), String> {
    for (i, m) in mounts.iter().enumerate() {
        if mounts[..i].iter().any(|o| o.target == m.target) {
            return Err(format!("duplicate mount point: {}", m.target.display()));
        }
    }
    Ok(())
}

/// A volume name as Docker's local driver takes it: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 255.
pub fn check_volume_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok && name.len() <= 255 {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid volume name: use [a-zA-Z0-9][a-zA-Z0-9_.-]* (a host path must be absolute)"))
    }
}

/// `true`, `false`, `1`, `0`, or nothing (true).
fn boolean(value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(format!("{other:?} is not true or false")),
    }
}

/// A path inside the container: absolute, without `..`, not `/` itself; `.` parts dropped.
fn check_target(target: &str) -> Result<PathBuf, String> {
    let path = Path::new(target);
    if !path.is_absolute() {
        return Err(format!("the container path {target:?} must be absolute"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("the container path {target:?} may not contain '..'"));
    }
    let clean: PathBuf = path.components().filter(|c| *c != Component::CurDir).collect();
    if clean == Path::new("/") {
        return Err("the container path may not be '/'".into());
    }
    Ok(clean)
}

/// A host path for a bind: absolute, without `..`.
fn check_host_path(source: &str) -> Result<String, String> {
    let path = Path::new(source);
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("the host path {source:?} must be absolute, without '..'"));
    }
    Ok(source.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flags_parse_as_dockers() {
        let anon = parse_volume("/data").unwrap();
        assert_eq!((anon.kind, anon.source.as_str(), anon.target.as_path()), (MountKind::Volume, "", Path::new("/data")));
        let named = parse_volume("cache:/var/cache:ro,nocopy").unwrap();
        assert_eq!((named.kind, named.source.as_str(), named.read_only, named.no_copy), (MountKind::Volume, "cache", true, true));
        let bind = parse_volume("/srv/www:/usr/share/www:rw,rslave").unwrap();
        assert_eq!((bind.kind, bind.read_only, bind.create_source, bind.propagation.as_deref()), (MountKind::Bind, false, true, Some("rslave")));
    }

    #[test]
    fn bad_volume_flags_say_why() {
        for (spec, why) in [
            ("data", "must be absolute"),
            ("x:data", "must be absolute"),
            ("a:/b:/c:ro", "use [HOST-PATH|NAME:]CONTAINER-PATH"),
            ("a:/b:rx", "unknown option \"rx\""),
            ("/h:/b:nocopy", "unknown option \"nocopy\""),
            ("-x:/b", "not a valid volume name"),
            ("./rel:/b", "not a valid volume name"),
            ("v:/a/../etc", "may not contain '..'"),
            ("v:/", "may not be '/'"),
            ("/h/../etc:/b", "must be absolute, without '..'"),
            (":/b", "source before ':' is empty"),
            ("v:/b:z", "SELinux"),
        ] {
            let err = parse_volume(spec).unwrap_err().to_string();
            assert!(err.contains(why), "{spec}: {err}");
        }
    }

    #[test]
    fn mount_flags_take_dockers_keys_and_aliases() {
        let m = parse_mount("type=bind,src=/tmp,dst=/mnt,readonly").unwrap();
        assert_eq!((m.kind, m.source.as_str(), m.target.as_path(), m.read_only, m.create_source), (MountKind::Bind, "/tmp", Path::new("/mnt"), true, false));
        let v = parse_mount("source=data,destination=/d,ro=false,volume-nocopy").unwrap();
        assert_eq!((v.kind, v.source.as_str(), v.read_only, v.no_copy), (MountKind::Volume, "data", false, true));
        let t = parse_mount("type=tmpfs,target=/scratch,tmpfs-size=64m,tmpfs-mode=700").unwrap();
        assert_eq!((t.kind, t.tmpfs_size, t.tmpfs_mode), (MountKind::Tmpfs, Some(64 << 20), Some(0o700)));
        assert_eq!(parse_mount("target=/anon").unwrap().source, "");
    }

    #[test]
    fn bad_mount_flags_say_why() {
        for (spec, why) in [
            ("type=bind,source=/no/such/dir/here,target=/x", "bind source path does not exist"),
            ("type=bind,target=/x", "a bind needs source"),
            ("type=nfs,target=/x", "unknown type"),
            ("type=tmpfs,source=x,target=/x", "takes no source"),
            ("type=volume,target=/x,tmpfs-size=1m", "does not go with type=volume"),
            ("type=tmpfs,target=/x,tmpfs-mode=999", "octal"),
            ("source=v", "target=/PATH"),
            ("target=rel", "must be absolute"),
            ("target=/x,colour=red", "unknown key"),
            ("target=/x,readonly=maybe", "not true or false"),
        ] {
            let err = parse_mount(spec).unwrap_err().to_string();
            assert!(err.contains(why), "{spec}: {err}");
        }
    }

    #[test]
    fn tmpfs_flags_take_size_mode_and_ro() {
        let t = parse_tmpfs("/run:size=2m,mode=755,ro").unwrap();
        assert_eq!((t.kind, t.target.as_path(), t.tmpfs_size, t.tmpfs_mode, t.read_only), (MountKind::Tmpfs, Path::new("/run"), Some(2 << 20), Some(0o755), true));
        assert_eq!(parse_tmpfs("/t").unwrap().tmpfs_size, None);
        assert!(parse_tmpfs("/t:exec").unwrap_err().to_string().contains("unknown option"));
        assert!(parse_tmpfs("t").unwrap_err().to_string().contains("must be absolute"));
    }

    #[test]
    fn two_mounts_on_one_path_are_refused() {
        let a = parse_volume("/data").unwrap();
        let b = parse_mount("type=tmpfs,target=/data/.").unwrap();
        assert!(check_unique(&[a, b]).unwrap_err().contains("duplicate mount point: /data"));
    }
}
