//! The sample CT configurations and the default `vz.conf` that vz ships (`vz-ctl/etc/`,
//! embedded at build time; values from reference §2.4), and installing them into a config
//! directory without touching files a user already has.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, IoContext, Result};
use super::file::ConfigFile;
use super::global::GlobalConfig;

/// The default global configuration, `etc/vz.conf`.
pub const DEFAULT_VZ_CONF: &str = include_str!("../../etc/vz.conf");

/// The shipped samples: (name for `--config`, text of `ve-<name>.conf-sample`).
pub const SAMPLES: &[(&str, &str)] = &[
    ("basic", include_str!("../../etc/conf/ve-basic.conf-sample")),
    ("light", include_str!("../../etc/conf/ve-light.conf-sample")),
    ("unlimited", include_str!("../../etc/conf/ve-unlimited.conf-sample")),
    ("vswap-256m", include_str!("../../etc/conf/ve-vswap-256m.conf-sample")),
    ("vswap-512m", include_str!("../../etc/conf/ve-vswap-512m.conf-sample")),
    ("vswap-1g", include_str!("../../etc/conf/ve-vswap-1g.conf-sample")),
    ("vswap-1024m", include_str!("../../etc/conf/ve-vswap-1024m.conf-sample")),
    ("vswap-2g", include_str!("../../etc/conf/ve-vswap-2g.conf-sample")),
    ("vswap-4g", include_str!("../../etc/conf/ve-vswap-4g.conf-sample")),
];

/// The file name of sample `name`: `ve-<name>.conf-sample`.
pub fn sample_file_name(name: &str) -> String {
    format!("ve-{name}.conf-sample")
}

/// Where sample `name` is: `<VE_CONF_DIR>/ve-<name>.conf-sample`.
pub fn sample_path(global: &GlobalConfig, name: &str) -> PathBuf {
    global.conf_dir().join(sample_file_name(name))
}

/// Reads sample `name` from the config directory (what `vzctl create --config name` copies).
///
/// # Errors
/// [`ConfigError::Missing`] when there is no such sample (vzctl exits 82),
/// [`ConfigError::BadValue`] for a name with `/` (it would leave the directory),
/// [`ConfigError::Io`] when it cannot be read.
pub fn load_sample(global: &GlobalConfig, name: &str) -> Result<ConfigFile> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(ConfigError::BadValue {
            key: "CONFIGFILE".to_owned(),
            value: name.to_owned(),
            reason: "a sample name is a plain file name part".to_owned(),
        });
    }
    ConfigFile::load(&sample_path(global, name))
}

/// Writes every shipped sample into `conf_dir` (created if missing) unless a file of that
/// name is already there: a user's edited sample is never overwritten. Each sample appears
/// whole or not at all (written to a temporary file, then hard-linked into place).
///
/// # Errors
/// [`ConfigError::Io`] naming the step and path.
pub fn install_samples(conf_dir: &Path) -> Result<()> {
    fs::create_dir_all(conf_dir).op("create directory", conf_dir)?;
    for (name, text) in SAMPLES {
        install_if_missing(&conf_dir.join(sample_file_name(name)), text)?;
    }
    Ok(())
}

