//! [`Compression`] of a cache file, detected by magic bytes, and the decompressing reader.
//!
//! gzip is decompressed in-process with `flate2` (zlib-rs backend, pure Rust, no system
//! library) on a helper thread, so that inflating and writing files use both cores. bzip2 and
//! xz are piped through the system's `bzip2 -dc` / `xz -dc` (Debian packages bzip2, xz-utils):
//! they are C implementations faster than the pure-Rust crates, run in parallel with the
//! unpacking by construction, and cost this crate no dependency.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::error::{IoContext, Result, TemplateError};

/// How a cache file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar archive (`.tar`).
    None,
    /// gzip (`.tar.gz`), magic `1f 8b`.
    Gzip,
    /// bzip2 (`.tar.bz2`), magic `42 5a` (`BZ`).
    Bzip2,
    /// xz (`.tar.xz`), magic `fd 37 7a 58 5a 00`.
    Xz,
}

impl Compression {
    /// The suffixes in OpenVZ's lookup order (reference §7.1): `.tar`, `.tar.gz`, `.tar.bz2`,
    /// `.tar.xz`.
    pub const LOOKUP_ORDER: [Compression; 4] =
        [Compression::None, Compression::Gzip, Compression::Bzip2, Compression::Xz];

    /// The file suffix a cache of this compression has by convention.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => ".tar",
            Compression::Gzip => ".tar.gz",
            Compression::Bzip2 => ".tar.bz2",
            Compression::Xz => ".tar.xz",
        }
    }

    /// Detects the compression from the first bytes of a file, as `vps-create` does
    /// (`1f8b` gzip, `425a` bzip2, `fd37` xz); anything else is taken as a plain tar.
    pub fn from_magic(magic: &[u8]) -> Compression {
        match magic {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x42, 0x5a, b'h', ..] => Compression::Bzip2,
            [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, ..] => Compression::Xz,
            _ => Compression::None,
        }
    }

    /// Detects the compression of the file at `path` from its magic bytes.
    ///
    /// # Errors
    /// [`TemplateError::Io`] if the file cannot be opened or read.
    pub fn of_file(path: &Path) -> Result<Compression> {
        let mut file = File::open(path).op("open", path)?;
        let mut magic = [0u8; 6];
        let mut got = 0;
        while got < magic.len() {
            match file.read(&mut magic[got..]).op("read", path)? {
                0 => break,
                n => got += n,
            }
        }
        Ok(Compression::from_magic(&magic[..got]))
    }
}

/// A reader of the decompressed tar stream of a cache file.
pub(crate) struct Decoded {
    path: PathBuf,
    inner: Inner,
}

