//! The VE's device allowlist: [`DeviceRule`] in OpenVZ's `DEVICES` form, the default rules
//! matching the minimal /dev, and their application to a cgroup v1 `devices` controller.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use vz_cgroup::knob;

use crate::error::{NsError, Result};

/// Which devices a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceKind {
    /// Block devices (`b`).
    Block,
    /// Character devices (`c`).
    Char,
    /// All devices (`a`).
    All,
}

/// One entry of the device allowlist: `c:10:200:rw` in OpenVZ's `DEVICES` form.
///
/// Access letters: `r` read, `w` write, `m` mknod, and OpenVZ's `q` (quota management, kept
/// for round trips but meaningless to cgroups); `none` is the empty access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceRule {
    /// Block, char or all.
    pub kind: DeviceKind,
    /// Major number, `None` for all.
    pub major: Option<u32>,
    /// Minor number, `None` for all.
    pub minor: Option<u32>,
    /// Read access.
    pub read: bool,
    /// Write access.
    pub write: bool,
    /// mknod access.
    pub mknod: bool,
    /// OpenVZ's quota-management bit (`q`).
    pub quota: bool,
}

/// The device of the VE's root file system, as a node in the VE's /dev. OpenVZ gives a VE its
/// root device with only the `q` (quota) access: the quota tools find a file system's device
/// by the name /proc/mounts shows, and quotactl only looks the path up. Nothing in the VE can
/// open it: the allowlist entry ([`Self::rule`]) allows init's mknod and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaDevice {
    /// The node's name under /dev, e.g. `loop3` (no `/`).
    pub name: String,
    /// Block device major number.
    pub major: u32,
    /// Block device minor number.
    pub minor: u32,
}

impl QuotaDevice {
    /// The allowlist entry for the node: `b:<major>:<minor>:mq`.
    pub fn rule(&self) -> DeviceRule {
        DeviceRule {
            kind: DeviceKind::Block,
            ..DeviceRule::char(self.major, Some(self.minor), "mq")
        }
    }

    /// Whether `name` is a plain file name (the node must land in /dev itself).
    pub(crate) fn has_plain_name(&self) -> bool {
        !self.name.is_empty() && !self.name.contains('/') && !self.name.starts_with('.')
    }
}

impl DeviceRule {
    /// A char-device rule with the access letters `access` (`"rwm"`, `"m"` …).
    pub fn char(major: u32, minor: Option<u32>, access: &str) -> Self {
        DeviceRule {
            kind: DeviceKind::Char,
            major: Some(major),
            minor,
            read: access.contains('r'),
            write: access.contains('w'),
            mknod: access.contains('m'),
            quota: access.contains('q'),
        }
    }

    /// The access letters in cgroup order (`rwm` subset), empty when none.
    pub fn access(&self) -> String {
        [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, c)| *c)
            .collect()
    }

    /// The rule as a cgroup v1 `devices.allow` line: `c 10:200 rw`, `a *:* rwm`.
    pub fn to_cgroup_v1(&self) -> String {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        let kind = match self.kind {
            DeviceKind::Block => 'b',
            DeviceKind::Char => 'c',
            DeviceKind::All => 'a',
        };
        format!("{kind} {}:{} {}", num(self.major), num(self.minor), self.access())
    }
}

impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: Option<u32>| n.map_or_else(|| "all".to_owned(), |n| n.to_string());
        let kind = match self.kind {
            DeviceKind::Block => 'b',
            DeviceKind::Char => 'c',
            DeviceKind::All => 'a',
        };
        let mut access = self.access();
        if self.quota {
            access.push('q');
        }
        if access.is_empty() {
            access.push_str("none");
        }
        write!(f, "{kind}:{}:{}:{access}", num(self.major), num(self.minor))
    }
}

impl FromStr for DeviceRule {
    type Err = NsError;

    fn from_str(s: &str) -> Result<Self> {
        let bad =
            |reason: &str| NsError::BadDeviceRule { rule: s.to_owned(), reason: reason.into() };
        let parts: Vec<&str> = s.trim().split(':').collect();
        let [kind, major, minor, access] = parts[..] else {
            return Err(bad("expected b|c|a:major|all:minor|all:perms"));
        };
        let kind = match kind {
            "b" => DeviceKind::Block,
            "c" => DeviceKind::Char,
            "a" => DeviceKind::All,
            _ => return Err(bad("device type must be b, c or a")),
        };
        let number = |text: &str, what: &str| -> Result<Option<u32>> {
            match text {
                "all" | "*" => Ok(None),
                _ => text.parse().map(Some).map_err(|_| bad(&format!("bad {what} {text:?}"))),
            }
        };
        let major = number(major, "major")?;
        let minor = number(minor, "minor")?;
        if kind == DeviceKind::All && (major.is_some() || minor.is_some()) {
            return Err(bad("type a covers all devices: major and minor must be all"));
        }
        if access != "none" && (access.is_empty() || !access.chars().all(|c| "rwmq".contains(c))) {
            return Err(bad("perms must be letters of rwmq, or none"));
        }
        Ok(DeviceRule {
            kind,
            major,
            minor,
            read: access.contains('r'),
            write: access.contains('w'),
            mknod: access.contains('m'),
            quota: access.contains('q'),
        })
    }
}

