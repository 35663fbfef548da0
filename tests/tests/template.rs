//! Black-box tests of `vzpkg` and of VEs made from Debian template caches.
//!
//! The Debian cache (`debian-12-x86_64-minimal`, from the repository's `templates/` metadata
//! and the archive the host's apt configuration names) takes minutes to build, so it is built
//! in a template directory the test runs share, `$VZ_TEMPLATE_CACHE` (default
//! `/var/cache/vz-templates`): `vzpkg create cache` keeps a cache whose metadata hash is
//! unchanged, so the suite rebuilds it only when `templates/` or the build code changed.
//! The signature tests need no network: they run debootstrap against a small repository the
//! test makes and signs itself.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]
#![allow(clippy::print_stderr, reason = "the test reports the build and create times it measured")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vz_tests::{Need, VzTree, ok, output_text, require, unique_ctid, workspace};

const DEBIAN_MINIMAL: &str = "debian-12-x86_64-minimal";

/// The shared template directory of the tests that need a Debian cache.
fn shared_template_dir() -> PathBuf {
    std::env::var_os("VZ_TEMPLATE_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/vz-templates"), PathBuf::from)
}

/// Points the tree's vz.conf at `template_dir` (the first TEMPLATE line wins in vz.conf, so
/// the line is replaced rather than appended).
fn use_template_dir(tree: &VzTree, template_dir: &Path) {
    let conf = fs::read_to_string(tree.vz_conf()).expect("template test step");
    let conf: String = conf
        .lines()
        .map(|l| {
            if l.starts_with("TEMPLATE=") {
                format!("TEMPLATE={}\n", template_dir.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(tree.vz_conf(), conf).expect("template test step");
}

/// Copies the repository's metadata (`templates/`) into `dir`, writing only files that
/// differ, so the metadata hash follows the repository.
fn install_metadata(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("template test step");
    for entry in fs::read_dir(from).expect("template test step").flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            install_metadata(&src, &dst);
        } else {
            let data = fs::read(&src).expect("template test step");
            if fs::read(&dst).ok().as_ref() != Some(&data) {
                fs::write(&dst, &data).expect("template test step");
            }
            fs::set_permissions(
                &dst,
                fs::metadata(&src).expect("template test step").permissions(),
            )
            .expect("template test step");
        }
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A throwaway GnuPG home; its agent is stopped when dropped.
struct GpgHome(tempfile::TempDir);

impl GpgHome {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("vz-gpg-").tempdir().expect("template test step");
        let home = GpgHome(dir);
        let out = home
            .gpg()
            .args(["--batch", "--passphrase", "", "--quick-gen-key"])
            .args(["vz-test-repo@example.invalid", "ed25519", "sign", "never"])
            .output()
            .expect("template test step");
        assert!(out.status.success(), "gpg key generation: {}", text(&out));
        home
    }

    fn gpg(&self) -> Command {
        self.cmd("gpg")
    }

    /// `program` with this home as GNUPGHOME (gpg, rpmsign).
    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("GNUPGHOME", self.0.path());
        cmd
    }

    /// Exports the public key, ASCII-armored (for `rpm --import`).
    fn export_armored(&self, to: &Path) {
        let out = self.gpg().args(["--batch", "--armor", "--export"]).output().expect("gpg");
        assert!(out.status.success() && !out.stdout.is_empty(), "gpg --export: {}", text(&out));
        fs::write(to, out.stdout).expect("write key");
    }

    /// Exports the public key as a keyring file debootstrap (gpgv) can use.
    fn export(&self, to: &Path) {
        let out = self.gpg().args(["--batch", "--export"]).output().expect("template test step");
        assert!(out.status.success() && !out.stdout.is_empty(), "gpg --export: {}", text(&out));
        fs::write(to, out.stdout).expect("template test step");
    }

    /// Signs `Release` into `InRelease` and `Release.gpg`.
    fn sign(&self, dists: &Path) {
        for args in [
            vec!["--clearsign", "-o", "InRelease", "Release"],
            vec!["--detach-sign", "--armor", "-o", "Release.gpg", "Release"],
        ] {
            let out = self
                .gpg()
                .current_dir(dists)
                .args(["--batch", "--yes"])
                .args(&args)
                .output()
                .expect("template test step");
            assert!(out.status.success(), "gpg {args:?}: {}", text(&out));
        }
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        // The agent gpg started for this home only (found by its socket in the home).
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.0.path())
            .args(["--kill", "all"])
            .output();
    }
}

/// A repository with a `Release` for `bookworm` (an empty `main`), unsigned.
fn make_repo(root: &Path) -> PathBuf {
    let dists = root.join("dists/bookworm");
    fs::create_dir_all(dists.join("main/binary-amd64")).expect("template test step");
    fs::write(dists.join("main/binary-amd64/Packages"), b"").expect("template test step");
    fs::write(
        dists.join("Release"),
        "Origin: vz-test\nSuite: bookworm\nCodename: bookworm\nArchitectures: amd64\n\
         Components: main\nDate: Sun, 06 Dec 2026 00:00:00 UTC\nSHA256:\n \
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/binary-amd64/Packages\n",
    )
    .expect("template test step");
    dists
}

/// Metadata `vzt/1/x86_64` building from the `file:` repository `repo` with `keyring`.
fn write_test_metadata(template_dir: &Path, repo: &Path, keyring: &str) {
    let config = template_dir.join("vzt/1/x86_64/config");
    fs::create_dir_all(config.join("gpgkeys")).expect("template test step");
    fs::write(
        config.join("vzpkg.conf"),
        format!(
            "BUILDER=debootstrap\nSUITE=bookworm\nMIRROR=file://{}\nKEYRING={keyring}\n\
             VARIANT=minbase\n",
            repo.display()
        ),
    )
    .expect("template test step");
    fs::write(config.join("default.list"), "# debootstrap's minbase only\n")
        .expect("template test step");
}

#[test]
fn debootstrap_refuses_an_unsigned_or_wrongly_signed_archive() {
    require!(
        Need::Root,
        Need::Program("/usr/sbin/debootstrap"),
        Need::Program("/usr/bin/gpg"),
        Need::Program("/usr/bin/gpgconf")
    );
    let tree = VzTree::new("");
    let template = tree.path().join("template");
    let repo_dir =
        tempfile::Builder::new().prefix("vz-repo-").tempdir().expect("template test step");
    let repo = repo_dir.path();
    let dists = make_repo(repo);
    let name = "vzt-1-x86_64";
    let cache = template.join(format!("cache/{name}.tar.gz"));
    let create = || tree.run("vzpkg", &["create", "cache", name]);

    // The work tree of a build that was killed: removed by the next build of the name.
    let stale = template.join(format!("cache/.{name}.root-999999999/etc"));
    fs::create_dir_all(&stale).expect("stale work tree");
    fs::write(stale.join("hostname"), "x\n").expect("stale file");

    // Unsigned, with Debian's keyring: refused.
    write_test_metadata(&template, repo, "/usr/share/keyrings/debian-archive-keyring.gpg");
    let out = create();
    assert!(!out.status.success(), "an unsigned archive was accepted: {}", text(&out));
    assert!(text(&out).contains("cannot be verified"), "{}", text(&out));
    assert!(text(&out).contains("release signature file"), "{}", text(&out));
    assert!(!cache.exists());

    // Signed by a key not in the keyring: refused.
    let gpg = GpgHome::new();
    gpg.sign(&dists);
    let out = create();
    assert!(!out.status.success(), "a wrongly signed archive was accepted: {}", text(&out));
    assert!(text(&out).contains("signed by unknown key"), "{}", text(&out));
    assert!(!cache.exists());

    // The control: the same archive with its own key passes the signature check (and fails
    // later, for it has no packages). So the refusals above were about the signatures.
    gpg.export(&template.join("vzt/1/x86_64/config/gpgkeys/test.gpg"));
    write_test_metadata(&template, repo, "gpgkeys/test.gpg");
    let out = create();
    assert!(!out.status.success(), "an empty repository made a cache: {}", text(&out));
    assert!(!text(&out).contains("cannot be verified"), "{}", text(&out));
    assert!(!cache.exists());

    // Nothing is left in the cache directory but the lock: no work tree (neither the stale one
    // nor those of these builds), no partial cache.
    let left: Vec<String> = fs::read_dir(template.join("cache"))
        .expect("template test step")
        .map(|e| e.expect("template test step").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [format!(".{name}.lock")]);
}

#[test]
fn vzpkg_lists_removes_caches_and_runs_the_ve_s_package_manager() {
    require!(Need::Root, Need::Program("/bin/busybox"), Need::CgroupController("pids"));
    let tree = VzTree::new("");
    let template = tree.path().join("template");
    install_metadata(&workspace().join("templates"), &template);
    ok(tree.run("vzpkg", &["create", "cache", "busybox"]));
    let list = ok(tree.run("vzpkg", &["list"]));
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("OSTEMPLATE"), "{list}");
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{list}"))
            .to_string()
    };
    let busybox = row("busybox");
    assert!(busybox.ends_with("cache only"), "{busybox}");
    assert!(busybox.contains('K') || busybox.contains('M'), "a size: {busybox}");
    for name in ["debian-12-x86_64", DEBIAN_MINIMAL, "debian-13-x86_64", "debian-13-x86_64-minimal"]
    {
        assert!(row(name).ends_with("not built"), "{}", row(name));
    }
    // The VE's own package manager: busybox has none, which vzpkg reports from inside.
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", "busybox"]));
    let stopped = tree.run("vzpkg", &["install", &ctid, "hello"]);
    // vzctl exec2's exit code: 31 for a VE that is not running, else the command's own.
    assert_eq!(stopped.status.code(), Some(31), "{}", output_text(&stopped));
    ok(tree.run("vzctl", &["start", &ctid, "--wait"]));
    let none = tree.run("vzpkg", &["install", &ctid, "hello"]);
    assert_eq!(none.status.code(), Some(1), "{}", output_text(&none));
    assert!(text(&none).contains("no package manager"), "{}", text(&none));
    let bad = tree.run("vzpkg", &["install", &ctid, "hello;reboot"]);
    assert_eq!(bad.status.code(), Some(2), "{}", output_text(&bad));
    ok(tree.run("vzctl", &["stop", &ctid]));
    ok(tree.run("vzctl", &["destroy", &ctid]));

    let removed = ok(tree.run("vzpkg", &["remove", "cache", "busybox"]));
    assert!(removed.contains("busybox.tar.gz removed"), "{removed}");
    assert!(!template.join("cache/busybox.tar.gz").exists());
    let again = tree.run("vzpkg", &["remove", "cache", "busybox"]);
    assert_eq!(again.status.code(), Some(1), "{}", output_text(&again));
    let usage = tree.run("vzpkg", &["create", "cache"]);
    assert_eq!(usage.status.code(), Some(2), "{}", output_text(&usage));
    let unknown = tree.run("vzpkg", &["create", "cache", "debian-99"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown).contains("no template metadata"), "{}", text(&unknown));
}

