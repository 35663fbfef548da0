//! cgroup v2: `memory.max`, `memory.swap.max`, `memory.low`, `memory.min`, `pids.max` in the VE's directory of
//! the unified tree, and the counters `memory.current/peak/events/stat`, `pids.*`.

use std::path::Path;

use vz_cgroup::knob::write;

use super::{
    Enforcement, bytes_or_unlimited, bytes_pages, outside_cgroup, page_bytes, read_keyed, read_opt,
    read_u64,
};
use crate::AppliedReport;
use crate::error::Result;
use crate::param::UNLIMITED;
use crate::resource::Resource;
use crate::set::UbcSet;
use crate::usage::{Usage, cgroup_pids, proc_rows, put, task_stats};

fn value(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "max".to_owned(), |b| b.to_string())
}

/// Writes `file` if the controller provides it; otherwise says which controller is missing.
fn set_file(dir: &Path, file: &str, bytes: Option<u64>, missing: &str) -> Result<Enforcement> {
    let path = dir.join(file);
    if !path.exists() {
        return Ok(Enforcement::Unsupported { reason: missing.to_owned() });
    }
    let text = value(bytes);
    write(&path, &text)?;
    Ok(Enforcement::Enforced { mechanism: format!("{file} = {text}") })
}

const NO_MEMORY: &str = "the memory controller is not enabled for this cgroup";

pub(super) fn apply(dir: &Path, set: &UbcSet, report: &mut AppliedReport) -> Result<()> {
    if let Some(v) = set.get(Resource::PhysPages) {
        let e = set_file(dir, "memory.max", page_bytes(v.limit), NO_MEMORY)?;
        report.push(Resource::PhysPages, e);
    }
    if let Some(v) = set.get(Resource::SwapPages) {
        let missing =
            "no memory.swap.max (memory controller off or kernel without swap accounting)";
        let e = set_file(dir, "memory.swap.max", page_bytes(v.limit), missing)?;
        report.push(Resource::SwapPages, e);
    }
    if let Some(v) = set.get(Resource::OomGuarPages) {
        let e = set_file(dir, "memory.low", page_bytes(v.barrier), NO_MEMORY)?;
        report.push(Resource::OomGuarPages, e);
    }
    if let Some(v) = set.get(Resource::VmGuarPages) {
        let e = set_file(dir, "memory.min", page_bytes(v.barrier), NO_MEMORY)?;
        report.push(Resource::VmGuarPages, e);
    }
    if let Some(v) = set.get(Resource::NumProc) {
        let limit = (!v.limit_unlimited()).then_some(v.limit);
        let e =
            set_file(dir, "pids.max", limit, "the pids controller is not enabled for this cgroup")?;
        report.push(Resource::NumProc, e);
    }
    if set.get(Resource::KmemSize).is_some() {
        let e = Enforcement::Accounted {
            source: "memory.stat kernel (cgroup v2 has no separate kernel-memory limit; kernel \
                     memory counts against memory.max)",
        };
        report.push(Resource::KmemSize, e);
    }
    for r in [Resource::TcpSndBuf, Resource::TcpRcvBuf] {
        if set.get(r).is_some() {
            let e = Enforcement::Accounted {
                source: "TCP queues of the VE's sockets (cgroup v2 has no TCP memory limit; \
                         socket memory counts against memory.max)",
            };
            report.push(r, e);
        }
    }
    for (r, _) in set.iter() {
        if let Some(e) = outside_cgroup(r, true) {
            report.push(r, e);
        }
    }
    Ok(())
}

/// Kernel-memory fields of memory.stat, for kernels older than the `kernel` field (5.18).
const KERNEL_FIELDS: [&str; 6] =
    ["kernel_stack", "pagetables", "sec_pagetables", "percpu", "sock", "slab"];

pub(super) fn usage(dir: &Path) -> Result<(Vec<Usage>, Vec<Resource>)> {
    let tasks = cgroup_pids(dir)?;
    let stats = task_stats(&tasks);
    let mut rows = proc_rows(&stats);
    let mut kernel = Vec::new();
    let f = |name: &str| dir.join(name);
    if f("memory.current").exists() {
        let stat = read_keyed(&f("memory.stat"));
        let held = read_u64(&f("memory.current"))?;
        let limit = read_u64(&f("memory.max"))?;
        let events = read_keyed(&f("memory.events"));
        put(
            &mut rows,
            Usage {
                resource: Resource::PhysPages,
                held: bytes_pages(held),
                maxheld: bytes_pages(read_opt(&f("memory.peak")).unwrap_or(held)),
                barrier: 0,
                limit: bytes_pages(limit),
                // `max`: charges that hit memory.max; `oom_kill`: kills they led to.
                failcnt: events
                    .get("max")
                    .copied()
                    .unwrap_or(0)
                    .max(events.get("oom_kill").copied().unwrap_or(0)),
                measured: true,
            },
        );
        let swap = match read_opt(&f("memory.swap.current")) {
            Some(held) => Usage {
                resource: Resource::SwapPages,
                held: bytes_pages(held),
                maxheld: bytes_pages(read_opt(&f("memory.swap.peak")).unwrap_or(held)),
                barrier: 0,
                limit: read_opt(&f("memory.swap.max")).map_or(UNLIMITED, bytes_pages),
                failcnt: read_keyed(&f("memory.swap.events")).get("fail").copied().unwrap_or(0),
                measured: true,
            },
            None => Usage::unmeasured(Resource::SwapPages),
        };
        let low = read_opt(&f("memory.low")).map_or(0, bytes_pages);
        let guar_held = bytes_pages(held) + if swap.measured { swap.held } else { 0 };
        put(&mut rows, swap);
        put(&mut rows, Usage { barrier: low, ..Usage::held(Resource::OomGuarPages, guar_held) });
        let min = read_opt(&f("memory.min")).map_or(0, bytes_pages);
        put(&mut rows, Usage { barrier: min, ..Usage::held(Resource::VmGuarPages, guar_held) });
        let stat_of = |k: &str| stat.get(k).copied().unwrap_or(0);
        put(&mut rows, Usage::held(Resource::ShmPages, bytes_pages(stat_of("shmem"))));
        let kmem = stat
            .get("kernel")
            .copied()
            .unwrap_or_else(|| KERNEL_FIELDS.iter().map(|k| stat_of(k)).sum());
        put(&mut rows, Usage::held(Resource::KmemSize, bytes_or_unlimited(kmem)));
        put(&mut rows, Usage::held(Resource::DcacheSize, stat_of("slab_reclaimable")));
        kernel.extend([
            Resource::PhysPages,
            Resource::SwapPages,
            Resource::OomGuarPages,
            Resource::VmGuarPages,
        ]);
    } else {
        for r in [
            Resource::PhysPages,
            Resource::SwapPages,
            Resource::OomGuarPages,
            Resource::ShmPages,
            Resource::KmemSize,
            Resource::DcacheSize,
        ] {
            put(&mut rows, Usage::unmeasured(r));
        }
    }
    if f("pids.current").exists() {
        put(&mut rows, super::v1::pids_row(dir)?);
        kernel.push(Resource::NumProc);
    } else {
        put(&mut rows, Usage::held(Resource::NumProc, stats.threads));
    }
    Ok((rows, kernel))
}