/// The allowlist for the minimal /dev the VE's init builds: null, zero, full, random,
/// urandom, tty, ptmx and /dev/pts/* with `rwm`; console (5:1) with `m` only, so its node can
/// be made but opening it fails (a VE has no console device of the host).
pub fn default_device_rules() -> Vec<DeviceRule> {
    vec![
        DeviceRule::char(1, Some(3), "rwm"),
        DeviceRule::char(1, Some(5), "rwm"),
        DeviceRule::char(1, Some(7), "rwm"),
        DeviceRule::char(1, Some(8), "rwm"),
        DeviceRule::char(1, Some(9), "rwm"),
        DeviceRule::char(5, Some(0), "rwm"),
        DeviceRule::char(5, Some(1), "m"),
        DeviceRule::char(5, Some(2), "rwm"),
        DeviceRule::char(136, None, "rwm"),
    ]
}

/// Restricts a cgroup v1 `devices` directory to `rules`: writes `a` to `devices.deny`, then
/// each rule with some access to `devices.allow`.
///
/// # Errors
/// [`NsError::Cgroup`] naming the file and the rule the kernel refused (e.g. a rule the
/// parent cgroup does not allow).
pub fn apply_device_rules_v1(devices_cgroup_dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    knob::write(&devices_cgroup_dir.join("devices.deny"), "a")?;
    let allow = devices_cgroup_dir.join("devices.allow");
    for rule in rules.iter().filter(|r| !r.access().is_empty()) {
        knob::write(&allow, &rule.to_cgroup_v1())?;
    }
    tracing::debug!(dir = %devices_cgroup_dir.display(), rules = rules.len(), "device allowlist applied");
    Ok(())
}

/// Changes entries of a cgroup v1 `devices` allowlist in place, for a running VE: each
/// rule's device first loses every access (`devices.deny`), then gets the rule's
/// (`devices.allow`; nothing for `none`). Other entries stay as they are.
///
/// # Errors
/// [`NsError::Cgroup`] naming the file and the rule the kernel refused.
pub fn update_device_rules_v1(devices_cgroup_dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    for rule in rules {
        let everything = DeviceRule { read: true, write: true, mknod: true, ..*rule };
        for (file, line) in [
            ("devices.deny", Some(everything.to_cgroup_v1())),
            ("devices.allow", (!rule.access().is_empty()).then(|| rule.to_cgroup_v1())),
        ] {
            let Some(line) = line else { continue };
            knob::write(&devices_cgroup_dir.join(file), &line)?;
        }
    }
    tracing::debug!(dir = %devices_cgroup_dir.display(), rules = rules.len(), "device allowlist updated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_device_may_be_made_and_not_opened() {
        let device = QuotaDevice { name: "loop3".into(), major: 7, minor: 3 };
        assert_eq!(device.rule().to_cgroup_v1(), "b 7:3 m");
        assert!(device.has_plain_name());
        for bad in ["", "../sda", "mapper/x", ".hidden"] {
            assert!(!QuotaDevice { name: bad.into(), ..device.clone() }.has_plain_name(), "{bad}");
        }
    }

    #[test]
    fn openvz_form_round_trips() {
        for text in [
            "c:10:200:rw",
            "b:8:all:r",
            "c:136:all:rwm",
            "a:all:all:rwm",
            "c:1:3:none",
            "b:7:0:rwq",
        ] {
            let rule: DeviceRule = text.parse().expect(text);
            assert_eq!(rule.to_string(), text);
        }
    }

    #[test]
    fn cgroup_form() {
        let rule: DeviceRule = "c:136:all:rw".parse().expect("valid");
        assert_eq!(rule.to_cgroup_v1(), "c 136:* rw");
        let all: DeviceRule = "a:all:all:rwm".parse().expect("valid");
        assert_eq!(all.to_cgroup_v1(), "a *:* rwm");
    }

    #[test]
    fn bad_rules_name_themselves() {
        for text in ["x:1:2:r", "c:1:2", "c:one:2:r", "c:1:2:rx", "a:1:all:r", "c:1:2:"] {
            let err = text.parse::<DeviceRule>().expect_err(text);
            assert!(err.to_string().contains(text), "{err}");
        }
    }

    #[test]
    fn defaults_cover_the_minimal_dev_and_not_console_access() {
        let rules = default_device_rules();
        let lines: Vec<String> = rules.iter().map(DeviceRule::to_cgroup_v1).collect();
        for want in ["c 1:3 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm", "c 5:1 m"] {
            assert!(lines.iter().any(|l| l == want), "{want} in {lines:?}");
        }
    }
}
