//! `cargo xtask deb`: the Debian package `vzctl_<version>_<arch>.deb`, built with
//! `dpkg-deb` from a staged tree: vz-ctl's binaries in /usr/sbin (OpenVZ's place), the man
//! pages of man/ (gzipped), the completions of completions/ (bash, per command; zsh), vz.conf
//! and the sample configs in /etc/vz, the boot service (/etc/init.d/vz and the systemd
//! unit), the template metadata of templates/ under /vz/template, and maintainer scripts:
//! postinst makes OpenVZ's /vz directories, builds the busybox template cache (local, no
//! network) so that `vzctl create 101 && vzctl start 101` works right away, and enables the
//! service. The scripts honour `DPKG_ROOT` (an install into another root with
//! `dpkg --root=DIR --force-script-chrootless`), where they change only files under it.
//!
//! ```text
//! cargo xtask deb [--bin-dir DIR] [--out DIR] [--fast]
//! ```
//! Without `--bin-dir` it builds the binaries first (`cargo build --release -p vz-ctl
//! --bins`) and takes them from the release directory; `--out` defaults to `target/deb`.
//! The binaries are stripped (`strip`, binutils) as dh_strip would; `--fast` compresses
//! with gzip -1 instead of xz.

use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sh;

/// The package's name: the one `apt install ./vzctl_*.deb` names, as OpenVZ's.
const PACKAGE: &str = "vzctl";

/// Options of `cargo xtask deb`.
#[derive(Debug, Default)]
pub(crate) struct DebOptions {
    /// Where the built binaries are (else: build them in release mode).
    pub(crate) bin_dir: Option<PathBuf>,
    /// Where the .deb goes (else `target/deb`).
    pub(crate) out: Option<PathBuf>,
    /// gzip -1 instead of xz (tests, quick local builds).
    pub(crate) fast: bool,
}

/// Parses `deb`'s options.
pub(crate) fn parse(args: &[String]) -> Result<DebOptions> {
    let mut options = DebOptions::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value =
            || it.next().map(PathBuf::from).with_context(|| format!("{arg} needs a directory"));
        match arg.as_str() {
            "--fast" => options.fast = true,
            "--bin-dir" => options.bin_dir = Some(value()?),
            "--out" => options.out = Some(value()?),
            other => bail!("deb: unknown option {other:?}"),
        }
    }
    Ok(options)
}

/// Builds the package and returns its path.
pub(crate) fn run(options: &DebOptions) -> Result<PathBuf> {
    let root = sh::project_root();
    let bin_dir = match &options.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            sh::run(sh::cargo(&root).args(["build", "--release", "-p", "vz-ctl", "--bins"]))?;
            sh::target_dir(&root)?.join("release")
        }
    };
    let out = match &options.out {
        Some(dir) => dir.clone(),
        None => sh::target_dir(&root)?.join("deb"),
    };
    fs::create_dir_all(&out).with_context(|| format!("make {}", out.display()))?;
    let stage = out.join(format!(".stage-{}", std::process::id()));
    let _ = fs::remove_dir_all(&stage);
    let result = build(&root, &bin_dir, &stage, &out, options.fast);
    let _ = fs::remove_dir_all(&stage);
    let deb = result?;
    println!("xtask: built {}", deb.display());
    Ok(deb)
}

