//! The device allowlist on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program compiled from
//! [`DeviceRule`]s (as runc's devicefilter does) and attached to the VE's cgroup.
//!
//! The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`,
//! where `access_type` is `(access << 16) | type`; it returns 1 to allow, 0 to deny.

use std::path::Path;

use vz_bpf::insn::{JNE_IMM, exit, insn, jne_imm, load_w, mov_imm};
use vz_bpf::{AttachType, Insn, ProgType};

use crate::devices::{DeviceKind, DeviceRule};
use crate::error::{NsError, Result};

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// Compiles `rules` to a program: allow on the first matching rule, deny otherwise.
pub(crate) fn compile(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut prog = vec![
        load_w(2, 1, 0),             // r2 = access_type
        insn(0x54, 2, 0, 0, 0xffff), // w2 &= 0xffff: the type
        load_w(3, 1, 0),             // r3 = access_type
        insn(0x74, 3, 0, 0, 16),     // w3 >>= 16: the access
        load_w(4, 1, 4),             // r4 = major
        load_w(5, 1, 8),             // r5 = minor
    ];
    for rule in rules {
        let access = [(rule.mknod, ACC_MKNOD), (rule.read, ACC_READ), (rule.write, ACC_WRITE)]
            .iter()
            .filter(|(on, _)| *on)
            .fold(0, |acc, (_, bit)| acc | bit);
        if access == 0 {
            continue;
        }
        let mut block = Vec::new();
        match rule.kind {
            DeviceKind::Block => block.push(jne_imm(2, DEV_BLOCK)),
            DeviceKind::Char => block.push(jne_imm(2, DEV_CHAR)),
            _ => {}
        }
        if access != ACC_MKNOD | ACC_READ | ACC_WRITE {
            block.push(insn(0xbc, 0, 3, 0, 0)); // w0 = w3
            block.push(insn(0x54, 0, 0, 0, !access & 7)); // w0 &= access not granted
            block.push(jne_imm(0, 0));
        }
        if let Some(major) = rule.major.and_then(|m| i32::try_from(m).ok()) {
            block.push(jne_imm(4, major));
        }
        if let Some(minor) = rule.minor.and_then(|m| i32::try_from(m).ok()) {
            block.push(jne_imm(5, minor));
        }
        block.push(mov_imm(0, 1));
        block.push(exit());
        // Every conditional jump skips to the end of its block (the next rule).
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_IMM {
                ins.off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
            }
        }
        prog.extend(block);
    }
    prog.push(mov_imm(0, 0));
    prog.push(exit());
    prog
}

/// Restricts a cgroup v2 directory to `rules` with a device program (the v2 counterpart of
/// [`crate::apply_device_rules_v1`]). Applying again replaces the program.
///
/// # Errors
/// [`NsError::Io`] naming the cgroup if it cannot be opened, the program is refused (with
/// the verifier's log) or cannot be attached.
///
/// # Privileges
/// CAP_SYS_ADMIN (or CAP_BPF + CAP_NET_ADMIN) for bpf(2).
pub fn apply_device_rules_v2(cgroup_dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let dir =
        std::fs::File::open(cgroup_dir).map_err(|e| NsError::io("open cgroup", cgroup_dir, e))?;
    let prog =
        vz_bpf::load(ProgType::CGROUP_DEVICE, AttachType::DEVICE, &compile(rules), "vz_devs")
            .map_err(|e| NsError::io("load the device program for", cgroup_dir, e))?;
    use std::os::fd::AsFd;
    vz_bpf::attach(dir.as_fd(), prog.as_fd(), AttachType::DEVICE)
        .map_err(|e| NsError::io("attach the device program to", cgroup_dir, e))?;
    tracing::debug!(dir = %cgroup_dir.display(), rules = rules.len(), "device program attached");
    Ok(())
}

#[cfg(test)]
mod tests {
    use vz_bpf::insn::EXIT;

    use super::*;
    use crate::devices::default_device_rules;

    #[test]
    fn every_jump_lands_inside_the_program() {
        let prog = compile(&default_device_rules());
        for (i, ins) in prog.iter().enumerate() {
            if ins.code == JNE_IMM {
                let target = i + 1 + usize::try_from(ins.off).expect("forward");
                assert!(target < prog.len(), "jump at {i} to {target}");
                // Each jump lands on the first instruction of a rule block or the final deny.
                assert!(prog[target - 1].code == EXIT, "jump at {i} lands after an exit");
            }
        }
        assert_eq!(prog.last().map(|i| i.code), Some(EXIT));
    }

    #[test]
    fn a_rule_with_all_access_and_any_device_has_no_tests() {
        let rule: DeviceRule = "a:all:all:rwm".parse().expect("valid");
        assert_eq!(compile(&[rule]).len(), 6 + 2 + 2);
        let none: DeviceRule = "c:1:3:none".parse().expect("valid");
        assert_eq!(compile(&[none]).len(), 6 + 2, "a rule without access allows nothing");
    }
}
