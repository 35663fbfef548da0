//! The directory layout (simfs) with limits: where the host file system that holds the
//! private area enforces project quota (ext4 with the `project` and `quota` features mounted
//! `prjquota`, XFS mounted `pquota`), each VE's tree is one project of that file system and
//! the kernel holds DISKSPACE, DISKINODES and the grace periods — no image, no loop device,
//! no journal thread of the VE's own.
//!
//! The project id is allocated once per VE, under a host-wide lock, as the first id from
//! [`FIRST_ID`] on that file system that holds no usage (what the kernel says, so an id with
//! files — another VE's, whose tree always holds at least its own directory, or another
//! tool's — is never taken; limits left by a tree removed without destroy are overwritten),
//! and kept in the area's record.
//! The private directory gets the id and PROJINHERIT before anything else is in it (at
//! create), or the existing tree is walked once (an area made before the file system had
//! project quota, or one copied from another host: its directories and regular files join
//! the project and their usage moves into it; symlinks and special files already there
//! cannot be opened for the ioctl and stay out, new ones inherit the id). Destroy removes the
//! tree and then drops the id's limits, which frees it.
//!
//! The kernel refuses a change of a file's project id or of PROJINHERIT from any user
//! namespace but the initial one (`fileattr_set_prepare`: EINVAL), so root in a VE (which
//! lives in a user namespace of its own) can neither leave the project nor move its files
//! to another VE's; quotactl of project quota needs CAP_SYS_ADMIN in the initial user
//! namespace.
//!
//! The grace periods of project quota are kept per file system, not per project: the last
//! QUOTATIME set applies to every VE on that file system (a warning says so when it changes).

use std::fs::File;
use std::path::Path;

use crate::area::PrivateArea;
use crate::error::{QuotaError, Result};
use crate::limit::Layout;
use crate::project::{self, SoftLimits};
use crate::record::Record;
use crate::sys::{self, IdQuota};

/// The first project id given to a VE; ids below are left to the host's administrator
/// (`/etc/projid`).
pub(crate) const FIRST_ID: u32 = 100_000;

/// The host-wide lock held while an id is chosen and taken.
const LOCK_FILE: &str = "/run/lock/vz-quota.projid.lock";

/// Whether the file system holding a directory enforces project quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostQuota {
    /// It does: limits set with quotactl hold.
    Enforcing,
    /// It does not, and why.
    Off {
        /// Why not, for the user.
        reason: String,
    },
}

/// Whether the file system holding `dir` enforces project quota (Q_XGETQSTAT through
/// quotactl_fd: no device node needed, and no privilege).
pub(crate) fn host_quota(dir: &Path) -> HostQuota {
    let how = "ext4 with the `project` and `quota` features mounted with prjquota, or XFS \
               mounted with pquota";
    let off = |reason: String| HostQuota::Off { reason };
    let file = match File::open(dir) {
        Ok(file) => file,
        Err(e) => return off(format!("cannot open {}: {e}", dir.display())),
    };
    match sys::quota_state_flags(&file) {
        Ok(flags) if flags & sys::FS_QUOTA_PDQ_ENFD != 0 => HostQuota::Enforcing,
        Ok(flags) if flags & sys::FS_QUOTA_PDQ_ACCT != 0 => off(format!(
            "the file system holding {} accounts project quota but does not enforce it \
             (needs {how})",
            dir.display()
        )),
        // ENOSYS: a file system that has quota code but no quota on (ext4 without the feature).
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => off(format!(
            "the file system holding {} has no project quota (needs {how})",
            dir.display()
        )),
        Ok(_) => off(format!(
            "the file system holding {} has no project quota (needs {how})",
            dir.display()
        )),
        Err(e) => off(format!(
            "the file system holding {} has no quota support ({e}; needs {how})",
            dir.display()
        )),
    }
}

impl PrivateArea {
    /// Directory layout on a file system with project quota: makes sure the tree is one
    /// project of its own (allocating the id and walking the tree when needed) and the
    /// kernel holds the record's limits. Returns the id, or `None` where the file system
    /// enforces no project quota (nothing is changed then).
    pub(crate) fn host_project_setup(&self) -> Result<Option<u32>> {
        if self.layout() != Layout::Simfs || host_quota(self.private()) != HostQuota::Enforcing {
            return Ok(None);
        }
        let private = self.private();
        let dir = File::open(private).map_err(|e| QuotaError::io("open", private, e))?;
        let mut record = self.record()?;
        let (have, inherit) =
            sys::project_of(&dir).map_err(|e| QuotaError::io("read project id", private, e))?;
        let id = match record.project {
            Some(id) if have == id && inherit => id,
            Some(id) if have == id => {
                project::set(private, id, true)?;
                id
            }
            _ => {
                let id = self.allocate(&dir, record.project)?;
                let skipped = project::adopt_tree(private, id)?;
                if skipped > 0 {
                    tracing::info!(private = %private.display(), skipped,
                        "symlinks and special files already present stay outside the project");
                }
                record.project = Some(id);
                record.save(&self.record_path())?;
                id
            }
        };
        apply(&dir, private, id, &record)?;
        Ok(Some(id))
    }

