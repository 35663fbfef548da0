//! `GlobalConfig`: the global configuration `vz.conf` (reference §1.1, §2.3) — where it is
//! (`$VZ_CONFIG`, else `/etc/vz/vz.conf`), and its keys with OpenVZ's defaults.

use std::path::{Path, PathBuf};

use super::error::Result;
use super::file::ConfigFile;

/// Where the global configuration is when `VZ_CONFIG` is not set.
pub const DEFAULT_GLOBAL_CONFIG: &str = "/etc/vz/vz.conf";

/// The environment variable naming another global configuration file.
pub const VZ_CONFIG_ENV: &str = "VZ_CONFIG";

/// The global configuration, `vz.conf`: host-wide settings and defaults for every CT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalConfig {
    path: PathBuf,
    file: ConfigFile,
}

impl GlobalConfig {
    /// Loads the file named by `$VZ_CONFIG` if it is set and not empty, else
    /// `/etc/vz/vz.conf`.
    ///
    /// # Errors
    /// [`ConfigError::Missing`](super::ConfigError::Missing) or
    /// [`ConfigError::Io`](super::ConfigError::Io) (vzctl exits 10).
    pub fn load() -> Result<Self> {
        Self::load_from(&default_path())
    }

    /// Loads the global configuration from `path`.
    ///
    /// # Errors
    /// As [`ConfigFile::load`].
    pub fn load_from(path: &Path) -> Result<Self> {
        Ok(Self::new(path.to_path_buf(), ConfigFile::load(path)?))
    }

    /// A global configuration from an already parsed file (it is not read again).
    pub fn new(path: PathBuf, file: ConfigFile) -> Self {
        GlobalConfig { path, file }
    }

    /// The file this configuration was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed file.
    pub fn file(&self) -> &ConfigFile {
        &self.file
    }

    /// The value of `key`, as written.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.file.get(key)
    }

    /// A non-empty value of `key`.
    fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.trim().is_empty())
    }

    fn path_or(&self, key: &str, default: &str) -> PathBuf {
        PathBuf::from(self.non_empty(key).unwrap_or(default))
    }

    /// `VE_CONF_DIR` (ours; OpenVZ hard-codes it): where `CTID.conf` and the samples are.
    /// Default `/etc/vz/conf`.
    pub fn conf_dir(&self) -> PathBuf {
        self.path_or("VE_CONF_DIR", "/etc/vz/conf")
    }

    /// `VZ_NAMES_DIR` (ours): where the CT name symlinks are. Default: `names` beside the
    /// config directory, i.e. `/etc/vz/names`.
    pub fn names_dir(&self) -> PathBuf {
        if let Some(dir) = self.non_empty("VZ_NAMES_DIR") {
            return PathBuf::from(dir);
        }
        let conf = self.conf_dir();
        match conf.parent() {
            Some(parent) => parent.join("names"),
            None => conf.join("names"),
        }
    }

    /// `VZ_RUN_DIR` (ours): runtime records of running VEs. Default `/run/vz`.
    pub fn run_dir(&self) -> PathBuf {
        self.path_or("VZ_RUN_DIR", "/run/vz")
    }

    /// `VE_CGROUP_PARENT` (ours): the cgroup under which each VE's cgroup `<CTID>` is made.
    /// Default `vz`; surrounding slashes are dropped.
    pub fn cgroup_parent(&self) -> String {
        self.non_empty("VE_CGROUP_PARENT").unwrap_or("vz").trim().trim_matches('/').to_owned()
    }

    /// `LOCKDIR`: where `<CTID>.lck` files are. Default `/vz/lock`.
    pub fn lock_dir(&self) -> PathBuf {
        self.path_or("LOCKDIR", "/vz/lock")
    }

    /// `LOCK_WAIT` (ours): seconds a command waits for a CT lock held by a live process
    /// before `Container already locked`; default 10, `0` fails at once as OpenVZ does.
    pub fn lock_wait(&self) -> std::time::Duration {
        let seconds = self.non_empty("LOCK_WAIT").and_then(|v| v.trim().parse::<u64>().ok());
        std::time::Duration::from_secs(seconds.unwrap_or(10))
    }

    /// `DUMPDIR`: where checkpoint dumps `Dump.<CTID>` are. Default `/vz/dump`.
    pub fn dump_dir(&self) -> PathBuf {
        self.path_or("DUMPDIR", "/vz/dump")
    }

    /// `TEMPLATE`: the template directory (caches in `$TEMPLATE/cache`); vzctl create
    /// fails with exit 24 when it is unset.
    pub fn template_dir(&self) -> Option<PathBuf> {
        self.non_empty("TEMPLATE").map(PathBuf::from)
    }

    /// `DEF_OSTEMPLATE`: the OS template of `vzctl create` without `--ostemplate`.
    pub fn def_ostemplate(&self) -> Option<String> {
        self.non_empty("DEF_OSTEMPLATE").map(str::to_owned)
    }

    /// `CONFIGFILE`: the sample (`ve-<name>.conf-sample`) of `vzctl create` without
    /// `--config`.
    pub fn configfile(&self) -> Option<String> {
        self.non_empty("CONFIGFILE").map(str::to_owned)
    }

    /// `VERBOSE`: console log level; 0 when unset or not a number (logged).
    pub fn verbose(&self) -> i32 {
        self.int_or("VERBOSE", 0)
    }

    /// `LOGGING`: whether vzctl logs to [`logfile`](Self::logfile). On unless `no`
    /// (vzctl enables it unless told otherwise).
    pub fn logging(&self) -> bool {
        match self.non_empty("LOGGING") {
            None => true,
            Some(value) => match super::parse_yes_no("LOGGING", value) {
                Ok(on) => on,
                Err(err) => {
                    tracing::warn!(path = %self.path.display(), "{err}, using yes");
                    true
                }
            },
        }
    }

    /// `LOGFILE`: the log file. Default `/var/log/vzctl.log`.
    pub fn logfile(&self) -> PathBuf {
        self.path_or("LOGFILE", "/var/log/vzctl.log")
    }

    /// `LOG_LEVEL`: the log file's level (-1 errors only); 0 when unset or bad (logged).
    pub fn log_level(&self) -> i32 {
        self.int_or("LOG_LEVEL", 0)
    }

    fn int_or(&self, key: &str, default: i32) -> i32 {
        let Some(value) = self.non_empty(key) else { return default };
        match value.trim().parse() {
            Ok(n) => n,
            Err(_) => {
                tracing::warn!(path = %self.path.display(), "invalid value {value:?} for {key} skipped");
                default
            }
        }
    }
}

