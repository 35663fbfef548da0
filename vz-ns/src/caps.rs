//! The capability bounding set a VE keeps ([`CapSet`]), OpenVZ's `CAPABILITY` key, and the
//! reduction of a process's capabilities before it execs inside the VE.

use std::fmt;

use crate::error::{NsError, Result};
use crate::sys;

/// Linux capability names by bit number (`include/uapi/linux/capability.h`).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// OpenVZ's default CT mask (reference §2.5) on an upstream kernel, plus NET_ADMIN (the VE
/// owns its network namespace), less SYS_RESOURCE: OpenVZ's kernel enforced numfile,
/// lockedpages and numsiginfo in its beancounters whatever the capabilities; here they are
/// rlimits of the VE's processes, which CAP_SYS_RESOURCE could lift (`CAPABILITY=
/// "SYS_RESOURCE:on"` gives it back). Deliberately absent too: SYS_ADMIN, SYS_MODULE, SYS_RAWIO,
/// SYS_TIME, SYS_PACCT, MKNOD (a VE makes no device nodes at all, which keeps cgroup v2
/// hosts safe where the device allowlist is only a BPF hook), AUDIT_CONTROL, MAC_*, SYSLOG,
/// WAKE_ALARM, BLOCK_SUSPEND, AUDIT_READ, PERFMON, BPF, CHECKPOINT_RESTORE.
const OPENVZ_DEFAULT: [&str; 24] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_TTY_CONFIG",
    "LEASE",
    "AUDIT_WRITE",
    "SETFCAP",
];

/// A set of Linux capabilities: the bounding set a VE's processes keep.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapSet(u64);

impl CapSet {
    /// The empty set.
    pub fn empty() -> Self {
        CapSet(0)
    }

    /// OpenVZ's default VE capability mask (see the module docs for what is left out).
    pub fn openvz_default() -> Self {
        let mut set = CapSet(0);
        for name in OPENVZ_DEFAULT {
            if let Some(bit) = bit_of(name) {
                set.0 |= 1 << bit;
            }
        }
        set
    }

    /// The default of an unprivileged VE: OpenVZ's mask plus SYS_ADMIN. In the VE's own user
    /// namespace SYS_ADMIN reaches only what that namespace owns (mounting the VE's own
    /// tmpfs, cgroup and proc views, as systemd does at boot); every host-global use of it
    /// checks the host's user namespace, where the VE holds nothing.
    pub fn user_namespace_default() -> Self {
        let mut set = Self::openvz_default();
        if let Some(bit) = bit_of("SYS_ADMIN") {
            set.0 |= 1 << bit;
        }
        set
    }

    /// Applies an OpenVZ `CAPABILITY` value such as `"SYS_TIME:on NET_ADMIN:off"` (entries
    /// separated by spaces or commas, names case-insensitive, an optional `CAP_` prefix).
    /// `VE_ADMIN`, OpenVZ's own bit, means NET_ADMIN here (what it granted on OpenVZ).
    ///
    /// # Errors
    /// [`NsError::UnknownCapability`] naming an unknown name, [`NsError::BadCapability`] for an
    /// entry without `:on`/`:off`. On error the set is unchanged.
    pub fn apply_overrides(&mut self, capability_key: &str) -> Result<()> {
        let mut bits = self.0;
        for entry in capability_key.split([' ', '\t', ',']).filter(|e| !e.is_empty()) {
            let bad = || NsError::BadCapability { entry: entry.to_owned() };
            let (name, value) = entry.split_once(':').ok_or_else(bad)?;
            let bit =
                bit_of(name).ok_or_else(|| NsError::UnknownCapability { name: name.to_owned() })?;
            match value.to_ascii_lowercase().as_str() {
                "on" => bits |= 1 << bit,
                "off" => bits &= !(1 << bit),
                _ => return Err(bad()),
            }
        }
        self.0 = bits;
        Ok(())
    }

