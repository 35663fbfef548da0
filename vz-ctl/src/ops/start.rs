//! `vzctl start`: lock → mount → cgroup → beancounters and CPU limits → quotactl server
//! (second level) → init in new namespaces → in-VE setup → release
//! init → optionally wait for the boot to finish. Any failure undoes the steps done.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;

use crate::error::{CtlError, Result};
use crate::output::say;
use crate::resources;
use crate::scripts::{self, DEFAULT_PATH};
use crate::setup;
use crate::undo::Undo;
use crate::ve::Ve;

/// How long `start --wait` waits for the VE to finish booting (OpenVZ: 1 hour).
const WAIT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The fifo the VE's boot opens when it is up, for `start --wait` (reference §1.3).
const VZFIFO: &str = ".vzfifo";

/// Options of `vzctl start`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StartOptions {
    /// `--wait`: return when the VE finished booting.
    pub wait: bool,
    /// `--force`: start even if DISABLED=yes.
    pub force: bool,
}

/// Starts the VE. The caller holds its lock.
///
/// # Errors
/// 105 disabled, 23/43 private area, 32 running, 28 VSwap config without SWAPPAGES, 50 mount,
/// 47 broken VE, 3 kernel failures, 133 when `--wait` fails.
pub fn start(ve: &Ve, opts: StartOptions) -> Result<()> {
    let config = ve.config()?;
    if config.disabled() && !opts.force {
        return Err(CtlError::Disabled);
    }
    let private = ve.private()?;
    if !private.exists() {
        return Err(CtlError::NoPrivate(private));
    }
    let cgroup = ve.cgroup()?;
    if cgroup.has_tasks() {
        return Err(CtlError::AlreadyRunning);
    }
    let ubc = resources::ubc_at_start(|k| ve.get(k))?;
    say("Starting container...");
    let mut undo = Undo::new();
    if super::mount::mount(ve)? {
        let root = ve.root()?;
        undo.push("mount", move || vz_quota::PrivateArea::umount(&root).map_err(|e| e.to_string()));
    }
    let root = ve.root()?;
    check_bootable(&root)?;
    if let Err(e) = crate::cgroup_mount::favor_dynamic_changes(&ve.global) {
        crate::output::warn(format_args!("cgroup moves stay slow after idle spells: {e}"));
    }
    cgroup.create()?;
    let cg = cgroup.clone();
    undo.push("cgroup", move || {
        cg.kill_all(Duration::from_secs(5)).map_err(|e| e.to_string())?;
        cg.remove().map_err(|e| e.to_string())
    });
    let ctid = ve.ctid.get();
    resources::apply_ubc(ctid, &cgroup, &ubc, None)?;
    resources::apply_cpu(ctid, &cgroup, &resources::cpu_config(|k| ve.get(k))?)?;
    let (mut spec, area, device) = prepare_init(ve, &root, &cgroup, &ubc)?;
    spec.proc_view = crate::procview::for_start(ve)?;
    let server = match &device {
        Some(device) => crate::quotactl::start_server(ve, &area, &root, device)?,
        None => None,
    };
    if let Some(server) = server {
        spec.quotactl_server = Some(server.socket.clone());
        undo.push("quotactl server", move || server.kill());
    }
    // A console server that has to be started starts while the init is made.
    let starting = if spec.console { crate::consoled::begin(&ve.global)? } else { None };
    crate::intent::crash_point("start:console-begun");
    let mut pending = vz_ns::spawn_init(&spec).map_err(|e| CtlError::Start(e.into()))?;
    let pid = pending.pid();
    // The console server ends by itself when the init is gone (the undo list kills it).
    let console = match pending.take_console() {
        Some(master) => Some(crate::console::ConsoleServer::start(ve, master, pid, starting)?),
        None => None,
    };
    // The init's sysinfo listener (no quotactl server took it) goes to the console server.
    if let Some(listener) = pending.take_listener() {
        let socket = crate::sysinfo::socket_path(ve);
        listener.hand_to(&socket).map_err(|e| CtlError::Start(e.into()))?;
    }
    // shmpages: kernel.shm* in the VE's new IPC namespace, before anything in it runs.
    resources::set_ipc_sysctls(pid, &vz_ubc::shm_sysctls(&ubc))?;
    super::net::setup(ve, pid)?;
    super::set_live::at_start(ve, &cgroup, pid)?;
    let veths = super::net::netifs(ve)?;
    // `Ve` is not 'static: the undo step gets what teardown needs by value.
    let (global, ctid_of_ve) = (ve.global.clone(), ve.ctid);
    undo.push("network", move || {
        let ve = Ve::load(global, ctid_of_ve).map_err(|e| e.to_string())?;
        super::net::teardown(&ve, &veths);
        Ok(())
    });
    configure(ve, pid, opts.wait)?;
    // The fifo is opened before the init runs: its boot may signal on it within
    // milliseconds, and a reader that opens after the signal never sees it (CI once hung
    // here an hour: under load a busybox boot signalled before the open that came right
    // after the release).
    let fifo = if opts.wait { Some(open_boot_fifo(pid)?) } else { None };
    pending.release().map_err(|e| CtlError::Start(e.into()))?;
    crate::intent::crash_point("start:released");
    // An init that dies at once fails the start (and the undo list takes the VE down). A
    // working init soon sleeps waiting for its children: that ends the watch (a pidfd, no
    // fixed sleep).
    let settled = vz_ns::wait_settled(pid, START_GRACE).map_err(|e| CtlError::Start(e.into()))?;
    if settled == vz_ns::Settled::Exited {
        return Err(init_died(gone(pid).flatten(), console));
    }
    crate::intent::settle();
    crate::intent::crash_point("start:settled");
    say("Container start in progress...");
    if let Some(fifo) = fifo {
        wait_for_boot(pid, &fifo, console)?;
        say("Container is started");
    }
    undo.commit();
    Ok(())
}

