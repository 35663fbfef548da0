//! `vzctl snapshot`, `snapshot-switch`, `snapshot-delete`, `snapshot-mount`,
//! `snapshot-umount`, `snapshot-list` (reference §1.3): snapshots of the image layout.
//!
//! OpenVZ snapshots ploop images (a new top delta); vz's image is one ext4 file, so a
//! snapshot is a copy of it: reflinked where the host's file system can, else sparse, taken
//! with the VE's file system frozen (FIFREEZE), so the copy is what a crash at that moment
//! would leave. A running VE's snapshot (without `--skip-suspend`) also holds its memory: the
//! VE is frozen, dumped by CRIU and left running (`chkpnt --suspend`, `--dump`), its image
//! copied, and it is resumed. On disk, under VE_PRIVATE:
//!
//! ```text
//! snapshots/<uuid>/root.img        the image copy
//! snapshots/<uuid>/snapshot.conf   UUID, PARENT, DATE, NAME, DESC, DUMP, CONFIG
//! snapshots/<uuid>/ve.conf         CTID.conf as it was (not with --skip-config)
//! snapshots/<uuid>/dump/           CRIU's images (a running VE, not with --skip-suspend)
//! snapshots/current                CURRENT=<the UUID the VE's current state descends from>
//! ```
//!
//! A snapshot is made in `snapshots/.<uuid>.tmp` and renamed into place; it is deleted by a
//! rename to `snapshots/.<uuid>.del` first; `current` and CTID.conf are written atomically;
//! the image goes back by a copy to `root.hdd/root.img.switch` renamed over `root.img`. Each
//! command writes an intent record ([`crate::intent`]) first; [`repair`] finishes or undoes
//! what a killed one left: the file system and the VE thawed, temporaries removed, a switch
//! past its image rename finished (config, `current`; the VE is left stopped).

pub mod list;
pub mod switch;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use list::{list, list_fields};
pub use switch::{delete, mount, switch, umount};

use crate::config::ConfigFile;
use crate::error::{CtlError, IoContext, Result};
use crate::intent::{Intent, Record, crash_point, flag};
use crate::output::say;
use crate::ve::Ve;

/// OpenVZ's exit codes of the snapshot commands (vzerror.h).
pub mod code {
    /// Error creating a snapshot.
    pub const CREATE: u8 = 156;
    /// Error deleting a snapshot.
    pub const DELETE: u8 = 158;
    /// Error switching to a snapshot.
    pub const SWITCH: u8 = 159;
    /// Error mounting a snapshot.
    pub const MOUNT: u8 = 160;
    /// Error unmounting a snapshot.
    pub const UMOUNT: u8 = 161;
    /// Error listing snapshots.
    pub const LIST: u8 = 167;
}

/// Options of `vzctl snapshot`.
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// `--id`: the new snapshot's UUID (made up when absent).
    pub id: Option<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `--description`.
    pub description: Option<String>,
    /// `--skip-suspend`: no memory dump of a running VE.
    pub skip_suspend: bool,
    /// `--skip-config`: no copy of CTID.conf.
    pub skip_config: bool,
}

/// One snapshot's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its UUID, lower case, without braces.
    pub uuid: String,
    /// The snapshot the VE's state descended from when it was taken ("" for none).
    pub parent: String,
    /// When it was taken, `YYYY-MM-DD HH:MM:SS` (UTC).
    pub date: String,
    /// `--name`.
    pub name: String,
    /// `--description`.
    pub desc: String,
    /// Whether it holds a memory dump.
    pub dump: bool,
    /// Whether it holds a copy of CTID.conf.
    pub config: bool,
}

fn fail(code: u8, message: impl Into<String>) -> CtlError {
    CtlError::Param { code, message: message.into() }
}

/// A UUID as given (`{…}` or bare, any case) in the form vz keeps: lower case, no braces.
///
/// # Errors
/// 21 when it is not a UUID.
pub fn normalize_uuid(given: &str) -> Result<String> {
    let bare = given.strip_prefix('{').and_then(|s| s.strip_suffix('}')).unwrap_or(given);
    let groups: Vec<&str> = bare.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
    if lens != [8, 4, 4, 4, 12] || !hex {
        return Err(CtlError::BadParameter {
            option: "id".into(),
            value: given.into(),
            reason: "Invalid guid is specified".into(),
        });
    }
    Ok(bare.to_ascii_lowercase())
}

