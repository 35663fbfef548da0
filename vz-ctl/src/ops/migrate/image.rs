//! What a migration sends into the destination's holder ([`super::incoming`]) as one
//! stream: whole small files and directories (the dump's images, the private area's other
//! files) and the image layout's one big file (`root.hdd/root.img`), sent twice: once while
//! the VE runs, then, with its file system frozen, only the 1 MiB chunks whose bytes changed
//! since (and holes punched where data went). Only the image's data extents are read
//! (SEEK_DATA), so a 2 GiB sparse image with 60 MiB in use costs 60 MiB per pass; the second
//! pass sends only what the VE wrote meanwhile.
//!
//! The stream is a series of records: a tag byte, then `u64` little-endian fields; a path
//! is its length and its bytes (absolute paths of the destination). `M path mode uid gid` (a
//! directory), `F path mode uid gid length` and `length` bytes (a whole file, replaced), `I
//! path` (the image the following records change), `S size` (its length), `D offset length`
//! and `length` bytes (data), `Z offset length` (a hole), `E` (the end of the stream).

use std::collections::HashMap;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Whence, lseek};

/// The unit of comparison between the two passes.
const CHUNK: u64 = 1 << 20;

/// What the first pass sent: a hash of each chunk's bytes, by offset.
#[derive(Debug, Default)]
pub struct Sent(HashMap<u64, u64>);

fn hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The data extents of `file` (offset, end), from SEEK_DATA/SEEK_HOLE.
fn extents(file: &File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos: u64 = 0;
    let off = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    while pos < size {
        let start = match lseek(file, off(pos), Whence::SeekData) {
            Ok(s) => u64::try_from(s).unwrap_or(size),
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let end = u64::try_from(lseek(file, off(start), Whence::SeekHole)?).unwrap_or(size);
        out.push((start, end.min(size)));
        pos = end;
    }
    Ok(out)
}

fn put(out: &mut (impl Write + ?Sized), tag: u8, fields: &[u64]) -> std::io::Result<()> {
    out.write_all(&[tag])?;
    for f in fields {
        out.write_all(&f.to_le_bytes())?;
    }
    Ok(())
}

fn put_path(out: &mut (impl Write + ?Sized), tag: u8, path: &Path) -> std::io::Result<()> {
    let bytes = path.as_os_str().as_bytes();
    put(out, tag, &[bytes.len() as u64])?;
    out.write_all(bytes)
}

/// Sends the directory tree `from` as `to` on the destination: its directories and regular
/// files, whole, with their modes and owners; `skip` (a path under `from`) left out.
///
/// # Errors
/// I/O errors; a symbolic link or special file (none belongs in what is sent this way).
pub fn send_tree(
    from: &Path,
    to: &Path,
    skip: Option<&Path>,
    out: &mut (impl Write + ?Sized),
) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        put_path(out, b'M', to)?;
        put(out, b'+', &[u64::from(meta.mode()), u64::from(meta.uid()), u64::from(meta.gid())])?;
        let mut entries: Vec<_> = std::fs::read_dir(from)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            if Some(path.as_path()) != skip {
                send_tree(&path, &to.join(entry.file_name()), skip, out)?;
            }
        }
        return Ok(());
    }
    send_file(from, to, out)
}

/// Sends the regular file `from` as `to` on the destination (whole, with its mode and owner).
///
/// # Errors
/// I/O errors; `from` is not a regular file.
pub fn send_file(from: &Path, to: &Path, out: &mut (impl Write + ?Sized)) -> std::io::Result<()> {
    let mut file = File::open(from)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(format!(
            "{}: not a regular file or directory",
            from.display()
        )));
    }
    put_path(out, b'F', to)?;
    let (mode, uid, gid) = (u64::from(meta.mode()), u64::from(meta.uid()), u64::from(meta.gid()));
    put(out, b'+', &[mode, uid, gid, meta.len()])?;
    let copied = std::io::copy(&mut (&mut file).take(meta.len()), out)?;
    if copied != meta.len() {
        return Err(std::io::Error::other(format!("{}: shrank while sent", from.display())));
    }
    Ok(())
}

