//! A VE's disk limits (DISKSPACE, DISKINODES, QUOTATIME, QUOTAUGIDLIMIT) as `vzctl set`
//! changes them: parsed with vz-quota's own types, put into effect on the private area
//! (online growth of a mounted image, offline resize of a stopped one), saved in OpenVZ's form.

use vz_quota::{DiskInodes, DiskSpace, PrivateArea, UNLIMITED};

use crate::error::{CtlError, Result};
use crate::output::say;
use crate::ve::Ve;

/// The disk options of one `vzctl set`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiskChanges {
    /// `--diskspace soft[:hard]`, in KB.
    pub space: Option<DiskSpace>,
    /// `--diskinodes soft[:hard]`.
    pub inodes: Option<DiskInodes>,
    /// `--quotatime seconds`.
    pub quota_time: Option<u64>,
    /// `--quotaugidlimit N`.
    pub ugid_limit: Option<u64>,
}

impl DiskChanges {
    /// Parses one disk option.
    ///
    /// # Errors
    /// `Bad parameter for --<option>: <value>` (exit 21).
    pub fn parse_option(&mut self, option: &str, value: &str) -> Result<()> {
        let bad = |reason: String| CtlError::BadParameter {
            option: option.to_owned(),
            value: value.to_owned(),
            reason,
        };
        let number = || value.parse::<u64>().map_err(|e| bad(e.to_string()));
        match option {
            "diskspace" => self.space = Some(value.parse().map_err(|e| bad(format!("{e}")))?),
            "diskinodes" => self.inodes = Some(value.parse().map_err(|e| bad(format!("{e}")))?),
            "quotatime" => self.quota_time = Some(number()?),
            "quotaugidlimit" => self.ugid_limit = Some(number()?),
            _ => return Err(bad("not a disk option".to_owned())),
        }
        Ok(())
    }

    /// QUOTATIME and QUOTAUGIDLIMIT as CTID.conf sets them (empty values are unset).
    ///
    /// # Errors
    /// A bad value, naming the key's option (exit 21).
    pub fn from_config(ve: &Ve) -> Result<DiskChanges> {
        let mut changes = DiskChanges::default();
        for (key, option) in [("QUOTATIME", "quotatime"), ("QUOTAUGIDLIMIT", "quotaugidlimit")] {
            if let Some(value) = ve.get(key).map(str::trim).filter(|v| !v.is_empty()) {
                changes.parse_option(option, value)?;
            }
        }
        Ok(changes)
    }

    /// Puts QUOTATIME and QUOTAUGIDLIMIT into the unmounted `area` before it is mounted, as
    /// OpenVZ hands CTID.conf's values to `vzquota on` at every mount.
    ///
    /// # Errors
    /// [`CtlError::Mount`] when the area's record cannot be written.
    pub fn sync_unmounted(&self, area: &PrivateArea) -> Result<()> {
        if let Some(seconds) = self.quota_time {
            area.set_quota_time(seconds).map_err(CtlError::Mount)?;
        }
        if let Some(limit) = self.ugid_limit {
            area.set_ugid_limit(limit).map_err(CtlError::Mount)?;
        }
        Ok(())
    }

    /// Whether no disk option was given.
    pub fn is_empty(&self) -> bool {
        *self == DiskChanges::default()
    }

    /// The CTID.conf keys and values to save.
    pub fn saved(&self) -> Vec<(&'static str, String)> {
        let mut saved = Vec::new();
        if let Some(space) = self.space {
            saved.push(("DISKSPACE", space.to_string()));
        }
        if let Some(inodes) = self.inodes {
            saved.push(("DISKINODES", inodes.to_string()));
        }
        if let Some(seconds) = self.quota_time {
            saved.push(("QUOTATIME", seconds.to_string()));
        }
        if let Some(limit) = self.ugid_limit {
            saved.push(("QUOTAUGIDLIMIT", limit.to_string()));
        }
        saved
    }

