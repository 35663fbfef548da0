//! The VE's user namespace: its id map ([`IdMap`]), writing the map, and the switch of a
//! process into it as the VE's root ([`become_ve_root`]). How a VE is made in it is
//! `init::unprivileged`; how a program enters it is [`crate::enter`].

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use crate::error::{NsError, Result};
use crate::rootfs::StepResult;
use crate::sys;

/// How many ids a VE's user namespace maps (uid and gid 0..65535 inside).
pub const VE_ID_COUNT: u32 = 65536;

/// A VE's id map: ids 0..count inside are host ids base..base+count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdMap {
    /// Host uid of the VE's root.
    pub uid_base: u32,
    /// Host gid of the VE's root group.
    pub gid_base: u32,
    /// How many ids are mapped.
    pub count: u32,
}

impl IdMap {
    /// The usual map of OpenVZ's LOCAL_UID/LOCAL_GID: [`VE_ID_COUNT`] ids from the bases.
    ///
    /// # Errors
    /// [`NsError::BadSpec`] when a base is 0 (no mapping of host root) or the range passes
    /// the largest id.
    pub fn new(uid_base: u32, gid_base: u32) -> Result<Self> {
        for (field, base) in [("LOCAL_UID", uid_base), ("LOCAL_GID", gid_base)] {
            if base == 0 || base.checked_add(VE_ID_COUNT).is_none_or(|end| end == u32::MAX) {
                return Err(NsError::BadSpec {
                    field,
                    reason: format!("{base} cannot start a range of {VE_ID_COUNT} host ids"),
                });
            }
        }
        Ok(IdMap { uid_base, gid_base, count: VE_ID_COUNT })
    }

    /// The host id of the VE's `gid`.
    pub fn host_gid(&self, gid: u32) -> u32 {
        self.gid_base + gid
    }

    /// The host id of the VE's `uid`.
    pub fn host_uid(&self, uid: u32) -> u32 {
        self.uid_base + uid
    }

    fn lines(&self) -> (String, String) {
        (
            format!("0 {} {}\n", self.uid_base, self.count),
            format!("0 {} {}\n", self.gid_base, self.count),
        )
    }
}

/// Writes `map` as the uid and gid maps of the process `pid` (which just unshared its user
/// namespace). Needs CAP_SETUID and CAP_SETGID in the parent user namespace.
pub(crate) fn write_maps(pid: Pid, map: &IdMap) -> StepResult {
    let (uid_map, gid_map) = map.lines();
    for (file, text) in [("uid_map", uid_map), ("gid_map", gid_map)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text).map_err(|e| format!("write {path}: {e}"))?;
    }
    Ok(())
}

/// Joins the user namespace `userns` and becomes its root (uid and gid 0, no supplementary
/// groups): from here on the process holds capabilities only inside the VE.
pub(crate) fn become_ve_root(userns: &OwnedFd) -> StepResult {
    setns(userns.as_fd(), CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("join the VE's user namespace (fd {}): {e}", userns.as_raw_fd()))?;
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups in the VE: {e}"))?;
    let root_gid = Gid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid)
        .map_err(|e| format!("setresgid 0 in the VE: {e}"))?;
    let root_uid = Uid::from_raw(0);
    nix::unistd::setresuid(root_uid, root_uid, root_uid)
        .map_err(|e| format!("setresuid 0 in the VE: {e}"))
}

/// Attaches at `at` (an existing empty directory) an idmapped copy of the mount tree at
/// `src`, as a VE with `map` sees its root (`nodev`, set-uid working): the host-side view
/// a restore needs (CRIU takes the root as a path and knows nothing of idmaps). The caller
/// unmounts it when done.
///
/// # Errors
/// [`NsError::Setup`] naming the step that failed.
///
/// # Privileges
/// Root with CAP_SYS_ADMIN in the initial namespaces.
pub fn attach_idmapped_view(
    src: &std::path::Path,
    map: &IdMap,
    at: &std::path::Path,
) -> Result<()> {
    let setup = |message: String| NsError::Setup { message };
    let tree = sys::open_tree_clone(src)
        .map_err(|e| setup(format!("clone the mount tree of {}: {e}", src.display())))?;
    let userns = userns_with(map).map_err(setup)?;
    sys::idmap_tree(tree.as_fd(), userns.as_fd())
        .map_err(|e| setup(format!("idmap the tree of {}: {e}", src.display())))?;
    sys::attach_tree(tree.as_fd(), at)
        .map_err(|e| setup(format!("attach at {}: {e}", at.display())))
}

