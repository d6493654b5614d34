//! The device controller of cgroup v2: `linux.resources.devices` rules turned into an eBPF
//! program (BPF_PROG_TYPE_CGROUP_DEVICE), with cgroup v1's semantics, as runc and crun do.
//!
//! Semantics: deny by default; the last rule that matches a request decides. A rule matches on
//! type (a = any, c, b; u counts as c; p never matches), major and minor (absent or -1 = any)
//! and access: an allow rule when the requested access is a subset of its own, a deny rule when
//! the two intersect. The program checks the rules last first and returns at the first match.
//!
//! The kernel hands the program struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
//! with access_type = (access << 16) | type.

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::bpf::Insn;
use super::error::{Result, RuntimeError};

/// BPF_DEVCG_DEV_BLOCK.
pub const TYPE_BLOCK: u32 = 1;
/// BPF_DEVCG_DEV_CHAR.
pub const TYPE_CHAR: u32 = 2;
/// BPF_DEVCG_ACC_MKNOD.
pub const ACC_MKNOD: u32 = 1;
/// BPF_DEVCG_ACC_READ.
pub const ACC_READ: u32 = 2;
/// BPF_DEVCG_ACC_WRITE.
pub const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// The instruction codes the program uses (linux/bpf_common.h, linux/bpf.h): nothing else.
pub mod op {
    /// r_dst = *(u32 *)(r_src + off)  (BPF_LDX | BPF_MEM | BPF_W)
    pub const LDX_W: u8 = 0x61;
    /// w_dst &= imm  (BPF_ALU | BPF_AND | BPF_K)
    pub const AND32_IMM: u8 = 0x54;
    /// w_dst >>= imm  (BPF_ALU | BPF_RSH | BPF_K)
    pub const RSH32_IMM: u8 = 0x74;
    /// w_dst = w_src  (BPF_ALU | BPF_MOV | BPF_X)
    pub const MOV32_REG: u8 = 0xbc;
    /// w_dst = imm  (BPF_ALU | BPF_MOV | BPF_K)
    pub const MOV32_IMM: u8 = 0xb4;
    /// if r_dst != imm goto +off  (BPF_JMP | BPF_JNE | BPF_K)
    pub const JNE_IMM: u8 = 0x55;
    /// if r_dst != r_src goto +off  (BPF_JMP | BPF_JNE | BPF_X)
    pub const JNE_REG: u8 = 0x5d;
    /// if r_dst == imm goto +off  (BPF_JMP | BPF_JEQ | BPF_K)
    pub const JEQ_IMM: u8 = 0x15;
    /// return r0  (BPF_JMP | BPF_EXIT)
    pub const EXIT: u8 = 0x95;
}

/// Which devices a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Block and character devices.
    Any,
    /// Character devices.
    Char,
    /// Block devices.
    Block,
}

/// One rule, as cgroup v1's devices.allow / devices.deny line would say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// Device type.
    pub kind: Kind,
    /// Major number; None = any.
    pub major: Option<u32>,
    /// Minor number; None = any.
    pub minor: Option<u32>,
    /// ACC_* bits.
    pub access: u32,
}

impl Rule {
    /// An allow rule for every access (rwm) to one character device, or to all minors of a major.
    pub const fn allow_char(major: u32, minor: Option<u32>) -> Rule {
        Rule { allow: true, kind: Kind::Char, major: Some(major), minor, access: ACC_ALL }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Any => "a",
            Kind::Char => "c",
            Kind::Block => "b",
        };
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let access: String = [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')].iter().filter(|(b, _)| self.access & b != 0).map(|(_, c)| *c).collect();
        write!(f, "{} {kind} {}:{} {access}", if self.allow { "allow" } else { "deny" }, num(self.major), num(self.minor))
    }
}