/// Sends `image` as `to`: everything (`previous` is `None`), or only the chunks that differ
/// from what `previous` recorded. Returns what the receiver now holds, and the bytes sent.
///
/// # Errors
/// I/O errors of the image or the stream.
pub fn send(
    image: &Path,
    to: &Path,
    previous: Option<&Sent>,
    out: &mut (impl Write + ?Sized),
) -> std::io::Result<(Sent, u64)> {
    let file = File::open(image)?;
    let size = file.metadata()?.len();
    put_path(out, b'I', to)?;
    put(out, b'S', &[size])?;
    let mut now = Sent::default();
    let mut sent = 0;
    let mut buf = vec![0u8; usize::try_from(CHUNK).unwrap_or(1 << 20)];
    for (start, end) in extents(&file, size)? {
        let mut chunk = start - start % CHUNK;
        while chunk < end {
            if now.0.contains_key(&chunk) {
                // Two extents in one chunk: sent (or found equal) with the first.
                chunk += CHUNK;
                continue;
            }
            let len = usize::try_from(CHUNK.min(size - chunk)).unwrap_or(0);
            let bytes = &mut buf[..len];
            file.read_exact_at(bytes, chunk)?;
            let h = hash(bytes);
            if previous.and_then(|p| p.0.get(&chunk)) != Some(&h) {
                put(out, b'D', &[chunk, len as u64])?;
                out.write_all(bytes)?;
                sent += len as u64;
            }
            now.0.insert(chunk, h);
            chunk += CHUNK;
        }
    }
    // Chunks that held data before and are holes now.
    if let Some(previous) = previous {
        for &chunk in previous.0.keys().filter(|c| !now.0.contains_key(c)) {
            if chunk < size {
                put(out, b'Z', &[chunk, CHUNK.min(size - chunk)])?;
            }
        }
    }
    Ok((now, sent))
}

/// Ends a stream.
///
/// # Errors
/// Those of the stream.
pub fn end(out: &mut (impl Write + ?Sized)) -> std::io::Result<()> {
    put(out, b'E', &[])?;
    out.flush()
}

fn image_of(image: Option<&File>) -> std::io::Result<&File> {
    image.ok_or_else(|| std::io::Error::other("image data before its path"))
}

fn field(input: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    input.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn usize_of(v: u64) -> std::io::Result<usize> {
    usize::try_from(v).map_err(std::io::Error::other)
}

/// A path record's path, then its `+` fields.
fn path_and_fields(input: &mut impl Read, n: usize) -> std::io::Result<(PathBuf, Vec<u64>)> {
    let mut bytes = vec![0u8; usize_of(field(input)?)?];
    input.read_exact(&mut bytes)?;
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(&bytes));
    if !path.is_absolute() {
        return Err(std::io::Error::other(format!("{} is not absolute", path.display())));
    }
    let mut fields = Vec::with_capacity(n);
    if n > 0 {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag)?;
        if tag[0] != b'+' {
            return Err(std::io::Error::other("a record without its fields"));
        }
        for _ in 0..n {
            fields.push(field(input)?);
        }
    }
    Ok((path, fields))
}

