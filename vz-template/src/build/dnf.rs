//! [`DnfBuilder`]: a template cache of an RPM distribution, installed with
//! `dnf --installroot` (yum's successor; OpenVZ's vzpkgcache ran `yum --installroot`) from the
//! repositories of the metadata's `yum.conf`, every package's signature checked.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{BuildEvent, BuildStep, WorkDir, pack_tree, run, vefix};
use crate::error::{IoContext, Result, TemplateError};
use crate::metadata::TemplateMeta;
use crate::name::TemplateName;
use crate::store::CacheStore;

/// Builds an RPM template cache with dnf.
///
/// # Signatures
/// `gpgcheck` is forced on for every repository (`--setopt=*.gpgcheck=1`, and for local
/// packages), whatever the repository file says; the keys are the files of the metadata's
/// `gpgkeys/`, imported into the new root's rpm database first (`rpm --root --import`, as
/// OpenVZ's vzpkgcache did), plus any `gpgkey=` of the repositories. An unsigned package, or
/// one signed by a key not imported, fails the build with [`TemplateError::BadSignature`].
///
/// # Isolation from the host
/// Only the metadata's `yum.conf` is read (`reposdir` points to an empty directory, so the
/// host's `/etc/yum.repos.d` is never used); rpm's database is put at `/var/lib/rpm` in the
/// new root whatever the host's rpm macros say (Debian's rpm puts it under `$HOME`); dnf's
/// download cache is removed from the tree before it is packed.
///
/// # Privileges
/// Root (dnf installs files with their owners).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnfBuilder {
    dnf: PathBuf,
    rpm: PathBuf,
    config: PathBuf,
    releasever: String,
    keys: Vec<PathBuf>,
    packages: Vec<String>,
    pre: Option<PathBuf>,
    post: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl DnfBuilder {
    /// Where Debian's dnf package installs it.
    pub const DEFAULT_DNF: &'static str = "/usr/bin/dnf";

    /// A builder installing `packages` from the repositories of `config` (a yum.conf / dnf.conf
    /// with `[repo]` sections), `$releasever` being `releasever`, the keys in `keys` trusted.
    pub fn new(config: &Path, releasever: &str, keys: &[PathBuf], packages: &[&str]) -> Self {
        DnfBuilder {
            dnf: PathBuf::from(Self::DEFAULT_DNF),
            rpm: PathBuf::from("/usr/bin/rpm"),
            config: config.to_owned(),
            releasever: releasever.to_owned(),
            keys: keys.to_vec(),
            packages: packages.iter().map(|p| (*p).to_owned()).collect(),
            pre: None,
            post: None,
            env: Vec::new(),
        }
    }

    /// The builder the metadata describes: `BUILDER=dnf`, `CONFIG` (default `yum.conf`,
    /// under `config/`), `RELEASEVER` (default the OS version), `gpgkeys/*`, the set's
    /// packages and hooks.
    ///
    /// # Errors
    /// [`TemplateError::Io`] if `gpgkeys/` cannot be read.
    pub fn from_metadata(meta: &TemplateMeta) -> Result<Self> {
        let config = meta.config_dir().join(meta.get("CONFIG").unwrap_or("yum.conf"));
        let releasever = meta.get("RELEASEVER").unwrap_or(meta.osver());
        let packages: Vec<&str> = meta.packages().iter().map(String::as_str).collect();
        let mut b = DnfBuilder::new(&config, releasever, &meta.gpgkeys()?, &packages);
        b.pre = meta.hook("install-pre");
        b.post = meta.hook("install-post");
        Ok(b)
    }

    /// An environment variable for the hooks (`TEMPLATE`, `OSTEMPLATE`…).
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The repository configuration used.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Installs the packages into a work directory beside the cache, applies the VE edits and
    /// hooks, and writes `<cache>/<name>.tar.gz` atomically.
    ///
    /// # Errors
    /// [`TemplateError::BadSignature`] for a package whose signature does not verify;
    /// [`TemplateError::Command`] if rpm, dnf or a hook fails; [`TemplateError::BadValue`] for
    /// an empty package list or a package that is not one word; [`TemplateError::Io`]
    /// otherwise.
    pub fn build_with(
        &self,
        store: &CacheStore,
        name: &TemplateName,
        progress: &mut dyn FnMut(BuildEvent<'_>),
    ) -> Result<PathBuf> {
        if self.packages.is_empty() {
            return Err(TemplateError::BadValue {
                what: "package list (empty)",
                value: self.config.display().to_string(),
            });
        }
        for p in &self.packages {
            if p.starts_with('-') || p.contains(char::is_whitespace) {
                return Err(TemplateError::BadValue { what: "package name", value: p.clone() });
            }
        }
        let work = WorkDir::create(store, name)?;
        // HOME for rpm and dnf: its .rpmmacros puts the database in the new root's
        // /var/lib/rpm (the tree, under work/root, is what is packed).
        let home = work.0.join("home");
        let root = work.0.join("root");
        let empty_reposdir = work.0.join("repos.d");
        for dir in [&home, &root, &empty_reposdir] {
            fs::create_dir(dir).op("create directory", dir)?;
        }
        fs::write(home.join(".rpmmacros"), "%_dbpath /var/lib/rpm\n")
            .op("write", &home.join(".rpmmacros"))?;
        if let Some(pre) = &self.pre {
            progress(BuildEvent::Step(BuildStep::Hook("install-pre")));
            self.hook(pre, &root)?;
        }
        progress(BuildEvent::Step(BuildStep::Download));
        self.rpm_cmd(&home, &root, &["--initdb"])?;
        for key in &self.keys {
            let key = key.to_string_lossy();
            self.rpm_cmd(&home, &root, &["--import", &key])?;
        }
        let mut cmd = Command::new(&self.dnf);
        cmd.env("HOME", &home)
            .arg("-y")
            .arg(format!("--installroot={}", root.display()))
            .arg(format!("--config={}", self.config.display()))
            .arg(format!("--releasever={}", self.releasever))
            .arg(format!("--setopt=reposdir={}", empty_reposdir.display()))
            .args(["--setopt=*.gpgcheck=1", "--setopt=gpgcheck=1", "--setopt=localpkg_gpgcheck=1"])
            .args(["--setopt=install_weak_deps=False", "--setopt=keepcache=False"])
            .arg("install")
            .args(&self.packages);
        let (status, tail) = run::stream(cmd, &self.dnf, BuildStep::Download, step_of, progress)?;
        if !status.success() {
            if let Some(detail) = signature_failure(&tail) {
                return Err(TemplateError::BadSignature {
                    mirror: self.config.display().to_string(),
                    suite: self.releasever.clone(),
                    keyring: self.keys.first().cloned().unwrap_or_default(),
                    detail,
                });
            }
            return Err(TemplateError::Command {
                program: format!("{} install", self.dnf.display()),
                status,
                stderr: run::last_lines(&tail, 15),
            });
        }
        progress(BuildEvent::Step(BuildStep::Prepare));
        for dir in ["var/cache/dnf", "var/log/dnf.log", "var/log/dnf.librepo.log"] {
            let path = root.join(dir);
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
        fs::create_dir_all(root.join("etc")).op("create directory", &root.join("etc"))?;
        vefix::touch_up(&root)?;
        if let Some(post) = &self.post {
            progress(BuildEvent::Step(BuildStep::Hook("install-post")));
            self.hook(post, &root)?;
        }
        let path = pack_tree(store, name, &root, progress)?;
        tracing::info!(cache = %path.display(), "rpm template built");
        Ok(path)
    }

    fn rpm_cmd(&self, home: &Path, root: &Path, args: &[&str]) -> Result<()> {
        let out = Command::new(&self.rpm)
            .env("HOME", home)
            .arg("--root")
            .arg(root)
            .args(args)
            .output()
            .op("run", &self.rpm)?;
        if !out.status.success() {
            return Err(TemplateError::Command {
                program: format!(
                    "{} --root {} {}",
                    self.rpm.display(),
                    root.display(),
                    args.join(" ")
                ),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    fn hook(&self, hook: &Path, root: &Path) -> Result<()> {
        let root = root.to_string_lossy();
        let mut env: Vec<(&str, &str)> = vec![("VE_ROOT", &root)];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        run::hook(hook, &env)
    }
}

/// The step a dnf line belongs to.
fn step_of(line: &str) -> Option<BuildStep> {
    if line.starts_with("Downloading Packages") {
        Some(BuildStep::Download)
    } else if line.starts_with("Running transaction") {
        Some(BuildStep::Install)
    } else {
        None
    }
}

/// dnf's words when a package's signature does not verify.
fn signature_failure(lines: &[String]) -> Option<String> {
    const MARKS: &[&str] = &["is not signed", "Public key for", "GPG check FAILED", "signature"];
    let found: Vec<&str> =
        lines.iter().map(|l| l.trim()).filter(|l| MARKS.iter().any(|m| l.contains(m))).collect();
    (!found.is_empty()).then(|| found.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_signature_failures_are_recognised() {
        assert_eq!(step_of("Downloading Packages:"), Some(BuildStep::Download));
        assert_eq!(step_of("Running transaction check"), Some(BuildStep::Install));
        assert_eq!(step_of("Installed:"), None);
        let lines: Vec<String> = [
            "Downloading Packages:",
            "Package vztest-1.0-1.noarch.rpm is not signed",
            "Error: GPG check FAILED",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            signature_failure(&lines).as_deref(),
            Some("Package vztest-1.0-1.noarch.rpm is not signed; Error: GPG check FAILED")
        );
        assert_eq!(signature_failure(&lines[..1]), None);
    }

    #[test]
    fn an_empty_package_list_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::new(dir.path());
        let name: TemplateName = "rpmt-1-x86_64".parse().unwrap();
        let err = DnfBuilder::new(Path::new("/none"), "1", &[], &[])
            .build_with(&store, &name, &mut |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("package list"), "{err}");
        assert!(!store.cache_dir().exists());
    }
}
