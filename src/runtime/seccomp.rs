//! Seccomp: the spec's `linux.seccomp`, compiled by libseccomp into a classic BPF program in
//! the runtime before the clone, and loaded by the container's init with seccomp(2) as late as
//! it can (runc's order: just before execve when no_new_privs is set; else before the
//! capabilities are dropped, since loading a filter without no_new_privs needs CAP_SYS_ADMIN).
//!
//! The rules follow runc's reading of the spec: names this libseccomp does not know are skipped
//! (profiles list syscalls of every architecture), a rule whose action is the default action is
//! skipped, several conditions on one argument are alternatives (one rule each) and conditions
//! on different arguments must all hold (one rule). `SCMP_ACT_NOTIFY` needs a seccomp agent,
//! which shibafu does not run: it is refused.

use std::io::{Read, Seek};
use std::os::fd::AsFd;
use std::path::Path;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator};
use sha2::Digest;

use super::error::{Result, RuntimeError};
use crate::explain;

/// SECCOMP_SET_MODE_FILTER (linux/seccomp.h).
const SET_MODE_FILTER: libc::c_ulong = 1;
/// The spec's EPERM default for `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` without `errnoRet`.
const EPERM: u32 = libc::EPERM as u32;

/// A compiled filter, ready for the init to load.
#[derive(Debug, Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
    /// Rules added and syscall names skipped, for the explain trail.
    rules: usize,
    skipped: usize,
}

/// Compiles `seccomp` for this machine.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter> {
    if let Some(path) = seccomp.listener_path() {
        return Err(notify_refused(&format!("listenerPath {}", path.display())));
    }
    let default = action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(scmp("create a filter"))?;
    // A binary tree of the syscall numbers rather than libseccomp's default list: the kernel
    // walks the program for every number when it attaches it (to learn which are always
    // allowed), so a tree makes the attach some 2x cheaper for a profile of Docker's size.
    ctx.set_ctl_optimize(OPTIMIZE).map_err(scmp("ask for a binary tree"))?;
    for arch in seccomp.architectures().iter().flatten() {
        let arch = scmp_arch(*arch)?;
        if !ctx.is_arch_present(arch).map_err(scmp("check an architecture"))? {
            ctx.add_arch(arch).map_err(scmp(&format!("add the architecture {arch:?}")))?;
        }
    }
    let (mut rules, mut skipped) = (0, 0);
    for rule in seccomp.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        let alternatives = conditions(rule.args().as_deref().unwrap_or_default())?;
        for name in rule.names() {
            let Ok(call) = ScmpSyscall::from_name(name) else {
                skipped += 1;
                continue;
            };
            for conds in &alternatives {
                let added = if conds.is_empty() { ctx.add_rule(act, call) } else { ctx.add_rule_conditional(act, call, conds) };
                added.map_err(scmp(&format!("add the rule for {name}")))?;
                rules += 1;
            }
        }
    }
    let flags = seccomp.flags().iter().flatten().map(|f| flag(*f)).fold(0, |a, b| a | b);
    Ok(Filter { program: export(&ctx)?, flags, rules, skipped })
}

/// As `compile`, through a cache of compiled programs in `dir` (the runtime's state root):
/// libseccomp takes some 20 ms to compile a profile of Docker's size for three architectures,
/// and the same profile comes back at every start. An entry is named by the SHA-256 of the
/// profile, the libseccomp version, the architecture and `OPTIMIZE`; one that does not read
/// back whole is compiled again.
pub fn compile_cached(seccomp: &LinuxSeccomp, dir: &Path) -> Result<Filter> {
    let version = libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)).unwrap_or_default();
    let profile = serde_json::to_vec(seccomp).expect("a profile serializes");
    let key = sha2::Sha256::digest([&profile[..], version.as_bytes(), std::env::consts::ARCH.as_bytes(), &[OPTIMIZE as u8]].join(&0u8));
    let path = dir.join(CACHE_DIR).join(format!("{key:x}.bpf"));
    if let Some(filter) = Filter::read(&path) {
        return Ok(filter);
    }
    let filter = compile(seccomp)?;
    // A cache that cannot be written only costs the next start a compile.
    let _ = std::fs::create_dir_all(path.parent().expect("a cache entry has a directory")).and_then(|()| filter.write(&path));
    Ok(filter)
}

