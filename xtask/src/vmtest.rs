//! `cargo xtask vmtest`: the kernel lab. Boots Debian's kernel (scripts/install-deps fetched
//! it) under qemu-system-x86_64 with TCG, the host's root shared read-only over 9p, and runs
//! the workspace's kernel and black-box tests inside as root on pure cgroup v2, with kernel
//! quota formats, loop, veth and bridge. docs/kernel-lab.md explains the parts.
//!
//! The host builds everything (test binaries, `vzctl` & co.) and hands nextest's reuse-build
//! metadata to the guest through the job share, a writable 9p directory under the target
//! directory (`vmtest/share/`); the guest writes its logs and a status file back there.

use crate::{initramfs, lab, sh};
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The default filter in the guest: integration-test binaries only (each crate's
/// `kernel_*.rs` and the black-box tests); unit tests run on the host. The debootstrap and
/// Debian template builds need Debian's archive, and the guest has no network: they run on
/// the host; the lab boots a Debian 12 VE (systemd) from the cache the host run built
/// (`template::a_debian_ve_from_the_cache_boots_on_cgroup_v1_and_v2`, ~20 s under TCG). So
/// do the 50-VE and random-kill stress tests, CRIU's timings beside bare CRIU, the privileged
/// twin of the checkpoint test (2.5 min under TCG; the lab runs the user-namespace one), the
/// two-server migrations (minutes each under TCG; the lab runs vzmlocal, which moves a VE's
/// cgroup too), the Debian package build, the boot service (the init script's order and
/// modes over vzctl) and vzubc under watch(1) (a terminal test), which differ in nothing on
/// v2 but would take most of the lab's time; and the helpers' CPU-budget floods, whose budget
/// is CPU time that costs 5-10x more per byte under TCG (a boot's console output then runs
/// into it) and whose logic has nothing of cgroup v2 (the lab runs the quota path's); and the
/// console server's hundred start/stop cycles and its start/exit race (fd and lock
/// bookkeeping, nothing of v2: 117 s and 52 s under TCG).
const DEFAULT_FILTER: &str = "kind(test) & !binary(kernel_debootstrap) \
     & !(binary(template) & !test(a_debian_ve_from_the_cache_boots_on_cgroup_v1_and_v2)) \
     & !binary(kernel_timing) & !test(a_privileged_ve_keeps_the_work_and_the_tcp_client_too) \
     & !(binary(migrate) & !test(vzmlocal_moves_and_clones)) & !binary(deb) & !binary(service) \
     & !test(vzubc_watch_runs_itself_under_watch) \
     & !test(fifty_ves_live_their_whole_life_in_parallel) \
     & !test(kills_at_arbitrary_instants_leave_a_ve_that_one_command_repairs_or_removes) \
     & !(binary(helper_dos) & test(/^a_(sysinfo|console)_flood/)) \
     & !test(a_hundred_starts_and_stops_leave_no_fd_in_the_server) \
     & !test(starts_racing_the_servers_exit_always_get_a_server)";

/// The guest's `VZ_TEST_REQUIRE` (the kit checks that the lab really offers these).
/// `prebuilt-templates`: the Debian cache the host run built (the guest sees the host's
/// template directory read-only over 9p and has no network to build one) must be there.
const GUEST_REQUIRE: &str = "cgroup-v2,quota,prebuilt-templates";

/// One run of the lab.
#[derive(Debug, Clone)]
pub(crate) struct VmTest {
    root: PathBuf,
    target: PathBuf,
    nextest_args: Vec<String>,
    timeout: Duration,
}

/// Timings and results of a lab run, for the closing report.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// From qemu's start to the guest's init script (kernel boot).
    pub(crate) boot: Option<Duration>,
    /// From qemu's start to the guest's root being ready (modules, 9p, overlay).
    pub(crate) ready: Option<Duration>,
    /// The whole lab, build of the initramfs included.
    pub(crate) total: Duration,
    /// nextest's closing summary line in the guest.
    pub(crate) summary: Option<String>,
    /// Skipped tests the guest logged.
    pub(crate) skips: Vec<String>,
}

impl VmTest {
    /// A lab run for the workspace at `root` with target directory `target`.
    pub(crate) fn new(
        root: PathBuf,
        target: PathBuf,
        nextest_args: Vec<String>,
        timeout: Option<Duration>,
    ) -> VmTest {
        let timeout = timeout
            .or_else(|| {
                std::env::var("VZ_VMTEST_TIMEOUT").ok().and_then(|v| crate::parse_minutes(&v).ok())
            })
            .unwrap_or(Duration::from_secs(30 * 60));
        VmTest { root, target, nextest_args, timeout }
    }
}

/// Runs the lab and prints its report; fails on any failed step, a timeout or a dead guest.
pub(crate) fn run(lab: &VmTest) -> Result<()> {
    let report = run_lab(lab)?;
    print_report(&report);
    Ok(())
}

