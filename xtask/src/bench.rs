//! `cargo xtask bench`: vz side by side with crun, runc, LXC, systemd-nspawn and the floor
//! (`unshare` + `chroot`), interleaved round by round on one busybox tree, printing medians
//! and vz's ratios to crun and to the floor (issue 17's table).
//!
//! The peers are installed from Debian's packages by the bench itself (`apt-get install` of
//! crun, runc, lxc, systemd-container when missing; `--no-install` skips it), so
//! `scripts/install-deps` and CI stay lean. Everything it makes lives in one temporary tree
//! (own vz.conf, cgroup parents `vz-bench-<pid>-*`) and is removed at the end, also on failure.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bench_peers::{Floor, FloorOnImage, Lxc, Nspawn, Oci, Op, Runtime, Vz, quiet};
use crate::bench_stats::{Table, Value, median_ms};

/// The Debian packages of the peers: (package, program it provides).
const PEERS: [(&str, &str); 4] = [
    ("crun", "crun"),
    ("runc", "runc"),
    ("lxc", "lxc-start"),
    ("systemd-container", "systemd-nspawn"),
];

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone)]
pub(crate) struct BenchOptions {
    /// Rounds of each interleaved measurement.
    pub(crate) rounds: usize,
    /// Rounds of the measurements taken after an idle pause.
    pub(crate) paused_rounds: usize,
    /// The idle pause.
    pub(crate) pause: Duration,
    /// Rounds of the clean stop (each takes seconds).
    pub(crate) clean_rounds: usize,
    /// Idle containers per runtime.
    pub(crate) idle: usize,
    /// Rounds of the idle measurement, the runtimes taking turns (medians are printed).
    pub(crate) idle_rounds: usize,
    /// Only the idle (density) measurement, of vz alone.
    pub(crate) density_only: bool,
    /// Install missing peers with apt-get.
    pub(crate) install: bool,
    /// The layout of the idle VEs (`ploop` image or `simfs` directory).
    pub(crate) layout: String,
    /// Use the vz binaries in this directory instead of building them (e.g. an older build,
    /// for a before/after table).
    pub(crate) bin_dir: Option<PathBuf>,
}

impl BenchOptions {
    /// Parses `[--quick] [--rounds N] [--idle N] [--idle-rounds N] [--density N] [--layout L]
    /// [--no-install] [--bin-dir D]`.
    pub(crate) fn parse(args: &[String]) -> Result<BenchOptions> {
        let mut o = BenchOptions {
            rounds: 30,
            paused_rounds: 8,
            pause: Duration::from_millis(1000),
            clean_rounds: 3,
            idle: 50,
            idle_rounds: 3,
            density_only: false,
            install: true,
            bin_dir: None,
            layout: "ploop".to_owned(),
        };
        let mut it = args.iter();
        let number = |it: &mut std::slice::Iter<'_, String>, what: &str| -> Result<usize> {
            let value = it.next().with_context(|| format!("{what} needs a number"))?;
            value.parse().with_context(|| format!("{what} {value:?} is not a number"))
        };
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--quick" => {
                    o.rounds = 3;
                    o.paused_rounds = 2;
                    o.pause = Duration::from_millis(300);
                    o.clean_rounds = 1;
                    o.idle = 3;
                    o.idle_rounds = 1;
                }
                "--rounds" => o.rounds = number(&mut it, "--rounds")?.max(1),
                "--idle" => o.idle = number(&mut it, "--idle")?,
                "--idle-rounds" => o.idle_rounds = number(&mut it, "--idle-rounds")?.max(1),
                "--density" => {
                    o.idle = number(&mut it, "--density")?;
                    o.idle_rounds = 1;
                    o.density_only = true;
                }
                "--no-install" => o.install = false,
                "--layout" => {
                    let layout = it.next().context("--layout needs ploop or simfs")?;
                    if layout != "ploop" && layout != "simfs" {
                        bail!("--layout {layout:?}: ploop or simfs");
                    }
                    layout.clone_into(&mut o.layout);
                }
                "--bin-dir" => {
                    o.bin_dir =
                        Some(PathBuf::from(it.next().context("--bin-dir needs a directory")?));
                }
                other => bail!("bench: unknown option {other:?} (try `cargo xtask help`)"),
            }
        }
        Ok(o)
    }
}

