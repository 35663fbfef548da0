//! OpenVZ's `MOUNT_OPTS` (`vzctl set --mount_opts`): extra options for the mount of a VE's
//! image, checked against what is safe for the host to mount on a VE's behalf.
//!
//! The image is the VE's own file system, so options that only trade the VE's own speed,
//! durability or metadata behaviour are allowed (`noatime`, `data=writeback`, `commit=30`,
//! `nobarrier`, `discard` …). Refused: options that reach beyond the image (`journal_path=`,
//! `journal_dev=`: a host file or device as its journal), that can stop the host
//! (`errors=panic`), that vz itself owns (the quota options, which follow QUOTAUGIDLIMIT and
//! DISKSPACE), and anything ext4 does not document for users (`debug`,
//! `test_dummy_encryption` …).

use nix::mount::MsFlags;

use crate::error::{QuotaError, Result};

/// Options that are mount flags rather than ext4 data.
const FLAGS: [(&str, MsFlags); 4] = [
    ("noatime", MsFlags::MS_NOATIME),
    ("nodiratime", MsFlags::MS_NODIRATIME),
    ("relatime", MsFlags::MS_RELATIME),
    ("lazytime", MsFlags::MS_LAZYTIME),
];

/// ext4 options taken as they are.
const PLAIN: [&str; 20] = [
    "barrier",
    "nobarrier",
    "discard",
    "nodiscard",
    "journal_checksum",
    "nojournal_checksum",
    "journal_async_commit",
    "auto_da_alloc",
    "noauto_da_alloc",
    "delalloc",
    "nodelalloc",
    "dioread_nolock",
    "dioread_lock",
    "user_xattr",
    "nouser_xattr",
    "acl",
    "noacl",
    "block_validity",
    "noblock_validity",
    "init_itable",
];

/// ext4 options with a value: the name and the values allowed (`None`: a number).
const VALUED: [(&str, Option<&[&str]>); 8] = [
    ("data", Some(&["journal", "ordered", "writeback"])),
    ("errors", Some(&["continue", "remount-ro"])),
    ("commit", None),
    ("min_batch_time", None),
    ("max_batch_time", None),
    ("stripe", None),
    ("inode_readahead_blks", None),
    ("init_itable", None),
];

/// Extra options of an image's mount, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMountOptions {
    /// Mount flags (`noatime` …).
    pub(crate) flags: MsFlags,
    /// ext4 data options, in the order given.
    pub(crate) data: Vec<String>,
}

impl Default for ImageMountOptions {
    fn default() -> Self {
        ImageMountOptions { flags: MsFlags::empty(), data: Vec::new() }
    }
}

impl ImageMountOptions {
    /// Parses a comma-separated `MOUNT_OPTS` value (empty: none).
    ///
    /// # Errors
    /// [`QuotaError::BadValue`] naming the first option refused and why.
    pub fn parse(value: &str) -> Result<ImageMountOptions> {
        let mut options = ImageMountOptions::default();
        for option in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let refuse = |reason: &str| QuotaError::BadValue {
                key: "MOUNT_OPTS",
                value: option.to_owned(),
                reason: reason.to_owned(),
            };
            if let Some((_, flag)) = FLAGS.iter().find(|(name, _)| *name == option) {
                options.flags |= *flag;
                continue;
            }
            if PLAIN.contains(&option) {
                options.data.push(option.to_owned());
                continue;
            }
            let (name, arg) = option.split_once('=').unwrap_or((option, ""));
            match VALUED.iter().find(|(n, _)| *n == name) {
                Some((_, Some(allowed))) if allowed.contains(&arg) => {}
                Some((_, Some(allowed))) => {
                    return Err(refuse(&format!("allowed: {name}={}", allowed.join("|"))));
                }
                Some((_, None)) if !arg.is_empty() && arg.parse::<u32>().is_ok() => {}
                Some((_, None)) => return Err(refuse(&format!("expected {name}=NUMBER"))),
                None if ["usrquota", "grpquota", "prjquota", "quota", "noquota"]
                    .contains(&name) =>
                {
                    return Err(refuse("vz sets the quota options itself"));
                }
                None if name.starts_with("journal_") || name == "sb" => {
                    return Err(refuse("it reaches beyond the container's image"));
                }
                None => return Err(refuse("not an option vz lets a container's image use")),
            }
            options.data.push(option.to_owned());
        }
        Ok(options)
    }

    /// The options as given, normalised (flags first).
    pub fn to_config(&self) -> String {
        let flags = FLAGS.iter().filter(|(_, f)| self.flags.contains(*f)).map(|(n, _)| *n);
        flags.chain(self.data.iter().map(String::as_str)).collect::<Vec<_>>().join(",")
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty() && self.data.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_options_pass_and_keep_their_order() {
        let o = ImageMountOptions::parse("noatime, data=writeback,commit=30,nobarrier").unwrap();
        assert_eq!(o.flags, MsFlags::MS_NOATIME);
        assert_eq!(o.data, ["data=writeback", "commit=30", "nobarrier"]);
        assert_eq!(o.to_config(), "noatime,data=writeback,commit=30,nobarrier");
        assert!(ImageMountOptions::parse("").unwrap().is_empty());
    }

    #[test]
    fn options_reaching_the_host_or_owned_by_vz_are_refused() {
        for bad in [
            "errors=panic",
            "journal_path=/etc/shadow",
            "journal_dev=0x801",
            "usrquota",
            "prjquota",
            "debug",
            "commit=soon",
            "data=bogus",
            "sb=1",
            "test_dummy_encryption",
        ] {
            let e = ImageMountOptions::parse(&format!("noatime,{bad}")).unwrap_err();
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
    }
}
