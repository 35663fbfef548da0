//! The record of an area's limits and grace timers, kept beside the area in OpenVZ's
//! `KEY="value"` syntax: the soft limits and QUOTATIME, which no filesystem holds, and for the
//! directory layout the hard limits too.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{QuotaError, Result};
use crate::limit::{DiskInodes, DiskSpace};

/// QUOTATIME when unset: 3 days (vzctl's `QUOTA_EXPTIME`).
pub const DEFAULT_QUOTATIME: u64 = 259_200;

/// Limits and timers of one area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) space: Option<DiskSpace>,
    pub(crate) inodes: Option<DiskInodes>,
    /// Grace period, seconds.
    pub(crate) quota_time: u64,
    /// QUOTAUGIDLIMIT; 0 = second level off.
    pub(crate) ugid_limit: u64,
    /// Unix time at which block usage went over the soft limit.
    pub(crate) blocks_over_since: Option<u64>,
    /// Unix time at which inode usage went over the soft limit.
    pub(crate) inodes_over_since: Option<u64>,
    /// The directory layout's project id on the host file system, where that file system
    /// enforces project quota (allocated once, unique on it; see `hostproj`).
    pub(crate) project: Option<u32>,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            space: None,
            inodes: None,
            quota_time: DEFAULT_QUOTATIME,
            ugid_limit: 0,
            blocks_over_since: None,
            inodes_over_since: None,
            project: None,
        }
    }
}

impl Record {
    /// Reads the record at `path`; a missing file is an empty record.
    pub(crate) fn load(path: &Path) -> Result<Record> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Record::default()),
            Err(e) => return Err(QuotaError::io("read quota record", path, e)),
        };
        Record::parse(&text).map_err(|line| QuotaError::BadRecord { path: path.to_owned(), line })
    }

    fn parse(text: &str) -> Result<Record, String> {
        let mut record = Record::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let bad = || line.to_owned();
            let (key, value) = line.split_once('=').ok_or_else(bad)?;
            let value = value.trim_matches('"');
            let number = || value.parse::<u64>().map_err(|_| bad());
            match key {
                "DISKSPACE" => record.space = Some(value.parse().map_err(|_| bad())?),
                "DISKINODES" => record.inodes = Some(value.parse().map_err(|_| bad())?),
                "QUOTATIME" => record.quota_time = number()?,
                "QUOTAUGIDLIMIT" => record.ugid_limit = number()?,
                "BLOCKS_OVER_SINCE" => record.blocks_over_since = Some(number()?),
                "INODES_OVER_SINCE" => record.inodes_over_since = Some(number()?),
                "PROJECT_ID" => {
                    record.project = Some(value.parse::<u32>().map_err(|_| bad())?);
                }
                _ => tracing::debug!(line, "unknown key in quota record, ignored"),
            }
        }
        Ok(record)
    }

    fn render(&self) -> String {
        let mut out =
            String::from("# vz-quota record: limits and grace timers of a private area\n");
        if let Some(space) = self.space {
            let _ = writeln!(out, "DISKSPACE=\"{space}\"");
        }
        if let Some(inodes) = self.inodes {
            let _ = writeln!(out, "DISKINODES=\"{inodes}\"");
        }
        let _ = writeln!(out, "QUOTATIME=\"{}\"", self.quota_time);
        let _ = writeln!(out, "QUOTAUGIDLIMIT=\"{}\"", self.ugid_limit);
        if let Some(t) = self.blocks_over_since {
            let _ = writeln!(out, "BLOCKS_OVER_SINCE=\"{t}\"");
        }
        if let Some(t) = self.inodes_over_since {
            let _ = writeln!(out, "INODES_OVER_SINCE=\"{t}\"");
        }
        if let Some(id) = self.project {
            let _ = writeln!(out, "PROJECT_ID=\"{id}\"");
        }
        out
    }

    /// Writes the record atomically (temporary file + rename).
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, self.render())
            .map_err(|e| QuotaError::io("write quota record", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| QuotaError::io("rename quota record", path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let record = Record {
            space: Some(DiskSpace { soft_kb: 10, hard_kb: 20 }),
            inodes: Some(DiskInodes { soft: 1, hard: 2 }),
            quota_time: 60,
            ugid_limit: 100,
            blocks_over_since: Some(1_700_000_000),
            inodes_over_since: None,
            project: Some(100_007),
        };
        assert_eq!(Record::parse(&record.render()).unwrap(), record);
        assert_eq!(Record::parse("").unwrap(), Record::default());
    }

    #[test]
    fn bad_lines_are_reported() {
        assert_eq!(Record::parse("QUOTATIME=\"soon\"").unwrap_err(), "QUOTATIME=\"soon\"");
        assert_eq!(Record::parse("garbage").unwrap_err(), "garbage");
    }

    #[test]
    fn records_are_saved_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quota.101");
        assert_eq!(Record::load(&path).unwrap(), Record::default());
        let record = Record { ugid_limit: 5, ..Record::default() };
        record.save(&path).unwrap();
        assert_eq!(Record::load(&path).unwrap(), record);
    }
}