/// A new random (version 4) UUID.
fn new_uuid() -> Result<String> {
    let path = Path::new("/dev/urandom");
    let mut b = [0u8; 16];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut b)).op("read", path)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

/// `{uuid}`, the way OpenVZ shows one.
pub fn braced(uuid: &str) -> String {
    if uuid.is_empty() { String::new() } else { format!("{{{uuid}}}") }
}

/// Where a VE's snapshots are, and what they are.
#[derive(Debug)]
pub struct Store {
    /// `<VE_PRIVATE>/snapshots`.
    dir: PathBuf,
    /// The private area.
    area: vz_quota::PrivateArea,
}

impl Store {
    /// The store of `ve`, which must have the image layout; `code` is the command's exit code
    /// for "not supported".
    ///
    /// # Errors
    /// 43 without a private area; `code` for the directory layout (OpenVZ: ploop only).
    pub fn of(ve: &Ve, code: u8) -> Result<Store> {
        ve.config()?;
        let private = ve.private()?;
        let area = vz_quota::PrivateArea::open(&private)
            .map_err(|_| CtlError::NoPrivate(private.clone()))?;
        if area.layout() != vz_quota::Layout::Image {
            return Err(fail(code, "Snapshot feature is only available for ploop-based CTs"));
        }
        Ok(Store { dir: private.join("snapshots"), area })
    }

    /// The VE's image file.
    pub fn image(&self) -> PathBuf {
        self.area.image().unwrap_or_default()
    }

    /// The directory of snapshot `uuid`.
    pub fn path(&self, uuid: &str) -> PathBuf {
        self.dir.join(uuid)
    }

    fn tmp(&self, uuid: &str) -> PathBuf {
        self.dir.join(format!(".{uuid}.tmp"))
    }

    fn doomed(&self, uuid: &str) -> PathBuf {
        self.dir.join(format!(".{uuid}.del"))
    }

    /// The UUID the current state descends from ("" for none).
    pub fn current(&self) -> String {
        let path = self.dir.join(CURRENT);
        let file = ConfigFile::load(&path).ok();
        file.and_then(|f| f.get("CURRENT").map(str::to_owned)).unwrap_or_default()
    }

    /// Records `uuid` as the one the current state descends from (atomically).
    fn set_current(&self, uuid: &str) -> Result<()> {
        let mut file = ConfigFile::new();
        file.set("CURRENT", uuid);
        file.write_atomic(&self.dir.join(CURRENT)).map_err(CtlError::Config)
    }

    /// Every snapshot, oldest first.
    ///
    /// # Errors
    /// [`CtlError::Io`] when the directory or a metadata file cannot be read.
    pub fn all(&self) -> Result<Vec<Snapshot>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).op("read", &self.dir),
        };
        let mut all = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if normalize_uuid(&name).is_ok_and(|u| u == name) {
                all.push(self.load(&name)?);
            }
        }
        all.sort_by(|a, b| (&a.date, &a.uuid).cmp(&(&b.date, &b.uuid)));
        Ok(all)
    }

    /// Snapshot `uuid`, or `code`'s error "Unable to find snapshot by uuid".
    ///
    /// # Errors
    /// `code` when there is no such snapshot.
    pub fn find(&self, uuid: &str, code: u8) -> Result<Snapshot> {
        if !self.path(uuid).join(META).is_file() {
            return Err(fail(code, format!("Unable to find snapshot by uuid {}", braced(uuid))));
        }
        self.load(uuid)
    }

    fn load(&self, uuid: &str) -> Result<Snapshot> {
        let path = self.path(uuid).join(META);
        let meta = ConfigFile::load(&path).map_err(CtlError::Config)?;
        let get = |k: &str| meta.get(k).unwrap_or_default().to_owned();
        Ok(Snapshot {
            uuid: uuid.to_owned(),
            parent: get("PARENT"),
            date: get("DATE"),
            name: get("NAME"),
            desc: get("DESC"),
            dump: get("DUMP") == "yes",
            config: get("CONFIG") == "yes",
        })
    }

    fn save(&self, dir: &Path, snap: &Snapshot) -> Result<()> {
        let mut meta = ConfigFile::new();
        let yes = |b: bool| if b { "yes" } else { "no" };
        for (key, value) in [
            ("UUID", snap.uuid.as_str()),
            ("PARENT", &snap.parent),
            ("DATE", &snap.date),
            ("NAME", &snap.name),
            ("DESC", &snap.desc),
            ("DUMP", yes(snap.dump)),
            ("CONFIG", yes(snap.config)),
        ] {
            meta.set(key, value);
        }
        meta.write_atomic(&dir.join(META)).map_err(CtlError::Config)
    }

    /// Removes what an interrupted command left: temporaries of snapshots being made or
    /// deleted.
    fn clean(&self) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Ok(()) };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && (name.ends_with(".tmp") || name.ends_with(".del")) {
                let path = entry.path();
                std::fs::remove_dir_all(&path).op("remove", &path)?;
            }
        }
        Ok(())
    }
}