/// Runs the lab; the report is returned only when everything passed.
pub(crate) fn run_lab(lab: &VmTest) -> Result<Report> {
    let start = Instant::now();
    let kernel = lab::Kernel::find(&lab::cache_dir())?;
    let (modules, warnings) = kernel.modules()?;
    for warning in warnings {
        println!("xtask: vmtest: {warning}");
    }
    let work = lab.target.join("vmtest");
    let share = work.join("share");
    if share.exists() {
        std::fs::remove_dir_all(&share)
            .with_context(|| format!("cannot clear the job share {}", share.display()))?;
    }
    std::fs::create_dir_all(&share)
        .with_context(|| format!("cannot create {}", share.display()))?;

    // Build on the host: the binaries for the black-box tests and every test binary, and
    // write nextest's reuse-build metadata for the guest.
    sh::run(sh::cargo(&lab.root).args(["build", "--workspace", "--bins"]))?;
    let (scope, _) = build_scope(&lab.nextest_args);
    let mut list = sh::cargo(&lab.root);
    list.args(["nextest", "list"]);
    if scope.is_empty() {
        list.arg("--workspace");
    } else {
        list.args(&scope);
    }
    let binaries =
        sh::output(list.args(["--list-type", "binaries-only", "--message-format", "json"]))?;
    write(&share.join("binaries-metadata.json"), &binaries)?;
    let metadata = sh::output(sh::cargo(&lab.root).args([
        "metadata",
        "--format-version",
        "1",
        "--all-features",
    ]))?;
    write(&share.join("cargo-metadata.json"), &metadata)?;
    write(&share.join("run.sh"), include_str!("guest/run.sh"))?;
    write(&share.join("job.env"), &job_env(lab)?)?;

    let initrd = work.join("initramfs.cpio");
    let image = initramfs::build(Path::new("/bin/busybox"), &modules)?;
    write_bytes(&initrd, &image)?;
    println!(
        "xtask: vmtest: kernel {} ({}), initramfs {} KiB with {} modules",
        kernel.version,
        kernel.vmlinuz.display(),
        image.len() / 1024,
        modules.len()
    );

    let mut qemu = qemu_command(&kernel.vmlinuz, &initrd, &share);
    let launched = Instant::now();
    let mut report = Report::default();
    let ended = sh::stream(&mut qemu, Some(lab.timeout), |line, _| {
        if line.contains("VZLAB: init started") && report.boot.is_none() {
            report.boot = Some(launched.elapsed());
        }
        if line.contains("VZLAB: root ready") && report.ready.is_none() {
            report.ready = Some(launched.elapsed());
        }
        if sh::is_nextest_summary(line) {
            report.summary = Some(sh::strip_ansi(line).trim().to_owned());
        }
    })?;
    report.total = start.elapsed();
    report.skips = read_lines(&share.join("skips.log"));
    match ended {
        sh::Ended::TimedOut => {
            print_report(&report);
            bail!("the kernel lab ran past {:?} and was killed", lab.timeout)
        }
        sh::Ended::Exited(status) if !status.success() => {
            print_report(&report);
            bail!("qemu failed ({status})")
        }
        sh::Ended::Exited(_) => {}
    }
    let status_file = share.join("status");
    let status = std::fs::read_to_string(&status_file).unwrap_or_default();
    match status.trim() {
        "0" => Ok(report),
        "" => {
            print_report(&report);
            bail!(
                "the guest wrote no {} (it died before the end; see its console above)",
                status_file.display()
            )
        }
        n => {
            print_report(&report);
            bail!("{n} step(s) failed in the kernel lab (logs in {})", share.display())
        }
    }
}

/// The qemu command line: TCG, 2 CPUs, 2 GiB, serial console on stdio, no network at all.
fn qemu_command(vmlinuz: &Path, initrd: &Path, share: &Path) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg,thread=multi", "-smp", "2", "-m", "2048"])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1 cgroup_no_v1=all"])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=vzlab,security_model=none,multidevs=remap",
            share.display()
        ));
    cmd
}

