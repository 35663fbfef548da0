//! Which host ids a VE's root is: OpenVZ's `LOCAL_UID`/`LOCAL_GID` (reference §2).
//!
//! In vz.conf they are the first host id of the pool VEs draw from (default 100000). Each
//! VE gets its own range of [`vz_ns::VE_ID_COUNT`] ids, the lowest free one of the pool,
//! recorded in its CTID.conf at create (or at the first start of a VE made before), so no
//! two VEs share a host id. `LOCAL_UID="0"` in CTID.conf (or in vz.conf, for VEs made
//! afterwards) makes a privileged VE: root in it is the host's root, no security boundary.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::config::{GlobalConfig, VeConfig};
use crate::error::{CtlError, IoContext, Result};
use crate::ve::Ve;

/// The first host id of the pool when vz.conf does not say.
const DEFAULT_POOL_START: u32 = 100_000;

/// The file that serializes allocations across VEs (in LOCKDIR).
const ALLOCATION_LOCK: &str = "idmap.lck";

/// Who a VE's root is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Its own user namespace with this map.
    Unprivileged(vz_ns::IdMap),
    /// The host's root (`LOCAL_UID=0`).
    Privileged,
}

impl Identity {
    /// The map, for an unprivileged VE.
    pub fn id_map(self) -> Option<vz_ns::IdMap> {
        match self {
            Identity::Unprivileged(map) => Some(map),
            Identity::Privileged => None,
        }
    }
}

/// The identity recorded in the VE's CTID.conf, or `None` if it has none yet.
///
/// # Errors
/// [`CtlError::BadParameter`] for a value that is not a number, a range that passes the
/// largest id, or only one of the two keys 0.
pub fn recorded(config: &VeConfig) -> Result<Option<Identity>> {
    let own = |key: &str| config.file().get(key).filter(|v| !v.trim().is_empty());
    let (Some(uid), Some(gid)) = (own("LOCAL_UID"), own("LOCAL_GID")) else {
        return Ok(None);
    };
    let number = |key: &str, value: &str| {
        value.trim().parse::<u32>().map_err(|_| CtlError::BadParameter {
            option: key.to_ascii_lowercase(),
            value: value.to_owned(),
            reason: "not a host id".to_owned(),
        })
    };
    match (number("LOCAL_UID", uid)?, number("LOCAL_GID", gid)?) {
        (0, 0) => Ok(Some(Identity::Privileged)),
        (uid, gid) => vz_ns::IdMap::new(uid, gid)
            .map(|map| Some(Identity::Unprivileged(map)))
            .map_err(|e| CtlError::BadParameter {
                option: "local_uid".to_owned(),
                value: format!("{uid}/{gid}"),
                reason: e.to_string(),
            }),
    }
}

/// The VE's identity, allocating and saving a range in its CTID.conf if it has none. The
/// caller holds the VE's lock.
///
/// # Errors
/// Those of [`recorded`], [`CtlError::NoConfig`], and I/O errors of the allocation lock and
/// of writing CTID.conf.
pub fn ensure(ve: &Ve) -> Result<Identity> {
    let config = ve.config()?;
    if let Some(identity) = recorded(config)? {
        return Ok(identity);
    }
    let lock = allocation_lock(&ve.global.lock_dir())?;
    let identity = match pool_start(&ve.global)? {
        None => Identity::Privileged,
        Some((uid_start, gid_start)) => {
            let taken = taken_ranges(&ve.global, ve.ctid.get())?;
            Identity::Unprivileged(first_free(uid_start, gid_start, &taken)?)
        }
    };
    // Re-read CTID.conf under the allocation lock, so nothing written meanwhile is lost.
    let mut fresh = VeConfig::load(&ve.global, ve.ctid.get())
        .map_err(CtlError::Config)?
        .ok_or(CtlError::NoConfig)?;
    let (uid, gid) = match identity {
        Identity::Unprivileged(map) => (map.uid_base, map.gid_base),
        Identity::Privileged => (0, 0),
    };
    fresh.file_mut().set("LOCAL_UID", &uid.to_string());
    fresh.file_mut().set("LOCAL_GID", &gid.to_string());
    fresh.save().map_err(CtlError::Config)?;
    drop(lock);
    Ok(identity)
}

/// Gives the VE the host ids `vzctl create --local_uid/--local_gid` named, when no other VE
/// has any of them (0 and 0: a privileged VE), and records them in its CTID.conf. The caller
/// holds the VE's lock.
///
/// # Errors
/// [`CtlError::BadParameter`] (21) for ids that pass the largest id, only one of them 0, or
/// a range that overlaps another VE's; I/O errors as [`ensure`].
pub fn assign(ve: &Ve, uid: u32, gid: u32) -> Result<Identity> {
    let bad = |reason: String| CtlError::BadParameter {
        option: "local_uid".to_owned(),
        value: format!("{uid}/{gid}"),
        reason,
    };
    let lock = allocation_lock(&ve.global.lock_dir())?;
    let identity = match (uid, gid) {
        (0, 0) => Identity::Privileged,
        (0, _) | (_, 0) => return Err(bad("both or neither of the ids must be 0".into())),
        _ => {
            let map = vz_ns::IdMap::new(uid, gid).map_err(|e| bad(e.to_string()))?;
            let count = vz_ns::VE_ID_COUNT;
            let overlaps =
                |a: u32, b: u32| a < b.saturating_add(count) && b < a.saturating_add(count);
            let taken = taken_ranges(&ve.global, ve.ctid.get())?;
            if let Some(other) =
                taken.iter().find(|t| overlaps(uid, t.uid_base) || overlaps(gid, t.gid_base))
            {
                return Err(bad(format!(
                    "another container has host ids {}/{} (+{count})",
                    other.uid_base, other.gid_base
                )));
            }
            Identity::Unprivileged(map)
        }
    };
    let mut fresh = VeConfig::load(&ve.global, ve.ctid.get())
        .map_err(CtlError::Config)?
        .ok_or(CtlError::NoConfig)?;
    fresh.file_mut().set("LOCAL_UID", &uid.to_string());
    fresh.file_mut().set("LOCAL_GID", &gid.to_string());
    fresh.save().map_err(CtlError::Config)?;
    drop(lock);
    Ok(identity)
}

