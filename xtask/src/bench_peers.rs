//! The contenders of `cargo xtask bench`: vz through its binaries, and the tools a user would
//! pick instead — crun, runc, LXC, systemd-nspawn — plus the floor (`unshare` + `chroot`), all
//! on the same busybox tree. Each is made to run on this kind of host (hybrid cgroups, no
//! systemd, no D-Bus) and says what was done for it ([`Runtime::notes`]).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One contender: the operations the bench times. An operation a contender has no form of
/// returns `Ok(false)` from [`Runtime::has`] and is never called.
pub(crate) trait Runtime {
    /// The column name.
    fn name(&self) -> &str;
    /// Whether it has this operation.
    fn has(&self, op: Op) -> bool;
    /// Start → `/bin/true` → everything gone, for container `id` (made beforehand if needed).
    fn cycle(&mut self, id: &str) -> Result<()>;
    /// The one-command cycle: run `/bin/true` in container `id` and leave nothing running
    /// (vz: `vzctl runscript` on the stopped VE — mount, namespaces without booting its init,
    /// the script, unmount; the others: their [`Runtime::cycle`]).
    fn one_command(&mut self, id: &str) -> Result<()> {
        self.cycle(id)
    }
    /// Starts `id` with an idle busybox init, returning once it runs.
    fn start_idle(&mut self, id: &str) -> Result<()>;
    /// Runs `/bin/true` in the running `id`.
    fn exec_true(&mut self, id: &str) -> Result<()>;
    /// Kills the running `id` at once and removes what it left.
    fn stop_fast(&mut self, id: &str) -> Result<()>;
    /// Asks the running `id`'s init to shut down and waits for it.
    fn stop_clean(&mut self, id: &str) -> Result<()>;
    /// What was done to make it run on this host.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The operations of a [`Runtime`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// [`Runtime::cycle`].
    Cycle,
    /// [`Runtime::start_idle`] (ended by a fast stop).
    Idle,
    /// [`Runtime::exec_true`].
    Exec,
    /// [`Runtime::stop_clean`].
    StopClean,
}

/// Runs `cmd` with stdin and stdout on /dev/null and stderr in a file (a pipe would keep
/// the call waiting for every detached container that inherited it); fails with the command
/// and its stderr.
pub(crate) fn quiet(cmd: &mut Command) -> Result<()> {
    let log = std::env::temp_dir().join(format!("vz-bench-{}.stderr", std::process::id()));
    let file = std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .with_context(|| format!("run {}", crate::sh::display(cmd)))?;
    if !status.success() {
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        bail!("`{}` failed ({status}): {}", crate::sh::display(cmd), stderr.trim());
    }
    Ok(())
}

/// The script `vzctl runscript` runs in the one-command cycle, beside the bench's vz.conf.
pub(crate) const TRUE_SCRIPT: &str = "true.sh";

/// vz: `vzctl` with the bench's own vz.conf, on VEs created beforehand.
pub(crate) struct Vz {
    /// The column name ("vz", "vz simfs").
    pub(crate) label: String,
    /// The directory of vzctl.
    pub(crate) bin: PathBuf,
    /// The bench tree's vz.conf.
    pub(crate) conf: PathBuf,
}

impl Vz {
    /// A `vzctl` command with the bench's config.
    pub(crate) fn vzctl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin.join("vzctl"));
        cmd.env("VZ_CONFIG", &self.conf).arg("--quiet").args(args);
        cmd
    }
}

impl Runtime for Vz {
    fn name(&self) -> &str {
        &self.label
    }
    fn has(&self, _: Op) -> bool {
        true
    }
    fn cycle(&mut self, id: &str) -> Result<()> {
        quiet(&mut self.vzctl(&["start", id]))?;
        quiet(&mut self.vzctl(&["exec", id, "/bin/true"]))?;
        quiet(&mut self.vzctl(&["stop", id, "--fast"]))
    }
    fn one_command(&mut self, id: &str) -> Result<()> {
        let script = self.conf.with_file_name(TRUE_SCRIPT);
        let script = script.to_str().context("the bench tree's path is not UTF-8")?;
        quiet(&mut self.vzctl(&["runscript", id, script]))
    }
    fn start_idle(&mut self, id: &str) -> Result<()> {
        quiet(&mut self.vzctl(&["start", id]))
    }
    fn exec_true(&mut self, id: &str) -> Result<()> {
        quiet(&mut self.vzctl(&["exec", id, "/bin/true"]))
    }
    fn stop_fast(&mut self, id: &str) -> Result<()> {
        quiet(&mut self.vzctl(&["stop", id, "--fast"]))
    }
    fn stop_clean(&mut self, id: &str) -> Result<()> {
        quiet(&mut self.vzctl(&["stop", id]))
    }
}