/// Runs the bench and prints its table.
///
/// # Errors
/// Not root, the build, the tree or a vz operation failing.
pub(crate) fn run(o: &BenchOptions) -> Result<()> {
    if std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            !s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(true)
    {
        bail!("bench: must run as root");
    }
    let bin = match &o.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            let root = crate::sh::project_root();
            let mut build = crate::sh::cargo(&root);
            crate::sh::run(build.args(["build", "--release", "-p", "vz-ctl", "--bins"]))?;
            crate::sh::target_dir(&root)?.join("release")
        }
    };
    if o.install && !o.density_only {
        install_peers()?;
    }
    let tree = Tree::new(&bin)?;
    let mut notes = Vec::new();
    let mut table = Table::new(&["vz", "crun", "lxc", "runc", "nspawn", "floor"]);
    if o.density_only {
        let mut all: Vec<Box<dyn Runtime>> = vec![Box::new(tree.vz("vz", &bin))];
        if which("crun").is_some() {
            let ns = Some(tree.crun_ns()?);
            let cgroup = tree.cgroup("crun");
            all.push(Box::new(Oci::new("crun", &tree.dir, &tree.rootfs, &cgroup, ns)?));
        }
        crate::bench_idle::idle_rows(o, &tree, &mut table, &mut all)?;
    } else {
        measure(o, &tree, &bin, &mut table, &mut notes)?;
    }
    println!();
    for note in notes {
        println!("  * {note}");
    }
    println!();
    print!("{}", table.render());
    Ok(())
}

/// Installs the peers that are missing, from Debian's archive.
fn install_peers() -> Result<()> {
    let missing: Vec<&str> = PEERS
        .iter()
        .filter(|(_, program)| which(program).is_none())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("bench: apt-get install {}", missing.join(" "));
    crate::sh::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(&missing),
    )
}

/// The path of `program` on PATH.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// Every measurement but density-only's, interleaved where the peers have the operation.
fn measure(
    o: &BenchOptions,
    tree: &Tree,
    bin: &Path,
    table: &mut Table,
    notes: &mut Vec<String>,
) -> Result<()> {
    let image = tree.vz("vz", bin);
    let simfs = tree.vz("vz simfs", bin);
    quiet(&mut image.vzctl(&["create", "101", "--layout", "ploop"]))?;
    quiet(&mut simfs.vzctl(&["create", "102", "--layout", "simfs"]))?;
    // The image the floor mounts for its cycle on an image (a VE's, never started).
    quiet(&mut image.vzctl(&["create", "103", "--layout", "ploop"]))?;
    let mut peers: Vec<Box<dyn Runtime>> = Vec::new();
    if which("crun").is_some() {
        peers.push(Box::new(Oci::new(
            "crun",
            &tree.dir,
            &tree.rootfs,
            &tree.cgroup("crun"),
            Some(tree.crun_ns()?),
        )?));
    }
    if which("lxc-start").is_some() {
        peers.push(Box::new(Lxc::new(&tree.dir, &tree.rootfs)?));
    }
    if which("runc").is_some() {
        peers.push(Box::new(Oci::new(
            "runc",
            &tree.dir,
            &tree.rootfs,
            &tree.cgroup("runc"),
            None,
        )?));
    }
    if which("systemd-nspawn").is_some() {
        peers.push(Box::new(Nspawn::new(&tree.rootfs)));
    }
    peers.push(Box::new(Floor::new(&tree.rootfs)));
    let mut all: Vec<Box<dyn Runtime>> = vec![Box::new(image)];
    all.append(&mut peers);
    let mut simfs: Vec<Box<dyn Runtime>> = vec![Box::new(simfs)];
    for runtime in &all {
        notes.extend(runtime.notes());
    }
    // A peer that cannot run here is left out, and the reason printed.
    all.retain_mut(|r| match r.cycle(&id_of(r.name(), 0)) {
        Ok(()) => true,
        Err(e) => {
            notes.push(format!("{} left out: {e:#}", r.name()));
            false
        }
    });
    let cycle = timed_rounds(&mut all, o.rounds, Duration::ZERO, |r, id| r.cycle(id))?;
    table_row(table, "start → run `true` → stop, image layout (default)", &cycle);
    image_floor_row(o, tree, bin, table)?;
    let cycle = timed_rounds(&mut simfs, o.rounds, Duration::ZERO, |r, id| r.cycle(id))?;
    let cycle: Vec<_> = cycle.into_iter().map(|(_, s)| ("vz".to_owned(), s)).collect();
    table_row(table, "same, directory layout (simfs)", &cycle);
    one_command_rows(o, tree, &mut all, &mut simfs, table)?;
    split_cycle_row(o, &mut all, table)?;
    let paused = timed_rounds(&mut all, o.paused_rounds, o.pause, |r, id| r.cycle(id))?;
    table_row(table, &format!("same, image, after {} ms idle", o.pause.as_millis()), &paused);
    exec_rows(o, &mut all, table)?;
    create_row(o, tree, bin, table)?;
    stop_rows(o, &mut all, table)?;
    crate::bench_idle::idle_rows(o, tree, table, &mut all)?;
    Ok(())
}