    /// Takes a free project id under the host-wide lock and puts the private directory in
    /// it (with PROJINHERIT), so the id shows usage before the lock is let go. `wanted` (the
    /// record's old id) is taken again when still free.
    fn allocate(&self, dir: &File, wanted: Option<u32>) -> Result<u32> {
        let lock_path = Path::new(LOCK_FILE);
        if let Some(parent) = lock_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| QuotaError::io("mkdir", parent, e))?;
        }
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path)
            .map_err(|e| QuotaError::io("open lock", lock_path, e))?;
        let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| QuotaError::errno("lock", lock_path, e))?;
        let private = self.private();
        let free = |id: u32| -> Result<bool> {
            let q = sys::project_quota_fd(dir, id)
                .map_err(|e| QuotaError::io("read project quota", private, e))?;
            // Usage only: a VE's tree always holds its own directory, and limits left behind
            // by a tree removed without destroy (convert, a killed destroy) free nothing.
            Ok(q.space_bytes == 0 && q.inodes == 0)
        };
        let mut id = match wanted {
            Some(id) if id >= FIRST_ID && free(id)? => id,
            _ => FIRST_ID,
        };
        while !free(id)? {
            id = id.checked_add(1).ok_or_else(|| {
                QuotaError::io("allocate project id", private, std::io::Error::other("none free"))
            })?;
        }
        project::set(private, id, true)?;
        tracing::debug!(private = %private.display(), id, "project id allocated");
        drop(lock);
        Ok(id)
    }

    /// The kernel's usage and grace deadlines of this directory-layout area's project, when
    /// the host file system enforces it and the tree is in the recorded project.
    pub(crate) fn host_project_usage(&self) -> Result<Option<IdQuota>> {
        let Some(id) = self.in_host_project()? else { return Ok(None) };
        let private = self.private();
        let dir = File::open(private).map_err(|e| QuotaError::io("open", private, e))?;
        sys::project_quota_fd(&dir, id)
            .map(Some)
            .map_err(|e| QuotaError::io("read project quota", private, e))
    }

    /// The recorded project id, when the host file system enforces project quota and the
    /// private directory is in that project with PROJINHERIT.
    fn in_host_project(&self) -> Result<Option<u32>> {
        if self.layout() != Layout::Simfs {
            return Ok(None);
        }
        let Some(id) = self.record()?.project else { return Ok(None) };
        if host_quota(self.private()) != HostQuota::Enforcing {
            return Ok(None);
        }
        let private = self.private();
        let dir = File::open(private).map_err(|e| QuotaError::io("open", private, e))?;
        let (have, inherit) =
            sys::project_of(&dir).map_err(|e| QuotaError::io("read project id", private, e))?;
        Ok((have == id && inherit).then_some(id))
    }

    /// Sets the record's limits on the project again (after `vzctl set`), where the tree is
    /// in its project.
    pub(crate) fn reapply_host_project(&self) -> Result<()> {
        let Some(id) = self.in_host_project()? else { return Ok(()) };
        let private = self.private();
        let dir = File::open(private).map_err(|e| QuotaError::io("open", private, e))?;
        apply(&dir, private, id, &self.record()?)
    }

    /// Whether the directory layout's soft and hard limits are enforced by the host file
    /// system's project quota, or why not.
    pub(crate) fn host_project_soft(&self) -> Result<SoftLimits> {
        let reported = |reason: String| Ok(SoftLimits::Reported { reason });
        if let HostQuota::Off { reason } = host_quota(self.private()) {
            return reported(format!(
                "{reason}; the directory layout's limits are reported with grace timers only"
            ));
        }
        let record = self.record()?;
        let Some(id) = record.project else {
            return reported(
                "the private area has no project id yet (it gets one when it is mounted)"
                    .to_owned(),
            );
        };
        let Some(q) = self.host_project_usage()? else {
            return reported(format!(
                "the private directory is not in its project {id} (setting it up failed at \
                 mount; see the log)"
            ));
        };
        if !project::same_limits(&q, &project::wanted(&record)) {
            return reported(format!(
                "the kernel's limits of project {id} are not DISKSPACE and DISKINODES \
                 (setting them failed; see the log)"
            ));
        }
        Ok(SoftLimits::Enforced)
    }
}

/// Sets `record`'s limits on project `id` of the file system holding `dir` (the private
/// directory at `path`), and QUOTATIME as the file system's project grace periods.
fn apply(dir: &File, path: &Path, id: u32, record: &Record) -> Result<()> {
    let limits = project::wanted(record);
    tracing::debug!(private = %path.display(), id, ?limits, "host project quota");
    sys::set_project_limits_fd(dir, id, &limits)
        .map_err(|e| QuotaError::io("set project quota limits", path, e))?;
    let grace = record.quota_time.min(u64::from(u32::MAX));
    let (blocks, inodes) = sys::project_grace_fd(dir)
        .map_err(|e| QuotaError::io("read project quota grace", path, e))?;
    if (blocks, inodes) != (grace, grace) {
        tracing::warn!(private = %path.display(), old = blocks, new = grace,
            "project quota grace periods are per file system: QUOTATIME now applies to every \
             VE on this one");
        sys::set_project_grace_fd(dir, grace, grace)
            .map_err(|e| QuotaError::io("set project quota grace", path, e))?;
    }
    Ok(())
}

/// Drops the limits of project `id` on the file system holding `dir` (a destroyed VE's:
/// with its tree gone the id holds nothing and is free again).
pub(crate) fn release(dir: &Path, id: u32) {
    let released =
        File::open(dir).and_then(|file| sys::set_project_limits_fd(&file, id, &IdQuota::default()));
    match released {
        Ok(()) => tracing::debug!(dir = %dir.display(), id, "project id released"),
        Err(e) => tracing::warn!(dir = %dir.display(), id, error = %e,
            "could not drop the limits of a destroyed VE's project"),
    }
}