/// vz.conf's pool start, `None` when it says `LOCAL_UID=0` (new VEs are privileged).
fn pool_start(global: &GlobalConfig) -> Result<Option<(u32, u32)>> {
    let read = |key: &str| -> Result<u32> {
        match global.get(key).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(DEFAULT_POOL_START),
            Some(v) => v.parse().map_err(|_| CtlError::BadParameter {
                option: key.to_ascii_lowercase(),
                value: v.to_owned(),
                reason: format!("{key} in {} is not a host id", global.path().display()),
            }),
        }
    };
    match (read("LOCAL_UID")?, read("LOCAL_GID")?) {
        (0, _) | (_, 0) => Ok(None),
        starts => Ok(Some(starts)),
    }
}

/// The lowest range of the pool that overlaps no taken one, in uids and in gids alike.
fn first_free(uid_start: u32, gid_start: u32, taken: &[vz_ns::IdMap]) -> Result<vz_ns::IdMap> {
    let count = vz_ns::VE_ID_COUNT;
    let overlaps = |a: u32, b: u32| a < b.saturating_add(count) && b < a.saturating_add(count);
    for slot in 0..u32::MAX / count {
        let (Some(uid), Some(gid)) = (
            slot.checked_mul(count).and_then(|o| uid_start.checked_add(o)),
            slot.checked_mul(count).and_then(|o| gid_start.checked_add(o)),
        ) else {
            break;
        };
        if taken.iter().any(|t| overlaps(uid, t.uid_base) || overlaps(gid, t.gid_base)) {
            continue;
        }
        if let Ok(map) = vz_ns::IdMap::new(uid, gid) {
            return Ok(map);
        }
        break;
    }
    Err(CtlError::BadParameter {
        option: "local_uid".to_owned(),
        value: uid_start.to_string(),
        reason: "no free range of host ids is left in the pool".to_owned(),
    })
}

/// The ranges recorded in every other VE's CTID.conf.
fn taken_ranges(global: &GlobalConfig, except: u32) -> Result<Vec<vz_ns::IdMap>> {
    let dir = global.conf_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).op("read config directory", &dir),
    };
    let mut taken = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(ctid) = name.to_str().and_then(|n| n.strip_suffix(".conf")?.parse::<u32>().ok())
        else {
            continue;
        };
        if ctid == except {
            continue;
        }
        // A VE whose config cannot be read keeps whatever it has: skip it, loudly.
        match VeConfig::load(global, ctid).map(|c| c.map(|c| recorded(&c))) {
            Ok(Some(Ok(Some(Identity::Unprivileged(map))))) => taken.push(map),
            Ok(_) => {}
            Err(e) => tracing::warn!(ctid, error = %e, "id range of this VE not known"),
        }
    }
    Ok(taken)
}

/// Holds `<lock_dir>/idmap.lck` exclusively until dropped.
fn allocation_lock(lock_dir: &Path) -> Result<Flock<File>> {
    std::fs::create_dir_all(lock_dir).op("create lock directory", lock_dir)?;
    let path = lock_dir.join(ALLOCATION_LOCK);
    let file = File::options().create(true).append(true).open(&path).op("open", &path)?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| std::io::Error::from(e))
        .op("lock", &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(uid: u32, gid: u32) -> vz_ns::IdMap {
        vz_ns::IdMap::new(uid, gid).expect("valid")
    }

    #[test]
    fn the_first_free_range_skips_every_overlap() {
        assert_eq!(first_free(100_000, 100_000, &[]).expect("free"), map(100_000, 100_000));
        let taken = [map(100_000, 100_000), map(165_536, 165_536)];
        assert_eq!(first_free(100_000, 100_000, &taken).expect("free"), map(231_072, 231_072));
        // A hand-set range that straddles two slots takes both.
        let odd = [map(150_000, 150_000)];
        assert_eq!(first_free(100_000, 100_000, &odd).expect("free"), map(231_072, 231_072));
        // A gid clash alone is a clash.
        let gid_only = [map(900_000, 100_000)];
        assert_eq!(first_free(100_000, 100_000, &gid_only).expect("free"), map(165_536, 165_536));
    }

    #[test]
    fn an_exhausted_pool_is_an_error() {
        assert!(first_free(u32::MAX - 60_000, 100_000, &[]).is_err());
    }
}