/// vz's cycle on its image layout beside the floor on an ext4 image of its own
/// ([`FloorOnImage`], on VE 103's image): what is left of vz's time once the file system
/// every image VE mounts is paid.
fn image_floor_row(o: &BenchOptions, tree: &Tree, bin: &Path, table: &mut Table) -> Result<()> {
    let image = tree.dir.join("private/103/root.hdd/root.img");
    let dir = tree.dir.join("floor-image");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let mut pair: Vec<Box<dyn Runtime>> =
        vec![Box::new(tree.vz("vz", bin)), Box::new(FloorOnImage::new(&image, &dir))];
    let cycle = timed_rounds(&mut pair, o.rounds, Duration::ZERO, |r, id| r.cycle(id))?;
    table_row(
        table,
        "same, beside the floor on an ext4 image of its own (losetup, mount, unshare+chroot, \
         umount, losetup -d)",
        &cycle,
    );
    Ok(())
}

/// The one-command cycle: vz's `vzctl runscript` on a stopped VE (mounts it, makes its
/// namespaces and cgroup with an init that never boots, runs the script `/bin/true`,
/// unmounts: OpenVZ's runscript on a stopped CT) beside each peer's one-command run of
/// `true` (crun/runc `run`, `lxc-start -F` of `/bin/true`, nspawn, the floor), on both
/// layouts.
fn one_command_rows(
    o: &BenchOptions,
    tree: &Tree,
    all: &mut [Box<dyn Runtime>],
    simfs: &mut [Box<dyn Runtime>],
    table: &mut Table,
) -> Result<()> {
    let script = tree.dir.join(crate::bench_peers::TRUE_SCRIPT);
    std::fs::write(&script, "/bin/true\n")
        .with_context(|| format!("write {}", script.display()))?;
    let one = timed_rounds(all, o.rounds, Duration::ZERO, |r, id| r.one_command(id))?;
    table_row(
        table,
        "one command: `true` in the container, nothing left (vz: runscript on the stopped \
         VE, no init booted; crun/runc: run; lxc: lxc-start -F /bin/true), image",
        &one,
    );
    let one = timed_rounds(simfs, o.rounds, Duration::ZERO, |r, id| r.one_command(id))?;
    let one: Vec<_> = one.into_iter().map(|(_, s)| ("vz".to_owned(), s)).collect();
    table_row(table, "same, vz runscript, directory layout (simfs)", &one);
    Ok(())
}

