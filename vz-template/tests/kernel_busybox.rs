//! Kernel tests of the busybox template: build it into a temporary store, find it, unpack it
//! as root, run its shell in a chroot, and boot its init in a new pid namespace until
//! `poweroff` ends the namespace.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use vz_template::{BusyboxBuilder, CacheStore, Compression, TemplateName};
use vz_tests::Need;

const BUSYBOX: &str = "/bin/busybox";

/// `vz_tests::require!` for tests returning `anyhow::Result` (the kit's macro returns
/// `Default::default()`, which `Result` lacks).
macro_rules! require {
    ($test:literal, $($need:expr),+ $(,)?) => {
        if !vz_tests::check_needs($test, &[$($need),+]) {
            return Ok(());
        }
    };
}

/// Builds the busybox cache into a new store and unpacks it into `<tmp>/root`.
fn build_and_unpack() -> anyhow::Result<(tempfile::TempDir, CacheStore, std::path::PathBuf)> {
    let tmp = tempfile::Builder::new().prefix(&vz_tests::unique_name("bb")).tempdir()?;
    let store = CacheStore::new(&tmp.path().join("template"));
    let name: TemplateName = "busybox".parse()?;
    let built = BusyboxBuilder::new(Path::new(BUSYBOX)).build(&store, &name)?;
    let cache = store.find(&name)?;
    ensure!(cache.path() == built, "find gave {:?}, build wrote {built:?}", cache.path());
    ensure!(built == tmp.path().join("template/cache/busybox.tar.gz"));
    ensure!(cache.compression() == Compression::Gzip);
    let root = tmp.path().join("root");
    fs::create_dir(&root)?;
    let stats = cache.unpack_to(&root)?;
    ensure!(stats.files > 100 && stats.bytes > 500_000, "{stats:?}");
    Ok((tmp, store, root))
}

#[test]
fn busybox_cache_unpacks_to_a_working_root() -> anyhow::Result<()> {
    require!(
        "busybox_cache_unpacks_to_a_working_root",
        Need::Root,
        Need::Program(BUSYBOX),
        Need::Program("/usr/sbin/chroot")
    );
    let (_tmp, _store, root) = build_and_unpack()?;

    let mode_owner = |p: &str| -> anyhow::Result<(u32, u32, u32)> {
        let m = fs::symlink_metadata(root.join(p)).with_context(|| p.to_owned())?;
        Ok((m.mode() & 0o7777, m.uid(), m.gid()))
    };
    assert_eq!(mode_owner("bin/busybox")?, (0o755, 0, 0));
    assert_eq!(mode_owner("tmp")?, (0o1777, 0, 0));
    assert_eq!(mode_owner("root")?, (0o700, 0, 0));
    assert_eq!(mode_owner("etc/shadow")?, (0o600, 0, 0));
    assert_eq!(mode_owner("etc/init.d/rcS")?, (0o755, 0, 0));
    assert_eq!(mode_owner(".")?, (0o755, 0, 0));
    for dir in ["dev", "proc", "sys", "etc", "var/log", "var/run", "run", "home", "mnt"] {
        assert!(root.join(dir).is_dir(), "{dir}");
    }
    // Every applet is a symlink to /bin/busybox.
    let list = Command::new(BUSYBOX).arg("--list-full").output()?;
    let list = String::from_utf8(list.stdout)?;
    let mut applets = 0;
    for applet in list.lines().filter(|l| l.contains('/') && *l != "bin/busybox") {
        let target = fs::read_link(root.join(applet)).with_context(|| applet.to_owned())?;
        assert_eq!(target, Path::new("/bin/busybox"), "{applet}");
        applets += 1;
    }
    assert!(applets > 200, "{applets} applets");
    assert_eq!(fs::read(root.join("bin/busybox"))?, fs::read(BUSYBOX)?);
    let passwd = fs::read_to_string(root.join("etc/passwd"))?;
    assert!(passwd.starts_with("root:x:0:0:root:/root:/bin/sh\n"), "{passwd}");
    assert!(fs::read_to_string(root.join("etc/group"))?.contains("tty:x:5:"));
    assert!(fs::read_to_string(root.join("etc/hosts"))?.contains("127.0.0.1\tlocalhost"));
    assert!(fs::read_to_string(root.join("etc/os-release"))?.contains("vz busybox template"));

    // The template's shell runs inside it, with only the template's files.
    let out = Command::new("/usr/sbin/chroot")
        .arg(&root)
        .args(["/bin/sh", "-c", "echo ok; id -u; grep -c . /etc/passwd"])
        .env_clear()
        .output()?;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout)?, "ok\n0\n2\n");
    Ok(())
}