/// An OCI runtime (crun or runc) on bundles made from the shared tree.
pub(crate) struct Oci {
    /// "crun" or "runc".
    pub(crate) program: &'static str,
    /// The runtime's state directory (`--root`).
    state: PathBuf,
    /// Bundles live below this directory, one per container id.
    bundles: PathBuf,
    /// The shared busybox tree (read-only in every container).
    rootfs: PathBuf,
    /// The cgroup parent of the containers (`cgroupsPath` = `/<parent>/<id>`).
    cgroup_parent: String,
    /// A mount namespace to run in (file under /proc or a bind mount), for crun.
    mount_ns: Option<PathBuf>,
    notes: Vec<String>,
}

impl Oci {
    /// The runtime `program` with its state, bundles and cgroups under the bench's names.
    pub(crate) fn new(
        program: &'static str,
        dir: &Path,
        rootfs: &Path,
        cgroup_parent: &str,
        mount_ns: Option<PathBuf>,
    ) -> Result<Oci> {
        let state = dir.join(format!("{program}-state"));
        let bundles = dir.join(format!("{program}-bundles"));
        std::fs::create_dir_all(&state)?;
        std::fs::create_dir_all(&bundles)?;
        let mut notes = vec![format!(
            "{program}: OCI bundles on the shared tree (read-only root), pid/mount/uts/ipc/net \
             namespaces, cgroupfs cgroups under {cgroup_parent}, no user namespace (rootful)"
        )];
        if let Some(ns) = &mount_ns {
            notes.push(format!(
                "{program}: run with `nsenter --mount={}`, a private mount namespace in which \
                 the cgroup2 mount /sys/fs/cgroup/unified is unmounted ({program} refuses hybrid \
                 cgroups); the nsenter exec is counted in its times",
                ns.display()
            ));
        }
        Ok(Oci {
            program,
            state,
            bundles,
            rootfs: rootfs.to_owned(),
            cgroup_parent: cgroup_parent.to_owned(),
            mount_ns,
            notes,
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = match &self.mount_ns {
            Some(ns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--mount={}", ns.display())).arg("--").arg(self.program);
                cmd
            }
            None => Command::new(self.program),
        };
        cmd.arg("--root").arg(&self.state).args(args);
        cmd
    }

    /// Writes the bundle of `id` running `args`, once per id.
    fn bundle(&self, id: &str, args: &[&str]) -> Result<PathBuf> {
        let dir = self.bundles.join(id);
        std::fs::create_dir_all(&dir)?;
        let config = oci_config(&self.rootfs, args, id, &format!("/{}/{id}", self.cgroup_parent));
        std::fs::write(dir.join("config.json"), config)?;
        Ok(dir)
    }
}

impl Runtime for Oci {
    fn name(&self) -> &str {
        self.program
    }
    fn has(&self, _: Op) -> bool {
        true
    }
    fn cycle(&mut self, id: &str) -> Result<()> {
        let bundle = self.bundle(id, &["/bin/true"])?;
        let bundle = bundle.to_string_lossy().into_owned();
        quiet(&mut self.command(&["run", "--bundle", &bundle, id]))
    }
    fn start_idle(&mut self, id: &str) -> Result<()> {
        let bundle = self.bundle(id, &["/sbin/init"])?;
        let bundle = bundle.to_string_lossy().into_owned();
        quiet(&mut self.command(&["run", "--detach", "--bundle", &bundle, id]))
    }
    fn exec_true(&mut self, id: &str) -> Result<()> {
        quiet(&mut self.command(&["exec", id, "/bin/true"]))
    }
    fn stop_fast(&mut self, id: &str) -> Result<()> {
        quiet(&mut self.command(&["delete", "-f", id]))
    }
    fn stop_clean(&mut self, _: &str) -> Result<()> {
        bail!("{} has no clean stop of its own", self.program)
    }
    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}

/// A minimal OCI config: `args` in pid/mount/uts/ipc/net namespaces on the read-only `rootfs`
/// with /proc, /dev (tmpfs), /dev/pts and /sys, and cgroups at `cgroups_path`.
pub(crate) fn oci_config(
    rootfs: &Path,
    args: &[&str],
    hostname: &str,
    cgroups_path: &str,
) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let caps = r#"["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FOWNER","CAP_FSETID","CAP_KILL","CAP_SETGID","CAP_SETUID","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_NET_RAW","CAP_SYS_CHROOT","CAP_MKNOD","CAP_AUDIT_WRITE","CAP_SETFCAP"]"#;
    format!(
        r#"{{"ociVersion":"1.0.2",
"process":{{"terminal":false,"user":{{"uid":0,"gid":0}},"args":[{args}],
 "env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin","TERM=linux"],"cwd":"/",
 "capabilities":{{"bounding":{caps},"effective":{caps},"permitted":{caps}}},
 "noNewPrivileges":true}},
"root":{{"path":{root:?},"readonly":true}},
"hostname":{hostname:?},
"mounts":[
 {{"destination":"/proc","type":"proc","source":"proc"}},
 {{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]}},
 {{"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620"]}},
 {{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","ro"]}},
 {{"destination":"/run","type":"tmpfs","source":"tmpfs","options":["nosuid","nodev","mode=755"]}},
 {{"destination":"/tmp","type":"tmpfs","source":"tmpfs","options":["nosuid","nodev"]}}],
"linux":{{"cgroupsPath":{cgroups_path:?},
 "namespaces":[{{"type":"pid"}},{{"type":"network"}},{{"type":"ipc"}},{{"type":"uts"}},{{"type":"mount"}}],
 "maskedPaths":["/proc/kcore","/proc/keys","/proc/timer_list"],
 "readonlyPaths":["/proc/sys","/proc/sysrq-trigger"]}}}}
