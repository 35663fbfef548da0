//! Settings shared by dump and restore, and the typed forms of CRIU's `--external` and
//! `--cgroup-root` entries.

use std::path::PathBuf;

use crate::rpc::Opts;
use rust_criu::rust_criu_protobuf::rpc;

/// How CRIU locks the VE's network while it is dumped and restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkLock {
    /// The system's iptables run in the VE's network namespace (CRIU's default; needs the
    /// iptables tools).
    #[default]
    Iptables,
    /// CRIU's own nftables library.
    Nftables,
    /// No lock (only for tests of a network nobody talks to).
    Skip,
    /// CRIU neither locks nor unlocks: the caller does, for less frozen time. Lifting an
    /// iptables lock waits for a grace period of the kernel (35–55 ms here), which CRIU pays
    /// at the end of a dump that leaves the VE running (a migration's) and again at the
    /// end of every restore. vz locks a dump's network with [`LOCK_RULES`] itself (kept
    /// until the VE is killed, or lifted when it resumes on the source), and restores with
    /// the VE's host ends unconfigured until [`crate::RestoreStage::NetworkUnlock`]: no
    /// packet reaches the VE before its sockets are whole. A restore removes the lock's
    /// rules from the dumped iptables, whoever locked.
    Caller,
}

/// CRIU's network lock, for `iptables-restore --noflush` (and `ip6tables-restore`) in the
/// VE's network namespace: every packet in or out dropped but those CRIU's TCP repair marks.
pub const LOCK_RULES: &str = "*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n\
                              -A CRIU -m mark --mark 0xc114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n";

/// Options of every CRIU request vz-cpt makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriuOptions {
    /// The largest open but deleted file CRIU saves whole (CRIU's default is 1 MiB, which a
    /// VE's deleted logs exceed); bytes.
    pub ghost_limit: u32,
    /// The network lock.
    pub network_lock: NetworkLock,
    /// CRIU's log level, 0–4 (4 for everything).
    pub log_level: i32,
    /// Save and restore established TCP connections (`--tcp-established`).
    pub tcp_established: bool,
    /// Save and restore file locks (`--file-locks`).
    pub file_locks: bool,
    /// Dump: send the memory pages to this page server (`--page-server --address --port`)
    /// instead of the images directory; with `lazy_pages`, where the dump itself serves them.
    pub page_server: Option<PageServer>,
    /// Post-copy (`--lazy-pages`). Dump: the pages stay with the frozen tasks and the dump
    /// serves them from `page_server` until a `criu lazy-pages` daemon has taken them all;
    /// restore: the tasks run at once and take their pages from that daemon on demand.
    pub lazy_pages: bool,
    /// Iterative pre-copy: the last pre-dump's images directory, relative to this dump's
    /// (`--prev-images-dir`); the dump writes only the pages changed since (soft-dirty
    /// tracking on) and a restore follows the `parent` link CRIU makes. See
    /// [`crate::pre_dump`].
    pub parent_images: Option<String>,
}

/// A CRIU page server's TCP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageServer {
    /// The address (an IP address or a host name).
    pub address: String,
    /// The port.
    pub port: u16,
}

impl Default for CriuOptions {
    fn default() -> Self {
        CriuOptions {
            ghost_limit: 64 << 20,
            network_lock: NetworkLock::Iptables,
            log_level: 4,
            tcp_established: true,
            file_locks: true,
            page_server: None,
            lazy_pages: false,
            parent_images: None,
        }
    }
}

