//! Rewriting vz's seccomp filters in a dump before CRIU restores them.
//!
//! A VE's processes run under vz-ns's filter, which sends `sysinfo(2)` to a listener held by
//! the VE's console server outside the VE. CRIU dumps the filter's program (`seccomp.img`)
//! but cannot restore its listener (it has no way to hand one out, see
//! `shared/reference/criu-vz.md` §7): restored as it is, every sysinfo of the restored
//! processes would fail with ENOSYS (`free`, `uptime`, glibc's `sysconf(_SC_PHYS_PAGES)`).
//! [`allow_sysinfo`] therefore turns the rule's `ret USER_NOTIF` into `ret ALLOW` in the
//! image: the restored processes get the kernel's (the host's) numbers until the VE
//! restarts; processes entered later get a fresh filter and listener.
//!
//! The image is CRIU's: a header of magics, then entries of a little-endian u32 size and a
//! protobuf `SeccompEntry { repeated SeccompFilter seccomp_filters = 1; }` with
//! `SeccompFilter { required bytes filter = 1; optional uint32 prev = 2; optional uint32
//! flags = 3; }`; `filter` is the program's `struct sock_filter` array. Only the `k` of an
//! instruction changes, so every length stays and the protobuf stays valid. Only vz's own
//! program is touched: one that starts with vz-ns's architecture check (`ld [4]`) and holds
//! the pair `jeq #SYS_sysinfo, 0, 1; ret #SECCOMP_RET_USER_NOTIF` exactly as vz-ns's
//! builder emits it; another program's notification rules are left alone.

use std::path::Path;

use crate::error::{CptError, Result};

/// CRIU's image of the dumped filters.
const IMAGE: &str = "seccomp.img";

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
/// The offset of `arch` in `struct seccomp_data`.
const OFFSET_ARCH: u32 = 4;
/// `SYS_sysinfo` on x86-64.
const SYS_SYSINFO: u32 = 99;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// Makes vz's sysinfo rule allow the call in the dump's filters (see the module doc);
/// returns how many filters it changed (0 when the dump has no filters or none of vz's
/// intercepts sysinfo).
///
/// # Errors
/// [`CptError::Io`] when the image cannot be read or written; [`CptError::BadSpec`] when it
/// is not the protobuf stream CRIU writes (the image is then left as it was).
pub(crate) fn allow_sysinfo(images_dir: &Path) -> Result<usize> {
    let path = images_dir.join(IMAGE);
    let mut bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(CptError::io("read", &path, e)),
    };
    let changed = patch_image(&mut bytes).ok_or_else(|| CptError::BadSpec {
        field: "images_dir",
        reason: format!("{} is not a CRIU seccomp image", path.display()),
    })?;
    if changed > 0 {
        std::fs::write(&path, &bytes).map_err(|e| CptError::io("write", &path, e))?;
    }
    Ok(changed)
}

/// Patches the filters of a whole image; `None` when it does not parse.
fn patch_image(image: &mut [u8]) -> Option<usize> {
    // Two magics (CRIU's common image magic, then the seccomp image's).
    let mut at = 8;
    let mut changed = 0;
    if image.len() < at {
        return None;
    }
    while at < image.len() {
        let size = u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?) as usize;
        let entry = image.get_mut(at + 4..at + 4 + size)?;
        changed += patch_entry(entry)?;
        at += 4 + size;
    }
    Some(changed)
}

/// A `SeccompEntry`: each `seccomp_filters` (field 1) is a `SeccompFilter`.
fn patch_entry(entry: &mut [u8]) -> Option<usize> {
    let mut changed = 0;
    for_each_field(entry, |field, value| {
        if field == 1 {
            let Some(n) = for_each_filter(value) else { return false };
            changed += n;
        }
        true
    })?;
    Some(changed)
}

/// A `SeccompFilter`: its `filter` (field 1) bytes are the program.
fn for_each_filter(filter: &mut [u8]) -> Option<usize> {
    let mut changed = 0;
    for_each_field(filter, |field, value| {
        if field == 1 {
            if value.len() % 8 != 0 {
                return false;
            }
            changed += usize::from(patch_program(value));
        }
        true
    })?;
    Some(changed)
}

/// Calls `f(field number, bytes)` for each length-delimited field of a protobuf message,
/// skipping the others; `None` when the message does not parse or `f` says so.
fn for_each_field(msg: &mut [u8], mut f: impl FnMut(u64, &mut [u8]) -> bool) -> Option<()> {
    let mut at = 0;
    while at < msg.len() {
        let key = varint(msg, &mut at)?;
        match key & 7 {
            0 => drop(varint(msg, &mut at)?),
            1 => at = at.checked_add(8)?,
            2 => {
                let len = usize::try_from(varint(msg, &mut at)?).ok()?;
                let end = at.checked_add(len)?;
                if !f(key >> 3, msg.get_mut(at..end)?) {
                    return None;
                }
                at = end;
            }
            5 => at = at.checked_add(4)?,
            _ => return None,
        }
    }
    (at == msg.len()).then_some(())
}

fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0_u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Turns vz's sysinfo notification into ALLOW in one program; whether it did.
fn patch_program(program: &mut [u8]) -> bool {
    let insn = |p: &[u8], i: usize| -> (u16, u8, u8, u32) {
        let b = &p[i * 8..i * 8 + 8];
        (u16::from_le_bytes([b[0], b[1]]), b[2], b[3], u32::from_le_bytes([b[4], b[5], b[6], b[7]]))
    };
    let count = program.len() / 8;
    if count < 2 || insn(program, 0) != (BPF_LD_W_ABS, 0, 0, OFFSET_ARCH) {
        return false;
    }
    let mut changed = false;
    for i in 0..count - 1 {
        if insn(program, i) == (BPF_JMP_JEQ_K, 0, 1, SYS_SYSINFO)
            && insn(program, i + 1) == (BPF_RET_K, 0, 0, RET_USER_NOTIF)
        {
            let k = (i + 1) * 8 + 4;
            program[k..k + 4].copy_from_slice(&RET_ALLOW.to_le_bytes());
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Vec<u8> {
        let mut b = code.to_le_bytes().to_vec();
        b.extend([jt, jf]);
        b.extend(k.to_le_bytes());
        b
    }

    /// vz-ns's program shape: arch check, sysinfo rule, a quotactl-like rule, allow.
    fn vz_program(sysinfo_ret: u32) -> Vec<u8> {
        [
            insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
            insn(BPF_JMP_JEQ_K, 1, 0, 0xc000_003e),
            insn(BPF_RET_K, 0, 0, 0x0005_0026),
            insn(0x20, 0, 0, 0),
            insn(BPF_JMP_JEQ_K, 0, 1, SYS_SYSINFO),
            insn(BPF_RET_K, 0, 0, sysinfo_ret),
            insn(BPF_JMP_JEQ_K, 0, 1, 179),
            insn(BPF_RET_K, 0, 0, RET_USER_NOTIF),
            insn(BPF_RET_K, 0, 0, RET_ALLOW),
        ]
        .concat()
    }

    fn bytes_field(field: u8, data: &[u8]) -> Vec<u8> {
        assert!(data.len() < 128);
        let mut b = vec![field << 3 | 2, u8::try_from(data.len()).expect("short")];
        b.extend(data);
        b
    }

    fn image(programs: &[Vec<u8>]) -> Vec<u8> {
        let mut entry = Vec::new();
        for (i, p) in programs.iter().enumerate() {
            // filter = 1 (bytes), prev = 2 (varint), flags = 3 (varint).
            let mut filter = bytes_field(1, p);
            filter.extend([2 << 3, u8::try_from(i).expect("few")]);
            filter.extend([3 << 3, 0]);
            entry.extend(bytes_field(1, &filter));
        }
        let mut img = vec![0x19, 0x43, 0x56, 0x54, 0x11, 0x22, 0x33, 0x44];
        img.extend(u32::try_from(entry.len()).expect("size").to_le_bytes());
        img.extend(entry);
        img
    }

    #[test]
    fn only_vzs_sysinfo_rule_becomes_allow() {
        let other = [
            insn(0x20, 0, 0, 0),
            insn(BPF_JMP_JEQ_K, 0, 1, 99),
            insn(BPF_RET_K, 0, 0, RET_USER_NOTIF),
        ]
        .concat();
        let mut img = image(&[vz_program(RET_USER_NOTIF), other.clone()]);
        let expected = image(&[vz_program(RET_ALLOW), other]);
        assert_eq!(patch_image(&mut img), Some(1));
        assert_eq!(img, expected, "only the sysinfo ret changed; quotactl's and others' kept");
        assert_eq!(patch_image(&mut img), Some(0), "a second restore finds nothing to do");
    }

    #[test]
    fn a_broken_image_is_refused_and_a_missing_one_is_nothing() {
        let mut img = image(&[vz_program(RET_USER_NOTIF)]);
        img.truncate(img.len() - 3);
        assert_eq!(patch_image(&mut img), None);
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(allow_sysinfo(dir.path()).expect("no image"), 0);
        std::fs::write(dir.path().join(IMAGE), &img).expect("write");
        assert!(allow_sysinfo(dir.path()).is_err());
        assert_eq!(std::fs::read(dir.path().join(IMAGE)).expect("read"), img, "left as it was");
        let good = image(&[vz_program(RET_USER_NOTIF)]);
        std::fs::write(dir.path().join(IMAGE), &good).expect("write");
        assert_eq!(allow_sysinfo(dir.path()).expect("patched"), 1);
        assert_eq!(
            std::fs::read(dir.path().join(IMAGE)).expect("read"),
            image(&[vz_program(RET_ALLOW)])
        );
    }
}