/// The cycle as the three commands an operator types with each tool: start the container
/// with its idle init, exec `true` in it, stop it at once (crun/runc: `run -d`, `exec`,
/// `delete -f`; lxc: `lxc-start`, `lxc-attach`, `lxc-stop -k`). vz's cycle is already these
/// three; the peers' one-command cycle above runs `true` as the container's only process.
fn split_cycle_row(
    o: &BenchOptions,
    all: &mut [Box<dyn Runtime>],
    table: &mut Table,
) -> Result<()> {
    let split = rounds(all, o.rounds, Duration::ZERO, |r, i| {
        if !r.has(Op::Idle) || !r.has(Op::Exec) || r.name() == "floor" {
            return Ok(Duration::ZERO);
        }
        let id = id_of(r.name(), i);
        timed(|| {
            r.start_idle(&id)?;
            r.exec_true(&id)?;
            r.stop_fast(&id)
        })
    })?;
    let split: Vec<_> = split.into_iter().filter(|(_, v)| v.iter().any(|d| !d.is_zero())).collect();
    table_row(
        table,
        "same as three commands: start the idle init, exec `true`, stop --fast (crun/runc: \
         run -d, exec, delete -f; lxc: lxc-start, lxc-attach, lxc-stop -k), image",
        &split,
    );
    Ok(())
}

/// The id a runtime's container gets in round `i` (vz: the CTID made for it).
fn id_of(runtime: &str, i: usize) -> String {
    match runtime {
        "vz" => "101".to_owned(),
        "vz simfs" => "102".to_owned(),
        other => format!("vzb-{other}-{}", i % 4),
    }
}

/// Times `f`.
fn timed(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let begin = Instant::now();
    f()?;
    Ok(begin.elapsed())
}

/// Times `op` on every runtime for `n` rounds ([`rounds`]), each round on its own id
/// ([`id_of`]).
fn timed_rounds(
    runtimes: &mut [Box<dyn Runtime>],
    n: usize,
    pause: Duration,
    op: impl Fn(&mut dyn Runtime, &str) -> Result<()>,
) -> Result<Vec<(String, Vec<Duration>)>> {
    rounds(runtimes, n, pause, |r, i| {
        let id = id_of(r.name(), i);
        timed(|| op(r, &id))
    })
}

/// Runs `f` on every runtime for `n` rounds, interleaved (each round starts with the next
/// runtime), sleeping `pause` before each call; the samples per runtime name.
fn rounds(
    runtimes: &mut [Box<dyn Runtime>],
    n: usize,
    pause: Duration,
    mut f: impl FnMut(&mut dyn Runtime, usize) -> Result<Duration>,
) -> Result<Vec<(String, Vec<Duration>)>> {
    let mut samples: Vec<(String, Vec<Duration>)> =
        runtimes.iter().map(|r| (r.name().to_owned(), Vec::new())).collect();
    let count = runtimes.len();
    for round in 0..n {
        for k in 0..count {
            let i = (round + k) % count;
            std::thread::sleep(pause);
            let took = f(runtimes[i].as_mut(), round)
                .with_context(|| format!("{} (round {round})", runtimes[i].name()))?;
            samples[i].1.push(took);
        }
    }
    Ok(samples)
}

/// A row of medians from `samples` by runtime name.
fn table_row(table: &mut Table, work: &str, samples: &[(String, Vec<Duration>)]) {
    let values: Vec<(&str, Option<Value>)> =
        samples.iter().map(|(name, s)| (name.as_str(), median_ms(s))).collect();
    table.push(work, &values);
}