/// The devices the runtime makes in every container's /dev (devices.rs), plus the console and
/// the pty devices: always allowed, whatever the spec says.
pub const IMPLICIT: [Rule; 9] = [
    Rule::allow_char(1, Some(3)),
    Rule::allow_char(1, Some(5)),
    Rule::allow_char(1, Some(7)),
    Rule::allow_char(1, Some(8)),
    Rule::allow_char(1, Some(9)),
    Rule::allow_char(5, Some(0)),
    Rule::allow_char(5, Some(1)),
    Rule::allow_char(5, Some(2)),
    Rule::allow_char(136, None),
];

/// The rules in force for a container: the spec's, then (so that they win, as in runc) the
/// devices the runtime creates itself: IMPLICIT and the spec's own `linux.devices`.
pub fn rules(resources: Option<&LinuxResources>, created: &[LinuxDevice]) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    for r in resources.and_then(|r| r.devices().as_deref()).unwrap_or_default() {
        out.extend(from_spec(r)?);
    }
    out.extend(IMPLICIT);
    for d in created {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
            LinuxDeviceType::B => Kind::Block,
            LinuxDeviceType::A | LinuxDeviceType::P => continue,
        };
        let number = |n: i64, what| u32::try_from(n).map_err(|_| bad(format!("linux.devices {}: {what} {n} is out of range", d.path().display())));
        out.push(Rule { allow: true, kind, major: Some(number(d.major(), "major")?), minor: Some(number(d.minor(), "minor")?), access: ACC_ALL });
    }
    Ok(out)
}

/// Whether the spec asks for device rules at all.
pub fn asked(resources: Option<&LinuxResources>) -> bool {
    resources.and_then(|r| r.devices().as_ref()).is_some_and(|d| !d.is_empty())
}

fn bad(reason: String) -> RuntimeError {
    RuntimeError::Init(format!("{reason} (linux.resources.devices)"))
}

/// One spec rule; None for a rule that can never match (type p).
fn from_spec(r: &LinuxDeviceCgroup) -> Result<Option<Rule>> {
    let kind = match r.typ().unwrap_or_default() {
        LinuxDeviceType::A => Kind::Any,
        LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
        LinuxDeviceType::B => Kind::Block,
        LinuxDeviceType::P => return Ok(None),
    };
    let number = |n: Option<i64>, what: &str| match n {
        None | Some(-1) => Ok(None),
        Some(n) if (0..=i32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(bad(format!("device rule {r}: {what} {n} is out of range (use -1 for any)"))),
    };
    let mut access = 0;
    // No guess at what a rule without access meant (runc refuses it too).
    let text = r.access().as_deref().filter(|a| !a.is_empty()).ok_or_else(|| bad(format!("device rule {r}: access is empty: give r, w and/or m")))?;
    for c in text.chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return Err(bad(format!("device rule {r}: access {text:?} may only hold r, w and m"))),
        };
    }
    Ok(Some(Rule { allow: r.allow(), kind, major: number(r.major(), "major")?, minor: number(r.minor(), "minor")?, access }))
}

