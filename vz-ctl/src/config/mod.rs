//! OpenVZ configuration files: the global `vz.conf`, each CT's `CTID.conf`, and the sample
//! configs `ve-<name>.conf-sample` (reference §2), read and written in OpenVZ's syntax.
//!
//! - [`ConfigFile`] is one file, kept line by line so that `--save` edits it in place;
//! - [`GlobalConfig`] is `vz.conf` (`$VZ_CONFIG` or `/etc/vz/vz.conf`) with OpenVZ's
//!   defaults, and the keys of ours for paths OpenVZ hard-codes (`VE_CONF_DIR`,
//!   `VZ_RUN_DIR`, `VE_CGROUP_PARENT`, `VZ_NAMES_DIR`);
//! - [`VeConfig`] is `CTID.conf` read over vz.conf's defaults;
//! - the samples and default vz.conf shipped in `vz-ctl/etc/` are embedded
//!   ([`SAMPLES`], [`DEFAULT_VZ_CONF`]) and installed by [`install_samples`].

mod atomic;
mod error;
mod file;
mod global;
mod samples;
mod syntax;
mod ve;

pub(crate) use atomic::write_atomic;
pub use error::{ConfigError, ConfigWarning, Result, WarningKind};
pub use file::ConfigFile;
pub use global::{DEFAULT_GLOBAL_CONFIG, GlobalConfig, VZ_CONFIG_ENV, default_path, expand_veid};
pub use samples::{
    DEFAULT_VZ_CONF, SAMPLES, install_samples, load_sample, sample_file_name, sample_path,
};
pub use syntax::{accumulates, canonical_key, is_valid_key, last_wins, unrepresentable};
pub use ve::{DEFAULT_STOP_TIMEOUT, VeConfig, parse_yes_no};
