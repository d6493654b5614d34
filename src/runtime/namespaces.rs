//! Namespaces: which to create with clone(2), which to join with setns(2).

use std::fs::File;
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::error::{Result, RuntimeError};
use crate::explain;

/// What the spec asks of namespaces.
#[derive(Debug)]
pub struct NamespacePlan {
    /// Namespaces created by clone(2) (cgroup is left out: it is unshared after the cgroup join).
    pub clone_flags: CloneFlags,
    /// Whether to unshare a cgroup namespace once the process sits in its cgroup.
    pub new_cgroup: bool,
    /// Existing namespaces to join, by path.
    pub joins: Vec<(CloneFlags, PathBuf)>,
}

/// The namespaces the runtime joins for the init before the clone when the init gets a new
/// user namespace: once in it, the init holds no capability over namespaces the host owns.
pub const JOINED_BEFORE_A_NEW_USER_NS: CloneFlags = CloneFlags::CLONE_NEWNET.union(CloneFlags::CLONE_NEWIPC).union(CloneFlags::CLONE_NEWUTS).union(CloneFlags::CLONE_NEWCGROUP);

/// Reads the spec's namespaces. Time namespaces are refused (this runtime sets no clocks), and
/// so is joining a user namespace by path (a new one, with id maps, is made).
pub fn plan(spec: &Spec) -> Result<NamespacePlan> {
    let mut plan = NamespacePlan { clone_flags: CloneFlags::empty(), new_cgroup: false, joins: Vec::new() };
    let list = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
    for ns in list {
        let flag = match ns.typ() {
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            LinuxNamespaceType::User if ns.path().is_some() => {
                return Err(RuntimeError::Init("joining a user namespace by path is not supported by shibafu's runtime: give linux.uidMappings and gidMappings for a new one, or use runc".into()))
            }
            LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
            other => {
                return Err(RuntimeError::Init(format!(
                    "{other:?} namespaces are not supported by shibafu's runtime (use --runtime crun)"
                )))
            }
        };
        match ns.path() {
            Some(path) => plan.joins.push((flag, path.clone())),
            None if flag == CloneFlags::CLONE_NEWCGROUP => plan.new_cgroup = true,
            None => plan.clone_flags |= flag,
        }
    }
    // A mount namespace joined by path is one the container may change as its own, as runc
    // does: the rootfs is set up and pivoted to inside it. With none at all, pivot_root would
    // move the host's own root (runc chroots instead, after making the host's / a slave).
    let joins_mount_ns = plan.joins.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWNS);
    if !plan.clone_flags.contains(CloneFlags::CLONE_NEWNS) && !joins_mount_ns {
        return Err(RuntimeError::Init(
            "the spec has no mount namespace: shibafu sets up the container's root inside a new mount namespace or one given by path, never in the host's (add {\"type\": \"mount\"} to linux.namespaces)".into(),
        ));
    }
    if plan.clone_flags.contains(CloneFlags::CLONE_NEWUSER) && plan.joins.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWPID) {
        // A pid namespace the host owns cannot mount a /proc for a process in a new user one.
        return Err(RuntimeError::Init("joining a pid namespace together with a new user namespace is not supported: the container could not mount its /proc".into()));
    }
    if plan.clone_flags.contains(CloneFlags::CLONE_NEWUSER) && joins_mount_ns {
        // Inside its new user namespace the init holds no capability over a mount namespace
        // the host owns, so it could neither join it nor mount there.
        return Err(RuntimeError::Init("joining a mount namespace together with a new user namespace is not supported: the container's root would hold no capability over the joined mounts".into()));
    }
    Ok(plan)
}

/// The `unshare` command that matches a set of clone flags, for the explain trail.
pub fn describe(flags: CloneFlags) -> String {
    let mut words = vec!["unshare"];
    for (flag, word) in [
        (CloneFlags::CLONE_NEWUSER, "--user"),
        (CloneFlags::CLONE_NEWPID, "--pid"),
        (CloneFlags::CLONE_NEWNET, "--net"),
        (CloneFlags::CLONE_NEWIPC, "--ipc"),
        (CloneFlags::CLONE_NEWUTS, "--uts"),
        (CloneFlags::CLONE_NEWNS, "--mount"),
        (CloneFlags::CLONE_NEWCGROUP, "--cgroup"),
    ] {
        if flags.contains(flag) {
            words.push(word);
        }
    }
    words.push("--fork");
    words.join(" ")
}

/// An opened namespace file, ready to join.
pub struct Join {
    flag: CloneFlags,
    file: File,
    path: PathBuf,
}

/// Opens the namespace files to join (in the caller's view of the filesystem).
pub fn open_joins(joins: &[(CloneFlags, PathBuf)]) -> Result<Vec<Join>> {
    joins
        .iter()
        .map(|(flag, path)| {
            let file = File::open(path).map_err(RuntimeError::io(format!("open namespace {}", path.display())))?;
            Ok(Join { flag: *flag, file, path: path.clone() })
        })
        .collect()
}

impl Join {
    /// The kind of namespace.
    pub fn flag(&self) -> CloneFlags {
        self.flag
    }
}

