//! bpf(2) by hand: load a cgroup device program and attach it to a cgroup v2 directory.
//!
//! Only the two commands the device controller needs, with the kernel's attribute layouts as
//! `#[repr(C)]` structs (linux/bpf.h). The kernel zero-fills what a shorter struct leaves out.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::error::{Result, RuntimeError};

/// BPF_PROG_TYPE_CGROUP_DEVICE: runs on every open and mknod of a device by a cgroup member.
const PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// BPF_CGROUP_DEVICE: where in a cgroup the program is attached.
const ATTACH_CGROUP_DEVICE: u32 = 6;
/// BPF_F_ALLOW_MULTI: other programs (a parent's, systemd's) stay attached beside ours, and all
/// of them must allow an access.
const F_ALLOW_MULTI: u32 = 2;
const CMD_PROG_LOAD: libc::c_int = 5;
const CMD_PROG_ATTACH: libc::c_int = 8;

/// One eBPF instruction (struct bpf_insn): the registers share a byte, dst in the low nibble.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Operation: class | size/op | source.
    pub code: u8,
    /// dst_reg (low 4 bits) and src_reg (high 4 bits).
    pub regs: u8,
    /// Jump offset (in instructions, from the next one) or memory offset.
    pub off: i16,
    /// Immediate operand.
    pub imm: i32,
}

impl Insn {
    /// An instruction from its parts.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn { code, regs: (src << 4) | (dst & 0x0f), off, imm }
    }

    /// The destination register.
    pub fn dst(&self) -> u8 {
        self.regs & 0x0f
    }

    /// The source register.
    pub fn src(&self) -> u8 {
        self.regs >> 4
    }
}

/// union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// union bpf_attr for BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a live, initialised #[repr(C)] struct of the layout `cmd` expects, and
    // its size is passed along; pointers inside it point to buffers that outlive the call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>() as libc::c_uint) };
    if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(ret) }
}

/// Loads a cgroup device program. When the kernel refuses it, loads it again with the verifier
/// log on, so the error says which instruction was wrong.
pub fn load_device_program(insns: &[Insn]) -> Result<OwnedFd> {
    let license: &CStr = c"Apache-2.0";
    let mut attr = ProgLoadAttr {
        prog_type: PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..14].copy_from_slice(b"shibafu_device");
    let first = match bpf(CMD_PROG_LOAD, &mut attr) {
        // SAFETY: a new descriptor the kernel gave us, owned by nobody else.
        Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => e,
    };
    let mut log = vec![0u8; 1 << 20];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    let again = bpf(CMD_PROG_LOAD, &mut attr);
    let text = CStr::from_bytes_until_nul(&log).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
    if let Ok(fd) = again {
        // SAFETY: as above. It loaded on the second try (a passing hiccup): use it.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    let hint = if first.raw_os_error() == Some(libc::EPERM) { " (loading BPF programs needs CAP_SYS_ADMIN or CAP_BPF)" } else { "" };
    Err(RuntimeError::Init(format!(
        "load the device cgroup BPF program ({} instructions): {first}{hint}{}",
        insns.len(),
        if text.trim().is_empty() { String::new() } else { format!("; verifier log:\n{}", text.trim_end()) }
    )))
}

/// Attaches a loaded device program to the cgroup v2 directory `cgroup`, beside any others.
pub fn attach_device_program(prog: &OwnedFd, cgroup: &Path) -> Result<()> {
    let dir = std::fs::File::open(cgroup).map_err(RuntimeError::io(format!("open cgroup {}", cgroup.display())))?;
    let mut attr = ProgAttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: ATTACH_CGROUP_DEVICE,
        attach_flags: F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(CMD_PROG_ATTACH, &mut attr)
        .map(|_| ())
        .map_err(RuntimeError::io(format!("attach the device BPF program to cgroup {}", cgroup.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_linux_bpf_h() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<ProgAttachAttr>(), 20);
        let i = Insn::new(0x61, 2, 1, 0, 0);
        assert_eq!((i.dst(), i.src(), i.regs), (2, 1, 0x12));
    }
}
