//! `vzmlocal [-C] CTID:NEWID[:private[:root]]`: Virtuozzo's move of a VE to a new CTID (and
//! private area and root) on this server, or with `-C` its clone. A move stops a running VE
//! and starts it again under the new CTID; a clone copies the private area (frozen with
//! `fsfreeze` while it is copied if the VE runs, a crash-consistent copy) and gets what must
//! be its own: a host id range of its own at its first start (`LOCAL_UID`/`LOCAL_GID` dropped,
//! see [`crate::idmap`]), new MAC addresses and host interface names, no `NAME`. Its
//! hostname and IP addresses are the original's, as in Virtuozzo: `vzctl start` refuses a
//! clone whose addresses are in use until `vzctl set --ipdel/--ipadd` gives it its own.

use std::path::{Path, PathBuf};

use super::{FsFreeze, MigrateError, Result, run, vzctl};
use crate::config::{GlobalConfig, VeConfig, expand_veid};
use crate::ctid::{Ctid, remove_names, set_name};
use crate::lock::Lock;
use crate::output::say;
use crate::ve::Ve;

/// The action scripts kept beside CTID.conf, carried with the VE.
pub const ACTION_SCRIPTS: [&str; 6] =
    ["mount", "umount", "premount", "postumount", "start", "stop"];

/// One `CTID:NEWID[:private[:root]]` of vzmlocal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSpec {
    /// The VE.
    pub src: u32,
    /// Its new CTID.
    pub dst: u32,
    /// The new private area, if given.
    pub private: Option<PathBuf>,
    /// The new root, if given.
    pub root: Option<PathBuf>,
}

impl LocalSpec {
    /// Parses `CTID:NEWID[:private[:root]]`.
    ///
    /// # Errors
    /// [`MigrateError::Usage`] for a malformed item.
    pub fn parse(text: &str) -> Result<LocalSpec> {
        let bad = |why: &str| MigrateError::Usage(format!("Bad argument {text:?}: {why}"));
        let fields: Vec<&str> = text.split(':').collect();
        if !(2..=4).contains(&fields.len()) {
            return Err(bad("expected CTID:NEWID[:private[:root]]"));
        }
        let id =
            |s: &str| s.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| bad("not a CTID"));
        let path = |i: usize| -> Result<Option<PathBuf>> {
            match fields.get(i).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(p) if p.starts_with('/') => Ok(Some(PathBuf::from(p))),
                Some(_) => Err(bad("paths must be absolute")),
            }
        };
        let spec = LocalSpec {
            src: id(fields[0])?,
            dst: id(fields[1])?,
            private: path(2)?,
            root: path(3)?,
        };
        if spec.src == spec.dst && spec.private.is_none() && spec.root.is_none() {
            return Err(bad("nothing to move"));
        }
        Ok(spec)
    }
}

/// The lock of `ctid`, as vzmigrate's error.
pub(crate) fn lock(global: &GlobalConfig, ctid: u32) -> Result<Lock> {
    let id = Ctid::resolve(&ctid.to_string(), &global.names_dir())?;
    Lock::acquire(&global.lock_dir(), id, global.lock_wait()).map_err(|e| match e {
        crate::error::CtlError::Locked => MigrateError::Locked(ctid),
        e => e.into(),
    })
}

/// A path key of the new VE: the one given, else vz.conf's template for `ctid`.
fn new_path(global: &GlobalConfig, key: &str, given: Option<&Path>, ctid: u32) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    let template = global.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
        MigrateError::Other(format!("{key} is not set in {}", global.path().display()))
    })?;
    Ok(PathBuf::from(expand_veid(template, ctid)))
}

struct Plan {
    old: Ve,
    new_conf: PathBuf,
    private: (PathBuf, PathBuf),
    root: (PathBuf, PathBuf),
}

fn plan(global: &GlobalConfig, spec: &LocalSpec) -> Result<Plan> {
    let old = Ve::load(global.clone(), Ctid::resolve(&spec.src.to_string(), &global.names_dir())?)?;
    if old.config.is_none() {
        return Err(MigrateError::NotExist(spec.src));
    }
    let new_conf = VeConfig::path_for(global, spec.dst);
    if spec.src != spec.dst && new_conf.exists() {
        return Err(MigrateError::Exists(spec.dst));
    }
    let private =
        (old.private()?, new_path(global, "VE_PRIVATE", spec.private.as_deref(), spec.dst)?);
    let root = (old.root()?, new_path(global, "VE_ROOT", spec.root.as_deref(), spec.dst)?);
    if private.0 != private.1 && private.1.exists() {
        return Err(MigrateError::Other(format!("{} exists already", private.1.display())));
    }
    Ok(Plan { old, new_conf, private, root })
}

