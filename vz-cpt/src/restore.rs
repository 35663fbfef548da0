//! Restoring a VE from an images directory, with the caller's hook at CRIU's stages (where
//! vz sets up the host ends of the VE's network).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dump::criu_message;
use crate::error::{CptError, Result};
use crate::options::{CgroupMode, CgroupRoot, CriuOptions, ExternalMount, ExternalVeth};
use crate::rpc::{Criu, Notify, Opts, ReqType};
use rust_criu::rust_criu_protobuf::rpc;

/// CRIU's log of a restore, in the images directory.
pub const RESTORE_LOG: &str = "restore.log";

/// Everything [`restore`] needs to know; the caller (vz-ctl) knows it.
#[derive(Debug, Clone)]
pub struct RestoreSpec {
    /// The images of a [`crate::dump`].
    pub images_dir: PathBuf,
    /// The VE's root as its processes must see it: VE_ROOT mounted, or for a VE in a user
    /// namespace a host-side idmapped mount of the private area with the VE's map (CRIU
    /// does not record idmaps).
    pub root: PathBuf,
    /// Veths whose host end CRIU makes again in the caller's network namespace. The host
    /// end comes back down with a random MAC and no routes: the hook configures it.
    pub veths: Vec<ExternalVeth>,
    /// Host bind mounts inside the VE, by their dump keys.
    pub external_mounts: Vec<ExternalMount>,
    /// More `--external` entries in CRIU's syntax.
    pub external: Vec<String>,
    /// Where the VE's cgroups go when not where they were dumped.
    pub cgroup_roots: Vec<CgroupRoot>,
    /// How existing cgroups are treated.
    pub cgroup_mode: CgroupMode,
    /// A file to write the restored init's host pid to (absolute path).
    pub pidfile: Option<PathBuf>,
    /// Make the restored init a child of the caller (CRIU's `rst_sibling`), so the caller
    /// can reap it; otherwise it is a child of CRIU and is reparented when CRIU exits
    /// (`--restore-detached`).
    pub child_of_caller: bool,
    /// Files the VE's processes had open whose other end is outside the VE (CRIU's
    /// `--inherit-fd`), e.g. the slave of its console pty, dumped as an external tty.
    pub inherit_fds: Vec<InheritFd>,
    /// CRIU's options.
    pub options: CriuOptions,
}

/// A file the restore gives CRIU for a resource the dump marked external (`--inherit-fd
/// fd[N]:KEY`).
#[derive(Debug, Clone)]
pub struct InheritFd {
    /// The external resource's key in the images, e.g. `tty[8800:1d]` (CRIU's syntax).
    pub key: String,
    /// The file the restored processes get in its place.
    pub fd: Arc<OwnedFd>,
}

/// A stage of a restore at which CRIU calls the hook (the names of its action scripts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreStage {
    /// `pre-restore`: nothing exists yet.
    PreRestore,
    /// `setup-namespaces`: the namespaces exist; the VE's network devices do not yet.
    SetupNamespaces,
    /// `post-setup-namespaces`: both ends of every external veth exist (the host ends may be
    /// configured from here on: MAC from the inside end, NOARP, up, routes).
    PostSetupNamespaces,
    /// `post-restore`: every task is restored, still stopped.
    PostRestore,
    /// `network-unlock`: the network lock is being lifted; every socket is whole. With
    /// [`crate::NetworkLock::Caller`], the host ends are configured here.
    NetworkUnlock,
    /// `pre-resume`: the tasks are about to run.
    PreResume,
    /// `post-resume`: the tasks run.
    PostResume,
    /// A stage this crate does not know.
    Other(String),
}

impl RestoreStage {
    fn from_script(script: &str) -> Self {
        match script {
            "pre-restore" => RestoreStage::PreRestore,
            "setup-namespaces" => RestoreStage::SetupNamespaces,
            "post-setup-namespaces" => RestoreStage::PostSetupNamespaces,
            "post-restore" => RestoreStage::PostRestore,
            "network-unlock" => RestoreStage::NetworkUnlock,
            "pre-resume" => RestoreStage::PreResume,
            "post-resume" => RestoreStage::PostResume,
            other => RestoreStage::Other(other.to_owned()),
        }
    }
}

/// What the hook is told at each stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    /// The stage.
    pub stage: RestoreStage,
    /// Host pid of the restored init, once known (`setup-namespaces` on), else 0.
    pub init_pid: i32,
}