/// The container's compiled filter, in its state directory: what `exec` applies.
pub const FILTER_FILE: &str = "seccomp.bpf";

/// libseccomp's optimization level: 2 is a binary tree (part of a cache entry's key).
const OPTIMIZE: u32 = 2;

/// Where in the state root compiled programs are kept ('@' is in no container id).
const CACHE_DIR: &str = "@seccomp-cache";
/// A compiled filter's file: its flags, rules and skipped names (u64 each), then the
/// instructions.
const HEADER: usize = 24;

impl Filter {
    /// A filter written by `write`, if the file is there and whole.
    pub fn read(path: &Path) -> Option<Filter> {
        let bytes = std::fs::read(path).ok()?;
        let (header, program) = bytes.split_at_checked(HEADER)?;
        let number = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("8 bytes"));
        let flags = libc::c_ulong::try_from(number(&header[..8])).ok()?;
        let (rules, skipped) = (usize::try_from(number(&header[8..16])).ok()?, usize::try_from(number(&header[16..])).ok()?);
        let program = instructions(program)?;
        (!program.is_empty()).then_some(Filter { program, flags, rules, skipped })
    }

    /// Writes the filter to `path` (a temporary name, then renamed), for `read`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(HEADER + self.program.len() * 8);
        for number in [self.flags, self.rules as u64, self.skipped as u64] {
            bytes.extend_from_slice(&number.to_ne_bytes());
        }
        for i in &self.program {
            bytes.extend_from_slice(&i.code.to_ne_bytes());
            bytes.extend_from_slice(&[i.jt, i.jf]);
            bytes.extend_from_slice(&i.k.to_ne_bytes());
        }
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::write(&temp, &bytes).and_then(|()| std::fs::rename(&temp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }

    /// Installs the filter on the calling thread: from here on every system call of this
    /// process and its children goes through it.
    pub fn load(&self) -> Result<()> {
        explain::step(|| format!("# seccomp(SECCOMP_SET_MODE_FILTER, {:#x}, <{} BPF instructions: {} rules, {} names not on this architecture>)", self.flags, self.program.len(), self.rules, self.skipped));
        let len = u16::try_from(self.program.len()).map_err(|_| RuntimeError::Init(format!("the seccomp filter has {} instructions, over the kernel's 4096", self.program.len())))?;
        let prog = libc::sock_fprog { len, filter: self.program.as_ptr().cast_mut() };
        // SAFETY: `prog` points at our own instructions, alive for the call; the kernel copies them.
        let rc = unsafe { libc::syscall(libc::SYS_seccomp, SET_MODE_FILTER, self.flags, &prog as *const libc::sock_fprog) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            return Err(RuntimeError::Init(format!("load the seccomp filter: {err} (an EINVAL names a flag this kernel lacks; EACCES, no no_new_privs and no CAP_SYS_ADMIN)")));
        }
        Ok(())
    }
}

/// libseccomp writes the program to a file descriptor; a memory file holds it.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>> {
    let mut file = tempfile::tempfile().map_err(RuntimeError::io("create a file for the seccomp program"))?;
    ctx.export_bpf(file.as_fd()).map_err(scmp("export the filter"))?;
    let mut bytes = Vec::new();
    file.rewind().and_then(|()| file.read_to_end(&mut bytes)).map_err(RuntimeError::io("read the seccomp program"))?;
    instructions(&bytes).ok_or_else(|| RuntimeError::Init(format!("libseccomp exported {} bytes, not whole instructions", bytes.len())))
}

/// struct sock_filter instructions from their bytes (8 each, in the machine's order).
fn instructions(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    let size = std::mem::size_of::<libc::sock_filter>();
    bytes.len().is_multiple_of(size).then(|| {
        bytes
            .chunks_exact(size)
            .map(|b| libc::sock_filter { code: u16::from_ne_bytes([b[0], b[1]]), jt: b[2], jf: b[3], k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]) })
            .collect()
    })
}

