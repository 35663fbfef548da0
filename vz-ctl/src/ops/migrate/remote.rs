//! `vzmigrate [--online] [-r yes|no] [--keep-dst] [--check-only] [-t] [--ssh=opts] DEST CTID`
//! (reference §8.2): checks, then the VE's config and action scripts to the destination, then
//! offline (stop, copy the private area, start there) or online (suspend, dump, copy the
//! private area with its file system frozen and the images, restore there, kill here). Every
//! failure before the VE runs on the destination resumes (or starts again) the source and
//! removes what was made on the destination, unless `--keep-dst`. A vzmigrate killed on the
//! way is repaired by the next locking vzctl on either side ([`super::recovery`],
//! [`super::incoming`]).
//!
//! Offline, the private area of the image layout (one sparse file) goes as a sparse `tar`
//! stream, which reads only the file's data (SEEK_DATA); online, it goes into the
//! destination's holder twice, the second time only what changed while the VE was frozen
//! (`frozen.rs`). A simfs tree goes with rsync, once while the VE runs and again while
//! it is frozen or stopped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::frozen::{FrozenPass, image_beside_dump, precopy_image, took_over};
use super::lazy::{PipeMax, abort_lazy_dump, free_port, listening, unlock_network, wait_post_copy};
use super::local::{ACTION_SCRIPTS, lock};
use super::recovery::{MigrationRecord, Phase};
use super::{MigrateError, Remote, Result, Timings, sh_quote as q, vzctl};
use crate::config::{ConfigFile, GlobalConfig, expand_veid};
use crate::ctid::Ctid;
use crate::intent::crash_point;
use crate::output::{say, warn};
use crate::ve::Ve;

/// What `vzmigrate` was asked.
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    /// The destination server (`host` or `user@host`).
    pub dest: String,
    /// The VE.
    pub ctid: u32,
    /// `--online`: migrate a running VE without stopping it.
    pub online: bool,
    /// `-r no`: keep the source's VE (its config renamed `CTID.conf.migrated`).
    pub keep_source: bool,
    /// `--keep-dst`: leave what was copied on the destination after a failure.
    pub keep_dst: bool,
    /// `--check-only`: run the checks and stop.
    pub check_only: bool,
    /// `--ssh=...`: more ssh options.
    pub ssh: String,
    /// `--mode=...`: how an online migration moves the memory.
    pub mode: Mode,
}

/// How an online migration moves the VE's memory (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Post-copy where both CRIUs can (userfaultfd), else the page server.
    #[default]
    Auto,
    /// Dump to files, copy them over ssh, restore.
    Plain,
    /// Pre-copy: the dump streams the pages to a `criu page-server` on the destination.
    PageServer,
    /// Post-copy: the VE runs on the destination at once and takes its pages from the
    /// source's frozen tasks on demand (`criu lazy-pages`).
    Lazy,
    /// Iterative pre-copy (P.Haul's pre-dumps): the memory streamed to the destination's
    /// page server while the VE runs, again and again for what changed, then the final dump
    /// of what is left (soft-dirty tracking needed, `precopy.rs`).
    PreCopy,
}

impl Mode {
    /// `auto`, `plain`, `page-server`, `lazy` or `pre-copy` (P.Haul's `pre-dump` too).
    pub fn parse(word: &str) -> Option<Mode> {
        match word {
            "auto" => Some(Mode::Auto),
            "plain" => Some(Mode::Plain),
            "page-server" => Some(Mode::PageServer),
            "lazy" => Some(Mode::Lazy),
            "pre-copy" | "pre-dump" => Some(Mode::PreCopy),
            _ => None,
        }
    }
}

/// Where the VE goes on the destination, from its vz.conf.
#[derive(Debug)]
pub(super) struct Dest {
    pub(super) remote: Remote,
    pub(super) ctid: u32,
    pub(super) conf_dir: PathBuf,
    pub(super) private: PathBuf,
    pub(super) root: PathBuf,
    pub(super) dump: PathBuf,
    /// Its LOCKDIR (the holder's record, see [`super::incoming`]).
    pub(super) lock_dir: PathBuf,
    /// The destination's CRIU (`CRIU` of its vz.conf).
    pub(super) criu: String,
    /// The destination's address as this host reaches it (for its page server).
    pub(super) host: String,
    /// This host's address as the destination sees it (`SSH_CONNECTION`).
    pub(super) source_addr: String,
    /// The VE's host id range is another VE's there: CTID.conf goes without it and the
    /// destination allocates a free one at the first start (offline migration only).
    pub(super) reallocate_ids: bool,
}

