//! The bpf(2) calls: programs (load with the verifier's log, attach to a cgroup, find the
//! program attached there and its maps) and maps (create, look up, update, list keys).
#![allow(unsafe_code, reason = "bpf(2) system calls; each has a SAFETY comment")]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::insn::Insn;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;

/// A program type (`enum bpf_prog_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgType(pub u32);

impl ProgType {
    /// `BPF_PROG_TYPE_CGROUP_SOCK`: runs when a process of the cgroup creates or releases an
    /// inet socket.
    pub const CGROUP_SOCK: ProgType = ProgType(9);
    /// `BPF_PROG_TYPE_CGROUP_DEVICE`: decides a process's access to a device node.
    pub const CGROUP_DEVICE: ProgType = ProgType(15);
}

/// An attach point of a cgroup (`enum bpf_attach_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachType(pub u32);

impl AttachType {
    /// `BPF_CGROUP_INET_SOCK_CREATE`.
    pub const INET_SOCK_CREATE: AttachType = AttachType(2);
    /// `BPF_CGROUP_DEVICE`.
    pub const DEVICE: AttachType = AttachType(6);
    /// `BPF_CGROUP_INET_SOCK_RELEASE`.
    pub const INET_SOCK_RELEASE: AttachType = AttachType(34);
}

/// A map type (`enum bpf_map_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapType(pub u32);

impl MapType {
    /// `BPF_MAP_TYPE_HASH`.
    pub const HASH: MapType = MapType(1);
    /// `BPF_MAP_TYPE_ARRAY`.
    pub const ARRAY: MapType = MapType(2);
    /// `BPF_F_NO_PREALLOC`: a hash map's elements are allocated as they are added.
    pub const NO_PREALLOC: u32 = 1;
}

/// Runs bpf(2) with `attr` (a `union bpf_attr` prefix); returns its non-negative result.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i64> {
    // SAFETY: `attr` is a live, exclusively borrowed `#[repr(C)]` prefix of `union bpf_attr`
    // of exactly the size passed; pointers inside it point at buffers the caller keeps alive.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<T>()) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

fn fd_result<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    let fd =
        i32::try_from(bpf(cmd, attr)?).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    pad: [u8; 32],
}

/// Creates a map named `name` (at most 15 bytes); `flags` such as
/// [`MapType::NO_PREALLOC`].
///
/// # Errors
/// The kernel's error.
pub fn map_create(
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: map_type.0,
        key_size,
        value_size,
        max_entries,
        map_flags: flags,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: name16(name),
        pad: [0; 32],
    };
    fd_result(BPF_MAP_CREATE, &mut attr)
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    pad0: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn map_elem(
    cmd: libc::c_long,
    map: BorrowedFd<'_>,
    key: u64,
    value: u64,
    flags: u64,
) -> io::Result<i64> {
    let mut attr = MapElemAttr {
        map_fd: u32::try_from(map.as_raw_fd()).unwrap_or(u32::MAX),
        pad0: 0,
        key,
        value,
        flags,
    };
    bpf(cmd, &mut attr)
}

/// The 8-byte value at `key` of an array map of u32 keys; `None` when there is none.
pub fn map_lookup_u64(map: BorrowedFd<'_>, key: u32) -> Option<u64> {
    let mut value = 0u64;
    let key_ptr = std::ptr::from_ref(&key) as u64;
    let value_ptr = std::ptr::from_mut(&mut value) as u64;
    map_elem(BPF_MAP_LOOKUP_ELEM, map, key_ptr, value_ptr, 0).ok()?;
    Some(value)
}

/// Sets `key` (bytes of the map's key size) to `value` (bytes of its value size).
///
/// # Errors
/// The kernel's error (e.g. E2BIG when a hash map is full).
pub fn map_update(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    map_elem(BPF_MAP_UPDATE_ELEM, map, key.as_ptr() as u64, value.as_ptr() as u64, 0).map(drop)
}

/// Every key of a hash map with 8-byte keys (a snapshot; keys may come and go meanwhile).
pub fn map_keys_u64(map: BorrowedFd<'_>) -> Vec<u64> {
    let mut keys = Vec::new();
    let mut next = 0u64;
    let mut current: Option<u64> = None;
    loop {
        let key_ptr = current.as_ref().map_or(0, |k| std::ptr::from_ref(k) as u64);
        let next_ptr = std::ptr::from_mut(&mut next) as u64;
        if map_elem(BPF_MAP_GET_NEXT_KEY, map, key_ptr, next_ptr, 0).is_err() {
            return keys;
        }
        keys.push(next);
        current = Some(next);
    }
}