/// How long `vzctl start` at most watches the released init before reporting the start in
/// progress: an init that exits before it first settles asleep fails the start. A working
/// init sleeps within milliseconds, which ends the watch; the limit only bounds an init that
/// keeps running, and is generous because a broken one on a loaded or emulated machine can
/// take well over 50 ms to start its interpreter and exit (the kernel lab showed 3 in 25).
const START_GRACE: Duration = Duration::from_secs(2);

/// How many of its last console lines a start whose init died shows.
const CONSOLE_LINES: usize = 20;

/// The start error for an init that exited with `status` (`None`: unknown, it was reaped),
/// with the last lines its console printed, once its server has read them.
fn init_died(status: Option<i32>, console: Option<crate::console::ConsoleServer>) -> CtlError {
    let how = match status {
        Some(code) if code & 0x7f == 0 => format!("exited with status {}", (code >> 8) & 0xff),
        Some(code) => format!("was killed by signal {}", code & 0x7f),
        None => "exited".to_owned(),
    };
    let mut text = format!("the container's init {how} during boot");
    let lines = console.map(|c| c.last_lines(CONSOLE_LINES, Duration::from_secs(3)));
    if let Some(lines) = lines.filter(|l| !l.is_empty()) {
        text.push_str("; the last lines of its console:");
        for line in lines {
            text.push_str("\n  ");
            text.push_str(&line);
        }
    }
    CtlError::Start(text.into())
}

/// Whether the process `pid` has ended: `Some(status)` for a zombie (its wait status) or
/// `Some(None)` when it is gone; `None` while it runs.
fn gone(pid: i32) -> Option<Option<i32>> {
    use procfs::process::ProcState;
    let Ok(stat) = procfs::process::Process::new(pid).and_then(|p| p.stat()) else {
        return Some(None);
    };
    matches!(stat.state(), Ok(ProcState::Zombie | ProcState::Dead)).then_some(stat.exit_code)
}

/// Applies the device allowlist to `cgroup` and makes the spec of the VE's init, with a node
/// of the root's device for the quota tools; also returns the private area and that device's
/// host path (image layout), for the quotactl server.
///
/// # Errors
/// [`CtlError::Start`] when the area, the mount table or the device cannot be read or the
/// allowlist cannot be applied; those of [`init_spec`].
pub(crate) fn prepare_init(
    ve: &Ve,
    root: &Path,
    cgroup: &crate::cgroup::VeCgroup,
    ubc: &vz_ubc::UbcSet,
) -> Result<(vz_ns::InitSpec, vz_quota::PrivateArea, Option<PathBuf>)> {
    let area =
        vz_quota::PrivateArea::open(&ve.private()?).map_err(|e| CtlError::Start(e.into()))?;
    if ve.get("DISKSPACE").is_some() || ve.get("DISKINODES").is_some() {
        crate::disk::warn_unenforced(&area);
    }
    let device = area.mounted_device(root).map_err(|e| CtlError::Start(e.into()))?;
    let quota_device = device.as_deref().map(quota_device).transpose()?.flatten();
    apply_device_rules(cgroup, quota_device.as_ref())?;
    let spec = init_spec(ve, root, cgroup, ubc, quota_device)?;
    Ok((spec, area, device))
}

