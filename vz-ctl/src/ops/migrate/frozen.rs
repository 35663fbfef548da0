//! The frozen window of an online migration, as short as the destination's holder
//! ([`super::incoming`]) allows: the image-layout area copied once before (its data extents
//! and small files), then one stream while the VE is frozen (the dump's images, then what
//! changed in the image with its file system frozen, which starts beside), the restore asked
//! right behind the last byte so the holder starts it at once; and, when the connection to
//! the holder is lost, the destination asked whether it took the VE over.

use std::path::{Path, PathBuf};

use super::recovery::MigrationRecord;
use super::remote::{Dest, copy_private};
use super::{FsFreeze, MigrateError};
use crate::output::say;
use crate::ve::Ve;

/// The first copy of a running VE's image-layout area (the image's data extents and the
/// area's other files), before it is frozen.
pub(super) fn precopy_image(
    ve: &Ve,
    dest: &Dest,
    record: &mut MigrationRecord,
    image: &Path,
) -> std::result::Result<super::image::Sent, String> {
    let private = ve.private().map_err(|e| e.to_string())?;
    let to = dest.private.join("root.hdd/root.img");
    let holder = record.holder().map_err(|e| e.to_string())?;
    let sent = holder.stream(|out| {
        super::image::send_tree(&private, &dest.private, Some(image), out)?;
        super::image::send(image, &to, None, out).map(|r| r.0)
    })?;
    holder.answer()?;
    Ok(sent)
}

/// Whether the destination took the VE over, asked a few times (its holder may still be
/// restoring it, with the lock); `None`: cannot tell.
pub(super) fn took_over(dest: &Dest) -> Option<bool> {
    for _ in 0..3 {
        if let Some(answer) = dest.took_over() {
            return Some(answer);
        }
    }
    None
}

/// The frozen pass of the image made beside a lazy dump, not after it: the VE's tasks are
/// frozen before the dump starts, so its file system can be frozen (a grace period of the
/// kernel, 35–50 ms here) and what changed in the image since `sent` read and sent while
/// CRIU works, then thawed at once (a link remap CRIU makes meanwhile waits for the thaw; a
/// dump that leaves the VE removes its link remaps before it serves pages, so the old pass
/// after the dump never held them either). Returns the bytes of data sent; the holder owes
/// an answer for them.
pub(super) fn image_beside_dump(
    ve: &Ve,
    dest: &Dest,
    record: &mut MigrationRecord,
    root: &Path,
    image: &Path,
    sent: &super::image::Sent,
) -> std::result::Result<u64, String> {
    let private = ve.private().map_err(|e| e.to_string())?;
    let to = dest.private.join("root.hdd/root.img");
    let holder = record.holder().map_err(|e| e.to_string())?;
    let frozen_fs = FsFreeze::freeze(root)?;
    let bytes = holder.stream(|out| {
        super::image::send_tree(&private, &dest.private, Some(image), out)?;
        super::image::send(image, &to, Some(sent), out).map(|r| r.1)
    })?;
    drop(frozen_fs);
    Ok(bytes)
}

/// An answer the holder owes, as the error it makes when it fails.
type Owed = fn(String) -> MigrateError;

/// The frozen pass of an online migration: its stream into the destination's holder.
pub(super) struct FrozenPass<'a> {
    /// The dump's images here.
    pub(super) images: &'a Path,
    /// VE_ROOT (its file system frozen while the image is read).
    pub(super) root: &'a Path,
    /// A simfs area: its second rsync runs beside the stream.
    pub(super) is_simfs: bool,
    /// The image of an image-layout area.
    pub(super) image: Option<&'a Path>,
}

impl FrozenPass<'_> {
    /// Sends the dump's images, asks for the lazy-pages daemon (`lazy_port`), and sends what
    /// changed in the image since `sent` (its file system frozen, which starts beside the
    /// images' stream), or runs a simfs area's second rsync beside. Returns the answers the
    /// holder owes for what was sent (as the errors they make when they fail), and whether
    /// all of it was. `early`: the image's pass made beside the dump
    /// ([`image_beside_dump`]), with the bytes it sent.
    pub(super) fn send(
        &self,
        ve: &Ve,
        dest: &Dest,
        record: &mut MigrationRecord,
        sent: Option<&super::image::Sent>,
        lazy_port: Option<u16>,
        early: Option<std::result::Result<u64, String>>,
    ) -> (Vec<Owed>, std::result::Result<(), String>) {
        let mut answers: Vec<Owed> = Vec::new();
        let sent = match early {
            Some(Ok(bytes)) => {
                answers.push(MigrateError::Copy);
                say(format!("Image: {} KiB changed since the first copy", bytes >> 10));
                None
            }
            Some(Err(e)) => return (vec![MigrateError::Copy], Err(e)),
            None => sent,
        };
        let start = std::time::Instant::now();
        let ms = || start.elapsed().as_millis();
        let sent = std::thread::scope(|scope| {
            let side = scope.spawn(|| {
                if self.is_simfs {
                    copy_private(ve, dest).map(|()| None)
                } else if sent.is_none() {
                    // (The image went beside the dump.)
                    Ok(None)
                } else {
                    FsFreeze::freeze(self.root).map(Some)
                }
            });
            let holder = record.holder().map_err(|e| e.to_string())?;
            let dumped = holder.stream(|out| {
                super::image::send_tree(self.images, &dest.dump, None, out)?;
                // A lazy dump moves its /dev archive in only when it ends.
                let mut staged = self.images.as_os_str().to_owned();
                staged.push(".dev.tar");
                let staged = PathBuf::from(staged);
                if !self.images.join("vz-dev.tar").exists() && staged.is_file() {
                    super::image::send_file(&staged, &dest.dump.join("vz-dev.tar"), out)?;
                }
                Ok(())
            });
            tracing::info!(ms = ms(), "the dump's images sent");
            // The lazy-pages daemon (it needs only the images) starts while the file system
            // freezes here.
            let daemon = match (&dumped, lazy_port) {
                (Ok(()), Some(port)) => {
                    answers.push(MigrateError::Copy);
                    let asked = holder.request(&format!("lazy-pages {} {port}", dest.source_addr));
                    answers
                        .push(|e| MigrateError::DestStart(format!("the lazy-pages daemon: {e}")));
                    asked
                }
                (Ok(()), None) => {
                    answers.push(MigrateError::Copy);
                    Ok(())
                }
                (Err(_), _) => Ok(()),
            };
            let frozen_fs = side.join().unwrap_or_else(|_| Err("the freeze panicked".into()));
            tracing::info!(ms = ms(), "the private area frozen (simfs: synced)");
            dumped?;
            daemon?;
            let frozen_fs = frozen_fs?;
            if let (Some(image), Some(sent)) = (self.image, sent) {
                let private = ve.private().map_err(|e| e.to_string())?;
                let to = dest.private.join("root.hdd/root.img");
                let bytes = holder.stream(|out| {
                    super::image::send_tree(&private, &dest.private, Some(image), out)?;
                    super::image::send(image, &to, Some(sent), out).map(|r| r.1)
                })?;
                tracing::info!(ms = ms(), "the image's changes sent");
                drop(frozen_fs);
                say(format!("Image: {} KiB changed since the first copy", bytes >> 10));
                answers.push(MigrateError::Copy);
            }
            Ok(())
        });
        (answers, sent)
    }
}