/// Builds (or reuses) the shared Debian minimal cache; returns the tree using it and the
/// seconds `vzpkg create cache` took.
fn debian_tree() -> (VzTree, f64) {
    debian_tree_of(DEBIAN_MINIMAL)
}

/// [`debian_tree`] for the cache of `template`.
fn debian_tree_of(template: &str) -> (VzTree, f64) {
    let tree = VzTree::new("");
    let shared = shared_template_dir();
    install_metadata(&workspace().join("templates"), &shared);
    use_template_dir(&tree, &shared);
    let started = Instant::now();
    // In the host's network namespace: the build downloads from the host's apt mirror (the
    // tree's namespace has no route out).
    let out = Command::new(vz_tests::bin_dir().join("vzpkg"))
        .env("VZ_CONFIG", tree.vz_conf())
        .args(["create", "cache", template])
        .output()
        .expect("run vzpkg");
    let secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "vzpkg create cache: {}", text(&out));
    eprintln!("vzpkg create cache {template}: {secs:.1} s: {}", text(&out).trim());
    (tree, secs)
}

fn cache_path() -> PathBuf {
    shared_template_dir().join(format!("cache/{DEBIAN_MINIMAL}.tar.gz"))
}

#[test]
fn a_debian_cache_is_built_once_and_ves_are_created_from_it() {
    require!(
        Need::Root,
        Need::Program("/usr/sbin/debootstrap"),
        Need::Program("/usr/bin/tar"),
        Need::Loop
    );
    let (tree, _) = debian_tree();
    // A second create finds it up to date (the CI cache).
    let again = ok(tree.run("vzpkg", &["create", "cache", DEBIAN_MINIMAL]));
    assert!(again.contains("is up to date"), "{again}");
    let list = ok(tree.run("vzpkg", &["list"]));
    let row = list
        .lines()
        .find(|l| l.starts_with(&format!("{DEBIAN_MINIMAL} ")))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.ends_with("up to date") && row.contains('M'), "{row}");
    let size = fs::metadata(cache_path()).expect("template test step").len();

    // tar -x of the same cache, beside vzctl create (simfs: a directory; ploop: an image).
    let scratch = tempfile::Builder::new()
        .prefix("vz-tar-")
        .tempdir_in(tree.path())
        .expect("template test step");
    let started = Instant::now();
    let tar = Command::new("tar")
        .args(["--numeric-owner", "-xzpf"])
        .arg(cache_path())
        .arg("-C")
        .arg(scratch.path())
        .output()
        .expect("template test step");
    let tar_secs = started.elapsed().as_secs_f64();
    assert!(tar.status.success(), "{}", text(&tar));
    let mut times = Vec::new();
    for layout in ["simfs", "ploop"] {
        let ctid = unique_ctid().to_string();
        let started = Instant::now();
        ok(tree
            .run("vzctl", &["create", &ctid, "--ostemplate", DEBIAN_MINIMAL, "--layout", layout]));
        times.push((layout, started.elapsed().as_secs_f64()));
        ok(tree.run("vzctl", &["mount", &ctid]));
        let root = tree.path().join("root").join(&ctid);
        let init = fs::read_link(root.join("sbin/init")).expect("template test step");
        assert!(init.to_string_lossy().ends_with("systemd"), "{init:?}");
        let unit = root.join("etc/systemd/system/multi-user.target.wants/vz-boot-done.service");
        assert!(fs::symlink_metadata(unit).is_ok(), "no boot-finished unit");
        let masked = fs::read_link(root.join("etc/systemd/system/sys-kernel-debug.mount"));
        assert_eq!(masked.expect("template test step"), Path::new("/dev/null"));
        for node in ["dev/null", "dev/zero", "dev/console"] {
            assert!(fs::symlink_metadata(root.join(node)).is_err(), "{node} came from the cache");
        }
        let su = fs::metadata(root.join("usr/bin/su")).expect("template test step");
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&su.permissions()) & 0o4000, 0o4000);
        ok(tree.run("vzctl", &["umount", &ctid]));
        ok(tree.run("vzctl", &["destroy", &ctid]));
    }
    eprintln!(
        "cache {} ({:.1} MiB): tar -xzpf {tar_secs:.2} s; vzctl create {}",
        cache_path().display(),
        size as f64 / 1048576.0,
        times.iter().map(|(l, s)| format!("--layout {l} {s:.2} s")).collect::<Vec<_>>().join(", ")
    );
}

