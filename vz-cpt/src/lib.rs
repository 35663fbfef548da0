//! Checkpoint and restore of VEs through CRIU, and suspend/resume through the cgroup
//! freezer.
//!
//! - [`dump`] with a [`DumpSpec`]: checks the VE first ([`Refusal`]: a process outside the
//!   init's tree, another time namespace, a session outside the VE, a seccomp listener, a
//!   host end down — nothing is frozen when a check fails), then dumps it with CRIU into an
//!   images directory; the VE stops, or runs on with `leave_running`.
//! - [`restore`] with a [`RestoreSpec`]: brings the VE back from the images, its root at the
//!   path the caller gives (an idmapped mount for a user-namespace VE), its veths' host ends
//!   made again in the caller's network namespace, and the caller's hook at each
//!   [`RestoreStage`] (vz configures the host ends at [`RestoreStage::NetworkUnlock`]).
//! - [`Freezer`]: suspend and resume (cgroup v1 `freezer.state`, v2 `cgroup.freeze`).
//! - [`kill`]: end a (suspended) VE's processes.
//! - [`warm_kernel_cache`]: CRIU's kernel probe cached where /run is not a tmpfs (every
//!   request warms it first; callers warm it before a freeze).
//! - [`pre_dump`]: iterative pre-copy where the kernel tracks soft-dirty pages
//!   ([`tracks_memory`]), each pre-dump the parent of the next and of the final dump.
//!
//! The crate knows nothing of vz's config: the caller hands it the init pid, cgroup paths,
//! network description and directories. CRIU (>= 4.2) is driven through its RPC (`criu
//! swrk`), see [`Criu`].
//!
//! # Privileges
//! Root in the initial namespaces for everything but the parsers.
#![forbid(unsafe_code)]

mod check;
mod dump;
mod error;
mod kdat;
mod kill;
mod options;
mod page_link;
mod predump;
mod restore;
mod rpc;
mod seccomp_image;

pub use dump::{DUMP_LOG, DumpReport, DumpSpec, dump, dump_with_hook};
pub use error::{CptError, Refusal, Result};
pub use kdat::{KdatCache, warm as warm_kernel_cache};
pub use kill::kill;
pub use options::{
    CgroupMode, CgroupRoot, CriuOptions, ExternalMount, ExternalVeth, LOCK_RULES, NetworkLock,
    PageServer,
};
pub use predump::{
    DUMP_STATS, DumpStats, PRE_DUMP_LOG, PreDumpReport, PreDumpSpec, StopReason, dump_stats,
    kernel_soft_dirty, pre_dump, rules, stop_after, tracks_memory,
};
pub use restore::{
    HookEvent, InheritFd, RESTORE_LOG, RestoreSpec, RestoreStage, Restored, restore,
};
pub use rpc::{Criu, CriuVersion, DEFAULT_CRIU};
pub use vz_cgroup::{Freezer, FreezerState};
