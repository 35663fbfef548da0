//! [`BusyboxBuilder`]: the default template, built from the host's static busybox with no
//! network: a root tree of `/bin/busybox`, its applet links, the usual directories, the files
//! in `/etc` a VE needs, and an inittab that boots the VE and powers it off cleanly.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::UNIX_EPOCH;

use crate::build::{PendingCache, elf};
use crate::compression::Compression;
use crate::error::{IoContext, Result, TemplateError};
use crate::name::TemplateName;
use crate::store::CacheStore;

/// Builds the busybox template cache `<cache>/<name>.tar.gz`.
///
/// The tree (owners 0:0, entries in sorted order, every mtime the busybox binary's, so the
/// same busybox always gives the same tarball):
///
/// * `/bin/busybox` (0755), checked to be statically linked, and every applet of
///   `busybox --list-full` as a symlink to `/bin/busybox` (`bin/sh`, `sbin/init`,
///   `sbin/poweroff`, `usr/bin/…`);
/// * directories `/dev /proc /sys /run /home /mnt /etc /var/log /var/run`, `/tmp` and
///   `/var/tmp` (1777), `/root` (0700); `/etc/mtab` → `/proc/self/mounts`;
/// * `/etc/passwd` (root, nobody), `/etc/group` (root, tty 5, nogroup), `/etc/shadow` (0600,
///   root locked until `vzctl set --userpasswd`), `/etc/hostname`, `/etc/hosts`, an empty
///   `/etc/resolv.conf`, `/etc/profile`, `/etc/os-release` ("vz busybox template");
/// * `/etc/inittab` for busybox init: `::sysinit:/etc/init.d/rcS`, `::shutdown:/etc/init.d/rcK`,
///   `::ctrlaltdel:/sbin/reboot`, no getty. `poweroff`/`halt` in the VE (or SIGUSR2/SIGUSR1 to
///   its init) runs rcK, kills the VE's processes and calls `reboot()`, which ends the VE's pid
///   namespace;
/// * `/etc/init.d/rcS`: mounts nothing (vz gives /proc, /sys, /dev, /dev/pts), sets the
///   hostname from `/etc/hostname`, brings `lo` up, runs `/etc/init.d/S??*` scripts, and last
///   signals "boot finished" on the fifo `/.vzfifo` if it exists (for `vzctl start --wait`):
///   it opens the fifo read-write and closes it, which wakes a reader waiting on it and never
///   blocks when nobody waits (busybox `touch` cannot do this: it only calls `utimensat`);
/// * `/etc/init.d/rcK`: runs `/etc/init.d/K??*` scripts and syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyboxBuilder {
    busybox: PathBuf,
}

impl Default for BusyboxBuilder {
    fn default() -> Self {
        BusyboxBuilder::new(Path::new(Self::DEFAULT_BUSYBOX))
    }
}

/// One node of the tree to archive.
enum Node {
    Dir(u32),
    File(u32, Vec<u8>),
    Symlink(String),
}

impl BusyboxBuilder {
    /// Where Debian's busybox-static installs busybox.
    pub const DEFAULT_BUSYBOX: &'static str = "/bin/busybox";

    /// A builder copying the busybox binary at `busybox`.
    pub fn new(busybox: &Path) -> Self {
        BusyboxBuilder { busybox: busybox.to_owned() }
    }

    /// Builds `<store cache dir>/<name>.tar.gz` atomically (a temporary file renamed into
    /// place; the cache directory is created if missing) and returns its path. An existing
    /// cache of that name and suffix is replaced.
    ///
    /// # Errors
    /// [`TemplateError::NotStatic`] if the binary is not a static ELF executable;
    /// [`TemplateError::Command`] if `busybox --list-full` fails; [`TemplateError::BadValue`]
    /// for an applet path that is not a plain relative path; [`TemplateError::Io`] otherwise.
    pub fn build(&self, store: &CacheStore, name: &TemplateName) -> Result<PathBuf> {
        let image = fs::read(&self.busybox).op("read", &self.busybox)?;
        elf::check_static(&image).map_err(|why| TemplateError::NotStatic {
            path: self.busybox.clone(),
            reason: why.reason(),
        })?;
        let mtime = fs::metadata(&self.busybox)
            .op("stat", &self.busybox)?
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let applets = self.applets()?;
        let version = self.version();
        let tree = tree(image, &applets, version.as_deref())?;

        let dest = store.path_for(name, Compression::Gzip);
        let mut cache = PendingCache::create(&dest)?;
        cache.dir("./", 0o755, mtime)?;
        for (path, node) in &tree {
            match node {
                Node::Dir(mode) => cache.dir(path, *mode, mtime)?,
                Node::File(mode, data) => cache.file(path, *mode, mtime, data)?,
                Node::Symlink(target) => cache.symlink(path, target, mtime)?,
            }
        }
        let path = cache.commit()?;
        tracing::info!(cache = %path.display(), applets = applets.len(), "busybox template built");
        Ok(path)
    }