/// The global configuration's path: `$VZ_CONFIG` if set and not empty, else
/// `/etc/vz/vz.conf`.
pub fn default_path() -> PathBuf {
    path_from_env(std::env::var_os(VZ_CONFIG_ENV))
}

fn path_from_env(value: Option<std::ffi::OsString>) -> PathBuf {
    match value {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_GLOBAL_CONFIG),
    }
}

/// Replaces `$VEID` and `${VEID}` in `template` by `ctid`, as OpenVZ does for `VE_ROOT` and
/// `VE_PRIVATE`. `$VEID` followed by a letter, digit or `_` is another shell variable
/// (`$VEIDX`) and is left alone.
pub fn expand_veid(template: &str, ctid: u32) -> String {
    let id = ctid.to_string();
    let mut out = String::with_capacity(template.len() + id.len());
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("${VEID}") {
            out.push_str(&id);
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("$VEID")
            && !tail.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        {
            out.push_str(&id);
            rest = tail;
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    fn global(text: &str) -> GlobalConfig {
        GlobalConfig::new(PathBuf::from("/test/vz.conf"), ConfigFile::parse(text).0)
    }

    #[test]
    fn empty_config_gives_openvz_defaults() {
        let g = global("");
        assert_eq!(g.conf_dir(), Path::new("/etc/vz/conf"));
        assert_eq!(g.names_dir(), Path::new("/etc/vz/names"));
        assert_eq!(g.run_dir(), Path::new("/run/vz"));
        assert_eq!(g.cgroup_parent(), "vz");
        assert_eq!(g.lock_dir(), Path::new("/vz/lock"));
        assert_eq!(g.dump_dir(), Path::new("/vz/dump"));
        assert_eq!(g.template_dir(), None);
        assert_eq!(g.def_ostemplate(), None);
        assert_eq!(g.configfile(), None);
        assert_eq!((g.verbose(), g.log_level(), g.logging()), (0, 0, true));
        assert_eq!(g.logfile(), Path::new("/var/log/vzctl.log"));
        assert_eq!((g.get("VE_ROOT"), g.get("VE_PRIVATE")), (None, None));
    }

    #[test]
    fn values_override_defaults() {
        let g = global(
            "VE_CONF_DIR=/tmp/t/etc/conf\nVZ_RUN_DIR=/tmp/t/run\nVE_CGROUP_PARENT=\"/vz-test-1/\"\n\
             LOCKDIR=/tmp/t/lock\nDUMPDIR=/tmp/t/dump\nTEMPLATE=/tmp/t/template\n\
             DEF_OSTEMPLATE=\"busybox\"\nCONFIGFILE=\"vswap-256m\" # note\nVERBOSE=2\n\
             LOGGING=no\nLOGFILE=/tmp/t/log\nLOG_LEVEL=-1\nVE_ROOT=/tmp/t/root/$VEID\n\
             VE_PRIVATE=\"/tmp/t/private/${VEID}\"\n",
        );
        assert_eq!(g.conf_dir(), Path::new("/tmp/t/etc/conf"));
        assert_eq!(g.names_dir(), Path::new("/tmp/t/etc/names"));
        assert_eq!(g.run_dir(), Path::new("/tmp/t/run"));
        assert_eq!(g.cgroup_parent(), "vz-test-1");
        assert_eq!(g.lock_dir(), Path::new("/tmp/t/lock"));
        assert_eq!(g.dump_dir(), Path::new("/tmp/t/dump"));
        assert_eq!(g.template_dir(), Some(PathBuf::from("/tmp/t/template")));
        assert_eq!(g.def_ostemplate().as_deref(), Some("busybox"));
        assert_eq!(g.configfile().as_deref(), Some("vswap-256m"));
        assert_eq!((g.verbose(), g.log_level(), g.logging()), (2, -1, false));
        assert_eq!(g.logfile(), Path::new("/tmp/t/log"));
        assert_eq!(g.get("VE_ROOT"), Some("/tmp/t/root/$VEID"));
        assert_eq!(g.get("VE_PRIVATE"), Some("/tmp/t/private/${VEID}"));
    }

    #[test]
    fn names_dir_can_be_set_and_empty_values_mean_default() {
        let g = global("VZ_NAMES_DIR=/n\nLOCKDIR=\"\"\nTEMPLATE=\"\"\n");
        assert_eq!(g.names_dir(), Path::new("/n"));
        assert_eq!(g.lock_dir(), Path::new("/vz/lock"));
        assert_eq!(g.template_dir(), None);
    }

    #[test]
    fn bad_numbers_and_yes_no_fall_back_to_defaults() {
        let g = global("VERBOSE=lots\nLOG_LEVEL=1.5\nLOGGING=maybe\n");
        assert_eq!((g.verbose(), g.log_level(), g.logging()), (0, 0, true));
    }

    #[test]
    fn vz_config_variable_picks_the_file() {
        assert_eq!(path_from_env(None), Path::new("/etc/vz/vz.conf"));
        assert_eq!(path_from_env(Some("".into())), Path::new("/etc/vz/vz.conf"));
        assert_eq!(path_from_env(Some("/tmp/x/vz.conf".into())), Path::new("/tmp/x/vz.conf"));
    }

    #[test]
    fn load_from_reads_or_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vz.conf");
        let err = GlobalConfig::load_from(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { .. }), "{err}");
        std::fs::write(&path, "LOCKDIR=/l\n").unwrap();
        let g = GlobalConfig::load_from(&path).unwrap();
        assert_eq!((g.path(), g.lock_dir()), (path.as_path(), PathBuf::from("/l")));
        assert_eq!(g.file().get("LOCKDIR"), Some("/l"));
    }

    #[test]
    fn veid_expansion() {
        assert_eq!(expand_veid("/vz/root/$VEID", 101), "/vz/root/101");
        assert_eq!(expand_veid("/vz/private/${VEID}", 7), "/vz/private/7");
        assert_eq!(expand_veid("/a/$VEID/b/${VEID}.x/$VEID", 5), "/a/5/b/5.x/5");
        assert_eq!(expand_veid("/a/$VEIDX/$VE_ID/$HOME", 5), "/a/$VEIDX/$VE_ID/$HOME");
        assert_eq!(expand_veid("/a/$VEID_b/$", 5), "/a/$VEID_b/$");
        assert_eq!(expand_veid("/a/$VEID-x", 5), "/a/5-x");
        assert_eq!(expand_veid("/no/var", 5), "/no/var");
        assert_eq!(expand_veid("", 5), "");
    }
}
