//! `vzctl chkpnt`/`suspend` and `vzctl restore`/`resume` (reference §8.1), on vz-cpt:
//! the full checkpoint (dump, then release the VE's network, cgroup and mount), OpenVZ's
//! stages `--suspend`, `--dump`, `--resume`, `--kill` one at a time, and the restore into a
//! cgroup made and configured from CTID.conf first (criu-vz.md §5 way (b)), the host ends of
//! the network set up again at CRIU's `network-unlock` (vz locks and unlocks, not CRIU).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vz_ns::net::{Venet, Veth};

use vz_cpt::{
    CriuOptions, DumpSpec, ExternalVeth, Freezer, FreezerState, HookEvent, RestoreSpec,
    RestoreStage,
};

use crate::cgroup::VeCgroup;
use crate::error::{CtlError, IoContext, Result};
use crate::output::say;
use crate::resources;
use crate::undo::Undo;
use crate::ve::Ve;

/// One of OpenVZ's checkpoint stages, callable alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `--suspend`: freeze every task of the VE.
    Suspend,
    /// `--dump`: dump the (suspended) VE, which stays as it is.
    Dump,
    /// `--resume`: thaw the VE.
    Resume,
    /// `--kill`: kill the (suspended) VE and release its network, cgroup and mount.
    Kill,
}

/// Options of `vzctl chkpnt`.
#[derive(Debug, Clone, Default)]
pub struct ChkpntOptions {
    /// One stage, or `None` for the full checkpoint (suspend, dump, kill).
    pub stage: Option<Stage>,
    /// `--dumpfile`: the images directory instead of `DUMPDIR/Dump.<CTID>`.
    pub dumpfile: Option<PathBuf>,
    /// `--page-server ADDR:PORT`: where the pages go (or, lazy, are served from).
    pub page_server: Option<vz_cpt::PageServer>,
    /// `--lazy-pages`: post-copy (vzmigrate).
    pub lazy_pages: bool,
    /// `--prev-images-dir DIR`: the last pre-dump, relative to the dump's directory
    /// (vzmigrate's pre-copy).
    pub parent_images: Option<String>,
}

/// Options of `vzctl restore`.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// `--dumpfile`: the images directory instead of `DUMPDIR/Dump.<CTID>`.
    pub dumpfile: Option<PathBuf>,
    /// `--lazy-pages`: the pages come from a `criu lazy-pages` daemon (vzmigrate).
    pub lazy_pages: bool,
}

