//! [`DebootstrapBuilder`]: a Debian template cache made with debootstrap from a signed archive,
//! touched up to boot as a VE, and archived like the busybox template.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{BuildEvent, BuildStep, WorkDir, apt, pack_tree, run, vefix};
use crate::error::{Result, TemplateError};
use crate::metadata::TemplateMeta;
use crate::name::TemplateName;
use crate::store::CacheStore;

/// Builds a Debian template cache, e.g. `debian-12-x86_64-minimal`, with
/// `debootstrap [--variant=<v>] --keyring=<keyring> --include=<packages> <suite> <root>
/// <mirror>`.
///
/// # Signatures
/// The archive's `Release` is always verified: the keyring is given explicitly (Debian's is
/// `/usr/share/keyrings/debian-archive-keyring.gpg`, package debian-archive-keyring) and must
/// exist; an unsigned `Release`, or one signed by a key not in the keyring, fails the build
/// with [`TemplateError::BadSignature`]. debootstrap then checks every package against the
/// verified indexes.
///
/// # The tree
/// After debootstrap, the edits of a VE (see the module `vefix`): with systemd as init, the
/// debugfs/tracefs mounts and the tty gettys masked and `vz-boot-done.service` enabled (it
/// opens `/.vzfifo` after multi-user.target, for `vzctl start --wait`); with sysvinit, the
/// inittab's gettys commented out and a `vz:2345:once:` line for the fifo. `/etc/hostname`
/// `localhost`, `/etc/hosts`, an empty `/etc/resolv.conf` and `/etc/machine-id`, no downloaded
/// `.deb` or apt lists (apt works after `apt-get update`). Device nodes are not archived: a
/// VE's `/dev` is made by vz at start.
///
/// # Hooks
/// `install-pre` runs on the empty root before debootstrap, `install-post` after the edits;
/// both with `VE_ROOT`, `SUITE`, `MIRROR` and the [`env`](Self::env) given, cwd `/`.
///
/// # Privileges
/// Root (debootstrap chroots, mknods and chowns), and network access to the mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebootstrapBuilder {
    debootstrap: PathBuf,
    suite: String,
    mirror: String,
    keyring: PathBuf,
    variant: Option<String>,
    arch: Option<String>,
    components: Vec<String>,
    include: Vec<String>,
    pre: Option<PathBuf>,
    post: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl DebootstrapBuilder {
    /// Where Debian's debootstrap package installs it.
    pub const DEFAULT_DEBOOTSTRAP: &'static str = "/usr/sbin/debootstrap";

    /// Debian's archive keyring (package debian-archive-keyring).
    pub const DEBIAN_KEYRING: &'static str = "/usr/share/keyrings/debian-archive-keyring.gpg";

    /// A builder of `suite` (`bookworm`, `trixie`) from `mirror`, whose `Release` must be
    /// signed by a key of `keyring`. Variant: debootstrap's default; component `main`.
    pub fn new(suite: &str, mirror: &str, keyring: &Path) -> Self {
        DebootstrapBuilder {
            debootstrap: PathBuf::from(Self::DEFAULT_DEBOOTSTRAP),
            suite: suite.to_owned(),
            mirror: mirror.to_owned(),
            keyring: keyring.to_owned(),
            variant: None,
            arch: None,
            components: vec!["main".to_owned()],
            include: Vec::new(),
            pre: None,
            post: None,
            env: Vec::new(),
        }
    }

    /// The builder the metadata describes (keys `SUITE`, `MIRROR`, `KEYRING`, `VARIANT`,
    /// `COMPONENTS`, the set's packages and hooks). With no `MIRROR`, the mirror apt uses for
    /// the suite under `etc_apt` (normally `/etc/apt`), else apt's Debian mirror.
    ///
    /// # Errors
    /// [`TemplateError::BadValue`] for a missing `SUITE`, `KEYRING`, a `BUILDER` other than
    /// debootstrap, or no mirror.
    pub fn from_metadata(meta: &TemplateMeta, etc_apt: &Path) -> Result<Self> {
        let conf = meta.config_dir().join(crate::metadata::CONF_FILE).display().to_string();
        let builder = meta.get("BUILDER").unwrap_or("debootstrap");
        if builder != "debootstrap" {
            return Err(TemplateError::BadValue {
                what: "BUILDER (only debootstrap)",
                value: conf,
            });
        }
        let suite = meta.get("SUITE").ok_or_else(|| TemplateError::BadValue {
            what: "SUITE (not set)",
            value: conf.clone(),
        })?;
        let mirror = match meta.get("MIRROR") {
            Some(m) => m.to_owned(),
            None => apt::mirror_for(etc_apt, suite).ok_or_else(|| TemplateError::BadValue {
                what: "MIRROR (not set, and no Debian mirror in the host's apt sources)",
                value: etc_apt.display().to_string(),
            })?,
        };
        let mut b = DebootstrapBuilder::new(suite, &mirror, &meta.keyring()?);
        b.variant = meta.get("VARIANT").map(str::to_owned);
        b.arch = Some(debian_arch(meta.arch()).to_owned());
        if let Some(c) = meta.get("COMPONENTS") {
            b.components =
                c.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        }
        b.include = meta.packages().to_vec();
        b.pre = meta.hook("install-pre");
        b.post = meta.hook("install-post");
        Ok(b)
    }

    /// The mirror packages come from.
    pub fn mirror(&self) -> &str {
        &self.mirror
    }

    /// Uses another debootstrap program.
    #[must_use]
    pub fn debootstrap(mut self, program: &Path) -> Self {
        self.debootstrap = program.to_owned();
        self
    }

    /// debootstrap's `--variant` (`minbase`).
    #[must_use]
    pub fn variant(mut self, variant: &str) -> Self {
        self.variant = Some(variant.to_owned());
        self
    }

    /// Installs these packages too (`systemd-sysv`, `iproute2`…).
    #[must_use]
    pub fn include(mut self, packages: &[&str]) -> Self {
        self.include.extend(packages.iter().map(|p| (*p).to_owned()));
        self
    }

    /// An environment variable for the hooks (`TEMPLATE`, `OSTEMPLATE`…).
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The first `http(s)` mirror of `suite` in the apt sources under `etc_apt`, else apt's
    /// Debian mirror (see [`from_metadata`](Self::from_metadata)).
    pub fn mirror_from_apt(etc_apt: &Path, suite: &str) -> Option<String> {
        apt::mirror_for(etc_apt, suite)
    }

    /// [`build_with`](Self::build_with) with no progress reports.
    ///
    /// # Errors
    /// As [`build_with`](Self::build_with).
    pub fn build(&self, store: &CacheStore, name: &TemplateName) -> Result<PathBuf> {
        self.build_with(store, name, &mut |_| {})
    }

    /// Runs debootstrap into a work directory beside the cache, applies the edits and hooks,
    /// and writes `<cache>/<name>.tar.gz` atomically, reporting each step and debootstrap's
    /// lines to `progress`. The work directory is removed afterwards, also on failure. Takes
    /// minutes (downloads and installs ~100 packages).
    ///
    /// # Errors
    /// [`TemplateError::BadSignature`] if the archive's signature does not verify;
    /// [`TemplateError::Command`] if debootstrap or a hook fails (the end of its output is in
    /// the message); [`TemplateError::BadValue`] for a suite, mirror, variant or package that
    /// is not one word, or a missing keyring; [`TemplateError::Io`] otherwise.
    pub fn build_with(
        &self,
        store: &CacheStore,
        name: &TemplateName,
        progress: &mut dyn FnMut(BuildEvent<'_>),
    ) -> Result<PathBuf> {
        self.check()?;
        let work = WorkDir::create(store, name)?;
        if let Some(pre) = &self.pre {
            progress(BuildEvent::Step(BuildStep::Hook("install-pre")));
            self.hook(pre, &work.0)?;
        }
        progress(BuildEvent::Step(BuildStep::Download));
        self.debootstrap_into(&work.0, progress)?;
        progress(BuildEvent::Step(BuildStep::Prepare));
        let init = vefix::touch_up(&work.0)?;
        tracing::debug!(?init, "tree prepared for a VE");
        if let Some(post) = &self.post {
            progress(BuildEvent::Step(BuildStep::Hook("install-post")));
            self.hook(post, &work.0)?;
        }
        let path = pack_tree(store, name, &work.0, progress)?;
        tracing::info!(cache = %path.display(), "debian template built");
        Ok(path)
    }

    fn check(&self) -> Result<()> {
        let word = |what: &'static str, value: &str| {
            if value.is_empty() || value.starts_with('-') || value.contains(char::is_whitespace) {
                Err(TemplateError::BadValue { what, value: value.to_owned() })
            } else {
                Ok(())
            }
        };
        word("debootstrap suite", &self.suite)?;
        word("debootstrap mirror", &self.mirror)?;
        for p in &self.include {
            word("package name", p)?;
            if p.contains(',') {
                return Err(TemplateError::BadValue { what: "package name", value: p.clone() });
            }
        }
        for c in &self.components {
            word("component", c)?;
        }
        if let Some(v) = &self.variant {
            word("debootstrap variant", v)?;
        }
        if let Some(a) = &self.arch {
            word("architecture", a)?;
        }
        if !self.keyring.is_file() {
            return Err(TemplateError::BadValue {
                what: "keyring (missing; Debian's is in the package debian-archive-keyring)",
                value: self.keyring.display().to_string(),
            });
        }
        Ok(())
    }

    fn debootstrap_into(
        &self,
        root: &Path,
        progress: &mut dyn FnMut(BuildEvent<'_>),
    ) -> Result<()> {
        let mut cmd = Command::new(&self.debootstrap);
        if let Some(v) = &self.variant {
            cmd.arg(format!("--variant={v}"));
        }
        if let Some(a) = &self.arch {
            cmd.arg(format!("--arch={a}"));
        }
        cmd.arg(format!("--keyring={}", self.keyring.display()));
        cmd.arg(format!("--components={}", self.components.join(",")));
        if !self.include.is_empty() {
            cmd.arg(format!("--include={}", self.include.join(",")));
        }
        cmd.arg(&self.suite).arg(root).arg(&self.mirror);
        let (status, tail) =
            run::stream(cmd, &self.debootstrap, BuildStep::Download, step_of, progress)?;
        if status.success() {
            return Ok(());
        }
        if let Some(detail) = signature_failure(&tail) {
            return Err(TemplateError::BadSignature {
                mirror: self.mirror.clone(),
                suite: self.suite.clone(),
                keyring: self.keyring.clone(),
                detail,
            });
        }
        let mut shown = run::last_lines(&tail, 15);
        if let Ok(log) = fs::read_to_string(root.join("debootstrap/debootstrap.log")) {
            let lines: Vec<String> = log.lines().map(str::to_owned).collect();
            shown = format!("{shown}\n{}", run::last_lines(&lines, 10));
        }
        Err(TemplateError::Command {
            program: format!("{} {} {}", self.debootstrap.display(), self.suite, self.mirror),
            status,
            stderr: shown,
        })
    }

    fn hook(&self, hook: &Path, root: &Path) -> Result<()> {
        let root = root.to_string_lossy();
        let mut env: Vec<(&str, &str)> =
            vec![("VE_ROOT", &root), ("SUITE", &self.suite), ("MIRROR", &self.mirror)];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        run::hook(hook, &env)
    }
}

/// Debian's name of an OpenVZ architecture word.
fn debian_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "x86" | "i486" | "i586" | "i686" => "i386",
        "aarch64" => "arm64",
        "ppc64le" => "ppc64el",
        other => other,
    }
}

