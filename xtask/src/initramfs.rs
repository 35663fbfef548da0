//! The kernel lab's initramfs: a static busybox as `/init`'s shell, the lab's modules and
//! the init script, written as an uncompressed `newc` cpio archive (the format the kernel
//! unpacks; see Documentation/driver-api/early-userspace/buffer-format.rst).

use anyhow::{Context, Result, bail};
use std::path::Path;

/// The script the kernel runs as PID 1 (busybox sh).
const INIT: &str = include_str!("guest/init.sh");

/// A `newc` cpio archive being built in memory.
#[derive(Debug, Default)]
pub(crate) struct Cpio {
    data: Vec<u8>,
    next_ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), body: &[u8]) -> Result<()> {
        let name = name.trim_start_matches('/');
        let size = u32::try_from(body.len()).context("a file in the initramfs is over 4 GiB")?;
        let namesize =
            u32::try_from(name.len() + 1).context("a file name in the initramfs is too long")?;
        self.next_ino += 1;
        let fields = [
            self.next_ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime: a reproducible archive
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            namesize,
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for field in fields {
            self.data.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    /// A directory (give parents before children).
    pub(crate) fn dir(&mut self, name: &str) -> Result<()> {
        self.entry(name, 0o040755, (0, 0), &[])
    }

    /// A regular file with `mode`'s permission bits.
    pub(crate) fn file(&mut self, name: &str, perm: u32, body: &[u8]) -> Result<()> {
        self.entry(name, 0o100000 | (perm & 0o7777), (0, 0), body)
    }

    /// A symbolic link to `target`.
    pub(crate) fn symlink(&mut self, name: &str, target: &str) -> Result<()> {
        self.entry(name, 0o120777, (0, 0), target.as_bytes())
    }

    /// A character device node.
    pub(crate) fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        self.entry(name, 0o020000 | (perm & 0o7777), (major, minor), &[])
    }

    /// The archive, closed with the `TRAILER!!!` entry.
    pub(crate) fn finish(mut self) -> Result<Vec<u8>> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        Ok(self.data)
    }
}

/// Whether the ELF file at `path` is statically linked (has no `PT_INTERP` program header).
pub(crate) fn is_static_elf(path: &Path) -> Result<bool> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        bail!("{} is not a 64-bit little-endian ELF file", path.display());
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().context("short ELF header")?);
    let phoff = usize::try_from(phoff).context("program header offset out of range")?;
    let (entsize, count) = (usize::from(u16_at(0x36)), usize::from(u16_at(0x38)));
    for i in 0..count {
        let at = phoff + i * entsize;
        let Some(p_type) = bytes.get(at..at + 4) else {
            bail!("{} has a truncated program header table", path.display());
        };
        if p_type == 3u32.to_le_bytes() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Builds the lab's initramfs: busybox (static, from `busybox`), `/init`, the modules in
/// load order under `/lib/modules/` and their order in `/modules.list`.
pub(crate) fn build(busybox: &Path, modules: &[impl AsRef<Path>]) -> Result<Vec<u8>> {
    if !is_static_elf(busybox)? {
        bail!(
            "{} is not statically linked (install the busybox-static package)",
            busybox.display()
        );
    }
    let mut cpio = Cpio::default();
    for dir in ["bin", "dev", "proc", "sys", "lib", "lib/modules", "host", "rw", "newroot"] {
        cpio.dir(dir)?;
    }
    cpio.char_dev("dev/console", 0o600, 5, 1)?;
    cpio.char_dev("dev/null", 0o666, 1, 3)?;
    let body =
        std::fs::read(busybox).with_context(|| format!("cannot read {}", busybox.display()))?;
    cpio.file("bin/busybox", 0o755, &body)?;
    cpio.symlink("bin/sh", "busybox")?;
    cpio.file("init", 0o755, INIT.as_bytes())?;
    let mut list = String::new();
    for (i, module) in modules.iter().enumerate() {
        let module = module.as_ref();
        let base =
            module.file_name().and_then(|n| n.to_str()).context("a module path has no name")?;
        // A numbered name keeps two modules of the same file name apart.
        let name = format!("{i:03}-{base}");
        let body =
            std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
        cpio.file(&format!("lib/modules/{name}"), 0o644, &body)?;
        list.push_str(&name);
        list.push('\n');
    }
    cpio.file("modules.list", 0o644, list.as_bytes())?;
    cpio.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn cpio_tool_reads_our_archive() {
        let mut cpio = Cpio::default();
        cpio.dir("d").unwrap();
        cpio.file("d/f", 0o644, b"hello").unwrap();
        cpio.symlink("d/l", "f").unwrap();
        let data = cpio.finish().unwrap();
        assert_eq!(data.len() % 4, 0);
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.cpio"), &data).unwrap();
        // GNU cpio (installed by scripts/install-deps) is the independent reader.
        let out = Command::new("cpio")
            .args(["-i", "-d", "--quiet", "-F", "a.cpio"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read_to_string(dir.join("d/f")).unwrap(), "hello");
        assert_eq!(std::fs::read_link(dir.join("d/l")).unwrap(), Path::new("f"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn static_and_dynamic_elf_are_told_apart() {
        assert!(!is_static_elf(Path::new("/bin/sh")).unwrap());
        assert!(is_static_elf(Path::new("/bin/busybox")).unwrap());
        assert!(is_static_elf(Path::new("/etc/hostname")).is_err());
    }
}
