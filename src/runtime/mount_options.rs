//! Turns the option strings of an OCI mount into mount(2) flags, propagation and filesystem data.

use nix::mount::MsFlags;

/// A spec mount's options, split the way mount(2) wants them.
#[derive(Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount itself.
    pub flags: MsFlags,
    /// Propagation to apply after mounting (MS_SHARED, MS_SLAVE, MS_PRIVATE, MS_UNBINDABLE).
    pub propagation: MsFlags,
    /// Whatever is not a flag, passed to the filesystem (`mode=755,size=65536k`).
    pub data: String,
}

impl MountOptions {
    /// Whether this is a bind mount.
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// The flags a bind mount must be remounted with to take effect (ro, nosuid, ...).
    pub fn bind_remount_flags(&self) -> Option<MsFlags> {
        let extra = self.flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
        if extra.is_empty() {
            None
        } else {
            Some(MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra)
        }
    }
}

/// Parses mount options as runc does: known flag names set or clear flags, propagation names
/// are kept apart, and anything else becomes filesystem data.
pub fn parse(options: &[String]) -> MountOptions {
    let mut out = MountOptions { flags: MsFlags::empty(), propagation: MsFlags::empty(), data: String::new() };
    let mut data = Vec::new();
    for opt in options {
        if let Some((set, flag)) = flag(opt) {
            if set {
                out.flags |= flag;
            } else {
                out.flags &= !flag;
            }
        } else if let Some(p) = propagation(opt) {
            out.propagation |= p;
        } else {
            data.push(opt.as_str());
        }
    }
    out.data = data.join(",");
    out
}

fn flag(opt: &str) -> Option<(bool, MsFlags)> {
    Some(match opt {
        "ro" => (true, MsFlags::MS_RDONLY),
        "rw" => (false, MsFlags::MS_RDONLY),
        "nosuid" => (true, MsFlags::MS_NOSUID),
        "suid" => (false, MsFlags::MS_NOSUID),
        "nodev" => (true, MsFlags::MS_NODEV),
        "dev" => (false, MsFlags::MS_NODEV),
        "noexec" => (true, MsFlags::MS_NOEXEC),
        "exec" => (false, MsFlags::MS_NOEXEC),
        "sync" => (true, MsFlags::MS_SYNCHRONOUS),
        "async" => (false, MsFlags::MS_SYNCHRONOUS),
        "dirsync" => (true, MsFlags::MS_DIRSYNC),
        "remount" => (true, MsFlags::MS_REMOUNT),
        "mand" => (true, MsFlags::MS_MANDLOCK),
        "nomand" => (false, MsFlags::MS_MANDLOCK),
        "atime" => (false, MsFlags::MS_NOATIME),
        "noatime" => (true, MsFlags::MS_NOATIME),
        "diratime" => (false, MsFlags::MS_NODIRATIME),
        "nodiratime" => (true, MsFlags::MS_NODIRATIME),
        "bind" => (true, MsFlags::MS_BIND),
        "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
        "relatime" => (true, MsFlags::MS_RELATIME),
        "norelatime" => (false, MsFlags::MS_RELATIME),
        "strictatime" => (true, MsFlags::MS_STRICTATIME),
        "nostrictatime" => (false, MsFlags::MS_STRICTATIME),
        "defaults" => (false, MsFlags::empty()),
        _ => return None,
    })
}

fn propagation(opt: &str) -> Option<MsFlags> {
    Some(match opt {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// The `-o` text of a mount, for the explain trail.
pub fn describe(options: &[String]) -> String {
    if options.is_empty() { String::new() } else { format!(" -o {}", options.join(",")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_and_data_are_split() {
        let o = parse(&opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]));
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(o.propagation.is_empty());
    }

    #[test]
    fn later_options_override_earlier() {
        assert_eq!(parse(&opts(&["ro", "rw"])).flags, MsFlags::empty());
    }

    #[test]
    fn read_only_bind_needs_a_remount() {
        let o = parse(&opts(&["rbind", "ro", "rprivate"]));
        assert!(o.is_bind());
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(
            o.bind_remount_flags(),
            Some(MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY)
        );
        assert_eq!(parse(&opts(&["bind"])).bind_remount_flags(), None);
    }
}