/// The lab's feature for tests that use the Debian cache the host run built: the lab has no
/// network, so there the cache must be up to date already (`VZ_TEST_REQUIRE`).
const PREBUILT: &str = "prebuilt-templates";

/// The Debian 12 minimal cache, built here when this run may build it (the host), or, when the
/// run declares [`PREBUILT`] (the kernel lab, which sees the host's template directory read-only
/// over 9p and has no network), checked to be the host's up-to-date build: a missing or stale
/// cache fails with what to run, it is never built nor skipped there.
fn prebuilt_debian_tree() -> VzTree {
    if !vz_tests::required(PREBUILT) {
        return debian_tree().0;
    }
    let tree = VzTree::new("");
    let shared = shared_template_dir();
    install_metadata(&workspace().join("templates"), &shared);
    use_template_dir(&tree, &shared);
    let list = ok(tree.run("vzpkg", &["list"]));
    let row = list.lines().find(|l| l.split_whitespace().next() == Some(DEBIAN_MINIMAL));
    assert!(
        row.is_some_and(|r| r.ends_with("up to date")),
        "the {DEBIAN_MINIMAL} cache in {} is missing or stale ({}): this run has no network \
         to build it; the host's test run builds it first (`cargo xtask test` and .ci/run run \
         the host suite before the lab; by hand: `cargo xtask test --host-only -- -E \
         'binary(template)'`), with the same templates/ and VZ_TEMPLATE_CACHE",
        shared.display(),
        row.unwrap_or("no row in vzpkg list")
    );
    tree
}