/// The node the quota tools look up inside the VE for the root's `device` (a host path such
/// as `/dev/loop3`); `None` for a device outside /dev.
pub(crate) fn quota_device(device: &Path) -> Result<Option<vz_ns::QuotaDevice>> {
    use nix::sys::stat::{major, minor, stat};
    let Some(name) = device.strip_prefix("/dev").ok().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let rdev = stat(device)
        .map_err(|e| CtlError::Start(format!("stat {}: {e}", device.display()).into()))?
        .st_rdev;
    let number =
        |n: u64| u32::try_from(n).map_err(|_| CtlError::Start(format!("device number {n}").into()));
    Ok(Some(vz_ns::QuotaDevice {
        name: name.to_owned(),
        major: number(major(rdev))?,
        minor: number(minor(rdev))?,
    }))
}

/// The device allowlist on the VE's cgroup (the v1 devices controller, or on cgroup v2 a
/// BPF device program attached to the VE's cgroup), with `quota_device`'s mknod-only entry.
fn apply_device_rules(
    cgroup: &crate::cgroup::VeCgroup,
    quota_device: Option<&vz_ns::QuotaDevice>,
) -> Result<()> {
    let mut rules = vz_ns::default_device_rules();
    rules.extend(quota_device.map(vz_ns::QuotaDevice::rule));
    let applied = if cgroup.is_v2() {
        cgroup.dir_of("").map(|dir| vz_ns::apply_device_rules_v2(&dir, &rules))
    } else {
        cgroup.dir_of("devices").map(|dir| vz_ns::apply_device_rules_v1(&dir, &rules))
    };
    applied.transpose().map(drop).map_err(|e| CtlError::Start(e.into()))
}

/// What vz-ns needs to make the VE's init: its root, hostname (without HOSTNAME the VE is
/// "localhost", not a copy of the host's name), `/sbin/init` with a clean environment, the
/// VE's cgroups, capabilities, devices (with the root's device for the quota tools), and the
/// beancounters its namespaces enforce (numpty as the devpts limit, per-process rlimits).
fn init_spec(
    ve: &Ve,
    root: &Path,
    cgroup: &crate::cgroup::VeCgroup,
    ubc: &vz_ubc::UbcSet,
    quota_device: Option<vz_ns::QuotaDevice>,
) -> Result<vz_ns::InitSpec> {
    let identity = crate::idmap::ensure(ve)?;
    if let Some(map) = identity.id_map() {
        cgroup.delegate(map.host_uid(0), map.host_gid(0))?;
    }
    if identity == crate::idmap::Identity::Privileged {
        crate::output::warn(format!(
            "Warning: CT {} is privileged (LOCAL_UID=0): root in it is root on the host; \
             this is no security boundary",
            ve.ctid
        ));
    }
    Ok(vz_ns::InitSpec {
        root: root.to_owned(),
        hostname: Some(ve.config()?.hostname().unwrap_or("localhost").to_owned()),
        argv: vec!["/sbin/init".to_owned()],
        env: init_env(),
        cgroup_procs: cgroup.procs_files(),
        caps: scripts::capabilities(ve, identity)?,
        devices: vz_ns::default_device_rules(),
        pty_max: vz_ubc::pty_max(ubc),
        rlimits: resources::ve_rlimits(ubc),
        quota_device,
        quotactl_server: None,
        id_map: identity.id_map(),
        seccomp: scripts::seccomp(ve)?,
        run_tmpfs: boots_systemd(root),
        proc_view: None,
        console: true,
    })
}