    /// The applet paths of `busybox --list-full` (`bin/sh`, `usr/bin/awk`, …).
    fn applets(&self) -> Result<Vec<String>> {
        let out = Command::new(&self.busybox)
            .arg("--list-full")
            .stdin(Stdio::null())
            .output()
            .op("run", &self.busybox)?;
        if !out.status.success() {
            return Err(TemplateError::Command {
                program: format!("{} --list-full", self.busybox.display()),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let list = String::from_utf8_lossy(&out.stdout);
        let mut applets = Vec::new();
        for line in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let plain = line.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
            if !plain || line.starts_with('/') {
                return Err(TemplateError::BadValue {
                    what: "busybox applet path",
                    value: line.to_owned(),
                });
            }
            // `linuxrc` (an initrd's init at the root) is the only applet without a directory.
            if line.contains('/') {
                applets.push(line.to_owned());
            }
        }
        if applets.is_empty() {
            return Err(TemplateError::BadValue {
                what: "busybox --list-full output (no applets)",
                value: list.chars().take(200).collect(),
            });
        }
        Ok(applets)
    }

    /// `1.35.0` from the banner `BusyBox v1.35.0 (Debian …) multi-call binary.`, if found.
    fn version(&self) -> Option<String> {
        let out = Command::new(&self.busybox).arg("--help").stdin(Stdio::null()).output().ok()?;
        let text = [out.stdout, out.stderr].concat();
        let text = String::from_utf8_lossy(&text);
        let word = text.split_whitespace().find(|w| w.starts_with('v') && w.len() > 1)?;
        let version = &word[1..];
        version.starts_with(|c: char| c.is_ascii_digit()).then(|| version.to_owned())
    }
}

/// The whole tree but the root, keyed by path (so iteration order is sorted and parents come
/// before children).
fn tree(
    busybox: Vec<u8>,
    applets: &[String],
    version: Option<&str>,
) -> Result<BTreeMap<String, Node>> {
    let mut t = BTreeMap::new();
    for dir in [
        "bin",
        "dev",
        "etc",
        "etc/init.d",
        "home",
        "mnt",
        "proc",
        "run",
        "sbin",
        "sys",
        "usr",
        "usr/bin",
        "usr/sbin",
        "var",
        "var/log",
        "var/run",
    ] {
        t.insert(dir.to_owned(), Node::Dir(0o755));
    }
    t.insert("tmp".to_owned(), Node::Dir(0o1777));
    t.insert("var/tmp".to_owned(), Node::Dir(0o1777));
    t.insert("root".to_owned(), Node::Dir(0o700));
    for applet in applets {
        if applet == "bin/busybox" {
            continue;
        }
        // Parents of unusual applet locations (none today beyond the dirs above).
        let mut parent = Path::new(applet).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            t.entry(p.to_string_lossy().into_owned()).or_insert(Node::Dir(0o755));
            parent = p.parent();
        }
        if let Some(Node::Dir(_)) = t.get(applet) {
            return Err(TemplateError::BadValue {
                what: "busybox applet path (a directory)",
                value: applet.clone(),
            });
        }
        t.insert(applet.clone(), Node::Symlink("/bin/busybox".to_owned()));
    }
    t.insert("bin/busybox".to_owned(), Node::File(0o755, busybox));
    let text = |s: &str| s.as_bytes().to_vec();
    t.insert("etc/passwd".into(), Node::File(0o644, text(PASSWD)));
    t.insert("etc/group".into(), Node::File(0o644, text(GROUP)));
    t.insert("etc/shadow".into(), Node::File(0o600, text(SHADOW)));
    t.insert("etc/hostname".into(), Node::File(0o644, text("localhost\n")));
    t.insert("etc/hosts".into(), Node::File(0o644, text(HOSTS)));
    t.insert("etc/resolv.conf".into(), Node::File(0o644, Vec::new()));
    t.insert("etc/profile".into(), Node::File(0o644, text(PROFILE)));
    t.insert("etc/inittab".into(), Node::File(0o644, text(INITTAB)));
    t.insert("etc/init.d/rcS".into(), Node::File(0o755, text(RCS)));
    t.insert("etc/init.d/rcK".into(), Node::File(0o755, text(RCK)));
    t.insert("etc/mtab".into(), Node::Symlink("/proc/self/mounts".into()));
    t.insert("etc/os-release".into(), Node::File(0o644, os_release(version)));
    Ok(t)
}

fn os_release(version: Option<&str>) -> Vec<u8> {
    let mut s = String::from("NAME=\"vz busybox template\"\nID=vz-busybox\n");
    match version {
        Some(v) => {
            s +=
                &format!("VERSION_ID=\"{v}\"\nPRETTY_NAME=\"vz busybox template (BusyBox {v})\"\n");
        }
        None => s += "PRETTY_NAME=\"vz busybox template\"\n",
    }
    s.into_bytes()
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n";
const SHADOW: &str = "root:!::0:99999:7:::\nnobody:*::0:99999:7:::\n";
const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
const PROFILE: &str = "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
                       PS1='\\u@\\h:\\w\\$ '\n";

const INITTAB: &str = "\
# /etc/inittab for busybox init in a vz VE (vz busybox template).
# No getty: a VE has no console login; use `vzctl enter` or `vzctl exec`.
# `poweroff`/`halt` (or SIGUSR2/SIGUSR1 to init) run the shutdown action, stop every process
# and call reboot(), which ends the VE's pid namespace: that is how `vzctl stop` works.
::sysinit:/etc/init.d/rcS
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
";

const RCS: &str = r#"#!/bin/sh
# System start-up of the vz busybox template, run once by init (::sysinit:).
# vz mounts /proc, /sys, /dev and /dev/pts before init starts: nothing to mount here.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

[ -s /etc/hostname ] && hostname -F /etc/hostname
ip link set lo up

for script in /etc/init.d/S[0-9][0-9]*; do
	[ -x "$script" ] && "$script" start
done

# Boot finished: wake `vzctl start --wait`, which waits reading the fifo /.vzfifo. Opening it
# read-write never blocks, and closing it ends the reader's wait; with nobody waiting it is a
# no-op.
[ -p /.vzfifo ] && : 1<>/.vzfifo
exit 0
"#;

const RCK: &str = r#"#!/bin/sh
# Shutdown of the vz busybox template, run by init (::shutdown:) before it stops every process
# and powers the VE off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

for script in /etc/init.d/K[0-9][0-9]*; do
	[ -x "$script" ] && "$script" stop
done
sync
exit 0
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_has_the_promised_shape() {
        let applets = ["bin/sh".to_owned(), "sbin/init".to_owned(), "usr/local/bin/x".to_owned()];
        let t = tree(b"\x7fELF".to_vec(), &applets, Some("1.2.3")).unwrap();
        assert!(matches!(t.get("tmp"), Some(Node::Dir(0o1777))));
        assert!(matches!(t.get("root"), Some(Node::Dir(0o700))));
        assert!(matches!(t.get("usr/local"), Some(Node::Dir(0o755))));
        assert!(matches!(t.get("bin/sh"), Some(Node::Symlink(s)) if s == "/bin/busybox"));
        assert!(matches!(t.get("etc/shadow"), Some(Node::File(0o600, _))));
        // Sorted order puts every parent before its children.
        let keys: Vec<&String> = t.keys().collect();
        for (i, k) in keys.iter().enumerate() {
            if let Some(parent) =
                Path::new(k.as_str()).parent().filter(|p| !p.as_os_str().is_empty())
            {
                let at = keys.iter().position(|x| Path::new(x.as_str()) == parent).unwrap();
                assert!(at < i, "{k}");
            }
        }
        let Some(Node::File(_, osr)) = t.get("etc/os-release") else { panic!() };
        assert!(String::from_utf8_lossy(osr).contains("BusyBox 1.2.3"));
    }

    #[test]
    fn scripts_signal_the_fifo_last_and_inittab_has_no_getty() {
        assert!(RCS.trim_end().ends_with(": 1<>/.vzfifo\nexit 0"));
        assert!(!INITTAB.contains("respawn"));
        assert!(INITTAB.contains("::shutdown:/etc/init.d/rcK"));
    }
}