/// What a successful [`restore`] did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// Host pid of the restored init.
    pub init_pid: i32,
    /// Wall time of the CRIU request.
    pub elapsed: Duration,
    /// CRIU's log of the restore.
    pub log: PathBuf,
}

/// Restores the VE of `spec.images_dir` with CRIU. Run it in the network namespace where
/// the VE's host ends belong. `hook` is called at each [`RestoreStage`]; an error from it
/// aborts the restore. The images are left as they are (except that routes dumped
/// `linkdown`, which `ip route restore` rejects, are cleared of that flag first, and vz's
/// sysinfo rule in the dumped seccomp filters allows the call, as CRIU restores no
/// listener, see `seccomp_image.rs`).
///
/// # Errors
/// [`CptError::BadSpec`] when the images or the root are missing;
/// [`CptError::CriuFailed`] or [`CptError::Hook`] naming CRIU's log (the VE is not running
/// then, and the images are intact); [`CptError::Io`] writing the pidfile.
///
/// # Privileges
/// Root in the initial namespaces.
pub fn restore(
    criu: &Criu,
    spec: &RestoreSpec,
    hook: &mut dyn FnMut(&HookEvent) -> std::result::Result<(), String>,
) -> Result<Restored> {
    let dir = &spec.images_dir;
    if !dir.join("inventory.img").is_file() {
        return Err(CptError::BadSpec {
            field: "images_dir",
            reason: format!("{} holds no dump", dir.display()),
        });
    }
    if !spec.root.is_dir() {
        return Err(CptError::BadSpec {
            field: "root",
            reason: format!("{} is not a directory", spec.root.display()),
        });
    }
    if let Some(p) = spec.pidfile.as_ref().filter(|p| !p.is_absolute()) {
        return Err(CptError::BadSpec {
            field: "pidfile",
            reason: format!("{} is not absolute", p.display()),
        });
    }
    let fixed = strip_linkdown(dir)?;
    if fixed > 0 {
        tracing::info!(routes = fixed, "cleared linkdown from dumped routes");
    }
    if strip_network_lock(dir)? > 0 {
        tracing::info!("removed a dump's network lock from the dumped iptables");
    }
    if crate::seccomp_image::allow_sysinfo(dir)? > 0 {
        tracing::warn!(
            "Warning: the restored processes of the container see the host's sysinfo (free, \
             uptime) until it restarts; programs started in it from now on see its own"
        );
    }
    let images = File::open(dir).map_err(|e| CptError::io("open", dir, e))?;
    let mut opts = Opts::new();
    opts.set_images_dir_fd(images.as_raw_fd());
    opts.set_log_file(RESTORE_LOG.to_owned());
    opts.set_root(spec.root.to_string_lossy().into_owned());
    opts.set_notify_scripts(true);
    opts.set_rst_sibling(spec.child_of_caller);
    spec.options.fill(&mut opts);
    opts.set_manage_cgroups_mode(spec.cgroup_mode.rpc());
    opts.external.extend(spec.veths.iter().map(ExternalVeth::entry));
    opts.external.extend(spec.external_mounts.iter().map(ExternalMount::restore_entry));
    opts.external.extend(spec.external.iter().cloned());
    // CRIU (swrk, our child) uses the numbers in its own fd table: copies without
    // close-on-exec, alive until it has answered.
    let mut inherited = Vec::with_capacity(spec.inherit_fds.len());
    for file in &spec.inherit_fds {
        let copy = nix::unistd::dup(file.fd.as_ref())
            .map_err(|e| CptError::sys("dup a file for CRIU's inherit-fd", e))?;
        let mut entry = rpc::Inherit_fd::new();
        entry.set_key(file.key.clone());
        entry.set_fd(copy.as_raw_fd());
        opts.inherit_fd.push(entry);
        inherited.push(copy);
    }
    for root in &spec.cgroup_roots {
        let mut r = rpc::Cgroup_root::new();
        if let Some(ctrl) = &root.controller {
            r.set_ctrl(ctrl.clone());
        }
        r.set_path(root.path.clone());
        opts.cg_root.push(r);
    }
    let mut init_pid = 0;
    let mut on_notify = |n: &Notify| {
        if n.pid > 0 {
            init_pid = n.pid;
        }
        hook(&HookEvent { stage: RestoreStage::from_script(&n.script), init_pid })
    };
    let start = Instant::now();
    let resp = criu.call(ReqType::RESTORE, Some(opts), &mut on_notify);
    drop(inherited);
    let elapsed = start.elapsed();
    let log = dir.join(RESTORE_LOG);
    let resp = match resp {
        Ok(r) => r,
        Err(CptError::Hook { stage, message, .. }) => {
            return Err(CptError::Hook { stage, message, log });
        }
        Err(e) => return Err(e),
    };
    if !resp.success() {
        let message = criu_message(&log, resp.cr_errmsg(), resp.cr_errno());
        return Err(CptError::CriuFailed { what: "restore", message, log });
    }
    let pid = resp.restore.as_ref().map_or(init_pid, |r| r.pid());
    if let Some(pidfile) = &spec.pidfile {
        std::fs::write(pidfile, format!("{pid}\n"))
            .map_err(|e| CptError::io("write pidfile", pidfile, e))?;
    }
    tracing::info!(pid, ms = elapsed.as_millis(), "restored");
    Ok(Restored { init_pid: pid, elapsed, log })
}