/// `ADDR:PORT` of `--page-server` (an IPv6 address in brackets).
///
/// # Errors
/// [`CtlError::BadParameter`] for anything else.
pub fn parse_page_server(value: &str) -> Result<vz_cpt::PageServer> {
    let bad = || CtlError::BadParameter {
        option: "page-server".into(),
        value: value.into(),
        reason: "not ADDR:PORT".into(),
    };
    let (address, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().map_err(|_| bad())?;
    if address.is_empty() {
        return Err(bad());
    }
    Ok(vz_cpt::PageServer { address: address.to_owned(), port })
}

fn chkpnt_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> CtlError {
    CtlError::Chkpnt(e.into())
}

fn restore_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> CtlError {
    CtlError::Restore(e.into())
}

/// The CRIU binary: `CRIU` in vz.conf, else vz-cpt's default.
fn criu(ve: &Ve) -> vz_cpt::Criu {
    ve.global.get("CRIU").map(vz_cpt::Criu::at).unwrap_or_default()
}

fn dump_dir(ve: &Ve, dumpfile: Option<&Path>) -> PathBuf {
    dumpfile.map_or_else(|| ve.dump_file(), Path::to_owned)
}

/// The VE's network as CRIU sees it: the venet pair (when it has addresses) and its veths.
fn external_veths(ve: &Ve) -> Result<Vec<ExternalVeth>> {
    let mut veths = Vec::new();
    if !super::net::addresses(ve)?.is_empty() {
        veths.push(ExternalVeth {
            inside: vz_ns::net::Venet::VE_IFNAME.to_owned(),
            outside: super::net::host_ifname(ve)?,
            bridge: None,
        });
    }
    // The bridge is joined by vz-ns with the rest of the host end (Veth::adopt_host_end),
    // not by CRIU: both at once fail (EBUSY).
    for spec in super::net::netifs(ve)? {
        veths.push(ExternalVeth { inside: spec.ifname, outside: spec.host_ifname, bridge: None });
    }
    Ok(veths)
}

/// Checkpoints the VE, or runs one stage. The caller holds its lock.
///
/// # Errors
/// 31 not running; 16 when the checkpoint is refused or fails (the VE then runs on).
pub fn chkpnt(ve: &Ve, opts: &ChkpntOptions) -> Result<()> {
    ve.config()?;
    let cgroup = ve.cgroup()?;
    if !cgroup.has_tasks() {
        return Err(CtlError::NotRunning);
    }
    let pid = ve.init_pid()?;
    let freezer =
        cgroup.freezer().ok_or_else(|| chkpnt_error("the container's cgroup has no freezer"))?;
    let dir = dump_dir(ve, opts.dumpfile.as_deref());
    match opts.stage {
        Some(Stage::Suspend) => {
            say("Suspending container ...");
            freezer.freeze().map_err(chkpnt_error)?;
            say("Container is suspended");
        }
        Some(Stage::Resume) => {
            say("Resuming container ...");
            resume_ve(ve, pid, &freezer).map_err(chkpnt_error)?;
            say("Container is resumed");
        }
        Some(Stage::Dump) => {
            say("Dumping container ...");
            let frozen = freezer.state().map_err(chkpnt_error)? == FreezerState::Frozen;
            let mut spec = dump_spec(ve, &cgroup, pid, &dir, frozen.then_some(freezer), true)?;
            spec.options.page_server.clone_from(&opts.page_server);
            spec.options.lazy_pages = opts.lazy_pages;
            spec.options.parent_images.clone_from(&opts.parent_images);
            // The VE's network locked by vz, not CRIU, whose unlock at the end of a dump that
            // leaves the VE would cost a grace period: the lock stays until --resume lifts
            // it, or the VE dies with it (--kill, or after a migration). It is made while
            // CRIU starts, and is in place at CRIU's `pre-dump`, before anything is read.
            let mut lock = Some(PendingLock::start(pid).map_err(chkpnt_error)?);
            let mut wait_lock = || lock.take().map_or(Ok(()), PendingLock::wait);
            spec.options.network_lock = vz_cpt::NetworkLock::Caller;
            let dumped = dump_with_dev(ve, &spec, &mut |stage| {
                if stage == "pre-dump" { wait_lock() } else { Ok(()) }
            });
            // (CRIU that failed before its pre-dump: the lock is whole all the same.)
            let locked = wait_lock().map_err(chkpnt_error);
            if dumped.is_err() || locked.is_err() {
                // A failed dump leaves the VE as it was, its network open (CRIU's own lock
                // is lifted on a failure too).
                if let Err(e) = unlock_network(pid) {
                    crate::output::warn(format_args!("after the failed dump: {e}"));
                }
            }
            locked?;
            dumped?;
            if frozen {
                // A suspended VE's kernel must not take (and acknowledge) packets the dump
                // does not hold, also once the lock is lifted: its host ends stay down until
                // --resume.
                for veth in external_veths(ve)? {
                    vz_ns::net::set_link_down(&veth.outside).map_err(chkpnt_error)?;
                }
            }
            say(format!("Container is dumped to {}", dir.display()));
        }
        Some(Stage::Kill) => {
            say("Killing container ...");
            // The network goes first: after a `--dump` the VE's sockets are live, and their
            // closing would reach the peers (FIN/RST) and end connections the dump holds.
            super::net::teardown(ve, &super::net::netifs(ve).unwrap_or_default());
            vz_cpt::kill(pid, &cgroup.procs_files(), Some(&freezer)).map_err(chkpnt_error)?;
            release(ve)?;
            say("Container was killed");
        }
        None => {
            say("Setting up checkpoint...");
            let frozen = freezer.state().map_err(chkpnt_error)? == FreezerState::Frozen;
            let spec = dump_spec(ve, &cgroup, pid, &dir, frozen.then_some(freezer), false)?;
            let report = dump_with_dev(ve, &spec, &mut |_| Ok(()))?;
            tracing::info!(ms = report.elapsed.as_millis(), "CT {} dumped", ve.ctid);
            release(ve)?;
            say("Checkpointing completed successfully");
        }
    }
    Ok(())
}

/// The file beside CRIU's images that holds what the VE made on its /dev (see
/// [`vz_ns::save_dev_tree`]).
const DEV_ARCHIVE: &str = "vz-dev.tar";

/// Saves the VE's /dev (beside the images directory, moved in once the dump succeeded: CRIU
/// wants a directory without images of another dump), then dumps with CRIU (`hook` told
/// its stages).
fn dump_with_dev(
    ve: &Ve,
    spec: &DumpSpec,
    hook: &mut dyn FnMut(&str) -> std::result::Result<(), String>,
) -> Result<vz_cpt::DumpReport> {
    let id_map = crate::idmap::recorded(ve.config()?)?.and_then(crate::idmap::Identity::id_map);
    let mut staged = spec.images_dir.clone().into_os_string();
    staged.push(".dev.tar");
    let staged = PathBuf::from(staged);
    vz_ns::save_dev_tree(spec.init_pid, id_map.as_ref(), &staged).map_err(chkpnt_error)?;
    // Written before the dump: a lazy dump (vzmigrate) copies the images while it runs.
    let dir = &spec.images_dir;
    let key = spec.external.iter().find(|e| e.starts_with("tty["));
    // (Not into another dump's directory: vz_cpt::dump refuses that one.)
    if let Some(key) = key.filter(|_| !dir.join("inventory.img").exists()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).op("create", dir)?;
        let path = dir.join(CONSOLE_KEY);
        std::fs::write(&path, format!("{key}\n")).op("write", &path)?;
    }
    let dumped = vz_cpt::dump_with_hook(&criu(ve), spec, hook).map_err(chkpnt_error);
    crate::cgroup_mount::favor_again(&ve.global);
    let placed = match &dumped {
        Ok(_) => std::fs::rename(&staged, spec.images_dir.join(DEV_ARCHIVE)).op("rename", &staged),
        Err(_) => std::fs::remove_file(&staged).op("remove", &staged),
    };
    let report = dumped?;
    placed?;
    Ok(report)
}