/// The step a debootstrap line belongs to.
fn step_of(line: &str) -> Option<BuildStep> {
    let rest = line.strip_prefix("I: ")?;
    if rest.starts_with("Retrieving") || rest.starts_with("Validating") {
        Some(BuildStep::Download)
    } else if rest.starts_with("Extracting")
        || rest.starts_with("Unpacking")
        || rest.starts_with("Installing")
        || rest.starts_with("Configuring")
    {
        Some(BuildStep::Install)
    } else {
        None
    }
}

/// debootstrap's words when the `Release` signature does not verify, as one line.
fn signature_failure(lines: &[String]) -> Option<String> {
    const MARKS: &[&str] = &[
        "Failed getting release signature file",
        "Release signed by unknown key",
        "Invalid Release signature",
        "BADSIG",
        "Release file signed by unknown key",
    ];
    lines
        .iter()
        .find(|l| MARKS.iter().any(|m| l.contains(m)))
        .map(|l| l.trim_start_matches("E: ").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> tempfile::NamedTempFile {
        tempfile::NamedTempFile::new().unwrap()
    }

    #[test]
    fn bad_words_are_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::new(dir.path());
        let name: TemplateName = "debian-12-x86_64-minimal".parse().unwrap();
        let k = keyring();
        let err = DebootstrapBuilder::new("--foo", "http://m", k.path()).build(&store, &name);
        assert_eq!(err.unwrap_err().to_string(), "bad debootstrap suite: \"--foo\"");
        let err = DebootstrapBuilder::new("bookworm", "http://m", k.path())
            .include(&["a,b"])
            .build(&store, &name);
        assert_eq!(err.unwrap_err().to_string(), "bad package name: \"a,b\"");
        assert!(!store.cache_dir().exists());
    }

    #[test]
    fn a_missing_keyring_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::new(dir.path());
        let name: TemplateName = "debian-12-x86_64".parse().unwrap();
        let err = DebootstrapBuilder::new("bookworm", "http://m", &dir.path().join("none.gpg"))
            .build(&store, &name)
            .unwrap_err();
        assert!(err.to_string().contains("debian-archive-keyring"), "{err}");
    }

    #[test]
    fn steps_and_signature_failures_are_recognised() {
        assert_eq!(step_of("I: Retrieving Packages "), Some(BuildStep::Download));
        assert_eq!(step_of("I: Unpacking libc6..."), Some(BuildStep::Install));
        assert_eq!(step_of("I: Checking component main"), None);
        let lines: Vec<String> = [
            "I: Retrieving Release.gpg",
            "E: Release signed by unknown key (key id 67031BB3DDE5F6F0)",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            signature_failure(&lines).as_deref(),
            Some("Release signed by unknown key (key id 67031BB3DDE5F6F0)")
        );
        assert_eq!(signature_failure(&lines[..1]), None);
    }
}