/// The host's and the kernel lab's (pure cgroup v2) Debian check: a VE made from the Debian 12
/// minimal cache boots systemd as pid 1 in its user namespace (`start --wait`), is `running`
/// with no failed unit, runs commands, stops by itself and is destroyed without a trace.
#[test]
fn a_debian_ve_from_the_cache_boots_on_cgroup_v1_and_v2() {
    require!(Need::Root, Need::Program("/usr/bin/tar"), Need::CgroupController("pids"), Need::Loop);
    let tree = prebuilt_debian_tree();
    let ctid = unique_ctid().to_string();
    let started = Instant::now();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", DEBIAN_MINIMAL]));
    let create = started.elapsed().as_secs_f64();
    eprintln!("{DEBIAN_MINIMAL}: vzctl create {create:.2} s");

    let started = Instant::now();
    // Under the lab's emulation a boot takes tens of seconds; the limit leaves time for the
    // diagnosis within nextest's 10 minutes.
    let start = start_wait(&tree, &ctid, Duration::from_secs(300));
    let boot = started.elapsed().as_secs_f64();
    let Some(start) = start else {
        panic!("vzctl start --wait did not return within 300 s:\n{}", diagnosis(&tree, &ctid));
    };
    assert!(
        start.status.success(),
        "vzctl start --wait: {}\n{}",
        text(&start),
        diagnosis(&tree, &ctid)
    );
    let state = tree.run("vzctl", &["exec", &ctid, "systemctl is-system-running --wait"]);
    let failed = ok(tree.run("vzctl", &["exec", &ctid, "systemctl --failed --no-legend"]));
    let v2 = vz_tests::is_cgroup_v2();
    eprintln!(
        "{DEBIAN_MINIMAL} on cgroup {}: create {create:.2} s, start --wait {boot:.2} s, \
         state {}, failed units: {}",
        if v2 { "v2" } else { "v1" },
        String::from_utf8_lossy(&state.stdout).trim(),
        failed.trim()
    );
    assert_eq!(
        String::from_utf8_lossy(&state.stdout).trim(),
        "running",
        "{}\n{}",
        text(&state),
        diagnosis(&tree, &ctid)
    );
    assert_eq!(failed.trim(), "", "failed units");
    assert_eq!(ok(tree.run("vzctl", &["exec", &ctid, "cat /proc/1/comm"])).trim(), "systemd");
    // systemd runs its units in cgroups of its own, below the VE's cgroup namespace root.
    let cgroup = ok(tree.run(
        "vzctl",
        &["exec", &ctid, "cat /proc/$(systemctl show -P MainPID systemd-journald)/cgroup"],
    ));
    assert!(cgroup.contains("/system.slice/systemd-journald.service"), "{cgroup}");
    assert_eq!(ok(tree.run("vzctl", &["exec", &ctid, "echo $((6 * 7))"])).trim(), "42");

    let started = Instant::now();
    let stop = ok(tree.run("vzctl", &["stop", &ctid]));
    eprintln!("{DEBIAN_MINIMAL}: stop {:.2} s", started.elapsed().as_secs_f64());
    assert!(!stop.contains("Killing"), "systemd did not halt by itself: {stop}");
    assert_eq!(
        ok(tree.run("vzctl", &["status", &ctid])).trim(),
        format!("CTID {ctid} exist unmounted down")
    );
    ok(tree.run("vzctl", &["destroy", &ctid]));
    for dir in ["private", "root"] {
        let path = tree.path().join(dir).join(&ctid);
        assert!(fs::symlink_metadata(&path).is_err(), "{} is left", path.display());
    }
    let cgroup_dir = tree.cgroup_file(&ctid, "pids", "", "");
    let mut cgroup_dirs = vec![cgroup_dir];
    if !v2 {
        cgroup_dirs
            .push(PathBuf::from(format!("/sys/fs/cgroup/systemd/{}/{ctid}", tree.cgroup_parent())));
    }
    for dir in cgroup_dirs {
        assert!(!dir.exists(), "the VE's cgroup {} is left", dir.display());
    }
    assert_eq!(
        ok(tree.run("vzctl", &["status", &ctid])).trim(),
        format!("CTID {ctid} deleted unmounted down")
    );
    assert!(!tree.path().join(format!("conf/{ctid}.conf")).exists(), "destroy kept CTID.conf");
}

