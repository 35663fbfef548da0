//! The VE's /etc/hostname, /etc/hosts, /etc/resolv.conf and boot fifo, written by the host
//! through the VE's root without running anything in the VE.
//!
//! Every name is looked up with openat2(2) from a descriptor of VE_ROOT with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`: a link the VE's root planted
//! (`/etc` → `/`, `/etc/hosts` → `/etc/shadow`) resolves inside the VE's own file system,
//! never on the host's. A file is replaced atomically, as OpenVZ's scripts do with `mv -f`: a
//! new file beside it (`O_CREAT | O_EXCL | O_NOFOLLOW` in the directory already opened),
//! owner and mode of the old one, then renameat(2) over the name (a link there is replaced,
//! never followed). VE_ROOT is the host's own mount of the private area (no id mapping), so
//! the files carry the VE's ids as they are on disk (0 = the VE's root).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2, renameat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, fstatat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, mkfifoat, unlinkat};

use crate::error::{CtlError, Result};

/// How names are resolved under the VE's root.
const IN_ROOT: ResolveFlag = ResolveFlag::RESOLVE_IN_ROOT
    .union(ResolveFlag::RESOLVE_NO_MAGICLINKS)
    .union(ResolveFlag::RESOLVE_NO_XDEV);

/// The largest file read back (a VE's /etc/hosts of more is refused, not loaded).
const MAX_READ: u64 = 1 << 20;

/// The line every /etc/hosts gets when it has none for 127.0.0.1 and localhost.
const LOCALHOST: &str = "127.0.0.1 localhost.localdomain localhost";

/// The mark of the line vz owns in /etc/hosts.
const MARK: &str = "# vz-hostname";

/// The VE's root directory, opened on the host for lookups that stay in it.
#[derive(Debug)]
pub struct VeFiles {
    root: OwnedFd,
    ctid: String,
}

