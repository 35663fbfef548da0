//! Isolation for VEs: namespaces, rootfs and mounts, devices, capabilities, the VE's init,
//! entering a running VE.
//!
//! - [`spawn_init`] / [`PendingInit::release`]: the VE's init as pid 1 of new user, mount,
//!   uts, ipc, net, pid and cgroup namespaces, its root an idmapped mount of VE_ROOT
//!   ([`IdMap`]; a privileged VE without the user namespace only where its config asks),
//!   with its own /proc, read-only /sys, a minimal /dev and devpts, masked /proc and /sys
//!   files and read-only /proc/sys, locked against the VE's root.
//!   Each VE has its own time namespace: its monotonic and boot clocks (uptime) start at zero.
//! - [`set_hostname`]: the hostname of a running VE, set from the host.
//! - [`enter`]: run a program in a running VE, joining its user namespace first (`vzctl
//!   exec` with [`TtyMode::Pipes`], `enter` with [`TtyMode::Pty`]).
//! - [`SeccompPolicy`]: the default system call policy of every VE process.
//! - [`CapSet`]: the bounding set, OpenVZ's default mask and `CAPABILITY` overrides.
//! - [`DeviceRule`], [`default_device_rules`], [`apply_device_rules_v1`]: the allowlist.
//! - [`net`]: VE networking through rtnetlink, routed [`net::Venet`] and bridged [`net::Veth`].
//! - [`SyscallListener`], [`ListenerInbox`]: system calls of a VE's processes the host
//!   answers (quotactl, for the second-level quota tools of a VE's root).
//! - [`Rlimit`]: per-process limits of the VE's init and entered processes; with
//!   [`InitSpec::pty_max`] the beancounter limits only the VE's own namespaces can enforce.
//! - [`ProcView`]: the VE's own /proc/meminfo, cpuinfo, stat, uptime, loadavg, … from a
//!   running lxcfs, bound before the VE's mounts are locked.
//!
//! # Privileges
//! Root with CAP_SYS_ADMIN in the initial namespaces for everything that touches the
//! kernel. The parsers need nothing.
#![deny(unsafe_code)]

mod bpf;
mod caps;
mod devices;
mod devnodes;
mod enter;
mod error;
mod exec;
mod init;
mod intercept;
pub mod net;
mod pty;
mod relay;
mod rlimit;
mod rootfs;
mod seccomp;
mod spawn_wait;
mod sys;
mod sysctl;
mod userns;
mod uts;

pub use bpf::apply_device_rules_v2;
pub use caps::CapSet;
pub use devices::{
    DeviceKind, DeviceRule, QuotaDevice, apply_device_rules_v1, default_device_rules,
    update_device_rules_v1,
};
pub use devnodes::{DevNode, make_dev_nodes, remove_dev_nodes};
pub use enter::{EnterSpec, TtyMode, enter};
pub use error::{NsError, Result};
pub use init::{InitHandle, InitSpec, PendingInit, spawn_init};
pub use intercept::{
    InboxMessage, InboxQuestion, ListenerInbox, ProcessMemory, SyscallListener, SyscallReply,
    SyscallRequest, ask,
};
pub use pty::open_console_for_restore;
pub use rlimit::{Rlimit, RlimitResource};
pub use rootfs::ProcView;
pub use rootfs::{restore_dev_tree, save_dev_tree};
pub use seccomp::SeccompPolicy;
pub use spawn_wait::{ExitWatch, Settled, wait_settled};
pub use sysctl::set_ipc_sysctls;
pub use userns::{IdMap, VE_ID_COUNT, attach_idmapped_view, mount_dev_skeleton};
pub use uts::set_hostname;