impl Dest {
    fn conf(&self) -> PathBuf {
        self.conf_dir.join(format!("{}.conf", self.ctid))
    }

    /// The pid file of a CRIU daemon (page server, lazy-pages) of this migration there.
    pub(super) fn daemon_pidfile(&self) -> String {
        q(&format!("{}.criu-pid", self.dump.display()))
    }

    /// `vzctl --skiplock ARGS` on the destination (the holder there has the lock).
    pub(super) fn vzctl(&self, args: &str) -> std::result::Result<String, (Option<i32>, String)> {
        let out = self.remote.run(&format!("vzctl --skiplock {args}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether the VE runs on the destination (`None`: cannot tell).
    pub(super) fn is_running(&self) -> Option<bool> {
        let text = self.vzctl(&format!("status {}", self.ctid)).ok()?;
        Some(text.split_whitespace().any(|w| w == "running"))
    }

    /// Whether the destination took the VE over (`vzmigrate __state`: it runs there, or its
    /// record there is committed); `None`: cannot tell.
    pub(super) fn took_over(&self) -> Option<bool> {
        let script = format!("vzmigrate {} {}", super::incoming::STATE_COMMAND, self.ctid);
        let out = self.remote.run(&script).ok()?;
        match String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim() {
            "running" | "committed" => Some(true),
            "none" => Some(false),
            _ => None,
        }
    }

    /// Removes everything of the VE on the destination (it must have had nothing before).
    pub(super) fn remove_all(&self) -> std::result::Result<(), String> {
        let id = self.ctid;
        let mut script = format!(
            "p={pid}; [ -f $p ] && kill $(cat $p) 2>/dev/null; rm -f $p; \
             vzctl --skiplock --quiet stop {id} --fast >/dev/null 2>&1; \
             vzctl --skiplock --quiet umount {id} >/dev/null 2>&1; \
             rm -rf {} {}; rmdir {} 2>/dev/null; rm -f {} {}",
            q(&self.private.to_string_lossy()),
            q(&self.dump.to_string_lossy()),
            q(&self.root.to_string_lossy()),
            q(&self.conf().to_string_lossy()),
            q(&self.lock_dir.join(format!("{id}.migrate")).to_string_lossy()),
            pid = self.daemon_pidfile(),
        );
        for action in ACTION_SCRIPTS {
            script.push(' ');
            script.push_str(&q(&self.conf_dir.join(format!("{id}.{action}")).to_string_lossy()));
        }
        script.push_str("; true");
        self.remote.run(&script).map(|_| ()).map_err(|(_, e)| e)
    }
}

/// Removes the destination's half-made VE on drop, unless disarmed or `--keep-dst`.
struct DestGuard<'a> {
    dest: &'a Dest,
    armed: bool,
    keep: bool,
}

impl Drop for DestGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.keep {
            say(format!("Keeping the destination's copy of CT {} (--keep-dst)", self.dest.ctid));
            return;
        }
        say(format!("Removing the destination's copy of CT {}", self.dest.ctid));
        if let Err(e) = self.dest.remove_all() {
            warn(format!("could not clean the destination up: {e}"));
        }
    }
}

/// vz-cpt's CRIU when vz.conf names none.
pub(super) const DEFAULT_CRIU: &str = "/usr/local/sbin/criu";

/// The CRIU of a vz tree (`CRIU` of its vz.conf, else [`DEFAULT_CRIU`]).
pub(super) fn criu_path(global: &GlobalConfig) -> &str {
    global.get("CRIU").filter(|c| !c.is_empty()).unwrap_or(DEFAULT_CRIU)
}

