//! Template metadata in OpenVZ's layout (reference §7.2): per OS template a directory
//! `$TEMPLATE/<osname>/<osver>/<arch>/config/` holding
//!
//! * `vzpkg.conf`: how the packages are fetched, `KEY=value` lines (`#` comments, values may be
//!   quoted). `BUILDER=debootstrap`: `SUITE` (`bookworm`), `MIRROR` (empty: the host's apt
//!   configuration's mirror of the suite), `COMPONENTS` (`main`), `KEYRING` (the keyring the
//!   archive's `Release` is verified with; a relative path is taken under `config/`, e.g.
//!   `gpgkeys/archive.gpg`), `VARIANT` (`minbase`, or empty for debootstrap's default).
//!   `BUILDER=dnf`: `CONFIG` (the repositories, default `yum.conf` as in OpenVZ), `RELEASEVER`
//!   (default the OS version); every file of `gpgkeys/` is a trusted key;
//! * `<set>.list`: the packages of a set, one or more a line, `#` comments; `default.list` is
//!   the default set;
//! * `<set>.conf` (optional): `vzpkg.conf` keys that differ for that set (`VARIANT=minbase`);
//! * `gpgkeys/` (optional): keyrings a `KEYRING` may name;
//! * optional executable hooks `install-pre` and `install-post`, run on the host with
//!   `VE_ROOT` (the tree being built), `TEMPLATE`, `OSTEMPLATE`, `OSSET` exported.
//!
//! Names (`ost2full`): a set's cache is `<osname>-<osver>-<arch>` for the default set and
//! `<osname>-<osver>-<arch>-<set>` otherwise (§7.1's `debian-8.0-x86_64-minimal`). A name given
//! on the command line may also leave out the architecture (the host's) and put the set before
//! it, OpenVZ's `<osname>-<osver>[-<set>][-<arch>]`: `debian-12`, `debian-12-minimal`,
//! `debian-12-minimal-x86_64` all find their metadata.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, TemplateError};
use crate::name::TemplateName;

/// The name of the metadata's main file, under `config/`.
pub const CONF_FILE: &str = "vzpkg.conf";

/// Bumped whenever the builder changes what it makes from the same metadata: part of
/// [`TemplateMeta::hash`], so a change of the build code invalidates caches too.
const BUILD_FORMAT: &str = "vz-template build 6: console-getty on the VE's console";

/// One package set of one OS template's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateMeta {
    osname: String,
    osver: String,
    arch: String,
    set: String,
    config_dir: PathBuf,
    keys: BTreeMap<String, String>,
    packages: Vec<String>,
}

impl TemplateMeta {
    /// The cache name of this set (`debian-12-x86_64`, `debian-12-x86_64-minimal`).
    ///
    /// # Errors
    /// [`TemplateError::InvalidName`] if the directory names do not make a valid name.
    pub fn name(&self) -> Result<TemplateName> {
        let flavour = (self.set != "default").then_some(self.set.as_str());
        TemplateName::from_parts(&self.osname, &self.osver, &self.arch, flavour)
    }

    /// The OS name (`debian`).
    pub fn osname(&self) -> &str {
        &self.osname
    }

    /// The OS version (`12`).
    pub fn osver(&self) -> &str {
        &self.osver
    }

    /// The architecture directory (`x86_64`).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The package set (`default`, `minimal`).
    pub fn set(&self) -> &str {
        &self.set
    }

    /// The `config/` directory.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// A key of `vzpkg.conf`, as overridden by `<set>.conf`; `None` when unset or empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The packages of the set's list.
    pub fn packages(&self) -> &[String] {
        &self.packages
    }