/// The file beside CRIU's images that names the VE's console pty, dumped as an external
/// tty (its master is the console server's, outside the VE): its key for `--inherit-fd`.
const CONSOLE_KEY: &str = "vz-console.tty";

/// CRIU's key of the console of the VE whose init is `pid` (`tty[RDEV:DEV]` of its
/// `pts/0`), if it has one of its own (/dev/console links there, see vz_ctl::console).
fn console_tty(pid: i32) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/root/dev/console")).ok()?;
    if link != Path::new("pts/0") {
        return None;
    }
    let stat = nix::sys::stat::stat(format!("/proc/{pid}/root/dev/pts/0").as_str()).ok()?;
    Some(format!("tty[{:x}:{:x}]", stat.st_rdev, stat.st_dev))
}

/// The VE's /dev/pts as an external mount when it has a console of its own: a restore
/// mounts a new devpts instance whose first pty is the console again (`host`; empty at
/// dump), and CRIU binds it there.
fn pts_mount(host: PathBuf) -> vz_cpt::ExternalMount {
    vz_cpt::ExternalMount { inside: "/dev/pts".into(), key: "vzpts".into(), host }
}

fn dump_spec(
    ve: &Ve,
    cgroup: &VeCgroup,
    pid: i32,
    dir: &Path,
    freezer: Option<Freezer>,
    leave_running: bool,
) -> Result<DumpSpec> {
    let veths = external_veths(ve)?;
    // The /dev nodes are binds of the host's: external mounts CRIU binds again.
    let mut external_mounts = vec![dev_mount(PathBuf::new())];
    let mut external = vec![EXTERNAL_BINDS.to_owned()];
    if let Some(key) = console_tty(pid) {
        external_mounts.push(pts_mount(PathBuf::new()));
        external.push(key);
    }
    Ok(DumpSpec {
        init_pid: pid,
        images_dir: dir.to_owned(),
        cgroup_procs: cgroup.procs_files(),
        freezer,
        host_interfaces: veths.into_iter().map(|v| v.outside).collect(),
        external_mounts,
        external,
        syscall_listener_outside: crate::quotactl::server_of_running(ve).is_some(),
        leave_running,
        options: CriuOptions::default(),
    })
}