impl VeFiles {
    /// Opens VE_ROOT (`root`, a path of the host's, mounted) of CT `ctid`.
    ///
    /// # Errors
    /// [`CtlError::Exec`] (exit 8) when it cannot be opened.
    pub fn open(root: &Path, ctid: &str) -> Result<VeFiles> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let root = nix::fcntl::open(root, flags, Mode::empty()).map_err(|e| {
            CtlError::Exec(format!("open the root {} of CT {ctid}: {e}", root.display()))
        })?;
        Ok(VeFiles { root, ctid: ctid.to_owned() })
    }

    fn error(&self, what: &str, path: &str, e: impl std::fmt::Display) -> CtlError {
        CtlError::Exec(format!("{what} in CT {}: {path}: {e}", self.ctid))
    }

    /// Writes `hostname` to /etc/hostname and its line (`first_ip`, or 127.0.1.1, then the
    /// name and its first label) to /etc/hosts ([`hosts_text`]).
    ///
    /// # Errors
    /// [`CtlError::Exec`] naming the file when a step fails.
    pub fn set_hostname(&self, hostname: &str, first_ip: Option<&str>) -> Result<()> {
        let what = "setting the hostname";
        self.replace(what, "etc", "hostname", &format!("{hostname}\n"))?;
        let old = self.read(what, "etc/hosts")?;
        self.replace(what, "etc", "hosts", &hosts_text(old.as_deref(), hostname, first_ip))
    }

    /// Rewrites the `search` and `nameserver` lines of /etc/resolv.conf ([`resolv_text`]).
    ///
    /// # Errors
    /// [`CtlError::Exec`] naming the file when a step fails.
    pub fn set_dns(&self, nameservers: &[String], search: &[String]) -> Result<()> {
        let what = "setting DNS";
        let old = self.read(what, "etc/resolv.conf")?;
        self.replace(what, "etc", "resolv.conf", &resolv_text(old.as_deref(), nameservers, search))
    }

    /// Removes the fifo `name` in the VE's root left by an earlier boot and, with `make`,
    /// makes a new one (0600, the VE root's) for the VE's boot to write to.
    ///
    /// # Errors
    /// [`CtlError::Exec`] when removing or making it fails.
    pub fn boot_fifo(&self, name: &str, make: bool) -> Result<()> {
        let what = "preparing the boot";
        match unlinkat(&self.root, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.error(what, name, e)),
        }
        if make {
            mkfifoat(&self.root, name, Mode::from_bits_truncate(0o600))
                .map_err(|e| self.error(what, name, e))?;
        }
        Ok(())
    }

    /// The text of the regular file `rel` (followed inside the root), `None` when there is
    /// none (absent, or not a regular file: a fifo or device is never read).
    fn read(&self, what: &str, rel: &str) -> Result<Option<String>> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .resolve(IN_ROOT);
        let fd = match openat2(&self.root, rel, how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.error(what, rel, e)),
        };
        let stat = fstat(&fd).map_err(|e| self.error(what, rel, e))?;
        if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
            return Ok(None);
        }
        let mut text = String::new();
        std::fs::File::from(fd)
            .take(MAX_READ + 1)
            .read_to_string(&mut text)
            .map_err(|e| self.error(what, rel, e))?;
        if text.len() as u64 > MAX_READ {
            return Err(self.error(what, rel, format!("larger than {MAX_READ} bytes")));
        }
        Ok(Some(text))
    }

    /// Replaces `dir/name` with a file holding `text`: owner and permission bits of the
    /// regular file it replaces (set-id bits dropped), else the VE root's and 0644.
    fn replace(&self, what: &str, dir: &str, name: &str, text: &str) -> Result<()> {
        let path = format!("{dir}/{name}");
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(IN_ROOT);
        let dirfd = openat2(&self.root, dir, how).map_err(|e| self.error(what, dir, e))?;
        let old = match fstatat(&dirfd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits() => Some(st),
            Ok(_) | Err(Errno::ENOENT) => None,
            Err(e) => return Err(self.error(what, &path, e)),
        };
        let temp = format!(".{name}.vz-{}", std::process::id());
        match unlinkat(&dirfd, temp.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.error(what, &format!("{dir}/{temp}"), e)),
        }
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&dirfd, temp.as_str(), flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| self.error(what, &format!("{dir}/{temp}"), e))?;
        let written = (|| -> std::result::Result<(), String> {
            let (mode, owner) = match &old {
                Some(st) => (st.st_mode & 0o777, Some((st.st_uid, st.st_gid))),
                None => (0o644, None),
            };
            if let Some((uid, gid)) = owner {
                fchown(fd.as_fd(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                    .map_err(|e| format!("chown: {e}"))?;
            }
            fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
                .map_err(|e| format!("chmod: {e}"))?;
            let mut file = std::fs::File::from(fd);
            file.write_all(text.as_bytes()).map_err(|e| format!("write: {e}"))?;
            renameat(&dirfd, temp.as_str(), &dirfd, name).map_err(|e| format!("rename: {e}"))
        })();
        if let Err(e) = written {
            let _ = unlinkat(&dirfd, temp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(self.error(what, &path, e));
        }
        tracing::debug!(ctid = %self.ctid, path, "replaced");
        Ok(())
    }
}

/// /etc/hosts after setting `hostname`: the old text (`None`: no file) with a localhost
/// line if it had none, without vz's earlier line, then `IP NAME [SHORT] # vz-hostname`
/// (IP: `first_ip`, else 127.0.1.1; SHORT: the first label when the name has dots).
pub fn hosts_text(old: Option<&str>, hostname: &str, first_ip: Option<&str>) -> String {
    let old = old.unwrap_or_default();
    let mut lines: Vec<&str> = old.lines().collect();
    let has_localhost = lines.iter().any(|line| {
        line.strip_prefix("127.0.0.1")
            .is_some_and(|rest| rest.starts_with([' ', '\t']) && rest.contains("localhost"))
    });
    if !has_localhost {
        lines.push(LOCALHOST);
    }
    lines.retain(|line| !line.ends_with(MARK));
    let short = hostname.split('.').next().unwrap_or(hostname);
    let names = if short == hostname { hostname.to_owned() } else { format!("{hostname} {short}") };
    let ours = format!("{} {names} {MARK}", first_ip.unwrap_or("127.0.1.1"));
    let mut text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    text.push_str(&ours);
    text.push('\n');
    text
}

/// /etc/resolv.conf with `search` (when not empty) replacing its `search` lines and
/// `nameservers` (when not empty) replacing its `nameserver` lines, each appended at the end.
pub fn resolv_text(old: Option<&str>, nameservers: &[String], search: &[String]) -> String {
    let keyword = |line: &str, key: &str| {
        line.strip_prefix(key).is_some_and(|rest| rest.starts_with([' ', '\t']))
    };
    let mut lines: Vec<String> = old.unwrap_or_default().lines().map(str::to_owned).collect();
    if !search.is_empty() {
        lines.retain(|line| !keyword(line, "search"));
        lines.push(format!("search {}", search.join(" ")));
    }
    if !nameservers.is_empty() {
        lines.retain(|line| !keyword(line, "nameserver"));
        lines.extend(nameservers.iter().map(|ns| format!("nameserver {ns}")));
    }
    lines.iter().map(|line| format!("{line}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_gets_localhost_once_and_one_line_of_ours() {
        let first = hosts_text(None, "ve.example", Some("10.0.0.5"));
        assert_eq!(first, format!("{LOCALHOST}\n10.0.0.5 ve.example ve {MARK}\n"));
        let second = hosts_text(Some(&first), "other", None);
        assert_eq!(second, format!("{LOCALHOST}\n127.0.1.1 other {MARK}\n"));
        let kept = hosts_text(Some("127.0.0.1\tlocalhost\n10.1.1.1 db\n"), "a.b", None);
        assert_eq!(kept, format!("127.0.0.1\tlocalhost\n10.1.1.1 db\n127.0.1.1 a.b a {MARK}\n"));
    }

    #[test]
    fn resolv_replaces_only_what_is_given() {
        let old = "domain x\nsearch old\nnameserver 1.1.1.1\nnameservers-like 1\n";
        let ns = vec!["192.0.2.53".to_owned(), "192.0.2.54".to_owned()];
        let text = resolv_text(Some(old), &ns, &[]);
        assert_eq!(
            text,
            "domain x\nsearch old\nnameservers-like 1\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n"
        );
        let text = resolv_text(Some(&text), &[], &["example".to_owned(), "test".to_owned()]);
        assert!(text.ends_with("nameserver 192.0.2.54\nsearch example test\n"), "{text}");
        assert!(!text.contains("search old"), "{text}");
        assert_eq!(resolv_text(None, &ns[..1], &[]), "nameserver 192.0.2.53\n");
    }
}