"#,
        args = args.join(","),
        root = rootfs.to_string_lossy(),
    )
}

/// LXC: `lxc-start`/`lxc-attach`/`lxc-stop` with a config per container in the bench's
/// lxcpath, on the shared tree.
pub(crate) struct Lxc {
    path: PathBuf,
    rootfs: PathBuf,
}

impl Lxc {
    /// LXC with its containers under `dir/lxc`.
    pub(crate) fn new(dir: &Path, rootfs: &Path) -> Result<Lxc> {
        let path = dir.join("lxc");
        std::fs::create_dir_all(&path)?;
        Ok(Lxc { path, rootfs: rootfs.to_owned() })
    }

    fn command(&self, program: &str, id: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("-P").arg(&self.path).arg("-n").arg(id);
        cmd
    }

    /// Writes `id`'s config with `init` as its init command.
    fn config(&self, id: &str, init: &str) -> Result<()> {
        let dir = self.path.join(id);
        std::fs::create_dir_all(&dir)?;
        let text = format!(
            "lxc.uts.name = {id}\nlxc.rootfs.path = dir:{}\nlxc.rootfs.options = ro\n\
             lxc.net.0.type = empty\nlxc.init.cmd = {init}\nlxc.mount.auto = proc:mixed sys:ro\n\
             lxc.mount.entry = tmpfs run tmpfs nosuid,nodev,create=dir 0 0\n\
             lxc.mount.entry = tmpfs tmp tmpfs nosuid,nodev,create=dir 0 0\n\
             lxc.autodev = 1\nlxc.tty.max = 0\nlxc.pty.max = 16\nlxc.console.path = none\n\
             lxc.apparmor.profile = unconfined\nlxc.signal.halt = SIGUSR2\n\
             lxc.log.level = ERROR\n",
            self.rootfs.display()
        );
        std::fs::write(dir.join("config"), text)?;
        Ok(())
    }
}