    /// The keyring `KEYRING` names, resolved against `config/` when relative.
    ///
    /// # Errors
    /// [`TemplateError::BadValue`] when `KEYRING` is not set: the archive's signatures are
    /// always verified, so the metadata must say with what.
    pub fn keyring(&self) -> Result<PathBuf> {
        let value = self.get("KEYRING").ok_or_else(|| TemplateError::BadValue {
            what: "KEYRING (metadata must name the archive's keyring)",
            value: self.config_dir.join(CONF_FILE).display().to_string(),
        })?;
        Ok(self.config_dir.join(value))
    }

    /// The key files of `gpgkeys/`, sorted (none when the directory is missing).
    ///
    /// # Errors
    /// [`TemplateError::Io`] if the directory exists but cannot be read.
    pub fn gpgkeys(&self) -> Result<Vec<PathBuf>> {
        let dir = self.config_dir.join("gpgkeys");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TemplateError::io("read directory", &dir, e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let path = entry.op("read directory", &dir)?.path();
            if path.is_file() {
                keys.push(path);
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// An executable hook of the metadata (`install-pre`, `install-post`), if present.
    pub fn hook(&self, name: &str) -> Option<PathBuf> {
        let path = self.config_dir.join(name);
        path.is_file().then_some(path)
    }

    /// A stable hash of everything the build depends on: every file under `config/` (names,
    /// modes and contents, in sorted order), the set, and the builder's format version. Two
    /// builds with the same hash made the same cache from the same archive state; CI keeps a
    /// cache as long as its hash stays the same.
    ///
    /// # Errors
    /// [`TemplateError::Io`] if a file cannot be read.
    pub fn hash(&self) -> Result<String> {
        let mut h = Fnv128::new();
        h.feed(BUILD_FORMAT.as_bytes());
        h.feed(self.set.as_bytes());
        hash_dir(&mut h, &self.config_dir, Path::new(""))?;
        Ok(h.hex())
    }
}

fn hash_dir(h: &mut Fnv128, dir: &Path, rel: &Path) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .op("read directory", dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .op("read directory", dir)?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = rel.join(&name);
        let meta = fs::metadata(&path).op("stat", &path)?;
        h.feed(rel.as_os_str().as_encoded_bytes());
        if meta.is_dir() {
            h.feed(b"/");
            hash_dir(h, &path, &rel)?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            h.feed(&(meta.permissions().mode() & 0o111).to_le_bytes());
            h.feed(&fs::read(&path).op("read", &path)?);
        }
    }
    Ok(())
}

/// FNV-1a with a 128-bit state: stable across Rust releases and platforms (std's hashers are
/// not promised to be), and plenty for a cache key.
struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    fn new() -> Self {
        Fnv128(Self::OFFSET)
    }

    fn feed(&mut self, bytes: &[u8]) {
        // The length first, so that ("ab", "c") and ("a", "bc") differ.
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u128::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

/// The host's architecture in OpenVZ's words (`x86_64`, `i386`).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "i386",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Every set of every OS template under `template_dir`, sorted by name. A missing directory
/// has none; directories without `config/vzpkg.conf` are not metadata and are skipped.
///
/// # Errors
/// [`TemplateError::Io`] if a metadata file cannot be read; [`TemplateError::BadValue`] for a
/// malformed `vzpkg.conf`.
pub fn list_metadata(template_dir: &Path) -> Result<Vec<TemplateMeta>> {
    let mut out = Vec::new();
    for (osname, os_dir) in subdirs(template_dir)? {
        if osname == "cache" {
            continue;
        }
        for (osver, ver_dir) in subdirs(&os_dir)? {
            for (arch, arch_dir) in subdirs(&ver_dir)? {
                let config = arch_dir.join("config");
                if !config.join(CONF_FILE).is_file() {
                    continue;
                }
                for set in sets(&config)? {
                    out.push(load(&osname, &osver, &arch, &set, &config)?);
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.osname, &a.osver, &a.arch, &a.set).cmp(&(&b.osname, &b.osver, &b.arch, &b.set))
    });
    Ok(out)
}

/// The metadata a name given by a user means: a cache name (`debian-12-x86_64-minimal`) or
/// OpenVZ's `<osname>-<osver>[-<set>][-<arch>]` (`debian-12`, `debian-12-minimal`).
///
/// # Errors
/// [`TemplateError::NoMetadata`] when no metadata matches; errors of [`list_metadata`].
pub fn find_metadata(template_dir: &Path, name: &str) -> Result<TemplateMeta> {
    let host = host_arch();
    let all = list_metadata(template_dir)?;
    all.into_iter().find(|m| spellings(m, host).iter().any(|s| s == name)).ok_or_else(|| {
        TemplateError::NoMetadata { name: name.to_owned(), dir: template_dir.to_owned() }
    })
}

/// The names that mean this set.
fn spellings(m: &TemplateMeta, host: &str) -> Vec<String> {
    let (os, ver, arch, set) = (&m.osname, &m.osver, &m.arch, &m.set);
    let mut names = vec![format!("{os}-{ver}-{arch}-{set}"), format!("{os}-{ver}-{set}-{arch}")];
    if set == "default" {
        names.push(format!("{os}-{ver}-{arch}"));
    }
    let same_arch = arch == host || (arch == "i386" && host == "x86");
    if same_arch {
        names.push(format!("{os}-{ver}-{set}"));
        if set == "default" {
            names.push(format!("{os}-{ver}"));
        }
    }
    names
}

fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TemplateError::io("read directory", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.op("read directory", dir)?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        out.push((name, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// The sets of a config dir: the stems of its `*.list` files.
fn sets(config: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(config).op("read directory", config)? {
        let entry = entry.op("read directory", config)?;
        let name = entry.file_name();
        if let Some(set) = name.to_str().and_then(|n| n.strip_suffix(".list"))
            && !set.is_empty()
            && !set.starts_with('.')
        {
            out.push(set.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn load(osname: &str, osver: &str, arch: &str, set: &str, config: &Path) -> Result<TemplateMeta> {
    let conf = config.join(CONF_FILE);
    let mut keys = parse_conf(&fs::read_to_string(&conf).op("read", &conf)?, &conf)?;
    let set_conf = config.join(format!("{set}.conf"));
    match fs::read_to_string(&set_conf) {
        Ok(text) => keys.extend(parse_conf(&text, &set_conf)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(TemplateError::io("read", &set_conf, e)),
    }
    let list = config.join(format!("{set}.list"));
    let packages = parse_list(&fs::read_to_string(&list).op("read", &list)?);
    Ok(TemplateMeta {
        osname: osname.to_owned(),
        osver: osver.to_owned(),
        arch: arch.to_owned(),
        set: set.to_owned(),
        config_dir: config.to_owned(),
        keys,
        packages,
    })
}

/// `KEY=value` lines, `#` comments, values optionally in double or single quotes.
fn parse_conf(text: &str, path: &Path) -> Result<BTreeMap<String, String>> {
    let mut keys = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || TemplateError::BadValue {
            what: "metadata line (KEY=value)",
            value: format!("{}: {line}", path.display()),
        };
        let (key, value) = line.split_once('=').ok_or_else(bad)?;
        let key = key.trim();
        if key.is_empty()
            || !key.chars().all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        {
            return Err(bad());
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        keys.insert(key.to_owned(), value.to_owned());
    }
    Ok(keys)
}

/// Package names: whitespace-separated words, `#` starts a comment.
fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_meta(root: &Path, os: &str, ver: &str, arch: &str) -> PathBuf {
        let config = root.join(os).join(ver).join(arch).join("config");
        fs::create_dir_all(config.join("gpgkeys")).unwrap();
        fs::write(
            config.join(CONF_FILE),
            "# comment\nBUILDER=debootstrap\nSUITE=\"bookworm\"\nMIRROR=\nVARIANT=\nKEYRING=gpgkeys/k.gpg\n",
        )
        .unwrap();
        fs::write(config.join("default.list"), "systemd-sysv # init\n\nless vim-tiny\n").unwrap();
        fs::write(config.join("minimal.list"), "# nothing more\nsystemd-sysv\n").unwrap();
        fs::write(config.join("minimal.conf"), "VARIANT='minbase'\n").unwrap();
        fs::write(config.join("gpgkeys/k.gpg"), b"key").unwrap();
        config
    }

    #[test]
    fn sets_keys_and_packages_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_meta(dir.path(), "debian", "12", "x86_64");
        fs::create_dir_all(dir.path().join("cache")).unwrap();
        fs::create_dir_all(dir.path().join("other/1/x86_64")).unwrap(); // no config: skipped
        let all = list_metadata(dir.path()).unwrap();
        let names: Vec<String> = all.iter().map(|m| m.name().unwrap().to_string()).collect();
        assert_eq!(names, ["debian-12-x86_64", "debian-12-x86_64-minimal"]);
        let (full, min) = (&all[0], &all[1]);
        assert_eq!(full.packages(), ["systemd-sysv", "less", "vim-tiny"]);
        assert_eq!(min.packages(), ["systemd-sysv"]);
        assert_eq!(full.get("VARIANT"), None);
        assert_eq!(min.get("VARIANT"), Some("minbase"));
        assert_eq!(full.get("SUITE"), Some("bookworm"));
        assert_eq!(full.get("MIRROR"), None);
        assert_eq!(full.keyring().unwrap(), config.join("gpgkeys/k.gpg"));
        assert_eq!(full.hook("install-post"), None);
    }

    #[test]
    fn openvz_spellings_find_the_set() {
        let dir = tempfile::tempdir().unwrap();
        write_meta(dir.path(), "debian", "12", host_arch());
        let arch = host_arch();
        for (input, set) in [
            (format!("debian-12-{arch}"), "default"),
            ("debian-12".to_owned(), "default"),
            (format!("debian-12-{arch}-default"), "default"),
            ("debian-12-minimal".to_owned(), "minimal"),
            (format!("debian-12-{arch}-minimal"), "minimal"),
            (format!("debian-12-minimal-{arch}"), "minimal"),
        ] {
            assert_eq!(find_metadata(dir.path(), &input).unwrap().set(), set, "{input}");
        }
        let err = find_metadata(dir.path(), "debian-13").unwrap_err();
        assert!(matches!(err, TemplateError::NoMetadata { .. }), "{err:?}");
    }

    #[test]
    fn the_hash_follows_every_file_and_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_meta(dir.path(), "debian", "12", "x86_64");
        let hashes = |dir: &Path| -> Vec<String> {
            list_metadata(dir).unwrap().iter().map(|m| m.hash().unwrap()).collect()
        };
        let first = hashes(dir.path());
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], first[1]);
        assert_eq!(hashes(dir.path()), first, "stable");
        fs::write(config.join("gpgkeys/k.gpg"), b"other key").unwrap();
        let second = hashes(dir.path());
        assert_ne!(second[0], first[0]);
        fs::write(config.join("install-post"), b"#!/bin/sh\n").unwrap();
        assert_ne!(hashes(dir.path())[0], second[0]);
    }

    #[test]
    fn bad_lines_and_missing_keyring_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_meta(dir.path(), "debian", "12", "x86_64");
        fs::write(config.join(CONF_FILE), "SUITE=bookworm\nKEYRING=\n").unwrap();
        let all = list_metadata(dir.path()).unwrap();
        let err = all[0].keyring().unwrap_err();
        assert!(err.to_string().contains("KEYRING"), "{err}");
        fs::write(config.join(CONF_FILE), "just words\n").unwrap();
        assert!(list_metadata(dir.path()).is_err());
        fs::write(config.join(CONF_FILE), "lower=1\n").unwrap();
        assert!(list_metadata(dir.path()).is_err());
    }
}