/// exec `true` in a running container, back to back and after a pause.
fn exec_rows(o: &BenchOptions, all: &mut Vec<Box<dyn Runtime>>, table: &mut Table) -> Result<()> {
    let mut execs: Vec<Box<dyn Runtime>> = Vec::new();
    for mut r in all.drain(..) {
        if r.has(Op::Exec) {
            r.start_idle(&id_of(r.name(), 9))?;
        }
        execs.push(r);
    }
    let result = (|| {
        let back = rounds(&mut execs, o.rounds, Duration::ZERO, |r, _| {
            if !r.has(Op::Exec) {
                return Ok(Duration::ZERO);
            }
            let id = id_of(r.name(), 9);
            timed(|| r.exec_true(&id))
        })?;
        let paused = rounds(&mut execs, o.paused_rounds, o.pause, |r, _| {
            if !r.has(Op::Exec) {
                return Ok(Duration::ZERO);
            }
            let id = id_of(r.name(), 9);
            timed(|| r.exec_true(&id))
        })?;
        Ok::<_, anyhow::Error>((back, paused))
    })();
    for r in &mut execs {
        if r.has(Op::Exec) {
            let id = id_of(r.name(), 9);
            let _ = r.stop_fast(&id);
        }
    }
    let (back, paused) = result?;
    let only_exec = |s: Vec<(String, Vec<Duration>)>| -> Vec<(String, Vec<Duration>)> {
        s.into_iter().filter(|(_, v)| v.iter().any(|d| !d.is_zero())).collect()
    };
    table_row(
        table,
        "exec `true` in a running container (lxc: lxc-attach, floor: nsenter)",
        &only_exec(back),
    );
    table_row(table, &format!("same, after {} ms idle", o.pause.as_millis()), &only_exec(paused));
    *all = execs;
    Ok(())
}

/// `vzctl create` from the cache, beside the floor (`tar -x` of the same cache).
fn create_row(o: &BenchOptions, tree: &Tree, bin: &Path, table: &mut Table) -> Result<()> {
    let vz = tree.vz("vz", bin);
    let cache = tree.cache()?;
    let (mut create, mut untar) = (Vec::new(), Vec::new());
    for i in 0..o.rounds.min(10) {
        let id = (200 + i).to_string();
        create.push(timed(|| quiet(&mut vz.vzctl(&["create", &id])))?);
        quiet(&mut vz.vzctl(&["destroy", &id]))?;
        let dest = tree.dir.join("untar");
        std::fs::create_dir_all(&dest)?;
        untar.push(timed(|| {
            quiet(Command::new("tar").arg("-xf").arg(&cache).arg("-C").arg(&dest))
        })?);
        std::fs::remove_dir_all(&dest)?;
    }
    table.push(
        "create from the cache (floor: tar -x)",
        &[("vz", median_ms(&create)), ("floor", median_ms(&untar))],
    );
    table.reference("floor");
    Ok(())
}

/// stop --fast and the clean stop, each of a freshly started container.
fn stop_rows(o: &BenchOptions, all: &mut [Box<dyn Runtime>], table: &mut Table) -> Result<()> {
    let fast = rounds(all, o.rounds, Duration::ZERO, |r, _| {
        if !r.has(Op::Idle) || r.name() == "floor" {
            return Ok(Duration::ZERO);
        }
        let id = id_of(r.name(), 8);
        r.start_idle(&id)?;
        std::thread::sleep(Duration::from_millis(20));
        timed(|| r.stop_fast(&id))
    })?;
    let fast: Vec<_> = fast.into_iter().filter(|(_, v)| v.iter().any(|d| !d.is_zero())).collect();
    table_row(table, "stop --fast (crun/runc: delete -f, lxc: lxc-stop -k)", &fast);
    let clean = rounds(all, o.clean_rounds, Duration::ZERO, |r, _| {
        if !r.has(Op::StopClean) || r.name() == "crun" || r.name() == "runc" {
            return Ok(Duration::ZERO);
        }
        let id = id_of(r.name(), 7);
        r.start_idle(&id)?;
        // Let the busybox init finish its boot script first.
        std::thread::sleep(Duration::from_millis(300));
        timed(|| r.stop_clean(&id))
    })?;
    let clean: Vec<_> = clean.into_iter().filter(|(_, v)| v.iter().any(|d| !d.is_zero())).collect();
    table_row(table, "clean stop of busybox init (lxc: lxc-stop)", &clean);
    table.reference("lxc");
    Ok(())
}

/// The bench's temporary tree: vz.conf, the busybox cache and tree, cgroup parents, the
/// mount namespace crun runs in; removed on drop.
pub(crate) struct Tree {
    pub(crate) dir: PathBuf,
    pub(crate) rootfs: PathBuf,
    conf: PathBuf,
    bin: PathBuf,
    tag: String,
    crun_ns: std::cell::RefCell<Option<PathBuf>>,
}