    /// The names in the set, upper-case, in bit order.
    pub fn names(&self) -> Vec<&'static str> {
        NAMES
            .iter()
            .enumerate()
            .filter(|(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, n)| *n)
            .collect()
    }

    /// Whether the set holds the named capability (case-insensitive, `CAP_` prefix optional).
    pub fn contains(&self, name: &str) -> bool {
        bit_of(name).is_some_and(|bit| self.0 & (1 << bit) != 0)
    }

    /// The set as a bit mask (bit n = capability n), as in `/proc/<pid>/status` `CapBnd`.
    pub fn bits(&self) -> u64 {
        self.0
    }

    /// Reduces the calling process's capabilities so that after exec it has at most this set:
    /// drops every other capability up to `last_cap` from the bounding set (dropping one the
    /// process never had is not an error), clears the inheritable and ambient sets.
    pub(crate) fn restrict_current(&self, last_cap: u32) -> std::result::Result<(), String> {
        for cap in 0..=last_cap.min(63) {
            if self.0 & (1 << cap) == 0 {
                sys::capbset_drop(cap).map_err(|e| format!("drop capability {cap}: {e}"))?;
            }
        }
        sys::clear_inheritable().map_err(|e| format!("clear inheritable capabilities: {e}"))?;
        sys::ambient_clear_all().map_err(|e| format!("clear ambient capabilities: {e}"))
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CapSet").field(&self.names()).finish()
    }
}

impl fmt::Display for CapSet {
    /// The OpenVZ config form of the set: `CHOWN:on DAC_OVERRIDE:on …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.names().iter().map(|n| format!("{n}:on")).collect();
        f.write_str(&parts.join(" "))
    }
}

/// The bit of a capability name, case-insensitive, `CAP_` prefix optional.
pub(crate) fn bit_of(name: &str) -> Option<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    let bare = if bare == "VE_ADMIN" { "NET_ADMIN" } else { bare };
    NAMES.iter().position(|n| *n == bare).and_then(|p| u32::try_from(p).ok())
}

/// The highest capability the running kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub(crate) fn last_cap() -> Result<u32> {
    let path = "/proc/sys/kernel/cap_last_cap";
    let text = std::fs::read_to_string(path).map_err(|e| NsError::io("read", path, e))?;
    text.trim().parse().map_err(|_| {
        NsError::io("parse", path, std::io::Error::other(format!("not a number: {text:?}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_openvz_mask_with_net_admin() {
        let set = CapSet::openvz_default();
        assert_eq!(set.names().len(), 24);
        for cap in ["CHOWN", "NET_ADMIN", "SETFCAP", "AUDIT_WRITE", "SETPCAP"] {
            assert!(set.contains(cap), "{cap}");
        }
        for cap in [
            "SYS_ADMIN",
            "SYS_MODULE",
            "SYS_RAWIO",
            "SYS_TIME",
            "MKNOD",
            "BPF",
            "SYSLOG",
            "SYS_RESOURCE",
        ] {
            assert!(!set.contains(cap), "{cap}");
        }
        // CHOWN(0) … SETFCAP(31); bits 12 (NET_ADMIN) set, 21 (SYS_ADMIN) and 27 (MKNOD) not.
        assert_eq!(set.bits() & (1 << 12), 1 << 12);
        assert_eq!(set.bits() & ((1 << 21) | (1 << 27)), 0);
    }

    #[test]
    fn overrides_switch_caps_case_insensitively() {
        let mut set = CapSet::openvz_default();
        set.apply_overrides("sys_time:on NET_ADMIN:Off,cap_mknod:on").expect("valid");
        assert!(set.contains("SYS_TIME"));
        assert!(set.contains("mknod"));
        assert!(!set.contains("NET_ADMIN"));
        set.apply_overrides("VE_ADMIN:on").expect("valid");
        assert!(set.contains("NET_ADMIN"));
        set.apply_overrides("").expect("empty is no change");
    }

    #[test]
    fn unknown_names_and_bad_entries_are_errors_naming_them() {
        let mut set = CapSet::openvz_default();
        let before = set;
        let err = set.apply_overrides("SYS_TIME:on FLY:on").expect_err("unknown");
        assert!(err.to_string().contains("FLY"), "{err}");
        assert_eq!(set, before, "a failed override changes nothing");
        let err = set.apply_overrides("SYS_TIME").expect_err("no value");
        assert!(err.to_string().contains("SYS_TIME"), "{err}");
        let err = set.apply_overrides("SYS_TIME:maybe").expect_err("bad value");
        assert!(err.to_string().contains("SYS_TIME:maybe"), "{err}");
    }

    #[test]
    fn display_is_the_config_form_and_parses_back() {
        let set = CapSet::openvz_default();
        let mut back = CapSet::empty();
        back.apply_overrides(&set.to_string()).expect("own output parses");
        assert_eq!(back, set);
    }
}
