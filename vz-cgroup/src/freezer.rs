//! Suspend and resume through the cgroup freezer: [`Freezer::V1`] is a directory of the v1
//! `freezer` hierarchy (`freezer.state`), [`Freezer::V2`] a cgroup2 directory
//! (`cgroup.freeze`, `cgroup.events`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{CgroupError, Result};
use crate::knob;

/// How long [`Freezer::freeze`] waits for every task to stop.
const FREEZE_WAIT: Duration = Duration::from_secs(10);

/// The freezer of a VE's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freezer {
    /// A directory of the cgroup v1 `freezer` hierarchy, e.g.
    /// `/sys/fs/cgroup/freezer/<parent>/<CTID>`.
    V1(PathBuf),
    /// A cgroup2 directory, e.g. `/sys/fs/cgroup/<parent>/<CTID>`.
    V2(PathBuf),
}

/// The state of a [`Freezer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    /// Every task runs.
    Thawed,
    /// Freezing is asked but some task has not stopped yet.
    Freezing,
    /// Every task is stopped.
    Frozen,
}

impl Freezer {
    /// The cgroup directory.
    pub fn dir(&self) -> &Path {
        match self {
            Freezer::V1(dir) | Freezer::V2(dir) => dir,
        }
    }

    /// The state now.
    ///
    /// # Errors
    /// [`CgroupError::Io`] when the control file cannot be read (no such cgroup).
    pub fn state(&self) -> Result<FreezerState> {
        match self {
            Freezer::V1(dir) => {
                let path = dir.join("freezer.state");
                let text = knob::read(&path)?;
                Ok(match text.trim() {
                    "FROZEN" => FreezerState::Frozen,
                    "FREEZING" => FreezerState::Freezing,
                    _ => FreezerState::Thawed,
                })
            }
            Freezer::V2(dir) => {
                let asked = knob::read(&dir.join("cgroup.freeze"))?.trim() == "1";
                let events = knob::read(&dir.join("cgroup.events"))?;
                let frozen = events.lines().any(|l| l.trim() == "frozen 1");
                Ok(match (asked, frozen) {
                    (true, true) => FreezerState::Frozen,
                    (true, false) => FreezerState::Freezing,
                    (false, _) => FreezerState::Thawed,
                })
            }
        }
    }

    /// Freezes every task of the cgroup (and its sub-cgroups) and waits until all are
    /// stopped. A frozen cgroup stays frozen.
    ///
    /// # Errors
    /// [`CgroupError::Io`] or [`CgroupError::Write`] on the control files;
    /// [`CgroupError::FreezeTimeout`] when a task did not stop in 10 s (the cgroup is thawed
    /// again then).
    ///
    /// # Privileges
    /// Write access to the cgroup (root).
    pub fn freeze(&self) -> Result<()> {
        self.freeze_within(FREEZE_WAIT)
    }

    /// [`Freezer::freeze`], waiting at most `limit` for the tasks to stop.
    ///
    /// # Errors
    /// Those of [`Freezer::freeze`], with `limit` for its 10 s.
    pub fn freeze_within(&self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        self.write_state(true)?;
        loop {
            let state = self.state()?;
            if state == FreezerState::Frozen {
                tracing::debug!(cgroup = %self.dir().display(), ms = start.elapsed().as_millis(), "frozen");
                return Ok(());
            }
            if start.elapsed() > limit {
                let _ = self.thaw();
                return Err(CgroupError::FreezeTimeout {
                    path: self.dir().to_owned(),
                    state: format!("{state:?}"),
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Lets every task of the cgroup run again.
    ///
    /// # Errors
    /// [`CgroupError::Write`] on the control file.
    ///
    /// # Privileges
    /// Write access to the cgroup (root).
    pub fn thaw(&self) -> Result<()> {
        self.write_state(false)
    }

    fn write_state(&self, frozen: bool) -> Result<()> {
        let (path, value) = match self {
            Freezer::V1(dir) => {
                (dir.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" })
            }
            Freezer::V2(dir) => (dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
        };
        knob::write(&path, value)
    }
}
