//! What `vzpkg`'s commands do: build, remove and list template caches, with a record of the
//! metadata hash each cache was built from (`$TEMPLATE/cache/.<name>.vzpkg`) and a lock per
//! name (`$TEMPLATE/cache/.<name>.lock`) so that two builds of one cache never race.

use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use vz_template::{
    BuildEvent, BuildStep, BusyboxBuilder, Cache, CacheStore, Compression, DebootstrapBuilder,
    DnfBuilder, TemplateMeta, TemplateName, find_metadata, list_metadata,
};

type Error = Box<dyn std::error::Error>;

/// The host's apt configuration: the default source of Debian mirrors.
const ETC_APT: &str = "/etc/apt";

/// The template directory and its cache store.
pub(crate) struct Vzpkg {
    template_dir: PathBuf,
    store: CacheStore,
    progress: bool,
}

impl Vzpkg {
    pub(crate) fn new(template_dir: &Path) -> Self {
        Vzpkg {
            template_dir: template_dir.to_owned(),
            store: CacheStore::new(template_dir),
            progress: std::io::stderr().is_terminal(),
        }
    }

    fn record_path(&self, name: &TemplateName) -> PathBuf {
        self.store.cache_dir().join(format!(".{name}.vzpkg"))
    }

    /// `create cache` (and, with `force`, `update cache`).
    pub(crate) fn create(&self, input: &str, force: bool) -> Result<(), Error> {
        let meta = match find_metadata(&self.template_dir, input) {
            Ok(meta) => meta,
            Err(vz_template::TemplateError::NoMetadata { .. }) if input == "busybox" => {
                let name: TemplateName = input.parse()?;
                let path = BusyboxBuilder::default().build(&self.store, &name)?;
                println!("Cache {} created", path.display());
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let name = meta.name()?;
        let hash = meta.hash()?;
        fs::create_dir_all(self.store.cache_dir())?;
        let _lock = self.lock(&name)?;
        if !force && let Ok(cache) = self.store.find(&name) {
            match read_record(&self.record_path(&name)).as_deref() {
                Some(h) if h == hash => {
                    println!("Cache {} is up to date", cache.path().display());
                    return Ok(());
                }
                Some(_) => self.note(&format!("metadata of {name} changed: rebuilding")),
                None => {
                    println!(
                        "Cache {} exists and was not built from metadata; \
                         `vzpkg update cache {name}` rebuilds it",
                        cache.path().display()
                    );
                    return Ok(());
                }
            }
        }
        self.remove_stale_work(&name);
        let started = Instant::now();
        let path = self.build(&meta, &name)?;
        // The record goes last: a cache without one is never taken as up to date.
        let record = self.record_path(&name);
        fs::write(&record, format!("HASH={hash}\nBUILT={}\n", unix_now()))?;
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "Cache {} created ({}, {:.0} s)",
            path.display(),
            human(size),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    fn build(&self, meta: &TemplateMeta, name: &TemplateName) -> Result<PathBuf, Error> {
        let template = self.template_dir.to_string_lossy();
        let mut display = Progress::new(self.progress);
        let built = match meta.get("BUILDER").unwrap_or("debootstrap") {
            "dnf" => {
                let builder = DnfBuilder::from_metadata(meta)?
                    .env("TEMPLATE", &template)
                    .env("OSTEMPLATE", name.as_str())
                    .env("OSSET", meta.set());
                self.note(&format!("building {name} from {}", builder.config().display()));
                builder.build_with(&self.store, name, &mut |event| display.event(event))
            }
            _ => {
                let builder = DebootstrapBuilder::from_metadata(meta, Path::new(ETC_APT))?
                    .env("TEMPLATE", &template)
                    .env("OSTEMPLATE", name.as_str())
                    .env("OSSET", meta.set());
                self.note(&format!("building {name} from {}", builder.mirror()));
                builder.build_with(&self.store, name, &mut |event| display.event(event))
            }
        };
        display.finish();
        // Other suffixes of the same name would be found first by `vzctl create`.
        if built.is_ok() {
            for c in Compression::LOOKUP_ORDER {
                if c != Compression::Gzip {
                    let _ = fs::remove_file(self.store.path_for(name, c));
                }
            }
        }
        Ok(built?)
    }

    /// `remove cache`: every cache file of the name, and its record.
    pub(crate) fn remove(&self, input: &str) -> Result<(), Error> {
        let name = match find_metadata(&self.template_dir, input) {
            Ok(meta) => meta.name()?,
            Err(_) => input.parse()?,
        };
        let _lock = self.lock(&name)?;
        let mut removed = false;
        for c in Compression::LOOKUP_ORDER {
            let path = self.store.path_for(&name, c);
            match fs::remove_file(&path) {
                Ok(()) => {
                    println!("Cache {} removed", path.display());
                    removed = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("remove {}: {e}", path.display()).into()),
            }
        }
        let _ = fs::remove_file(self.record_path(&name));
        let _ = fs::remove_file(self.store.cache_dir().join(format!(".{name}.lock")));
        if !removed {
            return Err(
                format!("no cache of {name} in {}", self.store.cache_dir().display()).into()
            );
        }
        Ok(())
    }

    /// `list`: every name with a cache or metadata.
    pub(crate) fn list(&self) -> Result<(), Error> {
        let caches = self.store.list()?;
        let metas = list_metadata(&self.template_dir)?;
        let mut rows: Vec<(String, Option<&Cache>, Option<&TemplateMeta>)> = Vec::new();
        for meta in &metas {
            let name = meta.name()?;
            let cache = caches.iter().find(|c| *c.name() == name);
            rows.push((name.to_string(), cache, Some(meta)));
        }
        for cache in &caches {
            if !rows.iter().any(|(n, _, _)| n == cache.name().as_str()) {
                rows.push((cache.name().to_string(), Some(cache), None));
            }
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let (n, z, c, m) = ("OSTEMPLATE", "SIZE", "CACHE DATE", "METADATA DATE");
        println!("{n:<32} {z:>8} {c:<16} {m:<16} STATUS");
        for (name, cache, meta) in rows {
            let (size, cache_date) = match cache.and_then(|c| fs::metadata(c.path()).ok()) {
                Some(m) => (human(m.len()), date(m.modified().ok())),
                None => ("-".to_owned(), "-".to_owned()),
            };
            let meta_date = meta.map_or_else(|| "-".to_owned(), |m| date(newest(m.config_dir())));
            let status = match (cache, meta) {
                (None, Some(_)) => "not built",
                (Some(_), None) => "cache only",
                (Some(_), Some(m)) => {
                    let record = read_record(&self.record_path(&m.name()?));
                    match (record, m.hash().ok()) {
                        (Some(r), Some(h)) if r == h => "up to date",
                        (Some(_), _) => "outdated",
                        (None, _) => "not built from metadata",
                    }
                }
                (None, None) => "-",
            };
            println!("{name:<32} {size:>8} {cache_date:<16} {meta_date:<16} {status}");
        }
        Ok(())
    }

    /// Removes the work trees of earlier builds of `name` that were killed (the caller holds
    /// the name's lock, so no build of it runs). One with something still mounted in it (a
    /// killed debootstrap's /proc) is left alone, with a warning.
    fn remove_stale_work(&self, name: &TemplateName) {
        let prefix = format!(".{name}.root-");
        let Ok(entries) = fs::read_dir(self.store.cache_dir()) else { return };
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let path = entry.path();
            let busy = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .any(|m| Path::new(m).starts_with(&path));
            if busy {
                eprintln!("vzpkg: warning: {} has mounts left by a killed build", path.display());
            } else if let Err(e) = fs::remove_dir_all(&path) {
                eprintln!("vzpkg: warning: cannot remove {}: {e}", path.display());
            }
        }
    }

    fn lock(&self, name: &TemplateName) -> Result<Flock<File>, Error> {
        let path = self.store.cache_dir().join(format!(".{name}.lock"));
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(lock),
            Err((file, _)) => {
                self.note(&format!("waiting for another build of {name}"));
                Flock::lock(file, FlockArg::LockExclusive)
                    .map_err(|(_, e)| format!("lock {}: {e}", path.display()).into())
            }
        }
    }

    fn note(&self, text: &str) {
        if self.progress {
            eprintln!("vzpkg: {text}");
        }
    }
}

/// What `vzpkg install|update|remove CTID pkg…` asks of the VE's package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VeAction {
    /// Install packages.
    Install,
    /// Upgrade the packages given, or everything.
    Update,
    /// Remove packages.
    Remove,
}

/// Whether `name` can be handed to a package manager as one package name or file: letters,
/// digits and `._+:~=/-`, not starting with `-`.
pub(crate) fn valid_package(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._+:~=/-".contains(c))
}

/// The script run by the VE's shell: the VE's own package manager (apt-get, dnf or yum).
pub(crate) fn ve_script(action: VeAction, packages: &[&str]) -> String {
    let args: Vec<String> = packages.iter().map(|p| format!("'{p}'")).collect();
    let (apt, dnf) = match action {
        VeAction::Install => ("apt-get install -y -q \"$@\"", "install \"$@\""),
        VeAction::Update if packages.is_empty() => {
            ("apt-get update -q && apt-get upgrade -y -q", "upgrade")
        }
        VeAction::Update => ("apt-get install -y -q --only-upgrade \"$@\"", "upgrade \"$@\""),
        VeAction::Remove => ("apt-get remove -y -q \"$@\"", "remove \"$@\""),
    };
    format!(
        "set -e\nset -- {}\n\
         if command -v apt-get >/dev/null 2>&1; then\n  export DEBIAN_FRONTEND=noninteractive\n  {apt}\n\
         elif command -v dnf >/dev/null 2>&1; then\n  dnf -y {dnf}\n\
         elif command -v yum >/dev/null 2>&1; then\n  yum -y {dnf}\n\
         else\n  echo 'vzpkg: no package manager (apt-get, dnf, yum) in the container' >&2\n  exit 1\nfi\n",
        args.join(" ")
    )
}

/// Runs the VE's package manager through `vzctl exec2 CTID -` (the sibling vzctl binary);
/// returns its exit code.
pub(crate) fn in_ve(ctid: &str, action: VeAction, packages: &[&str]) -> Result<u8, Error> {
    if let Some(bad) = packages.iter().find(|p| !valid_package(p)) {
        return Err(format!("invalid package name {bad:?}").into());
    }
    let vzctl = std::env::current_exe()?.with_file_name("vzctl");
    let mut child = std::process::Command::new(&vzctl)
        .args(["exec2", ctid, "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {}: {e}", vzctl.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // vzctl may exit before it reads the script (a stopped VE: 31): its code says why.
        match stdin.write_all(ve_script(action, packages).as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            written => written?,
        }
    }
    let status = child.wait()?;
    Ok(status.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1))
}

/// The progress display: one line per step and a status line rewritten in place, only on a
/// terminal.
struct Progress {
    on: bool,
    started: Instant,
    step_started: Instant,
    count: u64,
    open_line: bool,
}

impl Progress {
    fn new(on: bool) -> Self {
        Progress {
            on,
            started: Instant::now(),
            step_started: Instant::now(),
            count: 0,
            open_line: false,
        }
    }