/// What a dumped or killed VE leaves to the host: its network's host side, its cgroup, its
/// mount.
fn release(ve: &Ve) -> Result<()> {
    super::net::teardown(ve, &super::net::netifs(ve).unwrap_or_default());
    ve.cgroup()?.remove()?;
    if ve.is_mounted()? {
        super::mount::unmount_root(ve)?;
    }
    Ok(())
}

/// Restores the VE from its dump. On success the default dump is removed (a `--dumpfile`
/// is kept); on failure the dump is intact and the VE is stopped and unmounted again. The
/// caller holds its lock.
///
/// # Errors
/// 32 running; 17 when there is no dump or the restore fails (CRIU's log named).
pub fn restore(ve: &Ve, opts: &RestoreOptions) -> Result<()> {
    ve.config()?;
    let cgroup = ve.cgroup()?;
    if cgroup.has_tasks() {
        return Err(CtlError::AlreadyRunning);
    }
    let dir = dump_dir(ve, opts.dumpfile.as_deref());
    if !dir.join("inventory.img").is_file() {
        return Err(restore_error(format!("Dump file {} does not exist", dir.display())));
    }
    say("Restoring container ...");
    crate::procview::for_restore(ve);
    let mut undo = Undo::new();
    if super::mount::mount(ve)? {
        let root = ve.root()?;
        undo.push("mount", move || vz_quota::PrivateArea::umount(&root).map_err(|e| e.to_string()));
    }
    let root = ve.root()?;
    // The VE's cgroup made and configured from CTID.conf: CRIU (soft) restores into it and
    // does not bring back the devices allowlist or BPF programs of an existing cgroup.
    cgroup.create()?;
    let cg = cgroup.clone();
    undo.push("cgroup", move || {
        cg.kill_all(Duration::from_secs(5)).map_err(|e| e.to_string())?;
        cg.remove().map_err(|e| e.to_string())
    });
    let ubc = resources::ubc_at_start(|k| ve.get(k))?;
    let ctid = ve.ctid.get();
    resources::apply_ubc(ctid, &cgroup, &ubc, None)?;
    resources::apply_cpu(ctid, &cgroup, &resources::cpu_config(|k| ve.get(k))?)?;
    let (_, _, quota_device) = super::start::prepare_init(ve, &root, &cgroup, &ubc)?;
    super::set_live::on_cgroup(ve, &cgroup)?;
    let veths = external_veths(ve)?;
    // A VE of its own user namespace comes back on an idmapped view of its root, with
    // images its root can read (CRIU's restored tasks open some of them themselves).
    let id_map = crate::idmap::recorded(ve.config()?)?.and_then(crate::idmap::Identity::id_map);
    let view = match &id_map {
        Some(map) => {
            give_images(&dir, map)?;
            Some(IdmappedView::attach(ve, &root, map)?)
        }
        None => None,
    };
    let dev = DevSkeleton::mount(ve, id_map.as_ref(), quota_device.as_ref())?;
    let dev_archive = dir.join(DEV_ARCHIVE);
    if dev_archive.is_file() {
        vz_ns::restore_dev_tree(&dev_archive, id_map.as_ref(), &dev.path)
            .map_err(|e| restore_error(format!("the VE's /dev: {e}")))?;
    }
    let mut external_mounts = vec![dev_mount(dev.path.clone())];
    let mut inherit_fds = Vec::new();
    let mut console = match std::fs::read_to_string(dir.join(CONSOLE_KEY)) {
        Ok(key) => Some(ConsolePts::open(ve, id_map.as_ref(), vz_ubc::pty_max(&ubc), key.trim())?),
        Err(_) => None,
    };
    if let Some(console) = &console {
        external_mounts.push(pts_mount(console.path.clone()));
        inherit_fds.push(console.slave.clone());
    }
    let spec = RestoreSpec {
        images_dir: dir.clone(),
        root: view.as_ref().map_or_else(|| root.clone(), |v| v.path.clone()),
        veths,
        external_mounts,
        // The /dev nodes are binds of the host's: external mounts CRIU binds again.
        external: vec![EXTERNAL_BINDS.to_owned()],
        // The VE's own cgroup, also when the dump was made under another VE_CGROUP_PARENT
        // (vzmigrate between servers, or a changed vz.conf).
        cgroup_roots: vec![vz_cpt::CgroupRoot {
            controller: None,
            path: format!("/{}/{ctid}", ve.global.cgroup_parent().trim_matches('/')),
        }],
        cgroup_mode: vz_cpt::CgroupMode::Soft,
        pidfile: None,
        child_of_caller: false,
        inherit_fds,
        // No CRIU lock (its unlock costs a grace period): the host ends stay unconfigured
        // (no route, down) until `network-unlock`, so no packet reaches a socket before the
        // VE's sockets are whole; the dumped lock's rules are left out of the VE's iptables.
        options: CriuOptions {
            lazy_pages: opts.lazy_pages,
            network_lock: vz_cpt::NetworkLock::Caller,
            ..CriuOptions::default()
        },
    };
    let addresses = super::net::addresses(ve)?;
    let venet = super::net::host_ifname(ve)?;
    let netifs = super::net::netifs(ve)?;
    let mut hook = |e: &HookEvent| {
        if e.stage == RestoreStage::PostRestore
            && let Some(map) = &id_map
        {
            // The sub-cgroups CRIU made again (systemd's slices) are root's until given.
            return cgroup.delegate(map.host_uid(0), map.host_gid(0)).map_err(|e| e.to_string());
        }
        if e.stage != RestoreStage::NetworkUnlock {
            return Ok(());
        }
        if !addresses.is_empty() {
            Venet::adopt_host_end(e.init_pid, &venet, &addresses).map_err(|e| e.to_string())?;
        }
        netifs.iter().try_for_each(|n| Veth::adopt_host_end(n).map_err(|e| e.to_string()))
    };
    if opts.lazy_pages {
        wait_lazy_gate(&dir)?;
    }
    let restored = vz_cpt::restore(&criu(ve), &spec, &mut hook).map_err(restore_error);
    crate::cgroup_mount::favor_again(&ve.global);
    drop(view);
    drop(dev);
    let master = console.as_mut().and_then(|c| c.master.take());
    drop(console);
    let restored = restored?;
    super::set_live::dev_nodes(ve, restored.init_pid)?;
    undo.commit();
    if let Some(master) = master
        && let Err(e) = crate::console::ConsoleServer::start(ve, master, restored.init_pid, None)
    {
        // The VE runs; its console's writes fail (EIO) until it is restarted.
        crate::output::warn(format!("Warning: CT {}: {}", ve.ctid, crate::error::chain(&e)));
    }
    if opts.dumpfile.is_none()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!("remove {}: {e}", dir.display());
    }
    tracing::info!(
        pid = restored.init_pid,
        ms = restored.elapsed.as_millis(),
        "CT {ctid} restored"
    );
    say("Restoring completed successfully");
    Ok(())
}