impl Runtime for Lxc {
    fn name(&self) -> &str {
        "lxc"
    }
    fn has(&self, _: Op) -> bool {
        true
    }
    fn cycle(&mut self, id: &str) -> Result<()> {
        self.config(id, "/bin/true")?;
        quiet(self.command("lxc-start", id).arg("-F"))
    }
    fn start_idle(&mut self, id: &str) -> Result<()> {
        self.config(id, "/sbin/init")?;
        quiet(self.command("lxc-start", id).arg("-d"))
    }
    fn exec_true(&mut self, id: &str) -> Result<()> {
        quiet(self.command("lxc-attach", id).args(["--", "/bin/true"]))
    }
    fn stop_fast(&mut self, id: &str) -> Result<()> {
        quiet(self.command("lxc-stop", id).arg("-k"))
    }
    fn stop_clean(&mut self, id: &str) -> Result<()> {
        quiet(&mut self.command("lxc-stop", id))
    }
    fn notes(&self) -> Vec<String> {
        vec![
            "lxc: lxc.net.0.type = empty (no lxc-net bridge here), read-only dir rootfs, \
             lxc.signal.halt = SIGUSR2 (busybox init powers off on it)"
                .to_owned(),
        ]
    }
}

/// systemd-nspawn, without a system bus or systemd as PID 1.
pub(crate) struct Nspawn {
    rootfs: PathBuf,
}

impl Nspawn {
    /// nspawn on the shared tree.
    pub(crate) fn new(rootfs: &Path) -> Nspawn {
        Nspawn { rootfs: rootfs.to_owned() }
    }
}

impl Runtime for Nspawn {
    fn name(&self) -> &str {
        "nspawn"
    }
    fn has(&self, op: Op) -> bool {
        op == Op::Cycle
    }
    fn cycle(&mut self, _: &str) -> Result<()> {
        quiet(
            Command::new("systemd-nspawn")
                .args(["--register=no", "--keep-unit", "--quiet", "--private-network"])
                .args(["--read-only", "--console=pipe", "-D"])
                .arg(&self.rootfs)
                .arg("/bin/true"),
        )
    }
    fn start_idle(&mut self, _: &str) -> Result<()> {
        bail!("nspawn: idle containers are not measured")
    }
    fn exec_true(&mut self, _: &str) -> Result<()> {
        bail!("nspawn: no exec without machined")
    }
    fn stop_fast(&mut self, _: &str) -> Result<()> {
        bail!("nspawn: not measured")
    }
    fn stop_clean(&mut self, _: &str) -> Result<()> {
        bail!("nspawn: not measured")
    }
    fn notes(&self) -> Vec<String> {
        vec![
            "nspawn: --register=no --keep-unit (no system bus, PID 1 is not systemd), \
             --private-network, --read-only"
                .to_owned(),
        ]
    }
}

/// The floor: `unshare` + `chroot` into the shared tree, and `nsenter` for exec.
pub(crate) struct Floor {
    rootfs: PathBuf,
    idle: Option<Child>,
}

impl Floor {
    /// The floor on the shared tree.
    pub(crate) fn new(rootfs: &Path) -> Floor {
        Floor { rootfs: rootfs.to_owned(), idle: None }
    }

