//! [`DebootstrapBuilder`]: a Debian template cache made with `debootstrap --variant=minbase`,
//! touched up to boot as a VE, and archived like the busybox template.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::build::{PendingCache, tree};
use crate::compression::Compression;
use crate::error::{IoContext, Result, TemplateError};
use crate::name::TemplateName;
use crate::store::CacheStore;

/// Builds a Debian template cache, e.g. `debian-12-x86_64-minimal`, with
/// `debootstrap --variant=minbase --include=<packages> <suite> <root> <mirror>`.
///
/// # The init it has
/// minbase has no init at all, so `sysvinit-core` is always included: the VE boots with
/// sysvinit (`/sbin/init`, `/etc/inittab`), not systemd. The touch-ups for a VE:
/// * `/etc/inittab`: the `getty` lines are commented out (a VE has no ttys), and a last entry
///   `vz:2345:once:` opens the fifo `/.vzfifo` read-write once the runlevel's rc scripts are
///   done — the "boot finished" signal for `vzctl start --wait`;
/// * `poweroff`/`halt` go to runlevel 0, whose `halt` script calls `reboot()`, which ends the
///   VE's pid namespace (how `vzctl stop` works);
/// * `/etc/hostname` `localhost`, `/etc/hosts` with localhost, `/etc/resolv.conf` empty (the
///   host's copy debootstrap made is removed), empty `/etc/machine-id`;
/// * the downloaded `.deb` files and apt lists are removed (apt works after `apt-get update`).
///
/// # Privileges
/// Root (debootstrap chroots, mknods and chowns), and network access to the mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebootstrapBuilder {
    debootstrap: PathBuf,
    suite: String,
    mirror: String,
    include: Vec<String>,
}

impl DebootstrapBuilder {
    /// Where Debian's debootstrap package installs it.
    pub const DEFAULT_DEBOOTSTRAP: &'static str = "/usr/sbin/debootstrap";

    /// A builder of `suite` (`bookworm`, `stable`) from `mirror` (`http://deb.debian.org/debian`,
    /// e.g. from [`mirror_from_apt`](Self::mirror_from_apt)).
    pub fn new(suite: &str, mirror: &str) -> Self {
        DebootstrapBuilder {
            debootstrap: PathBuf::from(Self::DEFAULT_DEBOOTSTRAP),
            suite: suite.to_owned(),
            mirror: mirror.to_owned(),
            include: vec!["sysvinit-core".to_owned()],
        }
    }

    /// Uses another debootstrap program.
    #[must_use]
    pub fn debootstrap(mut self, program: &Path) -> Self {
        self.debootstrap = program.to_owned();
        self
    }

    /// Installs these packages too (`iproute2`, `openssh-server`…).
    #[must_use]
    pub fn include(mut self, packages: &[&str]) -> Self {
        self.include.extend(packages.iter().map(|p| (*p).to_owned()));
        self
    }

    /// The first `http(s)` mirror of `suite` in the apt sources under `etc_apt` (normally
    /// `/etc/apt`): one-line `sources.list` and `sources.list.d/*.list`, and deb822
    /// `sources.list.d/*.sources`. Unreadable files are skipped.
    pub fn mirror_from_apt(etc_apt: &Path, suite: &str) -> Option<String> {
        let mut files = vec![etc_apt.join("sources.list")];
        if let Ok(dir) = fs::read_dir(etc_apt.join("sources.list.d")) {
            let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
            more.sort();
            files.extend(more);
        }
        files.iter().find_map(|file| {
            let text = fs::read_to_string(file).ok()?;
            match file.extension().and_then(|e| e.to_str()) {
                Some("sources") => mirror_in_deb822(&text, suite),
                Some("list") => mirror_in_one_line(&text, suite),
                _ => None,
            }
        })
    }

    /// Runs debootstrap into a work directory beside the cache, applies the touch-ups, and
    /// writes `<cache>/<name>.tar.gz` atomically. The work directory is removed afterwards,
    /// also on failure. Takes minutes (downloads and installs ~100 packages).
    ///
    /// # Errors
    /// [`TemplateError::Command`] if debootstrap fails (its log's end is in the message);
    /// [`TemplateError::BadValue`] for a suite or mirror that is not one word;
    /// [`TemplateError::Io`] otherwise.
    pub fn build(&self, store: &CacheStore, name: &TemplateName) -> Result<PathBuf> {
        for (what, value) in
            [("debootstrap suite", &self.suite), ("debootstrap mirror", &self.mirror)]
        {
            if value.is_empty() || value.starts_with('-') || value.contains(char::is_whitespace) {
                return Err(TemplateError::BadValue { what, value: value.clone() });
            }
        }
        let cache_dir = store.cache_dir();
        fs::create_dir_all(cache_dir).op("create directory", cache_dir)?;
        let work = WorkDir(cache_dir.join(format!(".{name}.root-{}", std::process::id())));
        let _ = fs::remove_dir_all(&work.0);
        fs::create_dir(&work.0).op("create directory", &work.0)?;
        fs::set_permissions(&work.0, fs::Permissions::from_mode(0o755)).op("chmod", &work.0)?;

        let out = Command::new(&self.debootstrap)
            .arg("--variant=minbase")
            .arg(format!("--include={}", self.include.join(",")))
            .arg(&self.suite)
            .arg(&work.0)
            .arg(&self.mirror)
            .stdin(Stdio::null())
            .output()
            .op("run", &self.debootstrap)?;
        if !out.status.success() {
            let mut log = String::new();
            if let Ok(mut f) = fs::File::open(work.0.join("debootstrap/debootstrap.log")) {
                let _ = f.read_to_string(&mut log);
            }
            let all = format!(
                "{}{}{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let tail: String = all
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(TemplateError::Command {
                program: format!("{} {} {}", self.debootstrap.display(), self.suite, self.mirror),
                status: out.status,
                stderr: tail,
            });
        }
        touch_up(&work.0)?;
        let mut cache = PendingCache::create(&store.path_for(name, Compression::Gzip))?;
        let entries = tree::append_tree(&mut cache, &work.0)?;
        let path = cache.commit()?;
        tracing::info!(cache = %path.display(), entries, "debian template built");
        Ok(path)
    }
}

/// Removes the bootstrap directory when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove work directory");
        }
    }
}