/// A FIFO in the images directory where a restore with `--lazy-pages` waits before CRIU
/// connects to the lazy-pages daemon, when there is one: vzmigrate's holder starts the
/// restore while its daemon starts, and writes one byte once the daemon listens (the FIFO's
/// end without one: the daemon failed). The holder removes it first, so a restore that
/// comes later finds none and goes on.
pub(crate) const LAZY_GATE: &str = "vz-lazy-gate";

fn wait_lazy_gate(dir: &Path) -> Result<()> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let path = dir.join(LAZY_GATE);
    if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_fifo()) {
        return Ok(());
    }
    // Not blocking in the open: with its holder gone, a FIFO has no writer to wait for.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&path);
    let mut gate = match opened {
        Ok(gate) => gate,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(restore_error(format!("open {}: {e}", path.display()))),
    };
    nix::fcntl::fcntl(&gate, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()))
        .map_err(|e| restore_error(format!("{}: {e}", path.display())))?;
    let mut byte = [0u8; 1];
    match gate.read(&mut byte) {
        Ok(1) => Ok(()),
        Ok(_) => Err(restore_error("the lazy-pages daemon did not start")),
        Err(e) => Err(restore_error(format!("read {}: {e}", path.display()))),
    }
}

/// CRIU's `--external mnt[]`: bind mounts from outside the VE (its /dev nodes, bound from
/// the host's /dev by vz-ns) are dumped as external and bound again from the same host paths.
const EXTERNAL_BINDS: &str = "mnt[]";