/// Mounts at `dev` (an existing empty directory) the tmpfs a VE's /dev lives on, with its
/// files, links and directories but no mount on them: for a restore, CRIU binds it as the
/// VE's /dev and mounts the node binds, devpts and /dev/shm again on top (it cannot make
/// the dumped tmpfs's device nodes in the VE's user namespace). The caller unmounts it.
/// `console`: the VE had a console of its own (/dev/console is a link to its `pts/0`, see
/// [`InitSpec::console`](crate::InitSpec::console)), not the host's guarded node.
///
/// # Errors
/// [`NsError::Setup`] naming the step that failed.
///
/// # Privileges
/// Root with CAP_SYS_ADMIN in the initial namespaces.
pub fn mount_dev_skeleton(
    dev: &std::path::Path,
    id_map: Option<&IdMap>,
    quota_device: Option<&crate::QuotaDevice>,
    console: bool,
) -> Result<()> {
    let nodes: Vec<&str> =
        crate::rootfs::DEV_NODES.into_iter().filter(|n| !console || *n != "console").collect();
    crate::rootfs::mount_skeleton(dev, &nodes, quota_device, id_map, console)
        .map_err(|message| NsError::Setup { message })
}

/// A user namespace with `map`, made by a child that unshares it and is killed once the
/// namespace is opened.
fn userns_with(map: &IdMap) -> StepResult<OwnedFd> {
    let (ready_r, ready_w) = crate::init::pipe().map_err(|e| e.to_string())?;
    let child = match sys::fork().map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(ready_r);
            let byte: &[u8] = if unshare(CloneFlags::CLONE_NEWUSER).is_ok() { b"1" } else { b"0" };
            let _ = nix::unistd::write(&ready_w, byte);
            loop {
                nix::unistd::pause();
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    let result = (|| {
        let mut byte = [0_u8; 1];
        if !matches!(nix::unistd::read(&ready_r, &mut byte), Ok(1)) || byte[0] != b'1' {
            return Err("unshare a user namespace failed".to_owned());
        }
        write_maps(child, map)?;
        let path = format!("/proc/{child}/ns/user");
        std::fs::File::open(&path).map(OwnedFd::from).map_err(|e| format!("open {path}: {e}"))
    })();
    let _ = kill(child, Signal::SIGKILL);
    let _ = waitpid(child, None);
    result
}

/// Whether the process `pid` is in another user namespace than ours.
///
/// # Errors
/// [`NsError::Io`] when either namespace link cannot be read (the process is gone).
pub(crate) fn has_own_userns(pid: i32) -> Result<bool> {
    let theirs = format!("/proc/{pid}/ns/user");
    let read = |path: &str| {
        std::fs::read_link(path).map_err(|e| NsError::io("read the user namespace of", path, e))
    };
    Ok(read(&theirs)? != read("/proc/self/ns/user")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_map_maps_65536_ids_and_refuses_host_root_and_overflow() {
        let map = IdMap::new(100_000, 200_000).expect("valid");
        assert_eq!(map.lines(), ("0 100000 65536\n".to_owned(), "0 200000 65536\n".to_owned()));
        assert_eq!(map.host_uid(5), 100_005);
        assert_eq!(map.host_gid(5), 200_005);
        assert!(IdMap::new(0, 100_000).is_err());
        assert!(IdMap::new(100_000, u32::MAX - 10).is_err());
    }
}