/// The VE-specific edits of a fresh debootstrap root.
fn touch_up(root: &Path) -> Result<()> {
    let inittab = root.join("etc/inittab");
    let text = fs::read_to_string(&inittab).op("read", &inittab)?;
    fs::write(&inittab, edit_inittab(&text)).op("write", &inittab)?;
    for (file, content) in [
        ("etc/hostname", "localhost\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        ("etc/resolv.conf", ""),
        ("etc/machine-id", ""),
    ] {
        let path = root.join(file);
        // resolv.conf may be a copy or a symlink: replace either with a plain file.
        let _ = fs::remove_file(&path);
        fs::write(&path, content).op("write", &path)?;
    }
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let dir = root.join(dir);
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                fs::remove_file(&path).op("remove", &path)?;
            }
        }
    }
    Ok(())
}

/// Comments out getty lines and appends the `/.vzfifo` boot-finished entry.
fn edit_inittab(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 200);
    for line in text.lines() {
        let getty = !line.trim_start().starts_with('#') && line.contains("getty");
        if getty {
            out.push_str("#vz: no ttys in a VE: ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(
        "\n# vz: boot finished, wake `vzctl start --wait` (no-op when nobody waits).\n\
         vz:2345:once:/bin/sh -c '[ -p /.vzfifo ] && : 1<>/.vzfifo'\n",
    );
    out
}

fn mirror_in_one_line(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace().filter(|w| !w.starts_with('['));
        if words.next()? != "deb" {
            return None;
        }
        let uri = words.next()?;
        (words.next()? == suite && uri.starts_with("http")).then(|| uri.to_owned())
    })
}

fn mirror_in_deb822(text: &str, suite: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |key: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')).map(str::trim))
        };
        if !field("Types")?.split_whitespace().any(|t| t == "deb") {
            return None;
        }
        if field("Enabled") == Some("no")
            || !field("Suites")?.split_whitespace().any(|s| s == suite)
        {
            return None;
        }
        field("URIs")?.split_whitespace().find(|u| u.starts_with("http")).map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inittab_loses_gettys_and_gains_the_fifo_entry() {
        let t = "id:2:initdefault:\n1:2345:respawn:/sbin/getty 38400 tty1\n#2:23:respawn:/sbin/getty 38400 tty2\n";
        let out = edit_inittab(t);
        assert!(out.contains("#vz: no ttys in a VE: 1:2345:respawn:/sbin/getty"));
        assert!(out.contains("\n#2:23:respawn"));
        assert!(out.contains("id:2:initdefault:\n"));
        assert!(out.ends_with("vz:2345:once:/bin/sh -c '[ -p /.vzfifo ] && : 1<>/.vzfifo'\n"));
    }

    #[test]
    fn mirrors_are_found_in_both_formats() {
        let deb822 = "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in_deb822(deb822, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(mirror_in_deb822(deb822, "trixie"), None);
        let list = "# x\ndeb-src http://a/debian bookworm main\ndeb [arch=amd64] http://m/debian bookworm main\n";
        assert_eq!(mirror_in_one_line(list, "bookworm").as_deref(), Some("http://m/debian"));
    }

    #[test]
    fn mirror_from_a_fake_etc_apt() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sources.list.d")).unwrap();
        fs::write(
            dir.path().join("sources.list.d/x.sources"),
            "Types: deb\nURIs: https://mirror.example/debian\nSuites: bookworm\n",
        )
        .unwrap();
        let found = DebootstrapBuilder::mirror_from_apt(dir.path(), "bookworm");
        assert_eq!(found.as_deref(), Some("https://mirror.example/debian"));
        assert_eq!(DebootstrapBuilder::mirror_from_apt(dir.path(), "sid"), None);
    }

    #[test]
    fn bad_suite_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::new(dir.path());
        let name: TemplateName = "debian-12-x86_64-minimal".parse().unwrap();
        let err = DebootstrapBuilder::new("--foo", "http://m").build(&store, &name).unwrap_err();
        assert_eq!(err.to_string(), "bad debootstrap suite: \"--foo\"");
        assert!(!store.cache_dir().exists());
    }
}