/// The VE's /dev as an external mount: its tmpfs is not dumped (its device nodes could not be
/// made again in the VE's user namespace); a restore binds a fresh skeleton instead
/// (`host`; empty at dump).
fn dev_mount(host: PathBuf) -> vz_cpt::ExternalMount {
    vz_cpt::ExternalMount { inside: "/dev".into(), key: "vzdev".into(), host }
}

/// A fresh /dev skeleton (`<VZ_RUN_DIR>/<CTID>.cpt-dev`) for the length of a restore; CRIU
/// binds it as the VE's /dev and mounts the node binds, devpts and /dev/shm on it.
struct DevSkeleton {
    path: PathBuf,
}

impl DevSkeleton {
    fn mount(
        ve: &Ve,
        id_map: Option<&vz_ns::IdMap>,
        quota_device: Option<&PathBuf>,
    ) -> Result<Self> {
        let path = ve.global.run_dir().join(format!("{}.cpt-dev", ve.ctid));
        std::fs::create_dir_all(&path).op("create", &path)?;
        let skeleton = DevSkeleton { path };
        let node = quota_device.map(|d| super::start::quota_device(d)).transpose()?.flatten();
        // Every VE vz starts has a console of its own (/dev/console links to its pts/0).
        vz_ns::mount_dev_skeleton(&skeleton.path, id_map, node.as_ref(), true)
            .map_err(|e| restore_error(format!("the VE's /dev: {e}")))?;
        Ok(skeleton)
    }
}

/// A restored VE's console: a new devpts instance at `<VZ_RUN_DIR>/<CTID>.cpt-pts` that
/// CRIU binds as the VE's /dev/pts, and its pts/0 (the console) for CRIU's `--inherit-fd`
/// and the console server.
struct ConsolePts {
    path: PathBuf,
    master: Option<std::os::fd::OwnedFd>,
    slave: vz_cpt::InheritFd,
}

impl ConsolePts {
    fn open(
        ve: &Ve,
        id_map: Option<&vz_ns::IdMap>,
        pty_max: Option<u64>,
        key: &str,
    ) -> Result<Self> {
        let path = ve.global.run_dir().join(format!("{}.cpt-pts", ve.ctid));
        std::fs::create_dir_all(&path).op("create", &path)?;
        let opened = vz_ns::open_console_for_restore(&path, pty_max, id_map);
        let (master, slave) = match opened {
            Ok(pair) => pair,
            Err(e) => {
                detach_and_remove(&path);
                return Err(restore_error(format!("the VE's console: {e}")));
            }
        };
        let slave = vz_cpt::InheritFd { key: key.to_owned(), fd: std::sync::Arc::new(slave) };
        Ok(ConsolePts { path, master: Some(master), slave })
    }
}

impl Drop for ConsolePts {
    fn drop(&mut self) {
        detach_and_remove(&self.path);
    }
}

impl Drop for DevSkeleton {
    fn drop(&mut self) {
        detach_and_remove(&self.path);
    }
}

/// Detaches the mount at `path` (if any) and removes the directory.
fn detach_and_remove(path: &Path) {
    if let Err(e) = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
        && e != nix::errno::Errno::EINVAL
    {
        tracing::warn!(path = %path.display(), error = %e, "detach a restore's mount");
    }
    let _ = std::fs::remove_dir(path);
}

/// An idmapped view of VE_ROOT (`<VZ_RUN_DIR>/<CTID>.cpt-root`) for the length of a restore;
/// detached and removed on drop (the restored VE keeps its own copy of the mount).
struct IdmappedView {
    path: PathBuf,
}

impl IdmappedView {
    fn attach(ve: &Ve, root: &Path, map: &vz_ns::IdMap) -> Result<Self> {
        let path = ve.global.run_dir().join(format!("{}.cpt-root", ve.ctid));
        std::fs::create_dir_all(&path).op("create", &path)?;
        let view = IdmappedView { path };
        vz_ns::attach_idmapped_view(root, map, &view.path)
            .map_err(|e| restore_error(format!("idmapped view of {}: {e}", root.display())))?;
        Ok(view)
    }
}

impl Drop for IdmappedView {
    fn drop(&mut self) {
        detach_and_remove(&self.path);
    }
}