    fn event(&mut self, event: BuildEvent<'_>) {
        if !self.on {
            return;
        }
        let mut err = std::io::stderr().lock();
        match event {
            BuildEvent::Step(step) => {
                self.end_line(&mut err);
                let what = match step {
                    BuildStep::Hook(h) => format!("running {h}"),
                    BuildStep::Download => "downloading and verifying packages".to_owned(),
                    BuildStep::Install => "installing packages".to_owned(),
                    BuildStep::Prepare => "preparing the tree for a VE".to_owned(),
                    BuildStep::Pack => "packing the cache".to_owned(),
                    _ => format!("{step:?}"),
                };
                let _ = writeln!(
                    err,
                    "vzpkg: [{:>4.0} s] {what}",
                    self.started.elapsed().as_secs_f64()
                );
                self.step_started = Instant::now();
                self.count = 0;
            }
            BuildEvent::Output(line) => {
                let Some(rest) = line.strip_prefix("I: ") else { return };
                self.count += 1;
                let mut shown: String = rest.chars().take(60).collect();
                shown.truncate(shown.trim_end().len());
                let _ = write!(
                    err,
                    "\r\x1b[K  {:>5} {shown} ({:.0} s)",
                    self.count,
                    self.step_started.elapsed().as_secs_f64()
                );
                self.open_line = true;
            }
            BuildEvent::Packed { entries, bytes } => {
                let _ = write!(
                    err,
                    "\r\x1b[K  {entries} entries, {} ({:.0} s)",
                    human(bytes),
                    self.step_started.elapsed().as_secs_f64()
                );
                self.open_line = true;
            }
            _ => {}
        }
        let _ = err.flush();
    }