fn build(root: &Path, bin_dir: &Path, stage: &Path, out: &Path, fast: bool) -> Result<PathBuf> {
    let binaries = binaries(root)?;
    for name in &binaries {
        let dest = stage.join("usr/sbin").join(name);
        install(&bin_dir.join(name), &dest, 0o755)?;
        // As dh_strip: the package carries no debug information (binutils' strip).
        sh::run(Command::new("strip").arg("--strip-unneeded").arg(&dest))?;
    }
    for entry in read_dir(&root.join("man"))? {
        let name = file_name(&entry);
        let Some(section) = name.rsplit('.').next().filter(|s| s.len() == 1) else { continue };
        let dest = stage.join(format!("usr/share/man/man{section}/{name}.gz"));
        gzip(&entry, &dest)?;
    }
    let completions = root.join("completions");
    install(
        &completions.join("vz.bash"),
        &stage.join("usr/share/bash-completion/completions/vzctl"),
        0o644,
    )?;
    // bash-completion loads a command's file by its name: one link per tool.
    for name in binaries.iter().filter(|n| *n != "vzctl") {
        let link = stage.join("usr/share/bash-completion/completions").join(name);
        std::os::unix::fs::symlink("vzctl", &link)
            .with_context(|| format!("link {}", link.display()))?;
    }
    install(&completions.join("_vz"), &stage.join("usr/share/zsh/vendor-completions/_vz"), 0o644)?;

    let etc = root.join("vz-ctl/etc");
    install(&etc.join("vz.conf"), &stage.join("etc/vz/vz.conf"), 0o644)?;
    let mut conffiles = vec!["/etc/vz/vz.conf".to_owned()];
    for sample in read_dir(&etc.join("conf"))? {
        let name = file_name(&sample);
        install(&sample, &stage.join("etc/vz/conf").join(&name), 0o644)?;
        conffiles.push(format!("/etc/vz/conf/{name}"));
    }
    install(&etc.join("init.d/vz"), &stage.join("etc/init.d/vz"), 0o755)?;
    conffiles.push("/etc/init.d/vz".to_owned());
    install(&etc.join("systemd/vz.service"), &stage.join("lib/systemd/system/vz.service"), 0o644)?;
    for meta in walk(&root.join("templates"))? {
        let rel = meta.strip_prefix(root.join("templates")).context("template path")?;
        install(&meta, &stage.join("vz/template").join(rel), 0o644)?;
    }
    install(
        &root.join("README.md"),
        &stage.join(format!("usr/share/doc/{PACKAGE}/README.md")),
        0o644,
    )?;
    write(
        &stage.join(format!("usr/share/doc/{PACKAGE}/copyright")),
        &format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: vz\n\nFiles: *\nLicense: {}\n On Debian systems the full text of \
             the GNU General Public License version 2 is in /usr/share/common-licenses/GPL-2.\n",
            workspace_key(root, "license")?
        ),
        0o644,
    )?;

    let version = workspace_key(root, "version")?;
    let arch = sh::output(Command::new("dpkg").arg("--print-architecture"))?.trim().to_owned();
    let debian = stage.join("DEBIAN");
    write(&debian.join("control"), &control(&version, &arch, installed_size(stage)?), 0o644)?;
    write(&debian.join("conffiles"), &(conffiles.join("\n") + "\n"), 0o644)?;
    write(&debian.join("postinst"), POSTINST, 0o755)?;
    write(&debian.join("postrm"), POSTRM, 0o755)?;
    let deb = out.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    sh::run(
        Command::new("dpkg-deb")
            .arg("--root-owner-group")
            .args(if fast { &["-Zgzip", "-z1"][..] } else { &["-Zxz"][..] })
            .arg("--build")
            .arg(stage)
            .arg(&deb),
    )?;
    Ok(deb)
}

/// The `[[bin]]` names of vz-ctl's manifest.
fn binaries(root: &Path) -> Result<Vec<String>> {
    let manifest =
        fs::read_to_string(root.join("vz-ctl/Cargo.toml")).context("read vz-ctl/Cargo.toml")?;
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(v) = line.strip_prefix("name = ") {
            names.push(v.trim_matches('"').to_owned());
        }
    }
    if names.is_empty() {
        bail!("vz-ctl/Cargo.toml lists no [[bin]]");
    }
    Ok(names)
}

/// A `key = "value"` of the root manifest's `[workspace.package]`.
fn workspace_key(root: &Path, key: &str) -> Result<String> {
    let manifest = fs::read_to_string(root.join("Cargo.toml")).context("read Cargo.toml")?;
    let section = manifest.split("[workspace.package]").nth(1).context("no [workspace.package]")?;
    section
        .lines()
        .take_while(|l| !l.starts_with('['))
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .with_context(|| format!("no {key} in [workspace.package]"))
}

fn control(version: &str, arch: &str, size_kb: u64) -> String {
    format!(
        "Package: {PACKAGE}\nVersion: {version}\nArchitecture: {arch}\n\
         Maintainer: vz developers <vz@example.invalid>\nInstalled-Size: {size_kb}\n\
         Depends: libc6 (>= 2.36), busybox-static, e2fsprogs, iproute2, util-linux, nftables\n\
         Recommends: debootstrap, debian-archive-keyring, quota, procps\n\
         Suggests: criu (>= 4.2)\n\
         Section: admin\nPriority: optional\nHomepage: https://example.invalid/vz\n\
         Description: OS-level virtualization for stock Linux with OpenVZ's command line\n \
         vz runs many isolated containers (VEs) on one unmodified Linux kernel with\n \
         namespaces, cgroups (v1 or v2), loop devices, netlink and CRIU, managed with\n \
         OpenVZ's vzctl, vzlist, vzquota, vzubc and vzpkg. Includes the boot service\n \
         (/etc/init.d/vz and a systemd unit) that starts ONBOOT containers.\n"
    )
}

