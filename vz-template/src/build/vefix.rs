//! The edits that make a freshly bootstrapped Debian root a VE's root: identity files a VE
//! gets from vz, no getty on the ttys a VE lacks, the units that cannot work in a user
//! namespace masked, and the boot-finished hook `vzctl start --wait` waits for (the VE's boot
//! opens the fifo `/.vzfifo`; opening it read-write never blocks when nobody waits).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Which init the tree boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Init {
    /// systemd as `/sbin/init` (Debian's systemd-sysv).
    Systemd,
    /// sysvinit with `/etc/inittab`.
    Sysv,
    /// Neither: no init edits.
    Other,
}

/// The shell command that wakes `vzctl start --wait`; succeeds when there is no fifo.
const FIFO_CMD: &str = "if [ -p /.vzfifo ]; then : 1<>/.vzfifo; fi";

/// The unit that runs [`FIFO_CMD`] once the boot reached multi-user.target.
pub(crate) const BOOT_DONE_UNIT: &str = "vz-boot-done.service";

fn boot_done_unit() -> String {
    format!(
        "# vz: tells `vzctl start --wait` that the boot is done.\n\
         [Unit]\n\
         Description=vz: boot finished\n\
         After=multi-user.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart=/bin/sh -c '{FIFO_CMD}'\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// Units masked in a systemd VE: debugfs and tracefs cannot be mounted in a user namespace
/// (they fail and leave the system `degraded`), and a VE has no ttys for gettys. Its console
/// is a pty of its own (`vzctl console`): console-getty runs there.
pub(crate) const MASKED_UNITS: &[&str] = &[
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "getty-static.service",
    "getty@tty1.service",
    "getty@tty2.service",
    "getty@tty3.service",
    "getty@tty4.service",
    "getty@tty5.service",
    "getty@tty6.service",
];

/// The init `/sbin/init` of `root` is.
pub(crate) fn detect_init(root: &Path) -> Init {
    match fs::read_link(root.join("sbin/init")) {
        Ok(target) if target.to_string_lossy().ends_with("systemd") => Init::Systemd,
        _ if root.join("etc/inittab").is_file() => Init::Sysv,
        _ => Init::Other,
    }
}

/// Applies every edit to `root`; returns the init found.
pub(crate) fn touch_up(root: &Path) -> Result<Init> {
    let init = detect_init(root);
    match init {
        Init::Systemd => systemd(root)?,
        Init::Sysv => {
            let inittab = root.join("etc/inittab");
            let text = fs::read_to_string(&inittab).op("read", &inittab)?;
            fs::write(&inittab, edit_inittab(&text)).op("write", &inittab)?;
        }
        Init::Other => {}
    }
    for (file, content) in [
        ("etc/hostname", "localhost\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        ("etc/resolv.conf", ""),
        // Empty: systemd makes a transient id at each boot, every VE its own.
        ("etc/machine-id", ""),
    ] {
        let path = root.join(file);
        // resolv.conf may be a copy or a symlink: replace either with a plain file.
        let _ = fs::remove_file(&path);
        fs::write(&path, content).op("write", &path)?;
    }
    let _ = fs::remove_file(root.join("var/lib/dbus/machine-id"));
    for dir in ["var/cache/apt/archives", "var/cache/apt", "var/lib/apt/lists"] {
        let dir = root.join(dir);
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                fs::remove_file(&path).op("remove", &path)?;
            }
        }
    }
    Ok(init)
}

fn systemd(root: &Path) -> Result<()> {
    let system = root.join("etc/systemd/system");
    fs::create_dir_all(&system).op("create directory", &system)?;
    for unit in MASKED_UNITS {
        let path = system.join(unit);
        let _ = fs::remove_file(&path);
        symlink("/dev/null", &path).op("mask", &path)?;
    }
    let _ = fs::remove_file(system.join("getty.target.wants/getty@tty1.service"));
    let unit = system.join(BOOT_DONE_UNIT);
    fs::write(&unit, boot_done_unit()).op("write", &unit)?;
    let wants = system.join("multi-user.target.wants");
    fs::create_dir_all(&wants).op("create directory", &wants)?;
    let link = wants.join(BOOT_DONE_UNIT);
    let _ = fs::remove_file(&link);
    symlink(format!("/etc/systemd/system/{BOOT_DONE_UNIT}"), &link).op("enable", &link)
}

/// Comments out getty lines and appends the `/.vzfifo` boot-finished entry.
pub(crate) fn edit_inittab(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 200);
    for line in text.lines() {
        let getty = !line.trim_start().starts_with('#') && line.contains("getty");
        if getty {
            out.push_str("#vz: no ttys in a VE: ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!(
        "\n# vz: boot finished, wake `vzctl start --wait` (no-op when nobody waits).\n\
         vz:2345:once:/bin/sh -c '{FIFO_CMD}'\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inittab_loses_gettys_and_gains_the_fifo_entry() {
        let t = "id:2:initdefault:\n1:2345:respawn:/sbin/getty 38400 tty1\n#2:23:respawn:/sbin/getty 38400 tty2\n";
        let out = edit_inittab(t);
        assert!(out.contains("#vz: no ttys in a VE: 1:2345:respawn:/sbin/getty"));
        assert!(out.contains("\n#2:23:respawn"));
        assert!(out.contains("id:2:initdefault:\n"));
        assert!(out.ends_with(&format!("vz:2345:once:/bin/sh -c '{FIFO_CMD}'\n")));
    }

    #[test]
    fn a_systemd_tree_gets_masks_and_the_boot_unit() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("sbin")).unwrap();
        fs::create_dir_all(root.join("etc/systemd/system/getty.target.wants")).unwrap();
        symlink("/lib/systemd/systemd", root.join("sbin/init")).unwrap();
        symlink(
            "/lib/systemd/system/getty@.service",
            root.join("etc/systemd/system/getty.target.wants/getty@tty1.service"),
        )
        .unwrap();
        symlink("/run/systemd/resolve/stub-resolv.conf", root.join("etc/resolv.conf")).unwrap();
        assert_eq!(touch_up(root).unwrap(), Init::Systemd);
        let system = root.join("etc/systemd/system");
        for unit in MASKED_UNITS {
            assert_eq!(fs::read_link(system.join(unit)).unwrap(), Path::new("/dev/null"), "{unit}");
        }
        assert!(!system.join("getty.target.wants/getty@tty1.service").exists());
        let unit = fs::read_to_string(system.join(BOOT_DONE_UNIT)).unwrap();
        assert!(unit.contains("After=multi-user.target") && unit.contains(FIFO_CMD), "{unit}");
        let link = fs::read_link(system.join("multi-user.target.wants").join(BOOT_DONE_UNIT));
        assert_eq!(link.unwrap(), Path::new("/etc/systemd/system/vz-boot-done.service"));
        assert!(fs::symlink_metadata(root.join("etc/resolv.conf")).unwrap().is_file());
        assert_eq!(fs::read_to_string(root.join("etc/machine-id")).unwrap(), "");
    }

    #[test]
    fn the_fifo_command_works_with_and_without_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let run = |cmd: &str| {
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(cmd.replace("/.vzfifo", &dir.path().join("f").display().to_string()))
                .status()
                .unwrap()
        };
        assert!(run(FIFO_CMD).success(), "no fifo: success, so the unit does not fail");
        nix::unistd::mkfifo(&dir.path().join("f"), nix::sys::stat::Mode::from_bits_truncate(0o600))
            .unwrap();
        assert!(run(FIFO_CMD).success(), "a fifo nobody reads: no blocking");
    }
}
