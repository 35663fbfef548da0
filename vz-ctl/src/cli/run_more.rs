//! Running the snapshot, compact, convert and quota commands: their options read from the
//! parsed command line (`run.rs` hands them over), the operation called.

use std::path::PathBuf;

use super::defs::{self, Cmd};
use crate::error::{CtlError, Result};
use crate::ops::quotacmd::{self, QuotaCmd};
use crate::ops::snapshot::{self, SnapshotOptions, normalize_uuid};
use crate::output::result;
use crate::ve::Ve;

/// The options of one command, looked up by canonical name.
struct Given<'a> {
    cmd: Cmd,
    given: &'a [(&'static str, Option<String>)],
}

impl Given<'_> {
    fn value(&self, name: &str) -> Option<&str> {
        debug_assert!(
            defs::find(self.cmd, name).is_some_and(|o| o.name == name),
            "--{name} is not an option of vzctl {} in cli/defs.rs",
            self.cmd.name()
        );
        self.given.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.as_deref())
    }

    fn flag(&self, name: &str) -> bool {
        debug_assert!(defs::find(self.cmd, name).is_some_and(|o| o.name == name), "--{name}");
        self.given.iter().any(|(n, _)| *n == name)
    }

    /// `--id`, normalized; required unless `optional`.
    fn id(&self, optional: bool) -> Result<Option<String>> {
        match self.value("id") {
            Some(id) => normalize_uuid(id).map(Some),
            None if optional => Ok(None),
            None => Err(CtlError::MissingArgument(format!(
                "Snapshot id is not specified: vzctl {} CTID --id UUID",
                self.cmd.name()
            ))),
        }
    }
}

/// Runs `cmd` on `ve` with the options `given`.
///
/// # Errors
/// Those of the operation; 21 for a missing `--id` or `--target`.
pub(super) fn run(ve: &Ve, cmd: Cmd, given: &[(&'static str, Option<String>)]) -> Result<()> {
    let g = Given { cmd, given };
    let id = || g.id(false).map(Option::unwrap_or_default);
    match cmd {
        Cmd::Snapshot => snapshot::snapshot(
            ve,
            &SnapshotOptions {
                id: g.id(true)?,
                name: g.value("name").map(str::to_owned),
                description: g.value("description").map(str::to_owned),
                skip_suspend: g.flag("skip-suspend"),
                skip_config: g.flag("skip-config"),
            },
        ),
        Cmd::SnapshotSwitch => {
            let opts = snapshot::switch::SwitchOptions {
                skip_resume: g.flag("skip-resume"),
                must_resume: g.flag("must-resume"),
                skip_config: g.flag("skip-config"),
            };
            snapshot::switch(ve, &id()?, opts)
        }
        Cmd::SnapshotDelete => snapshot::delete(ve, &id()?),
        Cmd::SnapshotMount => {
            let uuid = id()?;
            let target = g.value("target").ok_or_else(|| {
                CtlError::MissingArgument("Mount target is not specified: --target DIR".into())
            })?;
            snapshot::mount(ve, &uuid, &PathBuf::from(target))
        }
        Cmd::SnapshotUmount => snapshot::umount(ve, &id()?),
        Cmd::SnapshotList => {
            if g.flag("list") {
                result(snapshot::list_fields().trim_end());
                return Ok(());
            }
            let opts = snapshot::list::ListOptions {
                no_header: g.flag("no-header"),
                output: g.value("output").map(str::to_owned),
                id: g.id(true)?,
            };
            let text = snapshot::list(ve, &opts)?;
            if !text.is_empty() {
                result(text.trim_end_matches('\n'));
            }
            Ok(())
        }
        Cmd::Compact => crate::ops::compact::compact(ve).map(drop),
        Cmd::Convert => crate::ops::convert::convert(ve, g.value("layout")),
        Cmd::Quotaon => quotacmd::run(ve, QuotaCmd::On),
        Cmd::Quotaoff => quotacmd::run(ve, QuotaCmd::Off),
        Cmd::Quotainit => quotacmd::run(ve, QuotaCmd::Init),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option name read here is a canonical name of the table for its command (the
    /// debug assertions fail otherwise).
    #[test]
    fn every_option_read_is_in_the_table() {
        let none = |cmd| Given { cmd, given: &[] };
        for name in ["name", "description"] {
            assert_eq!(none(Cmd::Snapshot).value(name), None);
        }
        for (cmd, flags) in [
            (Cmd::Snapshot, &["skip-suspend", "skip-config"][..]),
            (Cmd::SnapshotSwitch, &["skip-resume", "must-resume", "skip-config"]),
            (Cmd::SnapshotList, &["list", "no-header"]),
        ] {
            for flag in flags {
                assert!(!none(cmd).flag(flag));
            }
        }
        assert_eq!(none(Cmd::SnapshotMount).value("target"), None);
        assert_eq!(none(Cmd::SnapshotList).value("output"), None);
        assert_eq!(none(Cmd::Convert).value("layout"), None);
        assert_eq!(none(Cmd::SnapshotDelete).id(false).unwrap_err().exit_code(), 21);
        let bad = [("id", Some("nope".to_owned()))];
        let g = Given { cmd: Cmd::SnapshotSwitch, given: &bad };
        assert_eq!(g.id(false).unwrap_err().exit_code(), 21);
    }
}
