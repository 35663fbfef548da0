//! numtcpsock and numothersock enforced on cgroup v2 by two `BPF_PROG_TYPE_CGROUP_SOCK`
//! programs on the VE's cgroup. When a process of the VE creates an inet socket, the create
//! program puts the socket's cookie into the hash map of its class (TCP, or any other inet
//! socket) whose `max_entries` is the beancounter's limit: a full map refuses the socket
//! (`socket()` fails with EPERM) and counts the refusal in an array map; the release program
//! takes the cookie out when the socket is closed.
//!
//! The hooks see inet sockets a process creates. Not limited, because the kernel calls no hook
//! for them: connections `accept()` returns, and non-inet sockets (unix, netlink, packet) —
//! usage counts them all the same (from `/proc`).
//!
//! The array map `vz_sockfail` holds, by index, the refusals of each class and the limits in
//! force (so a later `set` of one class keeps the other's).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::param::UNLIMITED;
use vz_bpf::insn::{call, exit, insn, jump_off, load_map, mov_imm, mov_reg, stack_ptr};
use vz_bpf::{AttachType, Insn, MapRef, MapType, ProgType};

const ATTACH_CREATE: AttachType = AttachType::INET_SOCK_CREATE;
const ATTACH_RELEASE: AttachType = AttachType::INET_SOCK_RELEASE;

const TCP_MAP: &str = "vz_tcpsock";
const OTHER_MAP: &str = "vz_othersock";
const FAIL_MAP: &str = "vz_sockfail";

/// Slots of the array map: refusals of each class, then the limits in force.
const FAIL_TCP: u32 = 0;
const FAIL_OTHER: u32 = 1;
const LIMIT_TCP: u32 = 2;
const LIMIT_OTHER: u32 = 3;

/// Helpers: `bpf_map_lookup_elem`, `bpf_map_update_elem`, `bpf_map_delete_elem`,
/// `bpf_get_socket_cookie`.
const MAP_LOOKUP: i32 = 1;
const MAP_UPDATE: i32 = 2;
const MAP_DELETE: i32 = 3;
const GET_SOCKET_COOKIE: i32 = 46;

/// `struct bpf_sock`: `type` at 8, `protocol` at 12.
const SOCK_TYPE: i16 = 8;
const SOCK_PROTOCOL: i16 = 12;

/// A class's limit as the maps hold it: `None` is unlimited.
type Limit = Option<u32>;

/// A beancounter limit as the maps hold it.
pub(crate) fn limit_of(value: u64) -> Limit {
    // UNLIMITED (u64::MAX) does not fit; u32::MAX is the maps' own "none".
    u32::try_from(value).ok().filter(|v| *v < u32::MAX)
}

/// What the socket programs of a cgroup hold for one class: the limit in force (`UNLIMITED`
/// for none) and the refusals counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClassState {
    pub(crate) limit: u64,
    pub(crate) refused: u64,
}

/// The socket limits attached to a cgroup, per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketState {
    pub(crate) tcp: ClassState,
    pub(crate) other: ClassState,
}

/// The maps of the programs attached to a cgroup.
#[derive(Default)]
struct Installed {
    tcp: Option<MapRef>,
    other: Option<MapRef>,
    fail: Option<MapRef>,
}

impl Installed {
    fn read(cgroup: BorrowedFd<'_>) -> Installed {
        let mut found = Installed::default();
        let Some(prog) = vz_bpf::attached_prog(cgroup, ATTACH_CREATE) else { return found };
        for map in vz_bpf::prog_maps(prog.as_fd()) {
            match map.name.as_str() {
                TCP_MAP => found.tcp = Some(map),
                OTHER_MAP => found.other = Some(map),
                FAIL_MAP => found.fail = Some(map),
                _ => {}
            }
        }
        found
    }

    fn slot(&self, index: u32) -> Option<u64> {
        self.fail.as_ref().and_then(|m| vz_bpf::map_lookup_u64(m.fd.as_fd(), index))
    }

    /// The limit in force for a class, from its slot.
    fn limit(&self, index: u32) -> Limit {
        self.slot(index).and_then(limit_of)
    }
}

