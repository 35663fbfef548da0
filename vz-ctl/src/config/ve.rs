//! `VeConfig`: a CT's `CTID.conf` read over the defaults of `vz.conf` (reference §1.1: CT
//! values override vz.conf), with typed accessors for the keys vzctl acts on.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, Result};
use super::file::ConfigFile;
use super::global::{GlobalConfig, expand_veid};

/// `STOP_TIMEOUT` when neither `CTID.conf` nor `vz.conf` sets it (seconds).
pub const DEFAULT_STOP_TIMEOUT: u64 = 120;

/// A CT's configuration: its own file, and vz.conf's values as defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeConfig {
    path: PathBuf,
    file: ConfigFile,
    defaults: ConfigFile,
}

impl VeConfig {
    /// The path of `CTID.conf`: `<VE_CONF_DIR>/<ctid>.conf`.
    pub fn path_for(global: &GlobalConfig, ctid: u32) -> PathBuf {
        global.conf_dir().join(format!("{ctid}.conf"))
    }

    /// Loads `CTID.conf`; `None` when the file does not exist.
    ///
    /// # Errors
    /// [`ConfigError::Io`] when it exists but cannot be read.
    pub fn load(global: &GlobalConfig, ctid: u32) -> Result<Option<Self>> {
        let path = Self::path_for(global, ctid);
        match ConfigFile::load(&path) {
            Ok(file) => Ok(Some(Self::new(global, path, file))),
            Err(ConfigError::Missing { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// A CT configuration that will be saved at `path` (e.g. a sample's text plus
    /// `vzctl create`'s options), with `global`'s values as defaults.
    pub fn new(global: &GlobalConfig, path: PathBuf, file: ConfigFile) -> Self {
        VeConfig { path, file, defaults: global.file().clone() }
    }

    /// The value of `key`: from `CTID.conf` if it has the key, else from vz.conf.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.file.get(key).or_else(|| self.defaults.get(key))
    }

    /// `CTID.conf` alone (what `--save` edits).
    pub fn file(&self) -> &ConfigFile {
        &self.file
    }

    /// `CTID.conf` alone, for editing; [`save`](Self::save) writes it.
    pub fn file_mut(&mut self) -> &mut ConfigFile {
        &mut self.file
    }

    /// Where `CTID.conf` is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `CTID.conf` atomically (see [`ConfigFile::write_atomic`]).
    ///
    /// # Errors
    /// [`ConfigError::Io`] naming the step and path.
    pub fn save(&self) -> Result<()> {
        self.file.write_atomic(&self.path)
    }

    fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.trim().is_empty())
    }

    fn own_non_empty(&self, key: &str) -> Option<&str> {
        self.file.get(key).filter(|v| !v.trim().is_empty())
    }

    /// `VE_ROOT` with `$VEID` expanded.
    pub fn ve_root(&self, ctid: u32) -> Option<PathBuf> {
        self.non_empty("VE_ROOT").map(|v| PathBuf::from(expand_veid(v, ctid)))
    }

    /// `VE_PRIVATE` with `$VEID` expanded.
    pub fn ve_private(&self, ctid: u32) -> Option<PathBuf> {
        self.non_empty("VE_PRIVATE").map(|v| PathBuf::from(expand_veid(v, ctid)))
    }

    /// `HOSTNAME`.
    pub fn hostname(&self) -> Option<&str> {
        self.non_empty("HOSTNAME")
    }

    /// `OSTEMPLATE` (the CT's own; vz.conf's `DEF_OSTEMPLATE` is a different key).
    pub fn ostemplate(&self) -> Option<&str> {
        self.non_empty("OSTEMPLATE")
    }

    /// `NAME`, from `CTID.conf` only: a name in vz.conf would name every CT.
    pub fn name(&self) -> Option<&str> {
        self.own_non_empty("NAME")
    }

    /// `DESCRIPTION`, from `CTID.conf` only.
    pub fn description(&self) -> Option<&str> {
        self.own_non_empty("DESCRIPTION")
    }

    /// `ONBOOT`: `Some(yes/no)`, `None` when unset or invalid (logged).
    pub fn onboot(&self) -> Option<bool> {
        self.yes_no("ONBOOT")
    }

    /// `DISABLED=yes` forbids `start` without `--force`; unset or invalid means no.
    pub fn disabled(&self) -> bool {
        self.yes_no("DISABLED").unwrap_or(false)
    }

    /// `STOP_TIMEOUT` in seconds: CT, then vz.conf, then 120; an invalid value is logged
    /// and skipped.
    pub fn stop_timeout(&self) -> u64 {
        let Some(value) = self.non_empty("STOP_TIMEOUT") else { return DEFAULT_STOP_TIMEOUT };
        match value.trim().parse() {
            Ok(seconds) => seconds,
            Err(_) => {
                self.skipped("STOP_TIMEOUT", value, "expected a number of seconds");
                DEFAULT_STOP_TIMEOUT
            }
        }
    }

    /// `IP_ADDRESS`, split on whitespace (`ip[/mask]` each, as written).
    pub fn ip_addresses(&self) -> Vec<String> {
        self.list("IP_ADDRESS")
    }

    /// `NAMESERVER`, split on whitespace (may be the single word `inherit`).
    pub fn nameservers(&self) -> Vec<String> {
        self.list("NAMESERVER")
    }

    /// `SEARCHDOMAIN`, split on whitespace (may be the single word `inherit`).
    pub fn searchdomains(&self) -> Vec<String> {
        self.list("SEARCHDOMAIN")
    }

    /// `CAPABILITY` as written (`NAME:on|off …`).
    pub fn capability(&self) -> Option<&str> {
        self.non_empty("CAPABILITY")
    }

    /// `VE_LAYOUT` as written (`simfs`, `ploop[:mode]`).
    pub fn layout(&self) -> Option<&str> {
        self.non_empty("VE_LAYOUT")
    }

    fn list(&self, key: &str) -> Vec<String> {
        self.get(key).map(|v| v.split_whitespace().map(str::to_owned).collect()).unwrap_or_default()
    }

    fn yes_no(&self, key: &str) -> Option<bool> {
        let value = self.non_empty(key)?;
        match parse_yes_no(key, value) {
            Ok(flag) => Some(flag),
            Err(_) => {
                self.skipped(key, value, "expected yes or no");
                None
            }
        }
    }

    fn skipped(&self, key: &str, value: &str, reason: &str) {
        tracing::warn!(path = %self.path.display(), "invalid value {value:?} for {key} skipped: {reason}");
    }
}

/// Parses an OpenVZ yes/no value (`ONBOOT`, `DISABLED`, `DISK_QUOTA`…): exactly `yes` or `no`.
///
/// # Errors
/// [`ConfigError::BadValue`] naming `key` and `value`.
pub fn parse_yes_no(key: &str, value: &str) -> Result<bool> {
    match value.trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(ConfigError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: "expected yes or no".to_owned(),
        }),
    }
}