    /// Puts the changes into effect on the VE's private area; `running` VEs grow online.
    ///
    /// # Errors
    /// [`CtlError::DiskLimits`] naming the reason (a limit below usage, shrinking a mounted
    /// image, online growth without CAP_SYS_RESOURCE…).
    pub fn apply(&self, ve: &Ve, running: bool) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let area = PrivateArea::open(&ve.private()?).map_err(CtlError::DiskLimits)?;
        if self.space.is_some() || self.inodes.is_some() {
            let (space, inodes) = self.limits_with_current(ve, &area)?;
            area.set_limits(&ve.root()?, space, inodes, running).map_err(CtlError::DiskLimits)?;
            warn_unenforced(&area);
        }
        if let Some(seconds) = self.quota_time {
            area.set_quota_time(seconds).map_err(CtlError::DiskLimits)?;
        }
        if let Some(limit) = self.ugid_limit {
            area.set_ugid_limit(limit).map_err(CtlError::DiskLimits)?;
            if running {
                say("WARNING: QUOTAUGIDLIMIT takes effect when the container is restarted");
            }
        }
        Ok(())
    }

    /// The new limits, completed by the current ones for what was not given (the area's
    /// record, else CTID.conf; inodes unlimited when neither knows).
    fn limits_with_current(&self, ve: &Ve, area: &PrivateArea) -> Result<(DiskSpace, DiskInodes)> {
        let (recorded_space, recorded_inodes) = area.limits().map_err(CtlError::DiskLimits)?;
        let space = match self.space.or(recorded_space) {
            Some(space) => space,
            None => configured(ve, "DISKSPACE")?
                .ok_or(CtlError::KeyNotSet { key: "DISKSPACE", code: 63 })?,
        };
        let inodes = match self.inodes.or(recorded_inodes) {
            Some(inodes) => inodes,
            None => configured(ve, "DISKINODES")?
                .unwrap_or(DiskInodes { soft: UNLIMITED, hard: UNLIMITED }),
        };
        Ok((space, inodes))
    }
}

/// A limit as CTID.conf has it.
fn configured<T: std::str::FromStr>(ve: &Ve, key: &'static str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    ve.get(key)
        .map(|value| {
            value.parse().map_err(|e: T::Err| CtlError::BadParameter {
                option: key.to_lowercase(),
                value: value.to_owned(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

/// Warns that DISKSPACE and DISKINODES are not enforced for a simfs `area`, and why: a
/// directory's limits are held by the host file system's project quota, where it has one
/// (ext4 with the `project` and `quota` features mounted prjquota, XFS with pquota).
pub fn warn_unenforced(area: &PrivateArea) {
    if area.layout() != vz_quota::Layout::Simfs {
        return;
    }
    // The directory layout's state does not depend on a mount point.
    let reason = match area.first_level_soft(area.private()) {
        Ok(vz_quota::SoftLimits::Enforced) => return,
        Ok(vz_quota::SoftLimits::Reported { reason }) => reason,
        Ok(_) => "unknown state".to_owned(),
        Err(e) => e.to_string(),
    };
    crate::output::warn(format!(
        "Warning: VE_LAYOUT=simfs: DISKSPACE and DISKINODES are not enforced: {reason}; use \
         VE_LAYOUT=ploop, or keep VE_PRIVATE on such a file system"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_save_in_openvz_form() {
        let mut changes = DiskChanges::default();
        assert!(changes.is_empty());
        changes.parse_option("diskspace", "2G:2.2G").unwrap();
        changes.parse_option("diskinodes", "131072:144179").unwrap();
        changes.parse_option("quotatime", "600").unwrap();
        assert_eq!(
            changes.saved(),
            [
                ("DISKSPACE", "2097152:2306867".to_owned()),
                ("DISKINODES", "131072:144179".to_owned()),
                ("QUOTATIME", "600".to_owned())
            ]
        );
    }

    #[test]
    fn bad_values_name_the_option() {
        let mut changes = DiskChanges::default();
        let err = changes.parse_option("diskspace", "lots").unwrap_err();
        assert_eq!(err.exit_code(), 21);
        assert!(err.to_string().starts_with("Bad parameter for --diskspace: lots"), "{err}");
        assert!(changes.parse_option("quotatime", "-1").is_err());
    }
}