enum Inner {
    Plain(BufReader<File>),
    Thread(ThreadReader),
    Child { child: Child, stdout: ChildStdout, program: &'static str },
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Size of the blocks handed from the inflating thread to the reader.
const BLOCK: usize = 256 * 1024;

/// Reads blocks that a helper thread decompresses.
struct ThreadReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    block: Vec<u8>,
    at: usize,
    done: bool,
    thread: Option<JoinHandle<()>>,
}

impl ThreadReader {
    fn spawn<R: Read + Send + 'static>(mut source: R) -> ThreadReader {
        let (tx, rx): (SyncSender<io::Result<Vec<u8>>>, _) = sync_channel(8);
        let thread = std::thread::spawn(move || {
            loop {
                let mut block = vec![0u8; BLOCK];
                let mut len = 0;
                let result = loop {
                    match source.read(&mut block[len..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            len += n;
                            if len == block.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                block.truncate(len);
                let end = len == 0;
                let sent = match result {
                    Ok(()) if end => return,
                    Ok(()) => tx.send(Ok(block)),
                    Err(e) => {
                        // Data read before the error first, then the error.
                        if !block.is_empty() && tx.send(Ok(block)).is_err() {
                            return;
                        }
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                if sent.is_err() {
                    return; // The reader went away.
                }
            }
        });
        ThreadReader { rx, block: Vec::new(), at: 0, done: false, thread: Some(thread) }
    }
}

impl Read for ThreadReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(block)) => {
                    self.block = block;
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for ThreadReader {
    fn drop(&mut self) {
        // Dropping the receiver makes the thread's next send fail, so it ends.
        let (_, rx) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Decoded {
    /// Opens `path` and decompresses it as `compression` says.
    pub(crate) fn open(path: &Path, compression: Compression) -> Result<Decoded> {
        let inner = match compression {
            Compression::None => Inner::Plain(BufReader::new(File::open(path).op("open", path)?)),
            Compression::Gzip => {
                let file = File::open(path).op("open", path)?;
                let gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(BLOCK, file));
                Inner::Thread(ThreadReader::spawn(gz))
            }
            Compression::Bzip2 => spawn_filter("bzip2", path)?,
            Compression::Xz => spawn_filter("xz", path)?,
        };
        Ok(Decoded { path: path.to_owned(), inner })
    }

    /// Reads the stream to its end (checking gzip's CRC, letting the child finish) and, for a
    /// child process, checks its exit status.
    pub(crate) fn finish(mut self) -> Result<()> {
        io::copy(&mut self, &mut io::sink())
            .map_err(|source| TemplateError::Archive { path: self.path.clone(), source })?;
        if let Inner::Child { child, program, .. } = &mut self.inner {
            let program = *program;
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut stderr);
            }
            let status = child.wait().op("wait for", Path::new(program))?;
            if !status.success() {
                return Err(TemplateError::Command {
                    program: format!("{program} -dc {}", self.path.display()),
                    status,
                    stderr: stderr.trim().to_owned(),
                });
            }
        }
        Ok(())
    }
}

fn spawn_filter(program: &'static str, path: &Path) -> Result<Inner> {
    let mut child = Command::new(program)
        .arg("-dc")
        .arg("--")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .op("run (is it installed?)", Path::new(program))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(TemplateError::io(
            "read the output of",
            Path::new(program),
            io::Error::other("no stdout pipe"),
        ));
    };
    Ok(Inner::Child { child, stdout, program })
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(r) => r.read(buf),
            Inner::Thread(r) => r.read(buf),
            Inner::Child { stdout, .. } => stdout.read(buf),
        }
    }
}

impl Drop for Decoded {
    fn drop(&mut self) {
        if let Inner::Child { child, .. } = &mut self.inner {
            // Ends the decompressor this reader started if unpacking stopped early.
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn magic_bytes_decide() {
        assert_eq!(Compression::from_magic(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::from_magic(b"BZh91AY&SY"), Compression::Bzip2);
        assert_eq!(Compression::from_magic(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Compression::Xz);
        assert_eq!(Compression::from_magic(b"etc/\0\0\0"), Compression::None);
        assert_eq!(Compression::from_magic(&[0x1f]), Compression::None);
        assert_eq!(Compression::from_magic(&[]), Compression::None);
        assert_eq!(Compression::from_magic(&[0xfd, b'7', b'z']), Compression::None);
    }

    #[test]
    fn detection_ignores_the_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar.xz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello").unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        assert_eq!(Compression::of_file(&path).unwrap(), Compression::Gzip);
        std::fs::write(&path, b"").unwrap();
        assert_eq!(Compression::of_file(&path).unwrap(), Compression::None);
        let missing = Compression::of_file(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().starts_with("open "), "{missing}");
    }

    #[test]
    fn gzip_stream_round_trips_through_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        let data: Vec<u8> =
            (0..3 * BLOCK + 17).map(|i| u8::try_from(i * 7 % 251).unwrap()).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let mut decoded = Decoded::open(&path, Compression::Gzip).unwrap();
        let mut out = Vec::new();
        decoded.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        decoded.finish().unwrap();
    }

    #[test]
    fn corrupt_gzip_is_an_archive_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[1u8; 100_000]).unwrap();
        let mut bytes = gz.finish().unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 0xff; // Break the CRC.
        std::fs::write(&path, bytes).unwrap();
        let err = Decoded::open(&path, Compression::Gzip).unwrap().finish().unwrap_err();
        assert!(matches!(err, TemplateError::Archive { .. }), "{err:?}");
    }
}