/// The program for `rules`: loads the request into r2 (type), r3 (access), r4 (major) and
/// r5 (minor), then one block per rule, last rule first, each jumping to the next block when
/// its rule does not match and returning its verdict when it does; no match returns 0 (deny).
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut insns = vec![
        Insn::new(op::LDX_W, 2, 1, 0, 0),
        Insn::new(op::AND32_IMM, 2, 0, 0, 0xffff),
        Insn::new(op::LDX_W, 3, 1, 0, 0),
        Insn::new(op::RSH32_IMM, 3, 0, 0, 16),
        Insn::new(op::LDX_W, 4, 1, 4, 0),
        Insn::new(op::LDX_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // The checks, each a jump to the end of the block (patched below) when it fails.
        let mut block: Vec<Insn> = Vec::new();
        match rule.kind {
            Kind::Any => {}
            Kind::Char => block.push(Insn::new(op::JNE_IMM, 2, 0, 0, TYPE_CHAR as i32)),
            Kind::Block => block.push(Insn::new(op::JNE_IMM, 2, 0, 0, TYPE_BLOCK as i32)),
        }
        if rule.access & ACC_ALL != ACC_ALL {
            block.push(Insn::new(op::MOV32_REG, 1, 3, 0, 0));
            block.push(Insn::new(op::AND32_IMM, 1, 0, 0, rule.access as i32));
            block.push(if rule.allow {
                // requested & allowed != requested: asks for more than the rule gives.
                Insn::new(op::JNE_REG, 1, 3, 0, 0)
            } else {
                // requested & denied == 0: nothing of what the rule denies.
                Insn::new(op::JEQ_IMM, 1, 0, 0, 0)
            });
        }
        if let Some(major) = rule.major {
            block.push(Insn::new(op::JNE_IMM, 4, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(Insn::new(op::JNE_IMM, 5, 0, 0, minor as i32));
        }
        let unconditional = block.is_empty();
        block.push(Insn::new(op::MOV32_IMM, 0, 0, 0, rule.allow as i32));
        block.push(Insn::new(op::EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if is_jump(insn.code) {
                insn.off = (len - i - 1) as i16;
            }
        }
        insns.extend(block);
        if unconditional {
            // Every request matches: the earlier rules can never decide (and the verifier
            // refuses unreachable code).
            return insns;
        }
    }
    insns.push(Insn::new(op::MOV32_IMM, 0, 0, 0, 0));
    insns.push(Insn::new(op::EXIT, 0, 0, 0, 0));
    insns
}

fn is_jump(code: u8) -> bool {
    matches!(code, op::JNE_IMM | op::JNE_REG | op::JEQ_IMM)
}

/// The rules as one line for the explain trail.
pub fn describe(rules: &[Rule]) -> String {
    let list: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
    format!("deny by default, last match wins: {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` the way the kernel would for one request, for exactly the instructions
    /// `program` emits; anything else fails the test.
    fn run(prog: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> bool {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = prog[pc];
            let (d, s) = (i.dst() as usize, i.src() as usize);
            // What the verifier insists on: offsets only on jumps and loads, registers in range,
            // no immediate beside a register operand.
            assert!(i.off == 0 || is_jump(i.code) || i.code == op::LDX_W, "offset on {i:?} at {pc}");
            assert!(d <= 10 && s <= 10, "bad register in {i:?}");
            assert!(i.imm == 0 || ![op::MOV32_REG, op::JNE_REG, op::LDX_W, op::EXIT].contains(&i.code), "immediate on {i:?} at {pc}");
            assert!(i.src() == 0 || [op::MOV32_REG, op::JNE_REG, op::LDX_W].contains(&i.code), "source register on {i:?} at {pc}");
            let jump = |taken: bool| if taken { pc + 1 + i.off as usize } else { pc + 1 };
            pc = match i.code {
                op::LDX_W => {
                    assert_eq!(s, 1, "loads only from the context");
                    r[d] = ctx[i.off as usize / 4] as u64;
                    pc + 1
                }
                op::AND32_IMM => {
                    r[d] = (r[d] as u32 & i.imm as u32) as u64;
                    pc + 1
                }
                op::RSH32_IMM => {
                    r[d] = ((r[d] as u32) >> i.imm) as u64;
                    pc + 1
                }
                op::MOV32_REG => {
                    r[d] = r[s] as u32 as u64;
                    pc + 1
                }
                op::MOV32_IMM => {
                    r[d] = i.imm as u32 as u64;
                    pc + 1
                }
                op::JNE_IMM => jump(r[d] != i.imm as i64 as u64),
                op::JNE_REG => jump(r[d] != r[s]),
                op::JEQ_IMM => jump(r[d] == i.imm as i64 as u64),
                op::EXIT => return r[0] == 1,
                other => panic!("unexpected instruction {other:#x}"),
            };
        }
        panic!("the program did not end");
    }

    /// cgroup v1's answer, straight from the definition.
    fn reference(rules: &[Rule], typ: u32, access: u32, major: u32, minor: u32) -> bool {
        for rule in rules.iter().rev() {
            let kind = match rule.kind {
                Kind::Any => true,
                Kind::Char => typ == TYPE_CHAR,
                Kind::Block => typ == TYPE_BLOCK,
            };
            let numbers = rule.major.is_none_or(|m| m == major) && rule.minor.is_none_or(|m| m == minor);
            let acc = if rule.allow { access & rule.access == access } else { access & rule.access != 0 };
            if kind && numbers && acc {
                return rule.allow;
            }
        }
        false
    }

    fn parse(lines: &[&str]) -> Vec<Rule> {
        let json: Vec<String> = lines
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (major, minor) = f[2].split_once(':').unwrap();
                let num = |n: &str| if n == "*" { "-1".to_string() } else { n.to_string() };
                format!(r#"{{"allow":{},"type":"{}","major":{},"minor":{},"access":"{}"}}"#, f[0] == "allow", f[1], num(major), num(minor), f[3])
            })
            .collect();
        let r: LinuxResources = serde_json::from_str(&format!(r#"{{"devices":[{}]}}"#, json.join(","))).unwrap();
        r.devices().as_ref().unwrap().iter().filter_map(|d| from_spec(d).unwrap()).collect()
    }

    const C: u32 = TYPE_CHAR;
    const B: u32 = TYPE_BLOCK;
    const R: u32 = ACC_READ;
    const W: u32 = ACC_WRITE;
    const M: u32 = ACC_MKNOD;

    #[test]
    fn the_program_answers_as_cgroup_v1_would() {
        let docker = [
            "deny a *:* rwm", "allow c *:* m", "allow b *:* m", "allow c 1:3 rwm", "allow c 1:5 rwm", "allow c 5:0 rwm", "allow c 136:* rwm",
        ];
        // (rules, type, access, major, minor, verdict)
        type Case<'a> = (&'a [&'a str], u32, u32, u32, u32, bool);
        let table: &[Case] = &[
            (&[], C, R, 1, 3, false),
            (&docker, C, R | W, 1, 3, true),
            (&docker, C, R | W, 10, 200, false),
            (&docker, B, R, 7, 0, false),
            (&docker, B, M, 7, 0, true),
            (&docker, C, M, 10, 200, true),
            (&docker, C, R, 136, 4, true),
            (&docker, B, R, 136, 4, false),
            (&docker, C, R, 1, 4, false),
            // Partial access: an allow covers a subset only.
            (&["allow c 10:200 r"], C, R, 10, 200, true),
            (&["allow c 10:200 r"], C, R | W, 10, 200, false),
            (&["allow c 10:200 r"], B, R, 10, 200, false),
            // Deny after allow wins, and denies on any overlap.
            (&["allow a *:* rwm", "deny c 10:200 w"], C, R, 10, 200, true),
            (&["allow a *:* rwm", "deny c 10:200 w"], C, R | W, 10, 200, false),
            (&["allow a *:* rwm", "deny c 10:200 w"], C, W, 10, 201, true),
            // Allow after deny wins.
            (&["deny c 10:* rwm", "allow c 10:200 rw"], C, R | W, 10, 200, true),
            (&["deny c 10:* rwm", "allow c 10:200 rw"], C, M, 10, 200, false),
            (&["deny c 10:* rwm", "allow c 10:200 rw"], C, R, 10, 229, false),
            // Wildcard majors.
            (&["allow b *:0 r"], B, R, 254, 0, true),
            (&["allow b *:0 r"], B, R, 254, 1, false),
            // A later match-everything rule decides alone.
            (&["allow c 1:3 rwm", "deny a *:* rwm"], C, R, 1, 3, false),
            (&["deny a *:* rwm", "allow a *:* rwm"], B, W, 8, 0, true),
            // p never matches.
            (&["allow p *:* rwm"], C, R, 1, 3, false),
        ];
        for (lines, typ, access, major, minor, want) in table {
            let rules = parse(lines);
            let got = run(&program(&rules), *typ, *access, *major, *minor);
            assert_eq!(got, *want, "{lines:?} for {typ} {access} {major}:{minor}");
            assert_eq!(reference(&rules, *typ, *access, *major, *minor), *want, "the reference disagrees on {lines:?}");
        }
    }

    #[test]
    fn every_request_agrees_with_the_reference() {
        let lists: [&[&str]; 4] = [
            &["deny a *:* rwm", "allow c *:* m", "allow b 7:* rw", "deny b 7:1 w", "allow c 1:3 r"],
            &["allow a *:* r", "deny c *:5 m", "allow c 1:5 rwm", "deny b *:* rw"],
            &["allow c 1:* rw", "deny c 1:3 r", "allow a 1:3 w"],
            &[],
        ];
        for lines in lists {
            let rules = parse(lines);
            let prog = program(&rules);
            for typ in [B, C] {
                for access in 1..=7 {
                    for major in [1, 7, 9] {
                        for minor in [0, 1, 3, 5] {
                            let want = reference(&rules, typ, access, major, minor);
                            assert_eq!(run(&prog, typ, access, major, minor), want, "{lines:?} for {typ} {access} {major}:{minor}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn implicit_devices_win_over_the_spec_and_linux_devices_are_allowed() {
        let r: LinuxResources = serde_json::from_str(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#).unwrap();
        let fuse: LinuxDevice = serde_json::from_str(r#"{"path":"/dev/fuse","type":"c","major":10,"minor":229}"#).unwrap();
        let prog = program(&rules(Some(&r), &[fuse]).unwrap());
        assert!(run(&prog, C, R | W | M, 1, 3));
        assert!(run(&prog, C, R | W, 136, 7));
        assert!(run(&prog, C, R | W, 10, 229));
        assert!(!run(&prog, C, R, 10, 200));
        assert!(!run(&prog, B, R, 7, 0));
    }

    #[test]
    fn nothing_after_a_match_everything_rule_and_jumps_stay_inside() {
        let prog = program(&parse(&["allow c 1:3 rwm", "deny a *:* rwm"]));
        assert_eq!(prog.len(), 6 + 2, "the prologue, then deny everything: {prog:?}");
        let prog = program(&parse(&["deny a *:* rwm", "allow c 1:3 rw", "allow b *:* m"]));
        for (pc, i) in prog.iter().enumerate() {
            if is_jump(i.code) {
                let to = pc + 1 + i.off as usize;
                assert!(to < prog.len() && prog[to - 1].code == op::EXIT, "jump at {pc} lands at {to}, not at a block start");
            }
        }
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let r: LinuxResources = serde_json::from_str(r#"{"devices":[{"allow":true,"type":"c","major":1,"minor":3,"access":"rwx"}]}"#).unwrap();
        let e = rules(Some(&r), &[]).unwrap_err().to_string();
        assert!(e.contains("may only hold r, w and m"), "{e}");
        let r: LinuxResources = serde_json::from_str(r#"{"devices":[{"allow":true,"type":"c","major":-7,"access":"r"}]}"#).unwrap();
        assert!(rules(Some(&r), &[]).unwrap_err().to_string().contains("out of range"));
        let r: LinuxResources = serde_json::from_str(r#"{"devices":[{"allow":false}]}"#).unwrap();
        assert!(rules(Some(&r), &[]).unwrap_err().to_string().contains("access is empty"));
    }

    #[test]
    fn describe_reads_like_devices_list() {
        assert_eq!(describe(&parse(&["deny a *:* rwm", "allow c 1:3 rw"])), "deny by default, last match wins: deny a *:* rwm, allow c 1:3 rw");
    }
}