/// Migrates the VE; returns the phases' timings.
///
/// # Errors
/// [`MigrateError`] with legacy vzmigrate's exit code; the VE then runs (or is stopped, if it
/// was) on the source, and the destination holds nothing of it (unless `--keep-dst`).
pub fn migrate(global: &GlobalConfig, opts: &MigrateOptions) -> Result<Timings> {
    let _lock = lock(global, opts.ctid)?;
    let ve = Ve::load(global.clone(), Ctid::resolve(&opts.ctid.to_string(), &global.names_dir())?)?;
    if ve.config.is_none() {
        return Err(MigrateError::NotExist(opts.ctid));
    }
    let status = ve.status()?;
    if opts.online && !status.running {
        return Err(MigrateError::Stopped(opts.ctid));
    }
    let dest = check_dest(&ve, opts)?;
    super::precopy::check(&ve, opts)?;
    if opts.check_only {
        say("Check passed");
        return Ok(Timings::default());
    }
    // Dropped last: a failure undone here needs no repair (see `recovery`).
    let mut record = MigrationRecord::begin(&ve, &dest, opts, status.running)?;
    record.hold_destination(&dest)?;
    let mut guard = DestGuard { dest: &dest, armed: true, keep: opts.keep_dst };
    send_config(&ve, &dest)?;
    crash_point("migrate:copying");
    let timings = if opts.online {
        let mode = choose_mode(&ve, &dest, opts.mode);
        say(format!("Online migration, memory: {mode:?}"));
        online(&ve, &dest, mode, opts.mode == Mode::Auto, &mut record)
    } else {
        offline(&ve, &dest, status.running, &mut record)
    };
    if record.is_kept() {
        // Which side has it is the next command's to find out: nothing is removed.
        guard.armed = false;
    }
    let timings = timings?;
    guard.armed = false;
    drop(guard);
    finish_source(&ve, opts.keep_source)?;
    record.done();
    say(format!("Migration of CT {} to {} completed", opts.ctid, opts.dest));
    Ok(timings)
}