/// What a Debian VE that did not boot shows: its cgroups, systemd's state, jobs and journal
/// (each command limited to 60 s), and the end of the tree's vzctl log.
fn diagnosis(tree: &VzTree, ctid: &str) -> String {
    let mut out = String::new();
    let cgroup_dir = tree.cgroup_file(ctid, "pids", "", "");
    let listing =
        Command::new("find").arg(&cgroup_dir).args(["-maxdepth", "3", "-type", "d"]).output();
    out += &format!("cgroups: {}\n", listing.map(|o| text(&o)).unwrap_or_default());
    for command in [
        "ps -eo pid,stat,args",
        "systemctl is-system-running",
        "systemctl list-jobs --no-pager",
        "systemctl --failed --no-pager",
        "journalctl -b --no-pager -q | tail -n 60",
    ] {
        let run = tree
            .in_netns("timeout")
            .env("VZ_CONFIG", tree.vz_conf())
            .arg("60")
            .arg(vz_tests::bin_dir().join("vzctl"))
            .args(["exec", ctid, command])
            .output();
        out += &format!("--- {command}:\n{}\n", run.map(|o| text(&o)).unwrap_or_default());
    }
    let log = fs::read_to_string(tree.path().join("vzctl.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    out += &format!("--- vzctl.log:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    out
}

/// Runs `vzctl start CTID --wait`, killing it (by its pid) after `limit`; returns its
/// output, or `None` when it had to be killed.
fn start_wait(tree: &VzTree, ctid: &str, limit: Duration) -> Option<Output> {
    let child = tree
        .cmd("vzctl")
        .args(["start", ctid, "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vzctl start");
    let pid = child.id();
    let deadline = Instant::now() + limit;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(out) => Some(out.expect("wait for vzctl start")),
        Err(_) => {
            // The vzctl this test started (nsenter execs it: same pid).
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            let _ = rx.recv();
            None
        }
    }
}

/// Boots the Debian minimal cache with systemd as pid 1 (in the VE's own user namespace, its
/// name=systemd cgroup delegated, tmpfs /run and /tmp), checks `systemctl
/// is-system-running`, installs a package with apt inside, stops and destroys the VE.
#[test]
fn a_debian_ve_boots_systemd_and_installs_a_package() {
    boots_systemd_and_installs_a_package(DEBIAN_MINIMAL, true);
}

/// The same on Debian 13 (trixie, systemd 257), checkpoint included: its pid 1 would watch
/// memory pressure through a PSI trigger, which CRIU does not carry, and after a restore leave
/// new jobs waiting; vz starts init with that watch off (`MEMORY_PRESSURE_WATCH=/dev/null`).
#[test]
fn a_debian_13_ve_boots_systemd_and_installs_a_package() {
    boots_systemd_and_installs_a_package("debian-13-x86_64-minimal", true);
}

/// Boots `template`, checks systemd, checkpoints and restores it with its services if
/// `checkpoint`, installs a package, stops it cleanly.
fn boots_systemd_and_installs_a_package(template: &str, checkpoint: bool) {
    require!(
        Need::Root,
        Need::Program("/usr/sbin/debootstrap"),
        Need::Program("/usr/bin/apt-get"),
        Need::CgroupController("pids"),
        Need::Loop
    );
    let (tree, _) = debian_tree_of(template);
    let ctid = unique_ctid().to_string();
    ok(tree.run("vzctl", &["create", &ctid, "--ostemplate", template]));
    // A package fetched on the host (the VE has no route out of the test's network
    // namespace): apt installs it from the file, with its dependencies from the cache.
    let debs = tempfile::Builder::new().prefix("vz-deb-").tempdir().expect("temp dir");
    let got = Command::new("apt-get")
        .current_dir(debs.path())
        .args(["download", "-q", "hello"])
        .output()
        .expect("run apt-get download");
    assert!(got.status.success(), "apt-get download hello: {}", text(&got));
    let deb = fs::read_dir(debs.path())
        .expect("read downloads")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");
    ok(tree.run("vzctl", &["mount", &ctid]));
    let root = tree.path().join("root").join(&ctid);
    fs::copy(&deb, root.join("root/hello.deb")).expect("copy the .deb into the VE");
    ok(tree.run("vzctl", &["umount", &ctid]));

    let started = Instant::now();
    let start = start_wait(&tree, &ctid, Duration::from_secs(120));
    let boot = started.elapsed().as_secs_f64();
    let start = start.expect("vzctl start --wait did not return within 120 s");
    assert!(start.status.success(), "vzctl start --wait: {}", text(&start));
    let state = tree.run("vzctl", &["exec", &ctid, "systemctl is-system-running"]);
    let state_text = String::from_utf8_lossy(&state.stdout).trim().to_owned();
    let failed = tree.run("vzctl", &["exec", &ctid, "systemctl --failed --no-legend"]);
    eprintln!(
        "{template}: start --wait {boot:.2} s, state {state_text}, failed units: {}",
        text(&failed).trim()
    );
    assert!(
        state_text == "running" || state_text == "degraded",
        "systemctl is-system-running: {}",
        text(&state)
    );
    let init = ok(tree.run("vzctl", &["exec", &ctid, "cat /proc/1/comm"]));
    assert_eq!(init.trim(), "systemd");
    // The VE's console (tests/tests/console.rs) is a pty: the boot started a getty on it,
    // and its prompt is in the log.
    let getty = tree.run("vzctl", &["exec", &ctid, "systemctl is-active console-getty.service"]);
    assert_eq!(String::from_utf8_lossy(&getty.stdout).trim(), "active", "{}", text(&getty));
    let log = tree.path().join(format!("run/{ctid}.console.log"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&fs::read(&log).unwrap_or_default()).contains("login:") {
        assert!(Instant::now() < deadline, "no login prompt on the console");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Checkpointed and restored with its services: the same journald, the system running.
    if checkpoint {
        let journald = || {
            ok(tree.run("vzctl", &["exec", &ctid, "systemctl show -P MainPID systemd-journald"]))
        };
        let before = journald();
        let t = Instant::now();
        let out = tree.run("vzctl", &["chkpnt", &ctid]);
        assert!(out.status.success(), "vzctl chkpnt: {}", text(&out));
        let chkpnt = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let out = tree.run("vzctl", &["restore", &ctid]);
        if !out.status.success() {
            let log = fs::read_to_string(tree.path().join(format!("dump/Dump.{ctid}/restore.log")));
            let log = log.unwrap_or_default();
            let errors: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
            panic!("vzctl restore: {}\n{}", text(&out), errors.join("\n"));
        }
        eprintln!("{template}: chkpnt {chkpnt:.2} s, restore {:.2} s", t.elapsed().as_secs_f64());
        assert_eq!(journald(), before, "journald's pid after restore");
        let state = ok(tree.run("vzctl", &["exec", &ctid, "systemctl is-system-running"]));
        assert_eq!(state.trim(), state_text, "after restore");
        let getty = ok(tree.run("vzctl", &["exec", &ctid, "systemctl is-active console-getty"]));
        assert_eq!(getty.trim(), "active", "the getty on the console after restore");
        // What systemd made on /dev came back on the fresh /dev (journald's link, mqueue).
        let dev = ok(tree
            .run("vzctl", &["exec", &ctid, "readlink /dev/log; findmnt -no FSTYPE /dev/mqueue"]));
        assert_eq!(
            dev.split_whitespace().collect::<Vec<_>>(),
            ["/run/systemd/journal/dev-log", "mqueue"]
        );
        // systemd makes cgroups for units again (CRIU's copies of its slices are given to it).
        let unit = ok(tree.run(
            "vzctl",
            &["exec", &ctid, "systemctl start systemd-tmpfiles-clean.service && systemctl restart systemd-journald && echo made"],
        ));
        assert_eq!(unit.trim(), "made");
    }

    let install = tree.run("vzpkg", &["install", &ctid, "/root/hello.deb"]);
    assert!(install.status.success(), "apt-get install: {}", text(&install));
    assert_eq!(ok(tree.run("vzctl", &["exec", &ctid, "hello"])).trim(), "Hello, world!");

    let started = Instant::now();
    let stop = ok(tree.run("vzctl", &["stop", &ctid]));
    eprintln!("{template}: stop {:.2} s", started.elapsed().as_secs_f64());
    assert!(!stop.contains("Killing"), "systemd did not halt by itself: {stop}");
    assert_eq!(
        ok(tree.run("vzctl", &["status", &ctid])).trim(),
        format!("CTID {ctid} exist unmounted down")
    );
    ok(tree.run("vzctl", &["destroy", &ctid]));
}

/// Builds `vztest-1.0-1.noarch.rpm` (one file, `/usr/share/vztest/hello`) into `repo`.
fn build_rpm(work: &Path, repo: &Path) -> PathBuf {
    let top = work.join("rpmbuild");
    fs::create_dir_all(top.join("SPECS")).expect("spec dir");
    let spec = top.join("SPECS/vztest.spec");
    fs::write(
        &spec,
        "Name: vztest\nVersion: 1.0\nRelease: 1\nSummary: vz test package\nLicense: MIT\n\
         BuildArch: noarch\n%description\nA file for vz's tests.\n%install\n\
         mkdir -p %{buildroot}/usr/share/vztest\necho hello > %{buildroot}/usr/share/vztest/hello\n\
         %files\n/usr/share/vztest/hello\n",
    )
    .expect("write spec");
    let out = Command::new("rpmbuild")
        .env("HOME", work)
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("-bb")
        .arg(&spec)
        .output()
        .expect("run rpmbuild");
    assert!(out.status.success(), "rpmbuild: {}", text(&out));
    fs::create_dir_all(repo).expect("repo dir");
    let rpm = repo.join("vztest-1.0-1.noarch.rpm");
    fs::copy(top.join("RPMS/noarch/vztest-1.0-1.noarch.rpm"), &rpm).expect("copy rpm");
    rpm
}

fn createrepo(repo: &Path) {
    let out = Command::new("createrepo_c").arg("-q").arg(repo).output().expect("createrepo_c");
    assert!(out.status.success(), "createrepo_c: {}", text(&out));
}

#[test]
fn dnf_builds_from_a_signed_rpm_repository_and_refuses_bad_signatures() {
    require!(
        Need::Root,
        Need::Program("/usr/bin/dnf"),
        Need::Program("/usr/bin/rpm"),
        Need::Program("/usr/bin/rpmbuild"),
        Need::Program("/usr/bin/rpmsign"),
        Need::Program("/usr/bin/createrepo_c"),
        Need::Program("/usr/bin/gpg"),
        Need::Program("/usr/bin/gpgconf")
    );
    let tree = VzTree::new("");
    let template = tree.path().join("template");
    let work = tempfile::Builder::new().prefix("vz-rpm-").tempdir().expect("temp dir");
    let repo = work.path().join("repo");
    let rpm = build_rpm(work.path(), &repo);
    createrepo(&repo);
    let config = template.join("rpmt/1/x86_64/config");
    fs::create_dir_all(config.join("gpgkeys")).expect("metadata dir");
    fs::write(config.join("vzpkg.conf"), "BUILDER=dnf\n").expect("vzpkg.conf");
    fs::write(
        config.join("yum.conf"),
        format!(
            "[main]\ngpgcheck=0\n\n[vztest]\nname=vz test\nbaseurl=file://{}\ngpgcheck=0\n",
            repo.display()
        ),
    )
    .expect("yum.conf");
    fs::write(config.join("default.list"), "vztest\n").expect("default.list");
    let signer = GpgHome::new();
    let other = GpgHome::new();
    let name = "rpmt-1-x86_64";
    let cache = template.join(format!("cache/{name}.tar.gz"));
    let create = || tree.run("vzpkg", &["create", "cache", name]);

    // Unsigned, though the repository file says gpgcheck=0: refused.
    signer.export_armored(&config.join("gpgkeys/signer.asc"));
    let out = create();
    assert!(!out.status.success(), "an unsigned package was installed: {}", text(&out));
    assert!(text(&out).contains("cannot be verified"), "{}", text(&out));
    assert!(text(&out).contains("is not signed"), "{}", text(&out));
    assert!(!cache.exists());

    // Signed, but by a key the metadata does not trust: refused.
    let out = signer
        .cmd("rpmsign")
        .args(["--addsign", "--define", "__gpg /usr/bin/gpg"])
        .args(["--define", "_gpg_name vz-test-repo@example.invalid"])
        .arg(&rpm)
        .output()
        .expect("run rpmsign");
    assert!(out.status.success(), "rpmsign: {}", text(&out));
    createrepo(&repo);
    fs::remove_file(config.join("gpgkeys/signer.asc")).expect("remove key");
    other.export_armored(&config.join("gpgkeys/other.asc"));
    let out = create();
    assert!(!out.status.success(), "a wrongly signed package was installed: {}", text(&out));
    assert!(text(&out).contains("cannot be verified"), "{}", text(&out));
    assert!(!cache.exists());

    // Signed by the trusted key: the cache is built.
    signer.export_armored(&config.join("gpgkeys/signer.asc"));
    let out = create();
    assert!(out.status.success(), "vzpkg create cache: {}", text(&out));
    assert!(cache.exists());
    let list = ok(tree.run("vzpkg", &["list"]));
    assert!(list.lines().any(|l| l.starts_with(name) && l.ends_with("up to date")), "{list}");
    let listing = Command::new("tar").arg("-tzf").arg(&cache).output().expect("run tar");
    let files = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(files.lines().any(|l| l == "usr/share/vztest/hello"), "{files}");
    assert!(
        files.lines().any(|l| l.starts_with("var/lib/rpm/")),
        "rpm db at /var/lib/rpm: {files}"
    );
    assert!(!files.contains("var/cache/dnf/"), "dnf's cache is not packed");
}