/// Removes the network lock's rules ([`crate::LOCK_RULES`]: the `CRIU` chain and the jumps to
/// it) from the dumped tables, where a dump under the lock saved them with the VE's own:
/// `iptables-*.img`, `ip6tables-*.img` (`iptables-save` text: the legacy tables when the
/// host's iptables has the nft backend) and `nftables-*.img` (`nft list ruleset` text: the
/// nft backend's, the lock's among them). Every other rule stays. Returns how many images
/// it changed.
fn strip_network_lock(dir: &Path) -> Result<usize> {
    let entries = std::fs::read_dir(dir).map_err(|e| CptError::io("list", dir, e))?;
    let mut fixed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let strip: fn(&str) -> Option<String> =
            if name.starts_with("iptables-") || name.starts_with("ip6tables-") {
                without_lock
            } else if name.starts_with("nftables-") {
                without_nft_lock
            } else {
                continue;
            };
        if !name.ends_with(".img") {
            continue;
        }
        let path = entry.path();
        let bytes = std::fs::read(&path).map_err(|e| CptError::io("read", &path, e))?;
        let Ok(text) = String::from_utf8(bytes) else { continue };
        if let Some(kept) = strip(&text) {
            std::fs::write(&path, kept).map_err(|e| CptError::io("write", &path, e))?;
            fixed += 1;
        }
    }
    Ok(fixed)
}

/// `text` (an `iptables-save` output) without the lock's lines, if it had any.
fn without_lock(text: &str) -> Option<String> {
    let is_lock = |line: &str| {
        let line = line.trim_end();
        line.starts_with(":CRIU ")
            || line.starts_with("-A CRIU ")
            || line == "-A INPUT -j CRIU"
            || line == "-A OUTPUT -j CRIU"
    };
    if !text.lines().any(is_lock) {
        return None;
    }
    let mut kept = String::with_capacity(text.len());
    for line in text.lines().filter(|l| !is_lock(l)) {
        kept.push_str(line);
        kept.push('\n');
    }
    Some(kept)
}

/// `text` (an `nft list ruleset` output) without the lock's chain `CRIU` (of any table) and
/// the rules that jump to it, if it had any.
fn without_nft_lock(text: &str) -> Option<String> {
    let mut kept = String::with_capacity(text.len());
    let mut changed = false;
    // Inside the lock's chain: the depth of braces still open in it.
    let mut skipping = 0usize;
    for line in text.lines() {
        let trimmed = line.trim();
        if skipping > 0 {
            skipping += trimmed.matches('{').count();
            skipping -= trimmed.matches('}').count().min(skipping);
            continue;
        }
        if trimmed == "chain CRIU {" {
            changed = true;
            skipping = 1;
            continue;
        }
        if trimmed.ends_with(" jump CRIU") || trimmed == "jump CRIU" {
            changed = true;
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    changed.then_some(kept)
}

/// Clears `RTNH_F_DEAD|RTNH_F_LINKDOWN` from the routes in `route-*.img`/`route6-*.img`
/// (an `ip route save` stream: a 4-byte magic, then netlink messages; `rtm_flags` of an
/// `RTM_NEWROUTE` at +24). Returns how many routes it changed.
fn strip_linkdown(dir: &Path) -> Result<usize> {
    const RTM_NEWROUTE: u16 = 24;
    const FLAGS: u32 = 0x01 | 0x10;
    let entries = std::fs::read_dir(dir).map_err(|e| CptError::io("list", dir, e))?;
    let mut fixed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("route-") || name.starts_with("route6-")) || !name.ends_with(".img") {
            continue;
        }
        let path = entry.path();
        let mut bytes = std::fs::read(&path).map_err(|e| CptError::io("read", &path, e))?;
        let changed = clear_route_flags(&mut bytes, RTM_NEWROUTE, FLAGS);
        if changed > 0 {
            std::fs::write(&path, &bytes).map_err(|e| CptError::io("write", &path, e))?;
            fixed += changed;
        }
    }
    Ok(fixed)
}