/// Whether the VE's `/sbin/init` is systemd (a link whose target names it; the link is read,
/// never followed, on the host).
fn boots_systemd(root: &Path) -> bool {
    std::fs::read_link(root.join("sbin/init"))
        .is_ok_and(|target| target.to_string_lossy().contains("systemd"))
}

/// The environment of the VE's init: clean, like a kernel gives init.
fn init_env() -> Vec<(String, String)> {
    vec![
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOME".to_owned(), "/".to_owned()),
        ("TERM".to_owned(), "linux".to_owned()),
        ("container".to_owned(), "vz".to_owned()),
        // systemd ≥ 254 as pid 1 watches memory pressure through a PSI trigger on
        // /proc/pressure/memory; CRIU restores the open file but not the trigger, so the fd
        // polls ready forever and the busy loop starves systemd's job queue after a restore
        // (jobs stay "waiting"). "/dev/null" turns that watch off (sd_event_add_memory_pressure).
        ("MEMORY_PRESSURE_WATCH".to_owned(), "/dev/null".to_owned()),
    ]
}

/// Refuses a VE root without `/sbin/init` or `/bin/sh` (OpenVZ exit 47). Only names are
/// checked (`symlink_metadata`): nothing on the host follows the VE's links.
fn check_bootable(root: &Path) -> Result<()> {
    for path in ["sbin/init", "bin/sh"] {
        if root.join(path).symlink_metadata().is_err() {
            return Err(CtlError::BrokenVe(format!(
                "Unable to start container: /{path} not found in {}",
                root.display()
            )));
        }
    }
    Ok(())
}

/// Setup between spawning init and letting it run — /etc/hostname and /etc/hosts, DNS and
/// the boot fifo, written by the host through the VE's root (init already set the kernel
/// hostname; nothing runs inside) — then the `<CTID>.start` script.
fn configure(ve: &Ve, pid: i32, wait: bool) -> Result<()> {
    let config = ve.config()?;
    let files = setup::VeFiles::open(&ve.root()?, &ve.ctid.to_string())?;
    if let Some(hostname) = config.hostname() {
        let ips = config.ip_addresses();
        files.set_hostname(hostname, ips.first().map(String::as_str))?;
    }
    let nameservers = setup::resolve_inherit(&config.nameservers(), "nameserver");
    let search = setup::resolve_inherit(&config.searchdomains(), "search");
    if !nameservers.is_empty() || !search.is_empty() {
        files.set_dns(&nameservers, &search)?;
    }
    files.boot_fifo(VZFIFO, wait)?;
    scripts::run_ve_script(ve, pid, "start")
}

/// Opens the boot fifo `/.vzfifo` of the VE whose init is `pid`, for [`wait_for_boot`].
fn open_boot_fifo(pid: i32) -> Result<std::os::fd::OwnedFd> {
    let path = format!("/proc/{pid}/root/{VZFIFO}");
    let fail = |what: String| CtlError::Wait(what);
    // O_NOFOLLOW: the VE owns this name; never follow a link it put there.
    let fd = nix::fcntl::open(
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(format!("open {path}: {e}")))?;
    let stat = nix::sys::stat::fstat(&fd).map_err(|e| fail(format!("stat {path}: {e}")))?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(fail(format!("{path} is not a fifo")));
    }
    Ok(fd)
}

/// Waits until the VE's boot opens `/.vzfifo` (its rc script touches it when done); fails as
/// soon as the init is gone, with the last lines of its `console`.
fn wait_for_boot(
    pid: i32,
    fd: &std::os::fd::OwnedFd,
    console: Option<crate::console::ConsoleServer>,
) -> Result<()> {
    let path = format!("/proc/{pid}/root/{VZFIFO}");
    let fail = |what: String| CtlError::Wait(what);
    let deadline = std::time::Instant::now() + WAIT_TIMEOUT;
    let slice = PollTimeout::from(100u8);
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, slice).map_err(|e| fail(format!("poll {path}: {e}")))?;
        if ready > 0 {
            let _ = nix::unistd::unlink(path.as_str());
            return Ok(());
        }
        if let Some(status) = gone(pid) {
            return Err(init_died(status, console));
        }
        if std::time::Instant::now() >= deadline {
            let _ = nix::unistd::unlink(path.as_str());
            return Err(fail("timed out".to_owned()));
        }
    }
}