impl Tree {
    /// Makes the tree, builds the busybox cache with vzpkg and unpacks it as the shared tree.
    fn new(bin: &Path) -> Result<Tree> {
        remove_stale(bin);
        let tag = format!("vz-bench-{}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir)?;
        let tree = Tree::at(dir, tag, bin);
        for sub in
            ["conf", "names", "lock", "run", "dump", "template/cache", "private", "root", "rootfs"]
        {
            std::fs::create_dir_all(tree.dir.join(sub))?;
        }
        let samples = crate::sh::project_root().join("vz-ctl/etc/conf");
        for entry in std::fs::read_dir(&samples)?.flatten() {
            std::fs::copy(entry.path(), tree.dir.join("conf").join(entry.file_name()))?;
        }
        std::fs::write(
            &tree.conf,
            format!(
                "LOCKDIR={r}/lock\nDUMPDIR={r}/dump\nTEMPLATE={r}/template\n\
                 VE_ROOT={r}/root/$VEID\nVE_PRIVATE={r}/private/$VEID\nVE_CONF_DIR={r}/conf\n\
                 VZ_NAMES_DIR={r}/names\nVZ_RUN_DIR={r}/run\nVE_CGROUP_PARENT={t}-vz\n\
                 DEF_OSTEMPLATE=busybox\nCONFIGFILE=\"vswap-256m\"\nVE_LAYOUT=ploop\n\
                 LOGGING=no\nSTOP_TIMEOUT=20\n",
                r = tree.dir.display(),
                t = tree.tag
            ),
        )?;
        let mut vzpkg = Command::new(bin.join("vzpkg"));
        quiet(vzpkg.env("VZ_CONFIG", &tree.conf).args(["create", "cache", "busybox"]))?;
        quiet(Command::new("tar").arg("-xf").arg(tree.cache()?).arg("-C").arg(&tree.rootfs))?;
        Ok(tree)
    }

    /// The tree in `dir` with cgroup parents named `tag-*`.
    fn at(dir: PathBuf, tag: String, bin: &Path) -> Tree {
        Tree {
            conf: dir.join("vz.conf"),
            rootfs: dir.join("rootfs"),
            dir,
            bin: bin.to_owned(),
            tag,
            crun_ns: std::cell::RefCell::new(None),
        }
    }

    /// vz's runtime on this tree.
    fn vz(&self, label: &str, bin: &Path) -> Vz {
        Vz { label: label.to_owned(), bin: bin.to_owned(), conf: self.conf.clone() }
    }

    /// The cgroup parent for `runtime`.
    fn cgroup(&self, runtime: &str) -> String {
        format!("{}-{runtime}", self.tag)
    }

    /// The busybox cache tarball.
    fn cache(&self) -> Result<PathBuf> {
        let dir = self.dir.join("template/cache");
        std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("busybox")))
            .with_context(|| format!("no busybox cache in {}", dir.display()))
    }

    /// A mount namespace without the cgroup2 mount, kept in a file (for crun).
    fn crun_ns(&self) -> Result<PathBuf> {
        if let Some(ns) = self.crun_ns.borrow().clone() {
            return Ok(ns);
        }
        let holder = self.dir.join("ns");
        std::fs::create_dir_all(&holder)?;
        quiet(Command::new("mount").arg("--bind").arg(&holder).arg(&holder))?;
        quiet(Command::new("mount").arg("--make-private").arg(&holder))?;
        let file = holder.join("mnt");
        std::fs::write(&file, "")?;
        quiet(Command::new("unshare").arg(format!("--mount={}", file.display())).args([
            "--propagation",
            "private",
            "umount",
            "/sys/fs/cgroup/unified",
        ]))?;
        *self.crun_ns.borrow_mut() = Some(file.clone());
        Ok(file)
    }

    /// Creates the VEs `ids` (idle measurement) from the cache.
    pub(crate) fn create_many(&self, ids: &[String], layout: &str) -> Result<()> {
        let vz = self.vz("vz", &self.bin);
        for id in ids {
            quiet(&mut vz.vzctl(&["create", id, "--layout", layout]))?;
        }
        Ok(())
    }

    /// Destroys the VEs `ids`, best effort.
    pub(crate) fn destroy_many(&self, ids: &[String]) {
        let vz = self.vz("vz", &self.bin);
        for id in ids {
            let _ = vz.vzctl(&["stop", id, "--fast"]).output();
            let _ = vz.vzctl(&["destroy", id]).output();
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        crate::bench_idle::cleanup(self);
    }
}