/// The checks of legacy vzmigrate: ssh (4), vz there (14), its vz.conf (19), the VE not
/// there (9), its addresses free there (12).
fn check_dest(ve: &Ve, opts: &MigrateOptions) -> Result<Dest> {
    let mut remote = Remote::new(&opts.dest, &opts.ssh);
    say(format!("Checking the destination {}", remote.target()));
    remote.connect().map_err(MigrateError::Connect)?;
    remote.run("true").map_err(|(_, e)| MigrateError::Connect(e))?;
    remote.run("command -v vzctl >/dev/null").map_err(|(_, e)| MigrateError::NoVz(e))?;
    let conf = remote
        .run(r#"cat "${VZ_CONFIG:-/etc/vz/vz.conf}""#)
        .map_err(|(_, e)| MigrateError::RemoteConf(e))?;
    let (file, _) = ConfigFile::parse(&String::from_utf8_lossy(&conf.stdout));
    let global = GlobalConfig::new(PathBuf::from("destination vz.conf"), file);
    let ctid = opts.ctid;
    let path = |key: &str| {
        global
            .get(key)
            .filter(|v| !v.is_empty())
            .map(|v| PathBuf::from(expand_veid(v, ctid)))
            .ok_or_else(|| MigrateError::RemoteConf(format!("{key} is not set")))
    };
    let connection =
        remote.run("echo $SSH_CONNECTION").map_err(|(_, e)| MigrateError::Connect(e))?;
    let connection = String::from_utf8_lossy(&connection.stdout).into_owned();
    let host = remote.target().rsplit_once('@').map_or(remote.target(), |(_, h)| h).to_owned();
    let dest = Dest {
        ctid,
        conf_dir: global.conf_dir(),
        private: path("VE_PRIVATE")?,
        root: path("VE_ROOT")?,
        dump: global.dump_dir().join(format!("Dump.{ctid}")),
        lock_dir: global.lock_dir(),
        criu: criu_path(&global).to_owned(),
        host,
        source_addr: connection.split_whitespace().next().unwrap_or_default().to_owned(),
        remote,
        reallocate_ids: false,
    };
    let exists = format!(
        "[ -e {} ] || [ -e {} ]",
        q(&dest.conf().to_string_lossy()),
        q(&dest.private.to_string_lossy())
    );
    match dest.remote.run(&exists) {
        Ok(_) => return Err(MigrateError::Exists(ctid)),
        Err((Some(1), _)) => {}
        Err((_, e)) => return Err(MigrateError::Connect(e)),
    }
    let used = dest.remote.run("vzlist -a -H -o ip").map_err(|(_, e)| MigrateError::NoVz(e))?;
    let used = String::from_utf8_lossy(&used.stdout).into_owned();
    for ip in ve.config()?.ip_addresses() {
        let ip = ip.split('/').next().unwrap_or_default().to_owned();
        if used.split_whitespace().any(|w| w == ip) {
            return Err(MigrateError::IpInUse(ip));
        }
    }
    let mut dest = dest;
    if let Some(map) =
        crate::idmap::recorded(ve.config()?)?.and_then(crate::idmap::Identity::id_map)
        && ids_taken_there(&dest, &map)?
    {
        if opts.online {
            return Err(MigrateError::IdsInUse(format!("{}:{}", map.uid_base, map.gid_base)));
        }
        dest.reallocate_ids = true;
    }
    Ok(dest)
}

/// Whether a VE of the destination has host ids of `map`'s range (its CTID.conf files'
/// LOCAL_UID and LOCAL_GID; files on disk keep ordinary ids, so any range serves the VE).
fn ids_taken_there(dest: &Dest, map: &vz_ns::IdMap) -> Result<bool> {
    let grep = format!(
        "cat {}/*.conf 2>/dev/null | grep -E '^LOCAL_(UID|GID)=' || true",
        q(&dest.conf_dir.to_string_lossy())
    );
    let out = dest.remote.run(&grep).map_err(|(_, e)| MigrateError::Connect(e))?;
    let overlaps =
        |a: u32, b: u32| a < b.saturating_add(map.count) && b < a.saturating_add(map.count);
    Ok(String::from_utf8_lossy(&out.stdout).lines().any(|line| {
        let Some((key, value)) = line.split_once('=') else { return false };
        let Ok(base) = value.trim().trim_matches('"').parse::<u32>() else { return false };
        match key {
            "LOCAL_UID" => base != 0 && overlaps(base, map.uid_base),
            _ => base != 0 && overlaps(base, map.gid_base),
        }
    }))
}

/// CTID.conf (its paths the destination's) and the action scripts.
fn send_config(ve: &Ve, dest: &Dest) -> Result<()> {
    let mut file = ve.config()?.file().clone();
    if dest.reallocate_ids {
        file.remove("LOCAL_UID");
        file.remove("LOCAL_GID");
    }
    file.set("VE_PRIVATE", &dest.private.display().to_string());
    file.set("VE_ROOT", &dest.root.display().to_string());
    let put = |to: &Path, data: &[u8]| {
        let to = to.to_string_lossy();
        let script = format!(
            "mkdir -p {dir} {root} && cat > {t}.tmp && mv {t}.tmp {t}",
            dir = q(&dest.conf_dir.to_string_lossy()),
            root = q(&dest.root.to_string_lossy()),
            t = q(&to),
        );
        dest.remote
            .run_with_input(&script, data)
            .map(|_| ())
            .map_err(|(_, e)| MigrateError::Copy(e))
    };
    put(&dest.conf(), file.to_text().as_bytes())?;
    let conf_dir = ve.global.conf_dir();
    for action in ACTION_SCRIPTS {
        let from = conf_dir.join(format!("{}.{action}", ve.ctid));
        if let Ok(data) = std::fs::read(&from) {
            let to = dest.conf_dir.join(format!("{}.{action}", ve.ctid));
            put(&to, &data)?;
            dest.remote
                .run(&format!("chmod 755 {}", q(&to.to_string_lossy())))
                .map_err(|(_, e)| MigrateError::Copy(e))?;
        }
    }
    Ok(())
}

/// Copies the private area: a sparse tar stream of the image layout, rsync of a simfs tree.
pub(super) fn copy_private(ve: &Ve, dest: &Dest) -> std::result::Result<(), String> {
    let private = ve.private().map_err(|e| e.to_string())?;
    let dst = q(&dest.private.to_string_lossy());
    if private.join("root.hdd").is_dir() {
        let mut tar = Command::new("tar");
        tar.args(["-cSf", "-", "--numeric-owner", "-C"]).arg(&private).arg(".");
        let script = format!("mkdir -p {dst} && tar -xpf - --numeric-owner -C {dst}");
        return dest.remote.pipe(tar, &script);
    }
    dest.remote.run(&format!("mkdir -p {dst}")).map_err(|(_, e)| e)?;
    let from = format!("{}/", private.display());
    let to = format!("{}:{}/", dest.remote.target(), dest.private.display());
    let shell = dest.remote.rsync_shell();
    let args = ["-aHAX", "--numeric-ids", "--sparse", "--delete", "-e", &shell, &from, &to];
    let out = Command::new("rsync").args(args).output().map_err(|e| format!("run rsync: {e}"))?;
    // 24: files vanished while the VE ran (the second pass catches them).
    match out.status.code() {
        Some(0 | 24) => Ok(()),
        _ => Err(super::failure_text("rsync", &args, &out)),
    }
}

/// The image of an image-layout VE (`None` for simfs).
fn image_of(ve: &Ve) -> Option<PathBuf> {
    let image = ve.private().ok()?.join("root.hdd/root.img");
    image.is_file().then_some(image)
}

/// Offline: stop here, copy, start there (if it ran); on failure the source starts again.
fn offline(ve: &Ve, dest: &Dest, running: bool, record: &mut MigrationRecord) -> Result<Timings> {
    let mut t = Timings::default();
    let id = ve.ctid.to_string();
    let is_simfs = !ve.private()?.join("root.hdd").is_dir();
    if running && is_simfs {
        t.phase("First rsync", || copy_private(ve, dest)).map_err(MigrateError::Copy)?;
    }
    let stopped = Instant::now();
    record.phase(Phase::Stopped)?;
    if running {
        say(format!("Stopping CT {id}"));
        t.phase("Stop", || vzctl(&["stop", &id])).map_err(MigrateError::SourceStop)?;
    } else if ve.is_mounted()? {
        vzctl(&["umount", &id]).map_err(MigrateError::SourceStop)?;
    }
    crash_point("migrate:stopped");
    let restart = |e: MigrateError| {
        if running && let Err(e) = vzctl(&["start", &id]) {
            warn(format!("could not start CT {id} again on the source: {e}"));
        }
        e
    };
    say("Copying the private area");
    t.phase("Copy private area", || copy_private(ve, dest))
        .map_err(|e| restart(MigrateError::Copy(e)))?;
    record.phase(Phase::Restoring).map_err(restart)?;
    crash_point("migrate:restoring");
    if running {
        say(format!("Starting CT {id} on the destination"));
        t.phase("Start", || dest.vzctl(&format!("start {id}")))
            .map_err(|(_, e)| restart(MigrateError::DestStart(e)))?;
        crash_point("migrate:restored");
        t.set_frozen(stopped.elapsed());
    }
    record.commit(dest).map_err(restart)?;
    Ok(t)
}

/// `Auto` made concrete: post-copy if both CRIUs have userfaultfd (non-cooperative) and the
/// restored tasks may open one, else the page server. A VE of its own user namespace has no
/// CAP_SYS_PTRACE of the host, so its tasks get a userfaultfd only where the destination
/// allows it to everyone (`vm.unprivileged_userfaultfd=1`).
fn choose_mode(ve: &Ve, dest: &Dest, mode: Mode) -> Mode {
    if mode != Mode::Auto {
        return mode;
    }
    let local = criu_path(&ve.global);
    let here = super::run(local, &["check", "--feature", "uffd-noncoop"]).is_ok();
    let check = format!("{} check --feature uffd-noncoop", q(&dest.criu));
    let own_userns = ve
        .config()
        .ok()
        .and_then(|c| crate::idmap::recorded(c).ok().flatten())
        .and_then(crate::idmap::Identity::id_map)
        .is_some();
    let uffd_for_all = || {
        let sysctl = "cat /proc/sys/vm/unprivileged_userfaultfd";
        dest.remote.run(sysctl).is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "1")
    };
    let lazy = here && dest.remote.run(&check).is_ok() && (!own_userns || uffd_for_all());
    if lazy {
        Mode::Lazy
    } else if super::precopy::available(ve) {
        Mode::PreCopy
    } else {
        Mode::PageServer
    }
}