#[test]
fn busybox_build_is_deterministic_and_replaces_atomically() -> anyhow::Result<()> {
    require!("busybox_build_is_deterministic_and_replaces_atomically", Need::Program(BUSYBOX));
    let tmp = tempfile::tempdir()?;
    let name: TemplateName = "busybox-again".parse()?;
    let a = CacheStore::new(&tmp.path().join("a"));
    let b = CacheStore::new(&tmp.path().join("b"));
    let builder = BusyboxBuilder::new(Path::new(BUSYBOX));
    let first = builder.build(&a, &name)?;
    let second = builder.build(&b, &name)?;
    assert_eq!(fs::read(&first)?, fs::read(&second)?, "two builds differ");
    // Rebuilding over an existing cache leaves exactly one file, no temporary.
    builder.build(&a, &name)?;
    let names: Vec<_> =
        fs::read_dir(a.cache_dir())?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    assert_eq!(names, vec![std::ffi::OsString::from("busybox-again.tar.gz")]);
    assert_eq!(fs::metadata(&first)?.permissions().mode() & 0o777, 0o644);
    Ok(())
}

#[test]
fn a_dynamic_busybox_is_refused_by_name() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = CacheStore::new(tmp.path());
    // The test binary is a dynamically linked executable.
    let me = std::env::current_exe()?;
    let err = BusyboxBuilder::new(&me).build(&store, &"x".parse()?).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("is not a statically linked busybox"), "{msg}");
    assert!(msg.contains("PT_INTERP") && msg.contains("busybox-static"), "{msg}");
    assert!(!store.cache_dir().exists(), "nothing is written for a refused binary");
    Ok(())
}

/// The `unshare` process running the template's init; killed (by pid) if the test fails.
struct Booted(Child);

impl Drop for Booted {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // --kill-child makes unshare's death kill the namespace's init as well.
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

#[test]
fn busybox_init_boots_signals_the_fifo_and_powers_off() -> anyhow::Result<()> {
    require!(
        "busybox_init_boots_signals_the_fifo_and_powers_off",
        Need::Root,
        Need::Program(BUSYBOX),
        Need::Program("/usr/bin/unshare"),
        Need::Program("/usr/bin/nsenter")
    );
    let (_tmp, _store, root) = build_and_unpack()?;
    nix::unistd::mkfifo(&root.join(".vzfifo"), nix::sys::stat::Mode::from_bits_truncate(0o600))?;

    // What vz does before init, cut down: new pid and mount namespaces, a /dev with the nodes
    // init needs, /proc; then init as pid 1 of the namespace.
    let setup = "mount -t proc proc /proc && mount -t tmpfs -o mode=755 dev /dev && \
                 mknod -m 666 /dev/null c 1 3 && mknod -m 600 /dev/console c 1 3 && \
                 exec /sbin/init";
    let child = Command::new("/usr/bin/unshare")
        .args(["--pid", "--mount", "--uts", "--net", "--kill-child", "--root"])
        .arg(&root)
        .args(["/bin/sh", "-c", setup])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut booted = Booted(child);

    // Boot finished: rcS opens the fifo, which ends this blocking open+read.
    let fifo = root.join(".vzfifo");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = fs::File::open(&fifo).and_then(|mut f| f.read_to_end(&mut Vec::new()));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(r) => {
            r.context("reading the boot fifo")?;
        }
        Err(_) => {
            // Unblock the reader thread before failing.
            let _ = fs::OpenOptions::new().write(true).open(root.join(".vzfifo"));
            bail!("init did not signal /.vzfifo within 20 s");
        }
    }

    // The init's pid on the host: the only child of unshare.
    let unshare_pid = booted.0.id();
    let children = fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))?;
    let init_pid: u32 =
        children.split_whitespace().next().context("unshare has no child")?.parse()?;
    let comm = fs::read_to_string(format!("/proc/{init_pid}/cmdline"))?;
    // busybox init rewrites its argv to "init".
    ensure!(comm.starts_with("init\0"), "pid {init_pid} is {comm:?}");
    // lo was brought up by rcS in the new network namespace.
    let lo = Command::new("/usr/bin/nsenter")
        .args(["-t", &init_pid.to_string(), "--net", "--", "cat", "/sys/class/net/lo/operstate"])
        .output()?;
    let state = String::from_utf8_lossy(&lo.stdout).trim().to_owned();
    ensure!(state == "unknown" || state == "up", "lo is {state:?}: {lo:?}");

    // `poweroff` inside the VE ends the namespace: its init dies of SIGINT (reboot(2) in a
    // pid namespace), and unshare re-raises that signal.
    let started = Instant::now();
    let off = Command::new("/usr/bin/nsenter")
        .args([
            "-t",
            &init_pid.to_string(),
            "--pid",
            "--mount",
            "--root",
            "--wd",
            "--",
            "/bin/busybox",
            "poweroff",
        ])
        .output()?;
    ensure!(off.status.success(), "poweroff: {off:?}");
    loop {
        if let Some(status) = booted.0.try_wait()? {
            ensure!(status.signal() == Some(nix::libc::SIGINT), "unshare ended with {status:?}");
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("the VE's init did not power off within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(
        !Path::new(&format!("/proc/{init_pid}")).exists() || {
            // The pid may be reused in theory; a zombie of ours it is not (unshare reaped it).
            fs::read_to_string(format!("/proc/{init_pid}/cmdline"))
                .map_or(true, |c| !c.starts_with("init\0"))
        }
    );
    Ok(())
}