#[repr(C)]
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
    pad: [u8; 64],
}

/// Loads a program of `prog_type` for `attach_type`, named `name` (at most 15 bytes).
///
/// # Errors
/// The kernel's error, with the verifier's log when it refused the program.
///
/// # Privileges
/// CAP_SYS_ADMIN (or CAP_BPF with CAP_NET_ADMIN).
pub fn load(
    prog_type: ProgType,
    attach_type: AttachType,
    insns: &[Insn],
    name: &str,
) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: prog_type.0,
        insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: u32::try_from(log.len()).unwrap_or(0),
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name16(name),
        prog_ifindex: 0,
        expected_attach_type: attach_type.0,
        pad: [0; 64],
    };
    fd_result(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        io::Error::new(
            e.kind(),
            format!("{e}; verifier: {}", String::from_utf8_lossy(&log[..end]).trim()),
        )
    })
}

#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    pad: [u8; 44],
}

/// Attaches `prog` to the cgroup v2 directory `cgroup` for `attach_type`, replacing the
/// program attached there before (no flags: one program per hook).
///
/// # Errors
/// The kernel's error.
pub fn attach(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: AttachType,
) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: u32::try_from(cgroup.as_raw_fd()).unwrap_or(u32::MAX),
        attach_bpf_fd: u32::try_from(prog.as_raw_fd()).unwrap_or(u32::MAX),
        attach_type: attach_type.0,
        attach_flags: 0,
        replace_bpf_fd: 0,
        pad: [0; 44],
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

#[repr(C)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: [u8; 36],
}

/// The program attached directly to `cgroup` for `attach_type`, if any.
pub fn attached_prog(cgroup: BorrowedFd<'_>, attach_type: AttachType) -> Option<OwnedFd> {
    let mut ids = [0u32; 4];
    let mut attr = QueryAttr {
        target_fd: u32::try_from(cgroup.as_raw_fd()).ok()?,
        attach_type: attach_type.0,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: 4,
        pad: [0; 36],
    };
    bpf(BPF_PROG_QUERY, &mut attr).ok()?;
    let id = *ids.get(..usize::try_from(attr.prog_cnt).ok()?)?.first()?;
    let mut by_id = [id, 0, 0, 0];
    fd_result(BPF_PROG_GET_FD_BY_ID, &mut by_id).ok()
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn object_info(fd: BorrowedFd<'_>, info: &mut [u8]) -> io::Result<()> {
    let mut attr = InfoAttr {
        bpf_fd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
        info_len: u32::try_from(info.len()).unwrap_or(0),
        info: info.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(drop)
}

/// A map a program uses, with what identifies it.
#[derive(Debug)]
pub struct MapRef {
    /// The map.
    pub fd: OwnedFd,
    /// Its name, as given at [`map_create`].
    pub name: String,
}

/// The maps `prog` uses (`struct bpf_prog_info`: nr_map_ids at 52, map_ids at 56;
/// `struct bpf_map_info`: name at 24).
pub fn prog_maps(prog: BorrowedFd<'_>) -> Vec<MapRef> {
    let mut ids = [0u32; 8];
    let mut info = [0u8; 96];
    info[52..56].copy_from_slice(&8u32.to_ne_bytes());
    info[56..64].copy_from_slice(&(ids.as_mut_ptr() as u64).to_ne_bytes());
    if object_info(prog, &mut info).is_err() {
        return Vec::new();
    }
    let count = u32::from_ne_bytes([info[52], info[53], info[54], info[55]]) as usize;
    ids.iter()
        .take(count.min(ids.len()))
        .filter_map(|&id| {
            let mut by_id = [id, 0, 0, 0];
            let fd = fd_result(BPF_MAP_GET_FD_BY_ID, &mut by_id).ok()?;
            let mut map_info = [0u8; 80];
            object_info(fd.as_fd(), &mut map_info).ok()?;
            let end = map_info[24..40].iter().position(|b| *b == 0).unwrap_or(16);
            let name = String::from_utf8_lossy(&map_info[24..24 + end]).into_owned();
            Some(MapRef { fd, name })
        })
        .collect()
}
