//! The image layout's one big file (`root.hdd/root.img`) copied twice: once while the VE
//! runs, then, with its file system frozen, only the 1 MiB chunks whose bytes changed since
//! (and holes punched where data went). Only the file's data extents are read (SEEK_DATA),
//! so a 2 GiB sparse image with 60 MiB in use costs 60 MiB per pass; the second pass sends
//! only what the VE wrote meanwhile.
//!
//! The stream (to `vzmigrate __receive-image FILE` on the destination) is a series of
//! records: a tag byte, then `u64` little-endian fields: `S size` (the file's length), `D
//! offset length` and `length` bytes (data), `Z offset length` (a hole), `E` (the end).

use std::collections::HashMap;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::unistd::{Whence, lseek};

/// The unit of comparison between the two passes.
const CHUNK: u64 = 1 << 20;

/// The hidden command of `vzmigrate` that receives an image on the destination.
pub const RECEIVE_COMMAND: &str = "__receive-image";

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

/// Sends `image`: everything (`previous` is `None`), or only the chunks that differ from
/// what `previous` recorded. Returns what the receiver now holds, and the bytes sent.
///
/// # Errors
/// I/O errors of the image or the stream.
pub fn send(
    image: &Path,
    previous: Option<&Sent>,
    out: &mut (impl Write + ?Sized),
) -> std::io::Result<(Sent, u64)> {
    let file = File::open(image)?;
    let size = file.metadata()?.len();
    put(out, b'S', &[size])?;
    let mut now = Sent::default();
    let mut sent = 0;
    let mut buf = vec![0u8; usize::try_from(CHUNK).unwrap_or(1 << 20)];
    for (start, end) in extents(&file, size)? {
        let mut chunk = start - start % CHUNK;
        while chunk < end {
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
    put(out, b'E', &[])?;
    out.flush()?;
    Ok((now, sent))
}

fn field(input: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    input.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Receives a stream of [`send`] into `image` (made if missing; parents too).
///
/// # Errors
/// I/O errors, or a malformed stream.
pub fn receive(image: &Path, input: &mut impl Read) -> std::io::Result<()> {
    if let Some(parent) = image.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(image)?;
    let mut buf = Vec::new();
    loop {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag)?;
        match tag[0] {
            b'S' => file.set_len(field(input)?)?,
            b'D' => {
                let (offset, len) = (field(input)?, field(input)?);
                buf.resize(usize::try_from(len).map_err(std::io::Error::other)?, 0);
                input.read_exact(&mut buf)?;
                file.write_all_at(&buf, offset)?;
            }
            b'Z' => {
                let (offset, len) = (field(input)?, field(input)?);
                let flags = nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                    | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
                let off = |v: u64| i64::try_from(v).map_err(std::io::Error::other);
                nix::fcntl::fallocate(&file, flags, off(offset)?, off(len)?)?;
            }
            // No fsync: as tar and rsync, the page cache holds it (the loop mount reads it).
            b'E' => return Ok(()),
            other => {
                return Err(std::io::Error::other(format!(
                    "bad record {other} in the image stream"
                )));
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
        let (sent, bytes) = send(&src, None, &mut stream).unwrap();
        assert!((4 << 20..16 << 20).contains(&bytes), "only data extents: {bytes}");
        receive(&dst, &mut stream.as_slice()).unwrap();
        // The source changes one chunk and loses another to a hole.
        f.write_all_at(&[3u8; 10], 9 << 20).unwrap();
        let flags = nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
            | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
        nix::fcntl::fallocate(&f, flags, 40 << 20, 1 << 20).unwrap();
        let mut stream = Vec::new();
        let (_, bytes) = send(&src, Some(&sent), &mut stream).unwrap();
        assert_eq!(bytes, 1 << 20, "one chunk changed");
        receive(&dst, &mut stream.as_slice()).unwrap();
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
    }
}