/// postinst: OpenVZ's directories, the busybox template cache, the service enabled. Under
/// `DPKG_ROOT` only files below it change (no cache, no service: those need the system).
const POSTINST: &str = r#"#!/bin/sh
set -e
if [ "$1" = configure ]; then
    for d in /vz/private /vz/root /vz/lock /vz/dump /vz/template/cache; do
        mkdir -p "$DPKG_ROOT$d"
    done
    chmod 700 "$DPKG_ROOT/vz/private" "$DPKG_ROOT/vz/root"
    if [ -z "$DPKG_ROOT" ]; then
        if ! ls /vz/template/cache/busybox.tar* >/dev/null 2>&1; then
            /usr/sbin/vzpkg create cache busybox || echo "vzctl: build the default template later: vzpkg create cache busybox" >&2
        fi
        if [ -d /run/systemd/system ]; then
            systemctl daemon-reload >/dev/null 2>&1 || true
            systemctl enable vz.service >/dev/null 2>&1 || true
        elif command -v update-rc.d >/dev/null 2>&1; then
            update-rc.d vz defaults >/dev/null
        fi
    fi
fi
exit 0
"#;

/// postrm: on purge, the service's links (the containers under /vz stay: they are data).
const POSTRM: &str = r#"#!/bin/sh
set -e
if [ "$1" = purge ] && [ -z "$DPKG_ROOT" ]; then
    if command -v update-rc.d >/dev/null 2>&1; then
        update-rc.d vz remove >/dev/null || true
    fi
    rm -f /etc/systemd/system/multi-user.target.wants/vz.service
fi
exit 0
"#;

fn installed_size(stage: &Path) -> Result<u64> {
    let mut bytes = 0;
    for file in walk(stage)? {
        bytes += fs::symlink_metadata(&file).map(|m| m.len()).unwrap_or(0);
    }
    Ok(bytes.div_ceil(1024))
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("make {}", dir.display()))?;
    }
    fs::copy(from, to).with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("make {}", dir.display()))?;
    }
    fs::write(to, text).with_context(|| format!("write {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))
}

/// `gzip -9n` (no name, no time stamp: the same input gives the same package).
fn gzip(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("make {}", dir.display()))?;
    }
    let file = fs::File::create(to).with_context(|| format!("create {}", to.display()))?;
    let status = Command::new("gzip")
        .args(["-9n", "-c"])
        .arg(from)
        .stdout(file)
        .status()
        .context("run gzip")?;
    if !status.success() {
        bail!("gzip {} failed", from.display());
    }
    fs::set_permissions(to, fs::Permissions::from_mode(0o644)).context("chmod a man page")
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Every file (and symlink) below `dir`.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("read {}", d.display()))? {
            let path = entry?.path();
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_and_version_come_from_the_manifests() {
        let root = sh::project_root();
        let bins = binaries(&root).unwrap();
        assert!(
            bins.iter().any(|b| b == "vzctl") && bins.iter().any(|b| b == "vzlist"),
            "{bins:?}"
        );
        assert!(!workspace_key(&root, "version").unwrap().is_empty());
        let c = control("1.2.3", "amd64", 10);
        assert!(c.starts_with("Package: vzctl\nVersion: 1.2.3\nArchitecture: amd64\n"), "{c}");
        assert!(c.lines().filter(|l| l.starts_with(' ')).all(|l| l.len() < 80));
    }

    #[test]
    fn options_parse() {
        let o = parse(&["--bin-dir".into(), "/b".into(), "--out".into(), "/o".into()]).unwrap();
        assert_eq!(
            (o.bin_dir.unwrap(), o.out.unwrap()),
            (PathBuf::from("/b"), PathBuf::from("/o"))
        );
        assert!(parse(&["--bogus".into()]).is_err());
        assert!(parse(&["--out".into()]).is_err());
    }
}