/// Gives the images to the VE's root (its host uid) so the tasks CRIU restores in the VE's
/// user namespace can open them, and keeps the host root's group on them: CRIU's root task
/// opens `timens-*.img` right after its clone, while its parent may still be writing the
/// namespace's id maps; until then no owner is mapped for that task (its capabilities do not
/// count) and it is still the host's uid and gid 0, so only the group bits let it search the
/// directory and read the file. Nobody else gets any access (directory 0710, files 0640).
fn give_images(dir: &Path, map: &vz_ns::IdMap) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (uid, gid) = (Some(map.host_uid(0)), Some(0));
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710)).op("chmod", dir)?;
    std::os::unix::fs::chown(dir, uid, gid).op("chown", dir)?;
    for entry in std::fs::read_dir(dir).op("list", dir)?.flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).op("stat", &path)?;
        if meta.is_file() {
            let mode = meta.permissions().mode() & 0o7770 | 0o040;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .op("chmod", &path)?;
        }
        std::os::unix::fs::lchown(&path, uid, gid).op("chown", &path)?;
    }
    Ok(())
}

/// `vzctl restore [--resume] [--dumpfile F]`: with `--resume` only thaw a suspended VE
/// (OpenVZ's restore stage), else [`restore`].
///
/// # Errors
/// As [`restore`]; 31 for `--resume` of a VE that is not running.
pub fn restore_cmd(
    ve: &Ve,
    resume: bool,
    dumpfile: Option<String>,
    lazy_pages: bool,
) -> Result<()> {
    if !resume {
        let opts = RestoreOptions { dumpfile: dumpfile.map(PathBuf::from), lazy_pages };
        return restore(ve, &opts);
    }
    let cgroup = ve.cgroup()?;
    if !cgroup.has_tasks() {
        return Err(CtlError::NotRunning);
    }
    let freezer = cgroup.freezer().ok_or_else(|| restore_error("no freezer"))?;
    resume_ve(ve, ve.init_pid()?, &freezer).map_err(restore_error)?;
    say("Container is resumed");
    Ok(())
}

/// Thaws a suspended VE, its host ends up again (with the venet's routes, which the kernel
/// drops with a link that goes down) if a `--dump` took them down.
fn resume_ve(ve: &Ve, pid: i32, freezer: &Freezer) -> std::result::Result<(), String> {
    let addresses = super::net::addresses(ve).map_err(|e| e.to_string())?;
    let venet = super::net::host_ifname(ve).map_err(|e| e.to_string())?;
    let is_down = |name: &str| vz_ns::net::link_is_up(name).map(|up| up == Some(false));
    if !addresses.is_empty() && is_down(&venet).map_err(|e| e.to_string())? {
        Venet::adopt_host_end(pid, &venet, &addresses).map_err(|e| e.to_string())?;
    }
    for n in super::net::netifs(ve).map_err(|e| e.to_string())? {
        if is_down(&n.host_ifname).map_err(|e| e.to_string())? {
            Veth::adopt_host_end(&n).map_err(|e| e.to_string())?;
        }
    }
    // A `--dump` left its network lock (or a killed CRIU its own).
    unlock_network(pid)?;
    freezer.thaw().map_err(|e| e.to_string())
}

/// Runs `tool` (`iptables-restore`, `ip6tables-restore`) with `rules` in the network
/// namespace of `pid`, without flushing what is there.
fn spawn_rules(pid: i32, tool: &str, rules: &str) -> std::result::Result<Child, String> {
    use std::io::Write;
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["--", tool, "-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run nsenter {tool}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(rules.as_bytes()).map_err(|e| format!("{tool}: {e}"))?;
    }
    Ok(child)
}