/// Our own namespaces, to come back to after joining others around a clone.
pub struct Ours(Vec<(CloneFlags, File)>);

/// Joins `joins` whose flag is in `which` from the runtime itself (for the child it clones
/// next), keeping ours to come back to.
pub fn enter_for_clone(joins: &[Join], which: CloneFlags) -> Result<Ours> {
    let mut ours = Vec::new();
    for j in joins.iter().filter(|j| which.contains(j.flag)) {
        let name = proc_name(j.flag);
        let file = File::open(format!("/proc/self/ns/{name}")).map_err(RuntimeError::io(format!("open our {name} namespace")))?;
        ours.push((j.flag, file));
    }
    enter(joins, which)?;
    Ok(Ours(ours))
}

impl Ours {
    /// Returns to our namespaces.
    pub fn restore(self) -> Result<()> {
        for (flag, file) in self.0 {
            setns(&file, flag).map_err(RuntimeError::sys(format!("return to our {} namespace", proc_name(flag))))?;
        }
        Ok(())
    }
}

fn proc_name(flag: CloneFlags) -> &'static str {
    JOINABLE.iter().find(|(f, _)| *f == flag).map_or("?", |(_, n)| n)
}

/// Joins the namespaces of one kind set (all of `joins` whose flag is in `which`).
pub fn enter(joins: &[Join], which: CloneFlags) -> Result<()> {
    for j in joins.iter().filter(|j| which.contains(j.flag)) {
        explain::step(|| format!("nsenter --{}={}", nsenter_word(j.flag), j.path.display()));
        setns(&j.file, j.flag).map_err(RuntimeError::sys(format!("join namespace {}", j.path.display())))?;
    }
    Ok(())
}

fn nsenter_word(flag: CloneFlags) -> &'static str {
    match flag {
        CloneFlags::CLONE_NEWPID => "pid",
        CloneFlags::CLONE_NEWNET => "net",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWNS => "mount",
        CloneFlags::CLONE_NEWUSER => "user",
        _ => "cgroup",
    }
}

/// The namespace kinds a process can be joined into, with their /proc names, in join order
/// (mount last: later paths resolve in the container; `exec` joins the user namespace on its
/// own, after those the host may own).
pub const JOINABLE: [(CloneFlags, &str); 7] = [
    (CloneFlags::CLONE_NEWUSER, "user"),
    (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
    (CloneFlags::CLONE_NEWIPC, "ipc"),
    (CloneFlags::CLONE_NEWUTS, "uts"),
    (CloneFlags::CLONE_NEWNET, "net"),
    (CloneFlags::CLONE_NEWPID, "pid"),
    (CloneFlags::CLONE_NEWNS, "mnt"),
];

/// The namespaces of `pid` that differ from ours: what `exec` must join.
pub fn of_process(pid: i32) -> Vec<(CloneFlags, PathBuf)> {
    use std::os::unix::fs::MetadataExt;
    JOINABLE
        .iter()
        .filter_map(|(flag, name)| {
            let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
            let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).ok()?.ino();
            let inode = std::fs::metadata(&theirs).ok()?.ino();
            (inode != ours).then_some((*flag, theirs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_default_spec_creates_five_namespaces() {
        let plan = plan(&super::super::spec::default_spec()).unwrap();
        assert_eq!(describe(plan.clone_flags), "unshare --pid --net --ipc --uts --mount --fork");
        assert!(!plan.new_cgroup);
        assert!(plan.joins.is_empty());
    }

    fn with_mount(path: Option<&str>, user: bool) -> Spec {
        let mut spec = super::super::spec::default_spec();
        let mut list: Vec<_> = spec.linux().as_ref().unwrap().namespaces().clone().unwrap().into_iter().filter(|n| n.typ() != LinuxNamespaceType::Mount).collect();
        if let Some(path) = path {
            list.push(oci_spec::runtime::LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Mount).path(path).build().unwrap());
        }
        if user {
            list.push(oci_spec::runtime::LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User).build().unwrap());
        }
        let mut linux = spec.linux().clone().unwrap();
        linux.set_namespaces(Some(list));
        spec.set_linux(Some(linux));
        spec
    }

    #[test]
    fn a_mount_namespace_by_path_is_joined_and_none_at_all_is_refused() {
        let plan = plan(&with_mount(Some("/proc/1/ns/mnt"), false)).unwrap();
        assert!(!plan.clone_flags.contains(CloneFlags::CLONE_NEWNS));
        assert_eq!(plan.joins, vec![(CloneFlags::CLONE_NEWNS, PathBuf::from("/proc/1/ns/mnt"))]);
        let none = plan_error(&with_mount(None, false));
        assert!(none.contains("no mount namespace"), "{none}");
        let with_user = plan_error(&with_mount(Some("/proc/1/ns/mnt"), true));
        assert!(with_user.contains("joining a mount namespace together with a new user namespace"), "{with_user}");
    }

    fn plan_error(spec: &Spec) -> String {
        plan(spec).err().map(|e| e.to_string()).unwrap_or_default()
    }
}