/// Puts the socket limits into effect on the cgroup v2 directory `dir`: `tcp` and `other`
/// are new limits (`UNLIMITED` for none); `None` keeps what is in force. Sockets counted
/// before stay counted; refusals counted before are kept.
///
/// # Errors
/// The failing bpf(2) step, with the verifier's log when a program is refused.
pub(crate) fn apply(dir: &Path, tcp: Option<u64>, other: Option<u64>) -> io::Result<()> {
    let cgroup = File::open(dir)?;
    let old = Installed::read(cgroup.as_fd());
    let tcp = tcp.map_or_else(|| old.limit(LIMIT_TCP), limit_of);
    let other = other.map_or_else(|| old.limit(LIMIT_OTHER), limit_of);
    let fail = vz_bpf::map_create(MapType::ARRAY, 4, 8, 4, 0, FAIL_MAP)?;
    for (index, value) in [
        (FAIL_TCP, old.slot(FAIL_TCP).unwrap_or(0)),
        (FAIL_OTHER, old.slot(FAIL_OTHER).unwrap_or(0)),
        (LIMIT_TCP, tcp.map_or(UNLIMITED, u64::from)),
        (LIMIT_OTHER, other.map_or(UNLIMITED, u64::from)),
    ] {
        vz_bpf::map_update(fail.as_fd(), &index.to_ne_bytes(), &value.to_ne_bytes())?;
    }
    let tcp_map = class_map(tcp, TCP_MAP, old.tcp.as_ref())?;
    let other_map = class_map(other, OTHER_MAP, old.other.as_ref())?;
    let fd = |m: &Option<OwnedFd>| m.as_ref().map(AsRawFd::as_raw_fd);
    let release = vz_bpf::load(
        ProgType::CGROUP_SOCK,
        ATTACH_RELEASE,
        &release_program(&[fd(&tcp_map), fd(&other_map)]),
        "vz_sock_release",
    )?;
    let create = vz_bpf::load(
        ProgType::CGROUP_SOCK,
        ATTACH_CREATE,
        &create_program(rule(tcp, fd(&tcp_map)), rule(other, fd(&other_map)), fail.as_raw_fd()),
        "vz_sock_create",
    )?;
    // Release first: a socket the new create program counts is always taken out again.
    vz_bpf::attach(cgroup.as_fd(), release.as_fd(), ATTACH_RELEASE)?;
    vz_bpf::attach(cgroup.as_fd(), create.as_fd(), ATTACH_CREATE)?;
    tracing::debug!(dir = %dir.display(), ?tcp, ?other, "socket limits attached");
    Ok(())
}

/// The limits in force and refusals counted on `dir`, if socket limits are attached there.
pub(crate) fn state(dir: &Path) -> Option<SocketState> {
    let cgroup = File::open(dir).ok()?;
    let installed = Installed::read(cgroup.as_fd());
    installed.fail.as_ref()?;
    let class = |limit: u32, refused: u32| ClassState {
        limit: installed.slot(limit).unwrap_or(UNLIMITED),
        refused: installed.slot(refused).unwrap_or(0),
    };
    Some(SocketState { tcp: class(LIMIT_TCP, FAIL_TCP), other: class(LIMIT_OTHER, FAIL_OTHER) })
}

/// The hash map of a limited class (none for unlimited or 0), with the sockets `old`
/// counted copied in as far as they fit.
fn class_map(limit: Limit, name: &str, old: Option<&MapRef>) -> io::Result<Option<OwnedFd>> {
    let Some(max) = limit.filter(|n| *n > 0) else { return Ok(None) };
    let map = vz_bpf::map_create(MapType::HASH, 8, 4, max, MapType::NO_PREALLOC, name)?;
    if let Some(old) = old {
        for cookie in vz_bpf::map_keys_u64(old.fd.as_fd()) {
            if vz_bpf::map_update(map.as_fd(), &cookie.to_ne_bytes(), &1u32.to_ne_bytes()).is_err()
            {
                break;
            }
        }
    }
    Ok(Some(map))
}

/// What the create program does with a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Allow,
    Deny,
    /// Count in the hash map of this fd; refuse when it is full.
    Limit(i32),
}

fn rule(limit: Limit, map: Option<i32>) -> Rule {
    match (limit, map) {
        (None, _) => Rule::Allow,
        (Some(_), Some(fd)) => Rule::Limit(fd),
        (Some(_), None) => Rule::Deny,
    }
}

/// Returns `verdict` after adding one to the refusal counter `index` of the fail map.
fn refuse(fail_map: i32, index: u32) -> Vec<Insn> {
    let mut block = vec![insn(0x62, 10, 0, -20, i32::try_from(index).unwrap_or(0))];
    block.extend(load_map(1, fail_map));
    block.extend(stack_ptr(2, -20));
    block.push(call(MAP_LOOKUP));
    block.push(insn(0x15, 0, 0, 2, 0)); // if r0 == 0 skip the increment
    block.push(mov_imm(1, 1));
    block.push(insn(0xdb, 0, 1, 0, 0)); // lock *(u64 *)(r0 + 0) += r1
    block.push(mov_imm(0, 0));
    block.push(exit());
    block
}