/// The network lock of a VE being made ([`vz_cpt::LOCK_RULES`], IPv4 and IPv6 at once, as
/// CRIU's own): every packet in or out of its namespace dropped once [`PendingLock::wait`]
/// returns.
struct PendingLock(Vec<(&'static str, std::result::Result<Child, String>)>);

impl PendingLock {
    /// Starts locking the network namespace of `pid`.
    fn start(pid: i32) -> std::result::Result<PendingLock, String> {
        let tools = ["iptables-restore", "ip6tables-restore"];
        Ok(PendingLock(
            tools.into_iter().map(|t| (t, spawn_rules(pid, t, vz_cpt::LOCK_RULES))).collect(),
        ))
    }

    /// Waits until the lock is in place.
    fn wait(self) -> std::result::Result<(), String> {
        let mut failed = None;
        for (tool, child) in self.0 {
            let out = child.and_then(|c| c.wait_with_output().map_err(|e| format!("{tool}: {e}")));
            let why = match out {
                Ok(out) if out.status.success() => continue,
                Ok(out) => format!("{tool}: {}", String::from_utf8_lossy(&out.stderr).trim()),
                Err(e) => e,
            };
            failed.get_or_insert(format!("lock the network: {why}"));
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Lifts a network lock ([`PendingLock`]'s, or CRIU's that a killed dump leaves) from the
/// namespace of `pid`, however many `--dump`s each added their jumps to it; whether there
/// was one.
///
/// # Errors
/// A tool's failure.
pub(crate) fn unlock_network(pid: i32) -> std::result::Result<bool, String> {
    let mut found = false;
    for (list, restore) in [("iptables", "iptables-restore"), ("ip6tables", "ip6tables-restore")] {
        let listed = Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["--", list, "-w", "-S"])
            .stderr(Stdio::null())
            .output();
        let Some(rules) = listed.ok().filter(|o| o.status.success()).map(|o| o.stdout) else {
            continue;
        };
        let Some(unlock) = unlock_rules(&String::from_utf8_lossy(&rules)) else { continue };
        found = true;
        let out = spawn_rules(pid, restore, &unlock)?
            .wait_with_output()
            .map_err(|e| format!("{restore}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "unlock the network: {restore}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(found)
}

/// The rules that lift the lock from a filter table listed as `rules` (`iptables -S`): every
/// jump to CRIU's chain removed (a `--dump` repeated before `--resume` adds its own), then
/// the chain; `None` without the chain.
fn unlock_rules(rules: &str) -> Option<String> {
    let lines: Vec<&str> = rules.lines().map(str::trim).collect();
    if !lines.contains(&"-N CRIU") {
        return None;
    }
    let mut unlock = "*filter\n:CRIU - [0:0]\n".to_owned();
    for line in lines {
        if let Some(chain) = line.strip_prefix("-A ").and_then(|l| l.strip_suffix(" -j CRIU")) {
            unlock.push_str(&format!("-D {chain} -j CRIU\n"));
        }
    }
    unlock.push_str("-X CRIU\nCOMMIT\n");
    Some(unlock)
}

/// `vzctl start` of a VE with a default dump: restore it (OpenVZ: "Dump file … exists,
/// trying to restore from it"); when that fails, start afresh. Either way the dump is gone
/// after a success.
///
/// # Errors
/// Those of [`super::start::start`] when the fresh start fails too.
pub fn start_or_restore(ve: &Ve, opts: super::start::StartOptions) -> Result<()> {
    let dump = ve.dump_file();
    if !dump.join("inventory.img").is_file() {
        return super::start::start(ve, opts);
    }
    say(format!("Dump file {} exists, trying to restore from it", dump.display()));
    match restore(ve, &RestoreOptions::default()) {
        Ok(()) => Ok(()),
        Err(e @ CtlError::AlreadyRunning) => Err(e),
        Err(e) => {
            say(format!("Restore failed: {e}; starting the container afresh"));
            super::start::start(ve, opts)?;
            std::fs::remove_dir_all(&dump).map_err(|e| CtlError::Io {
                op: "remove dump",
                path: dump.clone(),
                source: e,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_of_every_dump_goes_before_the_chain() {
        let twice = "-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-N CRIU\n-N mine\n-A INPUT -j CRIU\n\
                     -A INPUT -j CRIU\n-A INPUT -p tcp -j mine\n-A OUTPUT -j CRIU\n\
                     -A OUTPUT -j CRIU\n-A CRIU -m mark --mark 0xc114 -j ACCEPT\n-A CRIU -j DROP\n";
        assert_eq!(
            unlock_rules(twice).as_deref(),
            Some(
                "*filter\n:CRIU - [0:0]\n-D INPUT -j CRIU\n-D INPUT -j CRIU\n-D OUTPUT -j CRIU\n\
                 -D OUTPUT -j CRIU\n-X CRIU\nCOMMIT\n"
            )
        );
        assert_eq!(unlock_rules("-P INPUT ACCEPT\n-N mine\n-A INPUT -j mine\n"), None);
    }
}