/// Mode and owner of a received file or directory.
fn own(path: &Path, mode: u64, uid: u64, gid: u64) -> std::io::Result<()> {
    let id = |v: u64| u32::try_from(v).map_err(std::io::Error::other);
    std::os::unix::fs::lchown(path, Some(id(uid)?), Some(id(gid)?))?;
    let mode = u32::try_from(mode & 0o7777).map_err(std::io::Error::other)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Receives a stream of [`send_tree`], [`send_file`] and [`send`] records up to its [`end`]
/// (images made if missing, parents too). Returns the bytes of data received.
///
/// # Errors
/// I/O errors, or a malformed stream.
pub fn receive(input: &mut impl Read) -> std::io::Result<u64> {
    let mut image: Option<File> = None;
    let mut buf = Vec::new();
    let mut bytes = 0;
    loop {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag)?;
        match tag[0] {
            b'M' => {
                let (path, f) = path_and_fields(input, 3)?;
                std::fs::create_dir_all(&path)?;
                own(&path, f[0], f[1], f[2])?;
            }
            b'F' => {
                let (path, f) = path_and_fields(input, 4)?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut file = File::create(&path)?;
                let copied = std::io::copy(&mut input.take(f[3]), &mut file)?;
                if copied != f[3] {
                    return Err(std::io::Error::other(format!("{}: cut short", path.display())));
                }
                own(&path, f[0], f[1], f[2])?;
                bytes += copied;
            }
            b'I' => {
                let (path, _) = path_and_fields(input, 0)?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(false)
                    .open(&path)?;
                image = Some(file);
            }
            b'S' => image_of(image.as_ref())?.set_len(field(input)?)?,
            b'D' => {
                let (offset, len) = (field(input)?, field(input)?);
                buf.resize(usize_of(len)?, 0);
                input.read_exact(&mut buf)?;
                image_of(image.as_ref())?.write_all_at(&buf, offset)?;
                bytes += len;
            }
            b'Z' => {
                let (offset, len) = (field(input)?, field(input)?);
                let flags = nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                    | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
                let off = |v: u64| i64::try_from(v).map_err(std::io::Error::other);
                nix::fcntl::fallocate(image_of(image.as_ref())?, flags, off(offset)?, off(len)?)?;
            }
            // No fsync: as tar and rsync, the page cache holds it (the loop mount reads it).
            b'E' => return Ok(bytes),
            other => {
                return Err(std::io::Error::other(format!("bad record {other} in the stream")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_pass_sends_only_what_changed_and_the_copy_is_equal() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src.img"), dir.path().join("d/dst.img"));
        let f =
            std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[1u8; 3 << 20], 8 << 20).unwrap();
        f.write_all_at(&[2u8; 4096], 40 << 20).unwrap();
        let mut stream = Vec::new();
        let (sent, bytes) = send(&src, &dst, None, &mut stream).unwrap();
        end(&mut stream).unwrap();
        assert!((4 << 20..16 << 20).contains(&bytes), "only data extents: {bytes}");
        assert_eq!(receive(&mut stream.as_slice()).unwrap(), bytes);
        // The source changes one chunk and loses another to a hole.
        f.write_all_at(&[3u8; 10], 9 << 20).unwrap();
        let flags = nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
            | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
        nix::fcntl::fallocate(&f, flags, 40 << 20, 1 << 20).unwrap();
        let mut stream = Vec::new();
        let (_, bytes) = send(&src, &dst, Some(&sent), &mut stream).unwrap();
        end(&mut stream).unwrap();
        assert_eq!(bytes, 1 << 20, "one chunk changed");
        receive(&mut stream.as_slice()).unwrap();
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
    }

    #[test]
    fn a_tree_arrives_with_its_modes_and_without_what_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("root.hdd")).unwrap();
        std::fs::write(from.join("root.hdd/vzquota.conf"), "QUOTATIME=0\n").unwrap();
        std::fs::write(from.join("root.hdd/root.img"), "big").unwrap();
        std::fs::set_permissions(from.join("root.hdd"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let to = dir.path().join("to");
        let mut stream = Vec::new();
        send_tree(&from, &to, Some(&from.join("root.hdd/root.img")), &mut stream).unwrap();
        end(&mut stream).unwrap();
        assert_eq!(receive(&mut stream.as_slice()).unwrap(), 12);
        assert_eq!(
            std::fs::read_to_string(to.join("root.hdd/vzquota.conf")).unwrap(),
            "QUOTATIME=0\n"
        );
        assert!(!to.join("root.hdd/root.img").exists());
        let mode = std::fs::metadata(to.join("root.hdd")).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
        // A stream cut short is an error, not a short file taken for whole.
        let mut cut = Vec::new();
        send_file(&from.join("root.hdd/vzquota.conf"), &to.join("x"), &mut cut).unwrap();
        cut.truncate(cut.len() - 3);
        assert!(receive(&mut cut.as_slice()).is_err());
    }
}