/// Removes the trees of bench runs that were killed before their cleanup (their pid gone).
fn remove_stale(bin: &Path) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("vz-bench-").filter(|p| p.parse::<u32>().is_ok()) else {
            continue;
        };
        if entry.path().is_dir() && !Path::new(&format!("/proc/{pid}")).exists() {
            println!("bench: removing the stale tree {}", entry.path().display());
            drop(Tree::at(entry.path(), name, bin));
        }
    }
}

/// What [`crate::bench_idle::cleanup`] needs of the tree.
impl Tree {
    /// The VE ids with a config in the tree.
    pub(crate) fn ve_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.join("conf"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".conf").filter(|id| id.parse::<u32>().is_ok()).map(str::to_owned)
            })
            .collect()
    }

    /// vzctl of the tree.
    pub(crate) fn vzctl(&self, args: &[&str]) -> Command {
        self.vz("vz", &self.bin).vzctl(args)
    }

    /// The prefix of every cgroup parent the bench made.
    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BenchOptions> {
        BenchOptions::parse(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn options_parse() {
        let o = parse(&[]).unwrap();
        assert!(o.rounds > 3 && o.install && !o.density_only && o.idle == 50);
        let o = parse(&["--quick", "--no-install"]).unwrap();
        assert!(o.rounds == 3 && o.clean_rounds == 1 && !o.install);
        let o = parse(&["--density", "500", "--bin-dir", "/b"]).unwrap();
        assert!(o.density_only && o.idle == 500);
        assert_eq!(o.bin_dir, Some(PathBuf::from("/b")));
        assert_eq!(parse(&["--layout", "simfs"]).unwrap().layout, "simfs");
        assert!(parse(&["--layout", "zfs"]).is_err());
        assert_eq!(parse(&["--rounds", "0"]).unwrap().rounds, 1);
        for bad in [&["--rounds"][..], &["--idle", "many"], &["--bogus"]] {
            let err = parse(bad).unwrap_err();
            assert!(format!("{err:#}").contains(bad[bad.len() - 1]), "{err:#}");
        }
    }

    #[test]
    fn rounds_interleave_and_rotate() {
        struct Fake(&'static str, std::rc::Rc<std::cell::RefCell<Vec<String>>>);
        impl Runtime for Fake {
            fn name(&self) -> &str {
                self.0
            }
            fn has(&self, _: Op) -> bool {
                true
            }
            fn cycle(&mut self, id: &str) -> Result<()> {
                self.1.borrow_mut().push(format!("{}:{id}", self.0));
                Ok(())
            }
            fn start_idle(&mut self, _: &str) -> Result<()> {
                Ok(())
            }
            fn exec_true(&mut self, _: &str) -> Result<()> {
                Ok(())
            }
            fn stop_fast(&mut self, _: &str) -> Result<()> {
                Ok(())
            }
            fn stop_clean(&mut self, _: &str) -> Result<()> {
                Ok(())
            }
        }
        let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut all: Vec<Box<dyn Runtime>> =
            vec![Box::new(Fake("a", log.clone())), Box::new(Fake("b", log.clone()))];
        let samples = rounds(&mut all, 2, Duration::ZERO, |r, i| {
            let id = i.to_string();
            timed(|| r.cycle(&id))
        })
        .unwrap();
        assert_eq!(*log.borrow(), ["a:0", "b:0", "b:1", "a:1"]);
        assert_eq!(
            samples.iter().map(|(n, s)| (n.as_str(), s.len())).collect::<Vec<_>>(),
            [("a", 2), ("b", 2)]
        );
    }
}
