//! `VeConfig`: a CT's `CTID.conf` read over the defaults of `vz.conf` (reference §1.1: CT
//! values override vz.conf), with typed accessors for the keys vzctl acts on.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, Result};
use super::file::ConfigFile;
use super::global::GlobalConfig;

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

    /// `STOP_TIMEOUT` in seconds: CT, then vz.conf, then 120; 0 means the default (OpenVZ's
    /// `--stop-timeout 0`); an invalid value is logged and skipped.
    pub fn stop_timeout(&self) -> u64 {
        let Some(value) = self.non_empty("STOP_TIMEOUT") else { return DEFAULT_STOP_TIMEOUT };
        match value.trim().parse() {
            Ok(0) => DEFAULT_STOP_TIMEOUT,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::expand_veid;

    const VZ_CONF: &str = "VE_ROOT=/vz/root/$VEID\nVE_PRIVATE=\"/vz/private/${VEID}\"\n\
        STOP_TIMEOUT=30\nNAMESERVER=inherit\nVE_LAYOUT=simfs\nNAME=global\nDISK_QUOTA=yes\n";

    fn global_in(dir: &Path) -> GlobalConfig {
        let text = format!("{VZ_CONF}VE_CONF_DIR={}\n", dir.display());
        GlobalConfig::new(dir.join("vz.conf"), ConfigFile::parse(&text).0)
    }

    fn ve(global: &GlobalConfig, text: &str) -> VeConfig {
        VeConfig::new(global, VeConfig::path_for(global, 101), ConfigFile::parse(text).0)
    }

    #[test]
    fn falls_back_to_vz_conf() {
        let g = global_in(Path::new("/c"));
        let v = ve(&g, "HOSTNAME=\"ve101\"\nVE_ROOT=\"/other/$VEID\"\n");
        assert_eq!(v.get("HOSTNAME"), Some("ve101"));
        assert_eq!(v.get("DISK_QUOTA"), Some("yes"), "from vz.conf");
        assert_eq!(
            v.get("VE_ROOT").map(|r| expand_veid(r, 101)).as_deref(),
            Some("/other/101"),
            "CT overrides"
        );
        assert_eq!(
            v.get("VE_PRIVATE").map(|r| expand_veid(r, 101)).as_deref(),
            Some("/vz/private/101")
        );
        assert_eq!(v.stop_timeout(), 30);
        assert_eq!(v.nameservers(), ["inherit"]);
        assert_eq!(v.get("VE_LAYOUT"), Some("simfs"));
        assert_eq!(v.name(), None, "NAME is never taken from vz.conf");
        assert_eq!(v.file().get("DISK_QUOTA"), None, "the CT file alone");
        assert_eq!(v.path(), Path::new("/c/101.conf"));
    }

    #[test]
    fn typed_accessors() {
        let g = GlobalConfig::new(PathBuf::from("/vz.conf"), ConfigFile::new());
        let v = ve(
            &g,
            "HOSTNAME=\"h\"\nOSTEMPLATE=busybox\nNAME=web\nDESCRIPTION=\"a b\"\nONBOOT=yes\n\
             DISABLED=no\nSTOP_TIMEOUT=5\nIP_ADDRESS=\"10.1.0.1  10.1.0.2/24\"\n\
             NAMESERVER=1.1.1.1\nNAMESERVER=8.8.8.8\nSEARCHDOMAIN=\"a.example b.example\"\n\
             CAPABILITY=\"SYS_TIME:on\"\nVE_LAYOUT=simfs\n",
        );
        assert_eq!((v.hostname(), v.ostemplate()), (Some("h"), Some("busybox")));
        assert_eq!((v.name(), v.description()), (Some("web"), Some("a b")));
        assert_eq!((v.onboot(), v.disabled(), v.stop_timeout()), (Some(true), false, 5));
        assert_eq!(v.ip_addresses(), ["10.1.0.1", "10.1.0.2/24"]);
        assert_eq!(v.nameservers(), ["1.1.1.1", "8.8.8.8"]);
        assert_eq!(v.searchdomains(), ["a.example", "b.example"]);
        assert_eq!((v.get("CAPABILITY"), v.get("VE_LAYOUT")), (Some("SYS_TIME:on"), Some("simfs")));
    }

    #[test]
    fn unset_empty_and_invalid_values() {
        let g = GlobalConfig::new(PathBuf::from("/vz.conf"), ConfigFile::new());
        let v = ve(&g, "HOSTNAME=\"\"\nONBOOT=maybe\nDISABLED=1\nSTOP_TIMEOUT=-3\n");
        assert_eq!((v.hostname(), v.ostemplate(), v.get("VE_ROOT")), (None, None, None));
        assert_eq!((v.onboot(), v.disabled()), (None, false));
        assert_eq!(v.stop_timeout(), DEFAULT_STOP_TIMEOUT);
        assert_eq!(ve(&g, "STOP_TIMEOUT=0\n").stop_timeout(), DEFAULT_STOP_TIMEOUT);
        assert!(v.ip_addresses().is_empty() && v.nameservers().is_empty());
        assert!(ve(&g, "DISABLED=yes\n").disabled());
    }

    #[test]
    fn load_missing_is_none_and_save_edits_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let g = global_in(dir.path());
        assert_eq!(VeConfig::load(&g, 101).unwrap(), None);
        let path = dir.path().join("101.conf");
        std::fs::write(&path, "# mine\nHOSTNAME=\"a\"\n\nONBOOT=\"no\"\n").unwrap();
        let mut v = VeConfig::load(&g, 101).unwrap().unwrap();
        v.file_mut().set("ONBOOT", "yes");
        v.file_mut().set("DESCRIPTION", "web server");
        v.save().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# mine\nHOSTNAME=\"a\"\n\nONBOOT=\"yes\"\nDESCRIPTION=\"web server\"\n"
        );
        let back = VeConfig::load(&g, 101).unwrap().unwrap();
        assert_eq!((back.onboot(), back.description()), (Some(true), Some("web server")));
    }

    #[test]
    fn unreadable_config_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let g = global_in(dir.path());
        std::fs::create_dir(dir.path().join("102.conf")).unwrap();
        let err = VeConfig::load(&g, 102).unwrap_err();
        assert!(matches!(err, ConfigError::Io { op: "read", .. }), "{err}");
    }

    #[test]
    fn yes_no() {
        assert!(parse_yes_no("ONBOOT", "yes").unwrap());
        assert!(!parse_yes_no("ONBOOT", "no").unwrap());
        let err = parse_yes_no("ONBOOT", "Yes").unwrap_err();
        assert_eq!(err.to_string(), "invalid value \"Yes\" for ONBOOT: expected yes or no");
    }
}