/// Online: suspend, dump, copy, restore there; on failure the source resumes.
/// `fallback` (the mode was chosen, not given): a page server that cannot start on the
/// destination makes it a plain dump, copy and restore instead of a failure.
fn online(
    ve: &Ve,
    dest: &Dest,
    mode: Mode,
    fallback: bool,
    record: &mut MigrationRecord,
) -> Result<Timings> {
    let mut t = Timings::default();
    let id = ve.ctid.to_string();
    let root = ve.root()?;
    let is_simfs = !ve.private()?.join("root.hdd").is_dir();
    if is_simfs {
        t.phase("First rsync", || copy_private(ve, dest)).map_err(MigrateError::Copy)?;
    }
    let image = image_of(ve);
    let sent = match &image {
        Some(image) => Some(
            t.phase("First copy of the image", || precopy_image(ve, dest, record, image))
                .map_err(MigrateError::Copy)?,
        ),
        None => None,
    };
    let images = ve.global.dump_dir().join(format!("Dump.{id}.migrate"));
    let _ = std::fs::remove_dir_all(&images);
    let images_arg = images.to_string_lossy().into_owned();
    let mut dump_args = vec!["chkpnt".to_owned(), id.clone(), "--dump".into(), "--dumpfile".into()];
    dump_args.push(images_arg.clone());
    let mut lazy_port = None;
    match mode {
        Mode::PageServer => match super::precopy::start_page_server(dest, None, None, 0) {
            Ok(port) => {
                crash_point("migrate:page-server");
                dump_args.extend(["--page-server".into(), format!("{}:{port}", dest.host)]);
            }
            Err(e) if fallback => {
                let why = e.lines().last().unwrap_or_default().to_owned();
                say(format!(
                    "The page server cannot start on the destination ({why}): \
                     falling back to a plain dump, copy and restore"
                ));
                tracing::info!("page server on the destination: {e}");
            }
            Err(e) => return Err(MigrateError::DestStart(format!("the page server: {e}"))),
        },
        Mode::Lazy => {
            let port = free_port().map_err(MigrateError::Other)?;
            dump_args.extend(["--lazy-pages".into(), "--page-server".into()]);
            dump_args.push(format!("{}:{port}", dest.source_addr));
            lazy_port = Some(port);
        }
        Mode::PreCopy => {
            dump_args.extend(super::precopy::iterate(ve, dest, &images, fallback, &mut t)?)
        }
        Mode::Plain | Mode::Auto => {}
    }
    let _pipe_max = lazy_port.map(|_| PipeMax::raise());
    // CRIU's kernel cache made now, not in the dump (the first after a boot).
    vz_cpt::warm_kernel_cache(&vz_cpt::Criu::at(criu_path(&ve.global)));
    record.phase(Phase::Frozen)?;
    let frozen = Instant::now();
    say(format!("Suspending CT {id}"));
    let resume = |e: MigrateError| {
        // A CRIU killed in the middle leaves its network lock (reference §9.3).
        match unlock_network(ve) {
            Ok(true) => say(format!("CRIU's network lock of CT {id} removed")),
            Ok(false) => {}
            Err(e) => warn(format!("CRIU's network lock of CT {id}: {e}")),
        }
        if let Err(e) = vzctl(&["chkpnt", &id, "--resume"]) {
            warn(format!("could not resume CT {id} on the source: {e}"));
        }
        let _ = std::fs::remove_dir_all(&images);
        let _ = std::fs::remove_dir_all(images.with_extension("migrate.fail"));
        e
    };
    let dump_refs: Vec<&str> = dump_args.iter().map(String::as_str).collect();
    // A lazy dump runs on (serving the pages) until the destination has them all.
    let mut lazy_dump = None;
    let mut early_image = None;
    t.phase("Suspend + Dump", || {
        let suspend = Instant::now();
        vzctl(&["chkpnt", &id, "--suspend"])?;
        tracing::info!(ms = suspend.elapsed().as_millis(), "suspended");
        let Some(port) = lazy_port else {
            return vzctl(&dump_refs).map(|_| ());
        };
        let mut child = std::process::Command::new(super::local_vzctl())
            .arg("--skiplock")
            .args(&dump_refs)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("run vzctl: {e}"))?;
        // While CRIU works (its own process), the image's frozen pass.
        if let (Some(image), Some(sent)) = (&image, &sent) {
            early_image = Some(image_beside_dump(ve, dest, record, &root, image, sent));
        }
        let start = Instant::now();
        while !listening(port) {
            if let Ok(Some(_)) = child.try_wait() {
                let out = child.wait_with_output().map_err(|e| e.to_string())?;
                return Err(super::failure_text("vzctl", &dump_refs, &out));
            }
            if start.elapsed() > std::time::Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the lazy dump's page server did not listen within 120 s".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        lazy_dump = Some(child);
        Ok(())
    })
    .map_err(|e| resume(MigrateError::SourceStop(e)))?;
    super::precopy::dumped(&images);
    if let (Some(child), Some(port)) = (&lazy_dump, lazy_port) {
        record.note("lazy_port", &port.to_string())?;
        record.note("dump_pid", &child.id().to_string())?;
    }
    crash_point("migrate:frozen");
    let stop_lazy_dump = |dump: &mut Option<std::process::Child>| {
        if let (Some(child), Some(port)) = (dump.take(), lazy_port) {
            abort_lazy_dump(child, &dest.source_addr, port);
        }
    };
    say("Copying the private area and the dump");
    // One stream into the destination's holder: the dump's images, then (the file system
    // frozen meanwhile) what changed in the image; the restore asked right behind it, so the
    // holder starts it the moment the last byte is in.
    let copy_start = Instant::now();
    let pass = FrozenPass { images: &images, root: &root, is_simfs, image: image.as_deref() };
    let (answers, sent) = pass.send(ve, dest, record, sent.as_ref(), lazy_port, early_image);
    if let Err(e) = sent {
        // A holder that died: the first of its answers that failed says what did.
        let mut error = MigrateError::Copy(e);
        let holder = record.holder()?;
        if holder.is_lost()
            && let Some(failed) =
                answers.into_iter().find_map(|kind| holder.answer().err().map(kind))
        {
            error = failed;
        }
        stop_lazy_dump(&mut lazy_dump);
        return Err(resume(error));
    }
    if let Err(e) = record.phase(Phase::Restoring) {
        stop_lazy_dump(&mut lazy_dump);
        return Err(resume(e));
    }
    crash_point("migrate:restoring");
    say(format!("Restoring CT {id} on the destination"));
    let lazy = if lazy_port.is_some() { " --lazy-pages" } else { "" };
    // From here on the destination may restore it: a lost connection is the holder's to
    // answer (it keeps the lock until its restore has ended).
    let holder = record.holder()?;
    let mut outcome = holder.request(&format!("restore{lazy}")).map_err(MigrateError::DestStart);
    crash_point("migrate:during:restore");
    for failed in answers {
        outcome = outcome.and_then(|()| holder.answer().map_err(failed));
    }
    t.push("Copy private area and dump", copy_start.elapsed());
    let restore_start = Instant::now();
    outcome = outcome.and_then(|()| holder.answer().map_err(MigrateError::DestStart));
    t.push("Undump + Resume", restore_start.elapsed());
    if let Err(e) = outcome {
        match if holder.is_lost() { took_over(dest) } else { Some(false) } {
            Some(true) => warn(format!(
                "the restore's connection failed ({e}), but CT {id} runs on the destination"
            )),
            Some(false) => {
                stop_lazy_dump(&mut lazy_dump);
                return Err(resume(e));
            }
            None => {
                // Neither side may run it: the records stay, the next vzctl asks again.
                record.keep();
                return Err(MigrateError::DestStart(format!(
                    "{e}; whether CT {id} runs on the destination cannot be told: it stays \
                     suspended here until a vzctl command on either side decides"
                )));
            }
        }
    }
    crash_point("migrate:restored");
    t.set_frozen(frozen.elapsed());
    if let Some(child) = lazy_dump.take() {
        // The source serves the pages until the destination has them all.
        let port = lazy_port.unwrap_or_default();
        let holder = record.holder()?;
        let served = t.phase("Post-copy of the memory", || {
            wait_post_copy(child, holder, &dump_refs, &dest.source_addr, port)
        });
        if let Err(why) = served {
            // Without all its pages the destination's VE cannot run on: the source's does.
            // Its network goes first (`--kill`): its sockets' closing must not reach the
            // peers, whose connections the source's VE holds.
            // (The holder kills it at once when its daemon fails.)
            if dest.is_running() != Some(false)
                && let Err((_, e)) = dest.vzctl(&format!("chkpnt {id} --kill"))
            {
                warn(format!("killing CT {id} on the destination: {e}"));
                let _ = dest.vzctl(&format!("stop {id} --fast"));
            }
            return Err(resume(MigrateError::DestStart(format!("post-copy failed: {why}"))));
        }
    }
    // From here on the destination has it: a killed vzmigrate's repair finishes the source.
    record.commit(dest).map_err(resume)?;
    announce(ve, dest);
    say(format!("Killing CT {id} on the source"));
    if let Err(e) = vzctl(&["chkpnt", &id, "--kill"]) {
        return Err(MigrateError::SourceStop(format!("CT {id} runs on the destination, but: {e}")));
    }
    crash_point("migrate:source-killed");
    let _ = std::fs::remove_dir_all(&images);
    let _ = dest.remote.run(&format!("rm -f {}", dest.daemon_pidfile()));
    Ok(t)
}

