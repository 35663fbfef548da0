//! Device nodes of the host given to a running VE (OpenVZ's `DEVNODES`, `vzctl set
//! --devnodes`): a node with the host's type, number and mode is made in the VE's /dev by the
//! host, owned by the VE's root. What the VE may do with it is the device allowlist's
//! business (v1 `devices.allow`, v2 the BPF program): the node alone opens nothing.
//!
//! The host works in the VE's tree through `/proc/<init>/root` with `openat2(2)`'s
//! `RESOLVE_IN_ROOT` and `RESOLVE_NO_SYMLINKS`: a link the VE put in /dev never leads the
//! host out of the VE's tree, and the node is made with `mknodat(2)` relative to a directory
//! fd, never by a path the VE could swap.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, major, makedev, minor, mkdirat, mknodat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, unlinkat};

use crate::devices::{DeviceKind, DeviceRule};
use crate::error::{NsError, Result};

/// A device node of the host's /dev: its name below /dev and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevNode {
    /// Name below /dev, e.g. `fuse`, `net/tun` (no leading `/`, no `.` or `..`).
    pub name: String,
    /// Block or char.
    pub kind: DeviceKind,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Permission bits of the host's node (`0o666` for /dev/fuse).
    pub mode: u32,
}

impl DevNode {
    /// The host's `/dev/<name>`; `name` may start with `/dev/`.
    ///
    /// # Errors
    /// [`NsError::BadDeviceRule`] for a name that is not a path below /dev, or a host file
    /// that is missing or not a block or char device.
    pub fn from_host(name: &str) -> Result<DevNode> {
        let name = name.strip_prefix("/dev/").unwrap_or(name);
        let bad = |reason: &str| NsError::BadDeviceRule {
            rule: name.to_owned(),
            reason: reason.to_owned(),
        };
        if !plain_name(name) {
            return Err(bad("expected a name below /dev"));
        }
        let host = Path::new("/dev").join(name);
        let stat = nix::sys::stat::lstat(&host).map_err(|e| bad(&format!("{e} on the host")))?;
        let kind = match SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFCHR => DeviceKind::Char,
            SFlag::S_IFBLK => DeviceKind::Block,
            _ => return Err(bad("not a block or character device on the host")),
        };
        let number = |n: u64| u32::try_from(n).map_err(|_| bad("device number out of range"));
        Ok(DevNode {
            name: name.to_owned(),
            kind,
            major: number(major(stat.st_rdev))?,
            minor: number(minor(stat.st_rdev))?,
            mode: stat.st_mode & 0o7777,
        })
    }

    /// The allowlist entry for this node with OpenVZ's access letters (`r`, `w`, `q`).
    pub fn rule(&self, access: &str) -> DeviceRule {
        DeviceRule {
            kind: self.kind,
            major: Some(self.major),
            minor: Some(self.minor),
            read: access.contains('r'),
            write: access.contains('w'),
            mknod: false,
            quota: access.contains('q'),
        }
    }

    fn sflag(&self) -> SFlag {
        if self.kind == DeviceKind::Block { SFlag::S_IFBLK } else { SFlag::S_IFCHR }
    }

    fn is(&self, stat: &FileStat) -> bool {
        stat.st_mode & SFlag::S_IFMT.bits() == self.sflag().bits()
            && stat.st_rdev == makedev(self.major.into(), self.minor.into())
    }
}

