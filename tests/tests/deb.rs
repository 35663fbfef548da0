//! Black-box test of `cargo xtask deb`: the package is built from the binaries under test,
//! holds what a distribution needs (binaries, man pages, completions, configs, the service,
//! maintainer scripts, conffiles), installs with dpkg into a scratch root of the test's own
//! (`dpkg --root --force-script-chrootless`: its scripts change only that root, the host's
//! dpkg database and /etc stay untouched), and the installed binaries create, start, run
//! and stop a VE of a test tree. Purging removes the files again.
#![allow(clippy::tests_outside_test_module, reason = "integration test file")]

use std::path::Path;
use std::process::Command;

use vz_tests::{Need, VzTree, bin_dir, ok, output_text, require, unique_ctid};

fn dpkg(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg("--force-script-chrootless")
        .args(args)
        .output()
        .expect("run dpkg")
}

#[test]
fn deb_package_builds_installs_into_a_scratch_root_and_runs() {
    require!(
        Need::Root,
        Need::Program("/usr/bin/dpkg-deb"),
        Need::Program("/usr/bin/strip"),
        Need::Program("/bin/busybox"),
        Need::CgroupController("pids")
    );
    let xtask = bin_dir().join("xtask");
    assert!(xtask.exists(), "{} missing: cargo build --workspace --bins", xtask.display());
    let tree = VzTree::new("");
    let out = tree.path().join("deb");
    let built = ok(Command::new(&xtask)
        .args(["deb", "--fast", "--bin-dir"])
        .arg(bin_dir())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap());
    assert!(built.contains("xtask: built"), "{built}");
    let debs: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let deb = &debs[0];
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("vzctl_") && name.ends_with(".deb"), "{name}");

    // Contents and control data.
    let list = ok(Command::new("dpkg-deb").arg("-c").arg(deb).output().unwrap());
    for path in [
        "./usr/sbin/vzctl",
        "./usr/sbin/vzlist",
        "./usr/sbin/vzubc",
        "./usr/sbin/vzmetrics",
        "./usr/sbin/vzpkg",
        "./usr/share/man/man8/vzctl.8.gz",
        "./usr/share/man/man5/vz.conf.5.gz",
        "./usr/share/man/man8/vzubc.8.gz",
        "./usr/share/bash-completion/completions/vzctl",
        "./usr/share/bash-completion/completions/vzlist -> vzctl",
        "./usr/share/zsh/vendor-completions/_vz",
        "./etc/vz/vz.conf",
        "./etc/vz/conf/ve-vswap-256m.conf-sample",
        "./etc/init.d/vz",
        "./lib/systemd/system/vz.service",
        "./usr/share/doc/vzctl/copyright",
    ] {
        assert!(list.lines().any(|l| l.ends_with(path)), "{path} not in\n{list}");
    }
    assert!(
        list.lines()
            .any(|l| l.starts_with("-rwxr-xr-x root/root") && l.ends_with("./usr/sbin/vzctl"))
    );
    let field = |f: &str| {
        ok(Command::new("dpkg-deb").args(["-f"]).arg(deb).arg(f).output().unwrap())
            .trim()
            .to_owned()
    };
    assert_eq!(field("Package"), "vzctl");
    assert!(field("Depends").contains("busybox-static"));
    let info = ok(Command::new("dpkg-deb").arg("-I").arg(deb).output().unwrap());
    assert!(info.contains(" postinst ") && info.contains(" conffiles "), "{info}");

    // Install into a scratch root with its own dpkg database.
    let root = tree.path().join("scratch");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let deb_arg = deb.to_str().unwrap();
    let install = dpkg(&root, &["--force-depends", "-i", deb_arg]);
    assert!(install.status.success(), "{}", output_text(&install));
    let status = ok(dpkg(&root, &["-s", "vzctl"]));
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("/etc/vz/vz.conf"), "conffiles recorded: {status}");
    for dir in ["vz/private", "vz/root", "vz/lock", "vz/dump"] {
        assert!(root.join(dir).is_dir(), "postinst made {dir}");
    }
    let private = std::fs::metadata(root.join("vz/private")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&private.permissions()) & 0o777, 0o700);

    // The installed binaries run a VE of the test tree.
    let sbin = root.join("usr/sbin");
    let run = |bin: &str, args: &[&str]| {
        ok(tree
            .in_netns(sbin.join(bin))
            .args(args)
            .env("VZ_CONFIG", tree.vz_conf())
            .output()
            .unwrap())
    };
    run("vzpkg", &["create", "cache", "busybox"]);
    let ctid = unique_ctid().to_string();
    run("vzctl", &["create", &ctid]);
    run("vzctl", &["start", &ctid]);
    assert_eq!(run("vzctl", &["exec", &ctid, "echo from-the-package"]).trim(), "from-the-package");
    assert!(run("vzlist", &["-H", "-o", "status", &ctid]).contains("running"));
    run("vzctl", &["stop", &ctid]);

    let purge = dpkg(&root, &["-P", "vzctl"]);
    assert!(purge.status.success(), "{}", output_text(&purge));
    assert!(!sbin.join("vzctl").exists() && !root.join("etc/vz/vz.conf").exists());
}
