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