/// `job.env`, sourced by the guest's run.sh (bash).
fn job_env(lab: &VmTest) -> Result<String> {
    let xtask = std::env::current_exe().context("cannot find xtask's own executable")?;
    // Several -E are a union in nextest: a filter expression of the caller replaces ours;
    // test-name filters narrow ours.
    let (_, guest_args) = build_scope(&lab.nextest_args);
    let own_expr = guest_args.iter().any(|a| a == "-E" || a.starts_with("--filter-expr"));
    let mut args =
        if own_expr { Vec::new() } else { vec!["-E".to_owned(), DEFAULT_FILTER.to_owned()] };
    args.extend(guest_args);
    let mut env = String::new();
    let mut var = |key: &str, value: &str| writeln!(env, "export {key}={}", bash_quote(value));
    var("VZ_WORKSPACE", &lab.root.to_string_lossy())?;
    var("VZ_BIN_DIR", &lab.target.join("debug").to_string_lossy())?;
    var("VZ_TEST_REQUIRE", GUEST_REQUIRE)?;
    var("VZ_XTASK", &xtask.to_string_lossy())?;
    var("CARGO_TARGET_DIR", &lab.target.to_string_lossy())?;
    var("CI", &std::env::var("CI").unwrap_or_default())?;
    if let Ok(dir) = std::env::var("VZ_TEMPLATE_CACHE") {
        // The host's shared template directory, if moved (the guest sees the host's root).
        var("VZ_TEMPLATE_CACHE", &dir)?;
    }
    let quoted: Vec<String> = args.iter().map(|a| bash_quote(a)).collect();
    writeln!(env, "VZ_NEXTEST_ARGS=({})", quoted.join(" "))?;
    Ok(env)
}

/// Splits the caller's nextest arguments into the build scope (`-p`/`--package`, `--test`,
/// `--lib`, `--bins`: only these test binaries are built on the host and handed to the
/// guest, instead of the whole workspace's) and the rest, for the guest's nextest.
fn build_scope(args: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut scope, mut rest) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-p" | "--package" | "--test" => {
                scope.push(arg.clone());
                scope.extend(it.next().cloned());
            }
            "--lib" | "--bins" => scope.push(arg.clone()),
            a if a.starts_with("--package=") || a.starts_with("--test=") => scope.push(arg.clone()),
            _ => rest.push(arg.clone()),
        }
    }
    (scope, rest)
}

fn bash_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn write(path: &Path, text: &str) -> Result<()> {
    write_bytes(path, text.as_bytes())
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Prints the lab's timings, nextest's summary and the skips.
pub(crate) fn print_report(report: &Report) {
    let secs =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    println!("== kernel lab ==");
    println!("  boot to init: {}, root ready: {}", secs(report.boot), secs(report.ready));
    println!("  whole lab (build, boot, tests): {}", secs(Some(report.total)));
    match &report.summary {
        Some(summary) => println!("  guest nextest: {summary}"),
        None => println!("  guest nextest: no summary line (the tests did not finish)"),
    }
    if !report.skips.is_empty() {
        println!("  {} test(s) skipped in the guest:", report.skips.len());
        for skip in &report.skips {
            println!("    {skip}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_env_quotes_filters_for_bash() {
        let lab = VmTest::new(
            PathBuf::from("/w"),
            PathBuf::from("/w/target"),
            vec!["it's".to_owned(), "x".to_owned()],
            Some(Duration::from_secs(60)),
        );
        let env = job_env(&lab).unwrap();
        assert!(env.contains("export VZ_BIN_DIR='/w/target/debug'\n"), "{env}");
        assert!(env.contains(&format!("export VZ_TEST_REQUIRE='{GUEST_REQUIRE}'\n")), "{env}");
        assert!(
            env.contains(&format!(r"VZ_NEXTEST_ARGS=('-E' '{DEFAULT_FILTER}' 'it'\''s' 'x')")),
            "{env}"
        );
        let out = Command::new("bash")
            .args(["-c", &format!("{env}\nprintf '%s|' \"${{VZ_NEXTEST_ARGS[@]}}\"")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("-E|{DEFAULT_FILTER}|it's|x|"));
        let own = VmTest::new(
            PathBuf::from("/w"),
            PathBuf::from("/w/t"),
            vec!["-E".to_owned(), "test(/a b/)".to_owned()],
            None,
        );
        assert!(job_env(&own).unwrap().contains("VZ_NEXTEST_ARGS=('-E' 'test(/a b/)')\n"));
        let scoped = VmTest::new(
            PathBuf::from("/w"),
            PathBuf::from("/w/t"),
            ["-p", "vz-tests", "--test=template", "boots", "--lib"].map(str::to_owned).to_vec(),
            None,
        );
        let (scope, rest) = build_scope(&scoped.nextest_args);
        assert_eq!(scope, ["-p", "vz-tests", "--test=template", "--lib"]);
        assert_eq!(rest, ["boots"]);
        assert!(
            job_env(&scoped)
                .unwrap()
                .contains(&format!("VZ_NEXTEST_ARGS=('-E' '{DEFAULT_FILTER}' 'boots')\n"))
        );
    }

    #[test]
    fn qemu_has_no_network_and_a_readonly_host_root() {
        let cmd = qemu_command(Path::new("/k"), Path::new("/i"), Path::new("/s"));
        let line = sh::display(&cmd);
        assert!(line.contains("-nic none"), "{line}");
        assert!(line.contains("readonly=on"), "{line}");
        assert!(line.contains("tcg,thread=multi"), "{line}");
    }
}