/// Writes `text` to `path` if nothing is there; returns whether it wrote.
fn install_if_missing(path: &Path, text: &str) -> Result<bool> {
    if fs::symlink_metadata(path).is_ok() {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".vz-sample")
        .tempfile_in(dir)
        .op("create temporary file in", dir)?;
    tmp.write_all(text.as_bytes()).op("write", tmp.path())?;
    tmp.as_file().sync_all().op("fsync", tmp.path())?;
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    fs::set_permissions(tmp.path(), perms).op("chmod", tmp.path())?;
    match fs::hard_link(tmp.path(), path) {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "installed sample configuration");
            Ok(true)
        }
        // Someone else installed it meanwhile: theirs stays.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).op("link", path),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn sample(name: &str) -> ConfigFile {
        let text = SAMPLES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).unwrap();
        let (file, warnings) = ConfigFile::parse(text);
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        file
    }

    fn pairs(file: &ConfigFile) -> Vec<(String, String)> {
        file.keys().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    #[test]
    fn vswap_samples_have_the_reference_values() {
        for (name, ram, swap) in [
            ("vswap-256m", "0:256M", "0:512M"),
            ("vswap-512m", "0:512M", "0:1G"),
            ("vswap-1g", "0:1G", "0:2G"),
            ("vswap-1024m", "0:1G", "0:2G"),
            ("vswap-2g", "0:2G", "0:4G"),
            ("vswap-4g", "0:4G", "0:8G"),
        ] {
            let expected: Vec<(String, String)> = [
                ("PHYSPAGES", ram),
                ("SWAPPAGES", swap),
                ("DISKSPACE", "2G:2.2G"),
                ("DISKINODES", "131072:144179"),
                ("QUOTATIME", "0"),
                ("CPUUNITS", "1000"),
                ("NETFILTER", "stateless"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
            assert_eq!(pairs(&sample(name)), expected, "{name}");
        }
        assert_eq!(pairs(&sample("vswap-1g")), pairs(&sample("vswap-1024m")));
    }

    #[test]
    fn basic_light_unlimited_samples() {
        let basic = sample("basic");
        assert_eq!(basic.keys().count(), 26);
        assert_eq!(basic.get("KMEMSIZE"), Some("14372700:14790164"));
        assert_eq!(basic.get("NUMPROC"), Some("240:240"));
        assert_eq!(basic.get("DCACHESIZE"), Some("3409920:3624960"));
        assert_eq!(basic.get("NUMIPTENT"), Some("128:128"));
        assert_eq!(basic.get("DISKINODES"), Some("131072:144179"));
        let light = sample("light");
        assert_eq!(light.keys().count(), 26);
        assert_eq!(light.get("PRIVVMPAGES"), Some("7680:8448"));
        assert_eq!(light.get("DISKSPACE"), Some("1G:1.1G"));
        assert_eq!(light.get("CPUUNITS"), Some("250"));
        let unlimited = sample("unlimited");
        assert_eq!(unlimited.get("KMEMSIZE"), Some("unlimited"));
        assert_eq!(unlimited.get("NUMTCPSOCK"), Some("1801439850948198"));
        assert_eq!(unlimited.get("TCPSNDBUF"), Some("4611686018427387903:9223372036854775807"));
        assert_eq!(unlimited.get("PHYSPAGES"), Some("0:unlimited"));
        assert_eq!(unlimited.get("DISK_QUOTA"), Some("no"));
        assert_eq!(unlimited.get("DISKSPACE"), None);
    }

    #[test]
    fn default_vz_conf_has_our_defaults() {
        let (file, warnings) = ConfigFile::parse(DEFAULT_VZ_CONF);
        assert!(warnings.is_empty(), "{warnings:?}");
        let g = GlobalConfig::new(PathBuf::from("/etc/vz/vz.conf"), file);
        assert_eq!(g.get("VIRTUOZZO"), Some("yes"));
        assert_eq!(g.lock_dir(), Path::new("/vz/lock"));
        assert_eq!(g.dump_dir(), Path::new("/vz/dump"));
        assert_eq!(g.template_dir(), Some(PathBuf::from("/vz/template")));
        assert_eq!(g.get("VE_ROOT"), Some("/vz/root/$VEID"));
        assert_eq!(g.get("VE_PRIVATE"), Some("/vz/private/$VEID"));
        assert_eq!(g.configfile().as_deref(), Some("vswap-256m"));
        assert_eq!(g.def_ostemplate().as_deref(), Some("busybox"));
        assert_eq!(g.get("VE_LAYOUT"), Some("ploop"));
        assert_eq!((g.logging(), g.log_level(), g.verbose()), (true, 0, 0));
        assert_eq!(g.logfile(), Path::new("/var/log/vzctl.log"));
        assert_eq!(g.get("NAMESERVER"), Some("inherit"));
        assert_eq!((g.get("IPV6"), g.get("DISK_QUOTA")), (Some("yes"), Some("yes")));
        assert_eq!(g.conf_dir(), Path::new("/etc/vz/conf"));
        assert_eq!(g.names_dir(), Path::new("/etc/vz/names"));
        assert_eq!(g.run_dir(), Path::new("/run/vz"));
        assert_eq!(g.cgroup_parent(), "vz");
        assert!(SAMPLES.iter().any(|(n, _)| Some(*n) == g.configfile().as_deref()));
    }

    #[test]
    fn install_writes_every_sample_and_keeps_user_edits() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("etc/conf");
        let edited = conf.join("ve-basic.conf-sample");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(&edited, "CPUUNITS=\"7\"\n").unwrap();
        install_samples(&conf).unwrap();
        install_samples(&conf).unwrap();
        for (name, text) in SAMPLES {
            let path = conf.join(sample_file_name(name));
            let got = std::fs::read_to_string(&path).unwrap();
            if *name == "basic" {
                assert_eq!(got, "CPUUNITS=\"7\"\n", "user's file kept");
            } else {
                assert_eq!(got, *text, "{name}");
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o644, "{name}");
            }
        }
        let count = std::fs::read_dir(&conf).unwrap().count();
        assert_eq!(count, SAMPLES.len(), "no temporary files left");
    }

    #[test]
    fn load_sample_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("VE_CONF_DIR={}\n", dir.path().display());
        let g = GlobalConfig::new(dir.path().join("vz.conf"), ConfigFile::parse(&text).0);
        assert_eq!(sample_path(&g, "light"), dir.path().join("ve-light.conf-sample"));
        let err = load_sample(&g, "vswap-256m").unwrap_err();
        assert!(matches!(err, ConfigError::Missing { .. }), "{err}");
        install_samples(dir.path()).unwrap();
        assert_eq!(load_sample(&g, "vswap-256m").unwrap().get("PHYSPAGES"), Some("0:256M"));
        for bad in ["", "..", "../etc/passwd", "a/b"] {
            let err = load_sample(&g, bad).unwrap_err();
            assert!(matches!(err, ConfigError::BadValue { .. }), "{bad:?}: {err}");
        }
    }
}