/// The instructions of one class; the socket's cookie is at r10-8 and a 4-byte value at
/// r10-16.
fn class_block(rule: Rule, fail_map: i32, index: u32) -> Vec<Insn> {
    match rule {
        Rule::Allow => vec![mov_imm(0, 1), exit()],
        Rule::Deny => refuse(fail_map, index),
        Rule::Limit(map) => {
            let mut block = Vec::new();
            block.extend(load_map(1, map));
            block.extend(stack_ptr(2, -8));
            block.extend(stack_ptr(3, -16));
            block.push(mov_imm(4, 1)); // BPF_NOEXIST
            block.push(call(MAP_UPDATE));
            let refused = refuse(fail_map, index);
            block.push(insn(0x15, 0, 0, jump_off(refused.len()), 0)); // if r0 == 0 allow
            block.extend(refused);
            block.extend([mov_imm(0, 1), exit()]);
            block
        }
    }
}

/// The program run when a process of the cgroup creates an inet socket.
fn create_program(tcp: Rule, other: Rule, fail_map: i32) -> Vec<Insn> {
    let tcp_block = class_block(tcp, fail_map, FAIL_TCP);
    let mut prog = vec![
        mov_reg(6, 1),
        insn(0x61, 7, 6, SOCK_TYPE, 0),
        insn(0x61, 8, 6, SOCK_PROTOCOL, 0),
        call(GET_SOCKET_COOKIE),   // r1 is still the socket
        insn(0x7b, 10, 0, -8, 0),  // *(u64 *)(r10 - 8) = cookie
        insn(0x62, 10, 0, -16, 1), // *(u32 *)(r10 - 16) = 1
        insn(0x55, 7, 0, jump_off(tcp_block.len() + 1), libc::SOCK_STREAM),
        insn(0x55, 8, 0, jump_off(tcp_block.len()), libc::IPPROTO_TCP),
    ];
    prog.extend(tcp_block);
    prog.extend(class_block(other, fail_map, FAIL_OTHER));
    prog
}

/// The program run when an inet socket of the cgroup is released: its cookie leaves every
/// class map (`maps`: the fds of the maps in use).
fn release_program(maps: &[Option<i32>]) -> Vec<Insn> {
    let mut prog = vec![call(GET_SOCKET_COOKIE), insn(0x7b, 10, 0, -8, 0)];
    for fd in maps.iter().flatten() {
        prog.extend(load_map(1, *fd));
        prog.extend(stack_ptr(2, -8));
        prog.push(call(MAP_DELETE));
    }
    prog.extend([mov_imm(0, 1), exit()]);
    prog
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every conditional jump lands inside the program, which ends in an exit.
    fn check_jumps(prog: &[Insn]) {
        assert!(vz_bpf::insn::jumps_stay_inside(prog), "{prog:?}");
        assert_eq!(prog.last().map(|i| i.code), Some(vz_bpf::insn::EXIT));
    }

    #[test]
    fn programs_jump_inside_themselves() {
        for (tcp, other) in [
            (Rule::Limit(5), Rule::Limit(6)),
            (Rule::Allow, Rule::Deny),
            (Rule::Deny, Rule::Allow),
            (Rule::Limit(5), Rule::Allow),
        ] {
            let prog = create_program(tcp, other, 7);
            check_jumps(&prog);
            // The class test skips exactly the TCP block.
            let tcp_len = class_block(tcp, 7, FAIL_TCP).len();
            assert_eq!(prog[7].off, jump_off(tcp_len));
            assert_eq!(prog[8 + tcp_len - 1].code, 0x95, "the TCP block ends in an exit");
        }
        check_jumps(&release_program(&[Some(3), None]));
    }

    #[test]
    fn limits_map_to_rules() {
        assert_eq!(limit_of(UNLIMITED), None);
        assert_eq!(limit_of(u64::from(u32::MAX)), None);
        assert_eq!(limit_of(40), Some(40));
        assert_eq!(rule(None, Some(3)), Rule::Allow);
        assert_eq!(rule(Some(0), None), Rule::Deny);
        assert_eq!(rule(Some(4), Some(3)), Rule::Limit(3));
    }
}