/// The file naming the snapshot the current state descends from.
const CURRENT: &str = "current";

/// The metadata file of a snapshot.
const META: &str = "snapshot.conf";

/// The image copy in a snapshot.
const IMAGE: &str = "root.img";

/// The CTID.conf copy in a snapshot.
const VE_CONF: &str = "ve.conf";

/// The CRIU images directory in a snapshot.
const DUMP: &str = "dump";

/// Now as `YYYY-MM-DD HH:MM:SS` (UTC).
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let text = crate::logging::format_utc(secs);
    text.trim_end_matches("+0000").replace('T', " ")
}

/// `vzctl snapshot`: takes a snapshot of the VE. The caller holds its lock.
///
/// # Errors
/// 21 for a bad UUID, name or description; 156 for the directory layout, an existing UUID,
/// or a failing step (everything done is undone: the VE runs on, thawed).
pub fn snapshot(ve: &Ve, opts: &SnapshotOptions) -> Result<()> {
    let store = Store::of(ve, code::CREATE)?;
    let uuid = match &opts.id {
        Some(id) => normalize_uuid(id)?,
        None => new_uuid()?,
    };
    for (option, value) in [("name", &opts.name), ("description", &opts.description)] {
        if let Some(reason) = value.as_deref().and_then(crate::config::unrepresentable) {
            let value = value.clone().unwrap_or_default();
            return Err(CtlError::BadParameter {
                option: option.into(),
                value,
                reason: reason.into(),
            });
        }
    }
    if store.path(&uuid).exists() {
        return Err(fail(code::CREATE, format!("Snapshot {} already exists", braced(&uuid))));
    }
    let running = ve.cgroup()?.has_tasks();
    let with_dump = running && !opts.skip_suspend;
    let tmp = store.tmp(&uuid);
    let mut intent = Intent::begin(
        &ve.global,
        ve.ctid,
        "snapshot",
        &[("uuid", uuid.clone()), ("was_running", flag(running)), ("suspended", flag(false))],
    )?;
    say(format!("Creating snapshot {}", braced(&uuid)));
    let made = (|| {
        std::fs::create_dir_all(&tmp).op("create", &tmp)?;
        if with_dump {
            intent.note("suspended", "1")?;
            suspended(ve, || take(ve, &store, &tmp, Some(&tmp.join(DUMP))))?;
        } else {
            take(ve, &store, &tmp, None)?;
        }
        if !opts.skip_config {
            let conf = ve.config_path();
            std::fs::copy(&conf, tmp.join(VE_CONF)).op("copy", &conf)?;
        }
        let snap = Snapshot {
            uuid: uuid.clone(),
            parent: store.current(),
            date: now(),
            name: opts.name.clone().unwrap_or_default(),
            desc: opts.description.clone().unwrap_or_default(),
            dump: with_dump,
            config: !opts.skip_config,
        };
        store.save(&tmp, &snap)?;
        crash_point("snapshot:made");
        let dest = store.path(&uuid);
        std::fs::rename(&tmp, &dest).op("rename", &dest)?;
        store.set_current(&uuid)
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(fail(code::CREATE, crate::error::chain(&e)));
    }
    say(format!("Snapshot {} has been successfully created", braced(&uuid)));
    Ok(())
}

/// Runs `inside` with the running VE suspended (cgroup freezer, `chkpnt --suspend`) and
/// resumes it after, also when `inside` failed.
fn suspended<T>(ve: &Ve, inside: impl FnOnce() -> Result<T>) -> Result<T> {
    use super::cpt::{ChkpntOptions, Stage, chkpnt};
    let stage = |stage| ChkpntOptions { stage: Some(stage), ..ChkpntOptions::default() };
    chkpnt(ve, &stage(Stage::Suspend))?;
    crash_point("snapshot:suspended");
    let result = inside();
    let resumed = chkpnt(ve, &stage(Stage::Resume));
    let value = result?;
    resumed?;
    Ok(value)
}

/// The copy itself: the dump into `dump` (the VE is suspended), then the image, with the
/// file system frozen when mounted.
fn take(ve: &Ve, store: &Store, dir: &Path, dump: Option<&Path>) -> Result<()> {
    use super::cpt::{ChkpntOptions, Stage, chkpnt};
    if let Some(dump) = dump {
        let opts = ChkpntOptions {
            stage: Some(Stage::Dump),
            dumpfile: Some(dump.to_owned()),
            ..ChkpntOptions::default()
        };
        chkpnt(ve, &opts)?;
    }
    let root = ve.root()?;
    let frozen = if ve.is_mounted()? {
        Some(vz_quota::freeze(&root).map_err(|e| fail(code::CREATE, crate::error::chain(&e)))?)
    } else {
        None
    };
    crash_point("snapshot:fs-frozen");
    let copied = vz_quota::copy_image(&store.image(), &dir.join(IMAGE));
    if let Some(frozen) = frozen {
        frozen.thaw().map_err(|e| fail(code::CREATE, crate::error::chain(&e)))?;
    }
    copied.map_err(|e| fail(code::CREATE, crate::error::chain(&e)))
}

/// Repairs what a killed snapshot command left ([`crate::intent`]'s table): the file system
/// thawed, a VE the command suspended resumed, temporaries removed; a switch that had
/// replaced the image finished.
///
/// # Errors
/// [`CtlError::Recover`] naming the step that failed.
pub fn repair(ve: &Ve, record: &Record) -> Result<()> {
    let step = |what: &str, e: &dyn std::error::Error| {
        crate::intent::step_error(what, crate::error::chain(e))
    };
    if let Ok(root) = ve.root()
        && ve.is_mounted().unwrap_or(false)
        && vz_quota::thaw(&root).map_err(|e| step("thaw the file system", &e))?
    {
        tracing::info!("CT {}: file system thawed", ve.ctid);
    }
    let store = match Store::of(ve, code::CREATE) {
        Ok(store) => store,
        Err(e) => {
            tracing::warn!("CT {}: no snapshot store to repair: {e}", ve.ctid);
            return Ok(());
        }
    };
    match record.op() {
        "snapshot" if record.flag("suspended", false) => resume_if_frozen(ve)?,
        "snapshot-switch" => switch::repair(ve, &store, record)?,
        _ => {}
    }
    store.clean().map_err(|e| step("remove snapshot temporaries", &e))
}

/// Thaws a VE the snapshot command suspended (its freezer frozen), as `chkpnt --resume`.
fn resume_if_frozen(ve: &Ve) -> Result<()> {
    let cgroup = ve.cgroup()?;
    if !cgroup.has_tasks() {
        return Ok(());
    }
    let frozen = cgroup
        .freezer()
        .and_then(|f| f.state().ok())
        .is_some_and(|s| s == vz_cpt::FreezerState::Frozen);
    if frozen {
        let opts = super::cpt::ChkpntOptions {
            stage: Some(super::cpt::Stage::Resume),
            ..super::cpt::ChkpntOptions::default()
        };
        super::cpt::chkpnt(ve, &opts)
            .map_err(|e| crate::intent::step_error("resume", crate::error::chain(&e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_normalized_and_bad_ones_refused() {
        let u = "{AB0C1DEF-0000-4000-8000-0123456789AB}";
        assert_eq!(normalize_uuid(u).unwrap(), "ab0c1def-0000-4000-8000-0123456789ab");
        assert_eq!(normalize_uuid(&u[1..37]).unwrap(), "ab0c1def-0000-4000-8000-0123456789ab");
        for bad in
            ["", "xyz", "ab0c1def-0000-4000-8000-0123456789a", "{ab0c1def00004000800001234567}"]
        {
            assert_eq!(normalize_uuid(bad).unwrap_err().exit_code(), 21, "{bad}");
        }
        let new = new_uuid().unwrap();
        assert_eq!(normalize_uuid(&new).unwrap(), new);
        assert_ne!(new, new_uuid().unwrap());
        assert_eq!(braced(&new).len(), 38);
    }

    #[test]
    fn dates_look_like_strftime_f_t() {
        let d = now();
        assert_eq!(d.len(), 19, "{d}");
        assert_eq!(&d[10..11], " ");
    }
}