/// `vzmlocal CTID:NEWID[:private[:root]]`: moves the VE; a running VE is stopped and started
/// again under its new id.
///
/// # Errors
/// 10 no such VE, 9 the new CTID exists, 8 the VE does not stop, 7 it does not start again.
pub fn move_ve(global: &GlobalConfig, spec: &LocalSpec) -> Result<()> {
    let _src_lock = lock(global, spec.src)?;
    let _dst_lock = (spec.dst != spec.src).then(|| lock(global, spec.dst)).transpose()?;
    let p = plan(global, spec)?;
    let status = p.old.status()?;
    let (src, dst) = (spec.src.to_string(), spec.dst.to_string());
    if status.running {
        say(format!("Stopping CT {src}"));
        vzctl(&["stop", &src]).map_err(MigrateError::SourceStop)?;
    } else if status.mounted {
        vzctl(&["umount", &src]).map_err(MigrateError::SourceStop)?;
    }
    say(format!("Moving CT {src} to {dst}"));
    let mut file = p.old.config()?.file().clone();
    file.set("VE_PRIVATE", &p.private.1.display().to_string());
    file.set("VE_ROOT", &p.root.1.display().to_string());
    if p.private.0 != p.private.1 {
        move_tree(&p.private.0, &p.private.1)?;
    }
    if p.root.0 != p.root.1 {
        std::fs::create_dir_all(&p.root.1).map_err(|e| io("create", &p.root.1, e))?;
        let _ = std::fs::remove_dir(&p.root.0);
    }
    let old_conf = p.old.config_path();
    file.write_atomic(&p.new_conf).map_err(|e| MigrateError::Other(e.to_string()))?;
    if old_conf != p.new_conf {
        carry_scripts(global, spec, |from, to| std::fs::rename(from, to))?;
        let (old_dump, new_dump) =
            (p.old.dump_file(), global.dump_dir().join(format!("Dump.{dst}")));
        if old_dump.exists() {
            std::fs::rename(&old_dump, &new_dump).map_err(|e| io("rename", &old_dump, e))?;
        }
        let names = global.names_dir();
        remove_names(&names, &old_conf)?;
        if let Some(name) = file.get("NAME").filter(|n| !n.is_empty()) {
            set_name(&names, name, &p.new_conf)?;
        }
        std::fs::remove_file(&old_conf).map_err(|e| io("remove", &old_conf, e))?;
    }
    if status.running {
        say(format!("Starting CT {dst}"));
        vzctl(&["start", &dst]).map_err(MigrateError::DestStart)?;
    }
    say(format!("CT {src} was moved to {dst}"));
    Ok(())
}

/// `vzmlocal -C CTID:NEWID[:private[:root]]`: clones the VE (running or not) as `NEWID`,
/// stopped.
///
/// # Errors
/// 10 no such VE, 9 the new CTID exists, 6 the copy fails (nothing of the clone is left).
pub fn clone_ve(global: &GlobalConfig, spec: &LocalSpec) -> Result<()> {
    if spec.src == spec.dst {
        return Err(MigrateError::Usage("a clone needs a new CTID".into()));
    }
    let _src_lock = lock(global, spec.src)?;
    let _dst_lock = lock(global, spec.dst)?;
    let p = plan(global, spec)?;
    let (src, dst) = (spec.src.to_string(), spec.dst.to_string());
    say(format!("Cloning CT {src} to {dst}"));
    let copied = {
        // A running VE's file system is frozen for the copy: a consistent image.
        let _frozen = if p.old.status()?.mounted {
            Some(FsFreeze::freeze(&p.root.0).map_err(MigrateError::Copy)?)
        } else {
            None
        };
        copy_tree(&p.private.0, &p.private.1)
    };
    if let Err(e) = copied {
        let _ = std::fs::remove_dir_all(&p.private.1);
        return Err(e);
    }
    let mut file = p.old.config()?.file().clone();
    file.set("VE_PRIVATE", &p.private.1.display().to_string());
    file.set("VE_ROOT", &p.root.1.display().to_string());
    clone_identity(&mut file);
    let written = std::fs::create_dir_all(&p.root.1)
        .map_err(|e| io("create", &p.root.1, e))
        .and_then(|()| {
            file.write_atomic(&p.new_conf).map_err(|e| MigrateError::Other(e.to_string()))
        })
        .and_then(|()| carry_scripts(global, spec, |from, to| std::fs::copy(from, to).map(|_| ())));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&p.private.1);
        let _ = std::fs::remove_file(&p.new_conf);
        return Err(e);
    }
    say(format!("CT {src} was cloned to {dst}"));
    Ok(())
}

