//! `vzctl set --applyconfig NAME [--applyconfig_map name]`: the parameters of the sample
//! config `ve-NAME.conf-sample` merged into the VE's (reference §1.5), its beancounters and
//! CPU settings put into effect on a running VE like the matching options.

use super::set::SetOptions;
use crate::config::{ConfigFile, sample_path};
use crate::ctid::set_name;
use crate::error::{CtlError, Result};
use crate::resources::{ResourceChanges, is_resource_option};
use crate::ve::Ve;

/// Keys a sample never changes in an existing VE: OpenVZ's list (names, addresses, paths,
/// template) and the VE's identity and layout, which belong to its private area.
const KEPT: [&str; 12] = [
    "HOSTNAME",
    "IP_ADDRESS",
    "OSTEMPLATE",
    "VE_ROOT",
    "VE_PRIVATE",
    "DESCRIPTION",
    "NAME",
    "ORIGIN_SAMPLE",
    "LOCAL_UID",
    "LOCAL_GID",
    "VE_LAYOUT",
    "VEID",
];

/// What `--applyconfig` adds to a `set`.
#[derive(Debug, Default)]
pub(crate) struct SampleChanges {
    /// Keys of the sample other than beancounters and CPU settings, to save as they are.
    pub saved: Vec<(String, String)>,
    /// The command line's resources with the sample's beancounters and CPU settings added
    /// (the command line wins).
    pub resources: ResourceChanges,
}

fn apply_error(message: String) -> CtlError {
    CtlError::Param { code: 109, message }
}

/// The sample's changes for `opts.params.applyconfig`, or only the command line's resources.
///
/// # Errors
/// 109 when the sample is missing or a value in it is bad.
pub(crate) fn sample_changes(ve: &Ve, opts: &SetOptions) -> Result<SampleChanges> {
    let mut out = SampleChanges { saved: Vec::new(), resources: opts.resources.clone() };
    let Some(name) = &opts.params.applyconfig else { return Ok(out) };
    let path = sample_path(&ve.global, name);
    if !path.exists() {
        return Err(apply_error(format!("Unable to apply config: {} not found", path.display())));
    }
    let sample = ConfigFile::load(&path)
        .map_err(|e| apply_error(format!("Unable to apply config {}: {e}", path.display())))?;
    for (key, value) in sample.keys() {
        if KEPT.contains(&key) || opts.resources.saved.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let option = key.to_ascii_lowercase();
        if is_resource_option(&option) && !matches!(option.as_str(), "ram" | "swap") {
            out.resources.parse_option(&option, value).map_err(|e| {
                apply_error(format!("Unable to apply config {}: {key}: {e}", path.display()))
            })?;
        } else {
            out.saved.push((key.to_owned(), value.to_owned()));
        }
    }
    Ok(out)
}

/// `--applyconfig_map name`: the name link `names/NAME` of the VE's `NAME` again.
///
/// # Errors
/// 131 as `--name`.
pub(crate) fn restore_name_link(ve: &Ve) -> Result<()> {
    if let Some(name) = ve.config()?.name() {
        set_name(&ve.global.names_dir(), name, &ve.config_path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_paths_are_kept() {
        for key in ["LOCAL_UID", "VE_PRIVATE", "IP_ADDRESS", "HOSTNAME", "VE_LAYOUT"] {
            assert!(KEPT.contains(&key), "{key}");
        }
        assert!(!KEPT.contains(&"NUMPROC") && !KEPT.contains(&"ONBOOT"));
    }
}
