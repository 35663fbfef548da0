//! Settings vz-ctl applies to a VE — hostname, DNS, passwords — in the role of OpenVZ's
//! distribution scripts (reference §7.3).
//!
//! Hostname and DNS are files the host writes itself ([`VeFiles`]: /etc/hostname,
//! /etc/hosts, /etc/resolv.conf, and the boot fifo), without running anything in the VE;
//! the kernel hostname of a running VE is set by vz-ns ([`vz_ns::set_hostname`]).
//! Passwords need the VE's own tools (chpasswd, mkpasswd): they stay small shell snippets
//! run by the VE's `/bin/sh` ([`Snippets`]), their values in environment variables, never
//! spliced into the script.

use crate::error::Result;
use crate::scripts::run_snippet;
use crate::ve::Ve;

mod files;
pub use files::{VeFiles, hosts_text, resolv_text};

/// Sets passwords (`user:password` pairs, one per line), adding missing users. Uses the
/// VE's chpasswd/useradd when it has them, else busybox's mkpasswd and plain file edits.
const SET_USERPASS: &str = r##"
echo "$USERPW" | while IFS=: read -r user pass; do
  if ! grep -q "^$user:" /etc/passwd; then
    if command -v useradd >/dev/null; then useradd -m "$user" || exit 1
    elif command -v adduser >/dev/null; then adduser -D "$user" || exit 1
    else
      uid=$(awk -F: 'BEGIN { m = 999 } $3 > m && $3 < 60000 { m = $3 } END { print m + 1 }' /etc/passwd)
      echo "$user:x:$uid:$uid::/home/$user:/bin/sh" >> /etc/passwd
      echo "$user:x:$uid:" >> /etc/group
      mkdir -p "/home/$user" && chown "$uid:$uid" "/home/$user"
    fi
  fi
  if command -v chpasswd >/dev/null; then
    echo "$user:$pass" | chpasswd || exit 1
  else
    hash=$(printf '%s\n' "$pass" | mkpasswd -m sha512) || exit 1
    grep -q "^$user:" /etc/shadow || echo "$user:*:0:0:99999:7:::" >> /etc/shadow
    awk -F: -v OFS=: -v u="$user" -v h="$hash" '$1 == u { $2 = h } { print }' /etc/shadow > /etc/shadow.vz &&
      cat /etc/shadow.vz > /etc/shadow && rm -f /etc/shadow.vz || exit 1
  fi
done
"##;

/// In-VE setup steps gathered to run in one shell: one entry into the VE for all of them
/// instead of one each (each entry is a fork, seven setns and an exec).
#[derive(Debug, Default)]
pub struct Snippets {
    script: String,
    vars: Vec<(&'static str, String)>,
    steps: Vec<&'static str>,
}

impl Snippets {
    /// No steps yet.
    pub fn new() -> Snippets {
        Snippets::default()
    }

    /// Adds a step: `script` runs in a subshell; its failure stops the rest.
    pub fn step(&mut self, what: &'static str, script: &str, vars: Vec<(&'static str, String)>) {
        self.script.push_str(&format!(
            "(\n{script}\n) || {{ echo \"vz: {what} failed\" >&2; exit 1; }}\n"
        ));
        self.vars.extend(vars);
        self.steps.push(what);
    }

    /// Whether no step was added.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Sets passwords of users inside the VE (`user:password` pairs).
    pub fn userpasswd(&mut self, pairs: &[String]) {
        self.step("setting passwords", SET_USERPASS, vec![("USERPW", pairs.join("\n"))]);
    }

    /// Runs the steps in the VE whose init is `init_pid` (nothing when there are none).
    ///
    /// # Errors
    /// [`crate::CtlError::Exec`] naming the steps when the shell fails.
    pub fn run(self, ve: &Ve, init_pid: i32) -> Result<()> {
        if self.steps.is_empty() {
            return Ok(());
        }
        run_snippet(ve, init_pid, &self.steps.join(", "), &self.script, &self.vars)
    }
}

/// Resolves `inherit` in a NAMESERVER/SEARCHDOMAIN list from the host's resolv.conf.
pub fn resolve_inherit(values: &[String], host_key: &str) -> Vec<String> {
    if values.iter().all(|v| v != "inherit") {
        return values.to_vec();
    }
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    host.lines()
        .filter_map(|line| line.strip_prefix(host_key))
        .filter(|rest| rest.starts_with([' ', '\t']))
        .flat_map(|rest| rest.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_lists_are_kept() {
        let list = vec!["10.0.0.1".to_owned()];
        assert_eq!(resolve_inherit(&list, "nameserver"), list);
    }
}