impl CriuOptions {
    pub(crate) fn fill(&self, opts: &mut Opts) {
        opts.set_ghost_limit(self.ghost_limit);
        opts.set_network_lock(match self.network_lock {
            NetworkLock::Iptables => rpc::Criu_network_lock_method::IPTABLES,
            NetworkLock::Nftables => rpc::Criu_network_lock_method::NFTABLES,
            NetworkLock::Skip | NetworkLock::Caller => rpc::Criu_network_lock_method::SKIP,
        });
        opts.set_log_level(self.log_level);
        opts.set_tcp_established(self.tcp_established);
        opts.set_file_locks(self.file_locks);
        opts.set_manage_cgroups(true);
        if let Some(ps) = &self.page_server {
            let mut info = rpc::Criu_page_server_info::new();
            info.set_address(ps.address.clone());
            info.set_port(i32::from(ps.port));
            opts.ps = protobuf::MessageField::some(info);
        }
        if self.lazy_pages {
            opts.set_lazy_pages(true);
        }
        if let Some(parent) = &self.parent_images {
            opts.set_parent_img(parent.clone());
            opts.set_track_mem(true);
        }
    }
}

/// A mount of the VE whose source is outside it (a host bind mount): CRIU saves it as a
/// key at dump and binds the restore's host path there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalMount {
    /// The mount point inside the VE (dump) — e.g. `/mnt/host`.
    pub inside: PathBuf,
    /// The key the images use for it.
    pub key: String,
    /// The host directory or file to bind at restore.
    pub host: PathBuf,
}

impl ExternalMount {
    pub(crate) fn dump_entry(&self) -> String {
        format!("mnt[{}]:{}", self.inside.display(), self.key)
    }

    pub(crate) fn restore_entry(&self) -> String {
        format!("mnt[{}]:{}", self.key, self.host.display())
    }
}

/// A veth of the VE whose peer lives outside it (vz's venet/veth host ends). CRIU records it
/// at dump with nothing asked; at restore it makes the pair again, `inside` in the VE with
/// its addresses and routes, `outside` in the restoring process's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalVeth {
    /// The device name inside the VE (`venet0`, `eth0`).
    pub inside: String,
    /// The host end's name (`venet101`, `veth101.0`).
    pub outside: String,
    /// A bridge the host end joins, for bridged veth.
    pub bridge: Option<String>,
}

impl ExternalVeth {
    pub(crate) fn entry(&self) -> String {
        match &self.bridge {
            Some(br) => format!("veth[{}]:{}@{br}", self.inside, self.outside),
            None => format!("veth[{}]:{}", self.inside, self.outside),
        }
    }
}

/// Where the VE's cgroups go at restore when they differ from the dumped ones
/// (`--cgroup-root [CTRL:]PATH`), e.g. another `VE_CGROUP_PARENT` after a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoot {
    /// The controller (`memory`, `name=systemd`), or `None` for every one.
    pub controller: Option<String>,
    /// The cgroup path below the hierarchy's root, e.g. `/vz/101`.
    pub path: String,
}

/// How CRIU treats the VE's cgroups at restore (`--manage-cgroups=MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupMode {
    /// Make missing cgroups with their saved properties, reuse existing ones as they are.
    /// vz's choice: the caller makes and configures the VE's cgroup from CTID.conf first,
    /// or leaves it absent for CRIU to make (criu-vz.md §5).
    #[default]
    Soft,
    /// Also write properties into existing cgroups (never the devices allowlist).
    Full,
    /// Refuse to restore into existing cgroups.
    Strict,
}

impl CgroupMode {
    pub(crate) fn rpc(self) -> rpc::Criu_cg_mode {
        match self {
            CgroupMode::Soft => rpc::Criu_cg_mode::SOFT,
            CgroupMode::Full => rpc::Criu_cg_mode::FULL,
            CgroupMode::Strict => rpc::Criu_cg_mode::STRICT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_entries_have_criu_syntax() {
        let veth =
            ExternalVeth { inside: "venet0".into(), outside: "venet101".into(), bridge: None };
        assert_eq!(veth.entry(), "veth[venet0]:venet101");
        let veth = ExternalVeth { bridge: Some("br0".into()), ..veth };
        assert_eq!(veth.entry(), "veth[venet0]:venet101@br0");
        let m = ExternalMount {
            inside: "/mnt/host".into(),
            key: "hostdata".into(),
            host: "/srv/data".into(),
        };
        assert_eq!(m.dump_entry(), "mnt[/mnt/host]:hostdata");
        assert_eq!(m.restore_entry(), "mnt[hostdata]:/srv/data");
    }
}