/// Makes the VE's addresses reachable at the destination at once, so neighbours forget the
/// source: IPv4 by proxy ARP entries on its up links (other than lo and VEs' own ends) and
/// one unsolicited ARP each (`arping -U`, with non-local binds allowed for the moment it
/// takes); IPv6 by an unsolicited neighbour advertisement each from vz itself
/// ([`super::announce`]) on the devices where venet made its proxy NDP entries.
pub(super) fn announce(ve: &Ve, dest: &Dest) {
    let addresses = ve.config().map(|c| c.ip_addresses()).unwrap_or_default();
    let bare = || addresses.iter().filter_map(|ip| ip.split('/').next());
    let ips: Vec<&str> = bare().filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()).collect();
    if !ips.is_empty() {
        let script = format!(
            "nb=/proc/sys/net/ipv4/ip_nonlocal_bind; old=$(cat $nb); echo 1 > $nb; \
             for dev in $(ip -o link show up | awk -F': ' '{{print $2}}' | cut -d@ -f1); do \
               case $dev in lo|venet*|veth*) continue;; esac; \
               for ip in {ips}; do ip neigh add proxy $ip dev $dev 2>/dev/null; \
                 arping -q -c 1 -U -I $dev -s $ip $ip; done; \
             done; echo $old > $nb",
            ips = ips.join(" ")
        );
        if let Err((_, e)) = dest.remote.run(&script) {
            warn(format!("announcing the addresses on the destination: {e}"));
        }
    }
    if bare().any(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok()) {
        let script = format!("vzmigrate {} {}", super::announce::ANNOUNCE_COMMAND, dest.ctid);
        if let Err((_, e)) = dest.remote.run(&script) {
            warn(format!("advertising the IPv6 addresses on the destination: {e}"));
        }
    }
}

/// After a migration: the source's VE destroyed, or (`-r no`) kept with its config renamed
/// `CTID.conf.migrated`.
pub(super) fn finish_source(ve: &Ve, keep: bool) -> Result<()> {
    let id = ve.ctid.to_string();
    if !keep {
        say(format!("Removing CT {id} on the source"));
        return vzctl(&["destroy", &id]).map(|_| ()).map_err(MigrateError::Other);
    }
    if ve.is_mounted()? {
        vzctl(&["umount", &id]).map_err(MigrateError::Other)?;
    }
    let conf = ve.config_path();
    let migrated = conf.with_extension("conf.migrated");
    std::fs::rename(&conf, &migrated)
        .map_err(|e| MigrateError::Other(format!("rename {}: {e}", conf.display())))
}