/// Whether `name` is a relative path of plain components (no `.`, `..`, empty parts).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\0')
        && name.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Makes each of `nodes` in the /dev of the running VE whose init is `init_pid` (missing
/// directories such as `net/` too), owned by `owner` (the VE root's host ids; `None` keeps
/// root). A node already there with the same type and number is kept.
///
/// # Errors
/// [`NsError::Io`] naming the node when the VE's /dev cannot be reached or the node cannot
/// be made (a file of another kind is in the way).
///
/// # Privileges
/// Root with CAP_MKNOD and CAP_CHOWN in the initial user namespace.
pub fn make_dev_nodes(init_pid: i32, nodes: &[DevNode], owner: Option<(u32, u32)>) -> Result<()> {
    if nodes.is_empty() {
        return Ok(());
    }
    let dev = ve_dev_dir(init_pid)?;
    let (uid, gid) =
        owner.map_or((None, None), |(u, g)| (Some(Uid::from_raw(u)), Some(Gid::from_raw(g))));
    for node in nodes {
        let fail = |op: &'static str, e: Errno| {
            NsError::io(op, Path::new("/dev").join(&node.name), std::io::Error::from(e))
        };
        let (parent, leaf) = match node.name.rsplit_once('/') {
            Some((dirs, leaf)) => {
                (subdir(&dev, dirs, uid, gid).map_err(|e| fail("make directory for", e))?, leaf)
            }
            None => {
                (dev.try_clone().map_err(|e| NsError::io("dup", "/dev", e))?, node.name.as_str())
            }
        };
        match fstatat(&parent, leaf, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) if node.is(&stat) => {}
            Ok(_) => return Err(fail("make node (another file is in the way)", Errno::EEXIST)),
            Err(Errno::ENOENT) => {
                // The mode is the host's exactly: no umask in between.
                let old = nix::sys::stat::umask(Mode::empty());
                let made = mknodat(
                    &parent,
                    leaf,
                    node.sflag(),
                    Mode::from_bits_truncate(node.mode),
                    makedev(node.major.into(), node.minor.into()),
                );
                nix::sys::stat::umask(old);
                made.map_err(|e| fail("mknod", e))?;
            }
            Err(e) => return Err(fail("stat", e)),
        }
        // Never follows a link: at worst a link the VE swapped in changes owner.
        fchownat(&parent, leaf, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| fail("chown", e))?;
        tracing::debug!(init_pid, name = %node.name, "device node made in the VE");
    }
    Ok(())
}

/// Removes the nodes named `names` (below /dev) from the running VE's /dev; a name that is
/// not there is no error.
///
/// # Errors
/// [`NsError::Io`] naming the node when it cannot be removed.
pub fn remove_dev_nodes(init_pid: i32, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let dev = ve_dev_dir(init_pid)?;
    for name in names.iter().filter(|n| plain_name(n)) {
        let (parent, leaf) = match name.rsplit_once('/') {
            Some((dirs, leaf)) => match open_beneath(&dev, dirs) {
                Ok(fd) => (fd, leaf),
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(NsError::io("open", Path::new("/dev").join(dirs), e.into())),
            },
            None => (dev.try_clone().map_err(|e| NsError::io("dup", "/dev", e))?, name.as_str()),
        };
        match unlinkat(&parent, leaf, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(NsError::io("remove", Path::new("/dev").join(name), e.into())),
        }
    }
    Ok(())
}

/// The VE's /dev as a directory fd, reached inside the VE's root.
fn ve_dev_dir(init_pid: i32) -> Result<OwnedFd> {
    let root_path = format!("/proc/{init_pid}/root");
    let root = nix::fcntl::open(
        root_path.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| NsError::io("open", &root_path, e.into()))?;
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_IN_ROOT
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    openat2(root.as_fd(), "dev", how).map_err(|e| NsError::io("open the VE's", "/dev", e.into()))
}

/// `dirs` below `dev` as a directory fd, without following any link.
fn open_beneath(dev: &OwnedFd, dirs: &str) -> nix::Result<OwnedFd> {
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    openat2(dev.as_fd(), dirs, how)
}

/// Makes the directories `dirs` below `dev` (mode 0755, owned like the nodes) and opens the
/// last one.
fn subdir(dev: &OwnedFd, dirs: &str, uid: Option<Uid>, gid: Option<Gid>) -> nix::Result<OwnedFd> {
    let mut dir = dev.try_clone().map_err(|_| Errno::EBADF)?;
    for part in dirs.split('/') {
        let old = nix::sys::stat::umask(Mode::empty());
        let made = mkdirat(&dir, part, Mode::from_bits_truncate(0o755));
        nix::sys::stat::umask(old);
        match made {
            Ok(()) => fchownat(&dir, part, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?,
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        dir = open_beneath(&dir, part)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_below_dev() {
        for bad in ["", "..", "../etc/shadow", "net/../x", "/abs", "a//b", "a/"] {
            assert!(!plain_name(bad), "{bad}");
        }
        for good in ["fuse", "net/tun", "dri/card0"] {
            assert!(plain_name(good), "{good}");
        }
    }

    #[test]
    fn host_nodes_are_read_with_type_number_and_mode() {
        let null = DevNode::from_host("/dev/null").expect("/dev/null");
        assert_eq!(
            (null.name.as_str(), null.kind, null.major, null.minor),
            ("null", DeviceKind::Char, 1, 3)
        );
        assert_eq!(null.mode, 0o666);
        assert_eq!(null.rule("rw").to_string(), "c:1:3:rw");
        assert!(DevNode::from_host("shm").is_err(), "a directory is no device");
        assert!(DevNode::from_host("../etc/passwd").is_err());
    }
}
