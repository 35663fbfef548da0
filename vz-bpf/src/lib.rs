//! vz's eBPF layer, shared by the device allowlist on cgroup v2 (vz-ns) and the socket
//! beancounters (vz-ubc): the instruction type with the few builders both compilers use
//! ([`insn`]), and the bpf(2) calls they make (re-exported here): load a program with the
//! verifier's log, attach it to a cgroup, find the program attached there again and its
//! maps, and the map operations. All of the crate's `unsafe` is in `sys.rs`.
//!
//! It is a leaf below the subsystem crates (docs/architecture.md): it knows nothing of VEs,
//! devices or sockets, only of the kernel's interface.

pub mod insn;
mod sys;

pub use insn::Insn;
pub use sys::{
    AttachType, MapRef, MapType, ProgType, attach, attached_prog, load, map_create, map_keys_u64,
    map_lookup_u64, map_update, prog_maps,
};