    fn unshare(&self) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "--kill-child"])
            .arg("chroot")
            .arg(&self.rootfs);
        cmd
    }

    /// The pid of the idle sleeper inside the floor's namespaces (unshare's child).
    fn inner_pid(&self) -> Result<u32> {
        let child = self.idle.as_ref().context("the floor's idle process is not running")?;
        let path = format!("/proc/{0}/task/{0}/children", child.id());
        for _ in 0..200 {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(pid) = text.split_whitespace().next() {
                return Ok(pid.parse()?);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        bail!("unshare {} has no child", child.id())
    }
}

impl Runtime for Floor {
    fn name(&self) -> &str {
        "floor"
    }
    fn has(&self, op: Op) -> bool {
        matches!(op, Op::Cycle | Op::Exec | Op::Idle)
    }
    fn cycle(&mut self, _: &str) -> Result<()> {
        quiet(self.unshare().arg("/bin/true"))
    }
    fn start_idle(&mut self, _: &str) -> Result<()> {
        let child = self
            .unshare()
            .args(["/bin/sleep", "1000000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.idle = Some(child);
        self.inner_pid().map(drop)
    }
    fn exec_true(&mut self, _: &str) -> Result<()> {
        let pid = self.inner_pid()?.to_string();
        quiet(Command::new("nsenter").args([
            "-t",
            &pid,
            "-m",
            "-u",
            "-i",
            "-n",
            "-p",
            "-r",
            "/bin/true",
        ]))
    }
    fn stop_fast(&mut self, _: &str) -> Result<()> {
        if let Some(mut child) = self.idle.take() {
            // unshare --kill-child passes SIGKILL to the sleeper when unshare dies.
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
    fn stop_clean(&mut self, _: &str) -> Result<()> {
        bail!("floor: no clean stop")
    }
    fn notes(&self) -> Vec<String> {
        vec![
            "floor: unshare --pid --fork --mount --uts --ipc --net chroot ROOT; exec: nsenter -a \
             into an unshare'd sleeper"
                .to_owned(),
        ]
    }
}

/// The floor on an ext4 image of its own, the least a runtime whose containers each have a
/// file system pays (vz's default image layout): `losetup --direct-io=on` of the image, `mount`
/// of the device, the floor's `unshare` + `chroot` into it, `umount`, `losetup -d` (the
/// programs' execs are counted; `mount -o loop` would look at every loop device on the host
/// for one already on the image, 8 ms more with 500 of them).
pub(crate) struct FloorOnImage {
    image: PathBuf,
    floor: Floor,
}

impl FloorOnImage {
    /// The floor on `image`, mounted at `dir` for each cycle.
    pub(crate) fn new(image: &Path, dir: &Path) -> FloorOnImage {
        FloorOnImage { image: image.to_owned(), floor: Floor::new(dir) }
    }
}

impl Runtime for FloorOnImage {
    fn name(&self) -> &str {
        "floor"
    }
    fn has(&self, op: Op) -> bool {
        op == Op::Cycle
    }
    fn cycle(&mut self, id: &str) -> Result<()> {
        let dir = self.floor.rootfs.clone();
        let attach = Command::new("losetup")
            .args(["--direct-io=on", "--find", "--show"])
            .arg(&self.image)
            .stderr(Stdio::inherit())
            .output()
            .context("run losetup")?;
        if !attach.status.success() {
            bail!("losetup {} failed", self.image.display());
        }
        let device = String::from_utf8_lossy(&attach.stdout).trim().to_owned();
        let mounted = quiet(Command::new("mount").args(["-t", "ext4", &device]).arg(&dir));
        let ran = mounted.and_then(|()| {
            let ran = self.floor.cycle(id);
            quiet(Command::new("umount").arg(&dir)).and(ran)
        });
        quiet(Command::new("losetup").args(["-d", &device])).and(ran)
    }
    fn start_idle(&mut self, _: &str) -> Result<()> {
        bail!("floor on an image: cycle only")
    }
    fn exec_true(&mut self, _: &str) -> Result<()> {
        bail!("floor on an image: cycle only")
    }
    fn stop_fast(&mut self, _: &str) -> Result<()> {
        bail!("floor on an image: cycle only")
    }
    fn stop_clean(&mut self, _: &str) -> Result<()> {
        bail!("floor on an image: cycle only")
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.stop_fast("");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_config_quotes_its_values_and_balances() {
        let text = oci_config(Path::new("/tmp/a \"b\""), &["/bin/sh", "-c", "x"], "h1", "/p/h1");
        assert!(text.contains(r#""args":["/bin/sh","-c","x"]"#), "{text}");
        assert!(text.contains(r#""path":"/tmp/a \"b\"""#), "{text}");
        assert!(text.contains(r#""cgroupsPath":"/p/h1""#), "{text}");
        let depth = |open: char, close: char| {
            text.chars().try_fold(0i32, |d, c| {
                let d = d + i32::from(c == open) - i32::from(c == close);
                (d >= 0).then_some(d)
            })
        };
        assert_eq!(depth('{', '}'), Some(0));
        assert_eq!(depth('[', ']'), Some(0));
    }
}