/// What a clone must not share with its original: its host id range (a new one is drawn at
/// its first start; a privileged VE stays privileged), its name, its interfaces' MACs and
/// host names (generated again from the new CTID).
pub fn clone_identity(file: &mut crate::config::ConfigFile) {
    let privileged = file.get("LOCAL_UID").is_some_and(|v| v.trim() == "0");
    if !privileged {
        file.remove("LOCAL_UID");
        file.remove("LOCAL_GID");
    }
    file.remove("NAME");
    if let Some(netif) = file.get("NETIF").map(str::to_owned) {
        file.set("NETIF", &fresh_netif(&netif));
    }
}

/// `NETIF` without the MACs and host interface names (made again from the new CTID).
fn fresh_netif(netif: &str) -> String {
    netif
        .split(';')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|record| {
            record
                .split(',')
                .filter(|pair| {
                    let key = pair.split_once('=').map_or(*pair, |(k, _)| k).trim();
                    !matches!(key, "mac" | "host_mac" | "host_ifname")
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Moves or copies the action scripts `CTID.<action>` to `NEWID.<action>`.
fn carry_scripts(
    global: &GlobalConfig,
    spec: &LocalSpec,
    op: impl Fn(&Path, &Path) -> std::io::Result<()>,
) -> Result<()> {
    let dir = global.conf_dir();
    for action in ACTION_SCRIPTS {
        let from = dir.join(format!("{}.{action}", spec.src));
        if from.exists() {
            let to = dir.join(format!("{}.{action}", spec.dst));
            op(&from, &to).map_err(|e| io("carry action script", &from, e))?;
        }
    }
    Ok(())
}

fn io(op: &str, path: &Path, e: std::io::Error) -> MigrateError {
    MigrateError::Other(format!("{op} {}: {e}", path.display()))
}

/// Renames a tree, or copies and removes it across file systems.
fn move_tree(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
    }
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            copy_tree(from, to)?;
            std::fs::remove_dir_all(from).map_err(|e| io("remove", from, e))
        }
        Err(e) => Err(io("rename", from, e)),
    }
}

/// `cp -a --reflink=auto --sparse=always from to`: a reflinked copy where the file system
/// shares extents (xfs, btrfs: ~10 ms whatever the size), else a sparse one (an image file
/// stays sparse; ext4 copies its data, ~2.4 s per GiB).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
    }
    let (from, to) = (from.to_string_lossy(), to.to_string_lossy());
    run("cp", &["-a", "--reflink=auto", "--sparse=always", "--", &from, &to])
        .map(|_| ())
        .map_err(MigrateError::Copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_parsed_with_optional_paths() {
        let s = LocalSpec::parse("101:102").unwrap();
        assert_eq!((s.src, s.dst, s.private, s.root), (101, 102, None, None));
        let s = LocalSpec::parse("101:102:/p/102:/r/102").unwrap();
        assert_eq!(s.private.as_deref(), Some(Path::new("/p/102")));
        assert_eq!(s.root.as_deref(), Some(Path::new("/r/102")));
        let s = LocalSpec::parse("101:101:/p/new").unwrap();
        assert_eq!((s.src, s.dst), (101, 101));
        for bad in ["101", "101:x", "0:5", "101:102:rel", "101:101", "1:2:3:4:5"] {
            assert!(matches!(LocalSpec::parse(bad), Err(MigrateError::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn a_clone_gets_its_own_ids_macs_and_no_name() {
        let (mut file, _) = crate::config::ConfigFile::parse(
            "LOCAL_UID=\"200000\"\nLOCAL_GID=\"200000\"\nNAME=\"web\"\nHOSTNAME=\"h\"\n\
             NETIF=\"ifname=eth0,mac=00:18:51:AA:BB:CC,host_ifname=veth101.0,host_mac=00:18:51:AA:BB:CD,bridge=br0\"\n",
        );
        clone_identity(&mut file);
        assert_eq!(file.get("LOCAL_UID"), None);
        assert_eq!(file.get("NAME"), None);
        assert_eq!(file.get("HOSTNAME"), Some("h"));
        assert_eq!(file.get("NETIF"), Some("ifname=eth0,bridge=br0"));
        let (mut file, _) = crate::config::ConfigFile::parse("LOCAL_UID=\"0\"\nLOCAL_GID=\"0\"\n");
        clone_identity(&mut file);
        assert_eq!(file.get("LOCAL_UID"), Some("0"), "a privileged VE stays privileged");
    }
}