/// A spec action as libseccomp's; the errno for ERRNO and TRACE is `errno_ret`, else EPERM.
fn action(act: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction> {
    let errno = errno_ret.unwrap_or(EPERM);
    Ok(match act {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::try_from(errno).ok().filter(|e| *e <= 0xffff).ok_or_else(|| bad(format!("errnoRet {errno} is over 65535")))?),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(u16::try_from(errno).map_err(|_| bad(format!("errnoRet {errno} is over 65535")))?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => return Err(notify_refused("SCMP_ACT_NOTIFY")),
    })
}

/// The rule's conditions as alternatives, each a list that must all hold: several conditions on
/// one argument are alternatives (libseccomp cannot AND them), conditions on different
/// arguments make one list.
fn conditions(args: &[LinuxSeccompArg]) -> Result<Vec<Vec<ScmpArgCompare>>> {
    let compares = args.iter().map(compare).collect::<Result<Vec<_>>>()?;
    let mut seen = std::collections::HashSet::new();
    let repeats = args.iter().any(|a| !seen.insert(a.index()));
    Ok(if repeats { compares.into_iter().map(|c| vec![c]).collect() } else { vec![compares] })
}

fn compare(arg: &LinuxSeccompArg) -> Result<ScmpArgCompare> {
    let index = u32::try_from(arg.index()).ok().filter(|i| *i < 6).ok_or_else(|| bad(format!("argument index {} is not 0 to 5", arg.index())))?;
    let value = arg.value();
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // The spec's masked compare: (argument & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(value), arg.value_two().unwrap_or(0)),
    };
    Ok(ScmpArgCompare::new(index, op, datum))
}

fn scmp_arch(arch: Arch) -> Result<ScmpArch> {
    Ok(match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    })
}

/// SECCOMP_FILTER_FLAG_* (linux/seccomp.h).
fn flag(flag: LinuxSeccompFilterFlag) -> libc::c_ulong {
    match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
    }
}

fn notify_refused(what: &str) -> RuntimeError {
    bad(format!("{what}: user notification needs a seccomp agent, which shibafu does not run: use SCMP_ACT_ERRNO or SCMP_ACT_LOG instead, or runc with an agent"))
}

fn bad(reason: String) -> RuntimeError {
    RuntimeError::Init(format!("linux.seccomp: {reason}"))
}

fn scmp(what: &str) -> impl FnOnce(libseccomp::error::SeccompError) -> RuntimeError + '_ {
    move |e| RuntimeError::Init(format!("linux.seccomp: {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_profile_compiles_to_a_program_and_skips_what_this_arch_lacks() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write", "arm_fadvise64_64", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
            ]
        }));
        let filter = compile(&p).unwrap();
        assert!(!filter.program.is_empty());
        assert_eq!(filter.flags, 2);
        // read, write, arm_fadvise64_64 (libseccomp leaves it out where it does not exist), two
        // personality alternatives, clone; mkdir's action is the default.
        assert_eq!(filter.rules, 6);
        assert_eq!(filter.skipped, 1, "no_such_call is skipped");
    }

    #[test]
    fn a_compiled_profile_is_cached_and_a_broken_entry_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_LOG"], "syscalls": [{"names": ["read", "write", "no_such_call"], "action": "SCMP_ACT_ALLOW"}]}));
        let fresh = compile_cached(&p, dir.path()).unwrap();
        let entries: Vec<_> = std::fs::read_dir(dir.path().join(CACHE_DIR)).unwrap().flatten().map(|e| e.path()).collect();
        assert_eq!(entries.len(), 1);
        let cached = compile_cached(&p, dir.path()).unwrap();
        let same = |a: &Filter, b: &Filter| a.program.len() == b.program.len() && a.program.iter().zip(&b.program).all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k));
        assert!(same(&fresh, &cached) && (cached.flags, cached.rules, cached.skipped) == (2, 2, 1));
        std::fs::write(&entries[0], b"short").unwrap();
        assert!(same(&fresh, &compile_cached(&p, dir.path()).unwrap()), "a broken entry is compiled again");
        assert_eq!(std::fs::read(&entries[0]).unwrap().len(), HEADER + fresh.program.len() * 8, "and rewritten");
    }

    #[test]
    fn what_cannot_be_applied_is_refused() {
        let notify = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}));
        assert!(compile(&notify).unwrap_err().to_string().contains("seccomp agent"));
        let listener = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}));
        assert!(compile(&listener).unwrap_err().to_string().contains("listenerPath"));
        let index = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}));
        assert!(compile(&index).unwrap_err().to_string().contains("argument index 6"));
    }
}