fn clear_route_flags(b: &mut [u8], msg_type: u16, flags: u32) -> usize {
    let u32_at = |b: &[u8], off: usize| {
        b.get(off..off + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    let mut off = 4;
    let mut changed = 0;
    while off + 16 <= b.len() {
        let Some(len) = u32_at(b, off).map(|l| l as usize) else { break };
        let typ = u16::from_ne_bytes([b[off + 4], b[off + 5]]);
        if len < 16 {
            break;
        }
        if typ == msg_type
            && len >= 28
            && let Some(fl) = u32_at(b, off + 24).filter(|fl| fl & flags != 0)
        {
            b[off + 24..off + 28].copy_from_slice(&(fl & !flags).to_ne_bytes());
            changed += 1;
        }
        off += (len + 3) & !3;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_lock_leaves_the_dumped_iptables_and_the_ves_own_rules_stay() {
        let saved = "# Generated by iptables-nft-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\n\
                     :OUTPUT ACCEPT [0:0]\n:CRIU - [0:0]\n:MINE - [0:0]\n-A INPUT -j CRIU\n\
                     -A INPUT -p tcp --dport 7001 -j DROP\n-A OUTPUT -j CRIU\n\
                     -A CRIU -m mark --mark 0xc114 -j ACCEPT\n-A CRIU -j DROP\n\
                     -A MINE -j CRIUX\nCOMMIT\n";
        let kept = without_lock(saved).expect("the lock is found");
        assert_eq!(
            kept,
            "# Generated by iptables-nft-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\n\
             :OUTPUT ACCEPT [0:0]\n:MINE - [0:0]\n-A INPUT -p tcp --dport 7001 -j DROP\n\
             -A MINE -j CRIUX\nCOMMIT\n"
        );
        assert_eq!(without_lock(&kept), None, "nothing more to remove");
        let listed = "table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority \
                      filter; policy accept;\n\t\tcounter packets 11 bytes 649 jump CRIU\n\
                      \t\ttcp dport 7001 drop\n\t}\n\n\tchain CRIU {\n\t\tmeta mark \
                      0x0000c114 counter packets 0 bytes 0 accept\n\t\tcounter packets 12 \
                      bytes 701 drop\n\t}\n\n\tchain MINE {\n\t\tjump CRIUX\n\t}\n}\n";
        let kept = without_nft_lock(listed).expect("the lock is found");
        assert_eq!(
            kept,
            "table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority filter; \
             policy accept;\n\t\ttcp dport 7001 drop\n\t}\n\n\n\tchain MINE {\n\t\t\
             jump CRIUX\n\t}\n}\n"
        );
        assert_eq!(without_nft_lock(&kept), None, "nothing more to remove");
    }

    fn route_msg(flags: u32) -> Vec<u8> {
        let mut m = vec![0u8; 28];
        m[0..4].copy_from_slice(&28u32.to_ne_bytes());
        m[4..6].copy_from_slice(&24u16.to_ne_bytes());
        m[24..28].copy_from_slice(&flags.to_ne_bytes());
        m
    }

    #[test]
    fn linkdown_is_cleared_and_other_flags_kept() {
        let mut img = vec![0xaa; 4];
        img.extend(route_msg(0x10 | 0x04));
        img.extend(route_msg(0x04));
        assert_eq!(clear_route_flags(&mut img, 24, 0x11), 1);
        assert_eq!(&img[4 + 24..4 + 28], &0x04u32.to_ne_bytes());
        assert_eq!(&img[4 + 28 + 24..4 + 56], &0x04u32.to_ne_bytes());
        assert_eq!(clear_route_flags(&mut img, 24, 0x11), 0);
    }

    #[test]
    fn stages_have_criu_names() {
        assert_eq!(
            RestoreStage::from_script("post-setup-namespaces"),
            RestoreStage::PostSetupNamespaces
        );
        assert_eq!(RestoreStage::from_script("x"), RestoreStage::Other("x".into()));
    }
}