    fn end_line(&mut self, err: &mut impl Write) {
        if self.open_line {
            let _ = writeln!(err);
            self.open_line = false;
        }
    }

    fn finish(&mut self) {
        if self.on {
            self.end_line(&mut std::io::stderr().lock());
        }
    }
}

fn read_record(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix("HASH=")).map(str::to_owned)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The newest modification time of the files of a metadata directory.
fn newest(dir: &Path) -> Option<SystemTime> {
    let mut best = fs::metadata(dir).and_then(|m| m.modified()).ok();
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let t = if entry.path().is_dir() {
            newest(&entry.path())
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        best = best.max(t);
    }
    best
}

/// `1.5M`-style sizes (powers of 1024).
fn human(bytes: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    #[allow(clippy::cast_precision_loss, reason = "a display value")]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes}B") } else { format!("{value:.1}{}", units[unit]) }
}

/// `YYYY-MM-DD HH:MM` in UTC.
fn date(t: Option<SystemTime>) -> String {
    let Some(secs) = t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()) else {
        return "-".to_owned();
    };
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_are_checked_and_quoted() {
        for ok in ["hello", "libc6:amd64", "g++-12", "/root/hello.deb", "pkg=1.0~rc1"] {
            assert!(valid_package(ok), "{ok}");
        }
        for bad in ["", "-y", "a b", "a;reboot", "a'b", "$(x)", "a|b"] {
            assert!(!valid_package(bad), "{bad}");
        }
        let s = ve_script(VeAction::Install, &["hello", "/root/x.deb"]);
        assert!(s.contains("set -- 'hello' '/root/x.deb'\n"), "{s}");
        assert!(s.contains("apt-get install -y -q \"$@\""), "{s}");
        assert!(ve_script(VeAction::Update, &[]).contains("apt-get update -q && apt-get upgrade"));
        assert!(ve_script(VeAction::Remove, &["x"]).contains("dnf -y remove \"$@\""));
    }

    #[test]
    fn the_script_says_when_there_is_no_package_manager() {
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &ve_script(VeAction::Install, &["x"])])
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no package manager"));
    }

    #[test]
    fn dates_and_sizes() {
        let at = |s: u64| date(Some(UNIX_EPOCH + std::time::Duration::from_secs(s)));
        assert_eq!(at(0), "1970-01-01 00:00");
        assert_eq!(at(951_782_400), "2000-02-29 00:00");
        assert_eq!(at(1_796_601_600 + 3_660), "2026-12-07 01:01");
        assert_eq!(date(None), "-");
        assert_eq!(human(512), "512B");
        assert_eq!(human(1536), "1.5K");
        assert_eq!(human(100 << 20), "100.0M");
    }
}
