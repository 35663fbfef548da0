//! cgroup v1: the memory controller (`memory.limit_in_bytes`, `memory.memsw.*`,
//! `memory.kmem.*`, `memory.kmem.tcp.*`, `memory.soft_limit_in_bytes`) and the pids controller.

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

fn bytes_value(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-1".to_owned(), |b| b.to_string())
}

/// Writes `value` and reads it back: v1 files round to pages, and some (kmem on kernels ≥ 6.1)
/// accept writes but ignore them. `Ok(false)` means the kernel did not take the value.
fn write_checked(path: &Path, bytes: Option<u64>) -> Result<bool> {
    write(path, &bytes_value(bytes))?;
    let got = bytes_or_unlimited(read_u64(path)?);
    let page = crate::page_size();
    Ok(match bytes {
        None => got == UNLIMITED,
        Some(b) => got <= b && b - got < page,
    })
}

fn enforced(file: &str, bytes: Option<u64>) -> Enforcement {
    let value = bytes.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
    Enforcement::Enforced { mechanism: format!("{file} = {value}") }
}

pub(super) fn apply(
    memory: &Path,
    pids: Option<&Path>,
    set: &UbcSet,
    report: &mut AppliedReport,
) -> Result<()> {
    if set.get(Resource::PhysPages).is_some() || set.get(Resource::SwapPages).is_some() {
        apply_memory(memory, set, report)?;
    }
    if let Some(v) = set.get(Resource::NumProc) {
        let e = match pids {
            Some(dir) => {
                let value =
                    if v.limit_unlimited() { "max".to_owned() } else { v.limit.to_string() };
                write(&dir.join("pids.max"), &value)?;
                Enforcement::Enforced { mechanism: format!("pids.max = {value}") }
            }
            None => Enforcement::Unsupported { reason: "no pids cgroup given".to_owned() },
        };
        report.push(Resource::NumProc, e);
    }
    if let Some(v) = set.get(Resource::KmemSize) {
        let file = memory.join("memory.kmem.limit_in_bytes");
        let bytes = (!v.limit_unlimited()).then_some(v.limit);
        let e = if file.exists() && write_checked(&file, bytes).unwrap_or(false) {
            enforced("memory.kmem.limit_in_bytes", bytes)
        } else {
            Enforcement::Unsupported {
                reason: "this kernel has no working memory.kmem.limit_in_bytes; accounted from \
                         memory.kmem.usage_in_bytes"
                    .to_owned(),
            }
        };
        report.push(Resource::KmemSize, e);
    }
    let (snd, rcv) = (set.get(Resource::TcpSndBuf), set.get(Resource::TcpRcvBuf));
    if snd.is_some() || rcv.is_some() {
        let file = memory.join("memory.kmem.tcp.limit_in_bytes");
        let sum =
            snd.map_or(UNLIMITED, |v| v.limit).saturating_add(rcv.map_or(UNLIMITED, |v| v.limit));
        let bytes = (sum < UNLIMITED).then_some(sum);
        let e = if file.exists() && write_checked(&file, bytes)? {
            enforced("memory.kmem.tcp.limit_in_bytes (tcpsndbuf+tcprcvbuf)", bytes)
        } else {
            Enforcement::Unsupported {
                reason: "this kernel has no memory.kmem.tcp.limit_in_bytes".to_owned(),
            }
        };
        for (r, v) in [(Resource::TcpSndBuf, snd), (Resource::TcpRcvBuf, rcv)] {
            if v.is_some() {
                report.push(r, e.clone());
            }
        }
    }
    if let Some(v) = set.get(Resource::OomGuarPages) {
        let bytes = page_bytes(v.barrier);
        write(&memory.join("memory.soft_limit_in_bytes"), &bytes_value(bytes))?;
        report.push(Resource::OomGuarPages, enforced("memory.soft_limit_in_bytes", bytes));
    }
    for (r, _) in set.iter() {
        if let Some(e) = outside_cgroup(r, false) {
            report.push(r, e);
        }
    }
    Ok(())
}

/// physpages → `memory.limit_in_bytes`, swappages → `memory.memsw.limit_in_bytes` = RAM + swap,
/// written in the order the kernel accepts (memsw must never drop below the RAM limit).
fn apply_memory(memory: &Path, set: &UbcSet, report: &mut AppliedReport) -> Result<()> {
    let limit_file = memory.join("memory.limit_in_bytes");
    let memsw_file = memory.join("memory.memsw.limit_in_bytes");
    let ram = match set.get(Resource::PhysPages) {
        Some(v) => page_bytes(v.limit),
        None => Some(read_u64(&limit_file)?).filter(|b| bytes_or_unlimited(*b) < UNLIMITED),
    };
    let swap = set.get(Resource::SwapPages).and_then(|v| page_bytes(v.limit));
    let memsw = match (ram, swap) {
        (Some(r), Some(s)) => r.checked_add(s).filter(|t| *t < UNLIMITED),
        _ => None,
    };
    if memsw_file.exists() {
        let current_memsw = bytes_or_unlimited(read_u64(&memsw_file)?);
        if ram.unwrap_or(UNLIMITED) > current_memsw {
            write(&memsw_file, &bytes_value(memsw))?;
            write(&limit_file, &bytes_value(ram))?;
        } else {
            write(&limit_file, &bytes_value(ram))?;
            write(&memsw_file, &bytes_value(memsw))?;
        }
    } else if set.get(Resource::PhysPages).is_some() {
        write(&limit_file, &bytes_value(ram))?;
    }
    if set.get(Resource::PhysPages).is_some() {
        report.push(Resource::PhysPages, enforced("memory.limit_in_bytes", ram));
    }
    if set.get(Resource::SwapPages).is_some() {
        let e = if !memsw_file.exists() {
            Enforcement::Unsupported {
                reason: "no memory.memsw.* (swap accounting off: boot with swapaccount=1)"
                    .to_owned(),
            }
        } else if ram.is_none() && swap.is_some() {
            Enforcement::Unsupported {
                reason: "on cgroup v1 swap is bounded as RAM+swap; physpages is unlimited"
                    .to_owned(),
            }
        } else {
            enforced("memory.memsw.limit_in_bytes (physpages+swappages)", memsw)
        };
        report.push(Resource::SwapPages, e);
    }
    Ok(())
}

/// Rows of every kernel parameter; the second list names those whose bounds come from the kernel.
pub(super) fn usage(memory: &Path, pids: Option<&Path>) -> Result<(Vec<Usage>, Vec<Resource>)> {
    let tasks = cgroup_pids(memory)?;
    let stats = task_stats(&tasks);
    let mut rows = proc_rows(&stats);
    let mut kernel = Vec::new();
    let m = |f: &str| memory.join(f);
    let stat = read_keyed(&m("memory.stat"));
    let stat_of = |k: &str| stat.get(&format!("total_{k}")).or(stat.get(k)).copied().unwrap_or(0);

    let ram_held = read_u64(&m("memory.usage_in_bytes"))?;
    let ram_limit = read_u64(&m("memory.limit_in_bytes"))?;
    put(
        &mut rows,
        Usage {
            resource: Resource::PhysPages,
            held: bytes_pages(ram_held),
            maxheld: bytes_pages(read_u64(&m("memory.max_usage_in_bytes"))?),
            barrier: 0,
            limit: bytes_pages(ram_limit),
            failcnt: ram_failcnt(memory)?,
            measured: true,
        },
    );
    let swap_held = bytes_pages(stat_of("swap"));
    let swap = match read_opt(&m("memory.memsw.limit_in_bytes")) {
        Some(memsw) => {
            let limit = if bytes_or_unlimited(memsw) >= UNLIMITED {
                UNLIMITED
            } else {
                bytes_pages(memsw.saturating_sub(ram_limit))
            };
            let failcnt = read_opt(&m("memory.memsw.failcnt")).unwrap_or(0);
            Usage { barrier: 0, limit, failcnt, ..Usage::held(Resource::SwapPages, swap_held) }
        }
        None => Usage::unmeasured(Resource::SwapPages),
    };
    put(&mut rows, swap);
    let soft = read_opt(&m("memory.soft_limit_in_bytes")).map_or(0, bytes_pages);
    put(
        &mut rows,
        Usage {
            barrier: soft,
            ..Usage::held(Resource::OomGuarPages, bytes_pages(ram_held) + swap_held)
        },
    );
    put(&mut rows, Usage::held(Resource::ShmPages, bytes_pages(stat_of("shmem"))));
    let kmem = match read_opt(&m("memory.kmem.usage_in_bytes")) {
        Some(held) => Usage {
            resource: Resource::KmemSize,
            held,
            maxheld: read_opt(&m("memory.kmem.max_usage_in_bytes")).unwrap_or(held),
            barrier: 0,
            limit: read_opt(&m("memory.kmem.limit_in_bytes")).map_or(UNLIMITED, bytes_or_unlimited),
            failcnt: read_opt(&m("memory.kmem.failcnt")).unwrap_or(0),
            measured: true,
        },
        None => Usage::unmeasured(Resource::KmemSize),
    };
    put(&mut rows, Usage { barrier: kmem.limit, ..kmem });
    if let Some(tcp_limit) = read_opt(&m("memory.kmem.tcp.limit_in_bytes")) {
        let failcnt = read_opt(&m("memory.kmem.tcp.failcnt")).unwrap_or(0);
        let limit = bytes_or_unlimited(tcp_limit);
        for row in rows
            .iter_mut()
            .filter(|r| matches!(r.resource, Resource::TcpSndBuf | Resource::TcpRcvBuf))
        {
            (row.barrier, row.limit, row.failcnt) = (limit, limit, failcnt);
        }
        kernel.extend([Resource::TcpSndBuf, Resource::TcpRcvBuf]);
    }
    let numproc = match pids {
        Some(dir) => pids_row(dir)?,
        None => Usage::held(Resource::NumProc, stats.threads),
    };
    if pids.is_some() {
        kernel.push(Resource::NumProc);
    }
    put(&mut rows, numproc);
    put(&mut rows, Usage::unmeasured(Resource::DcacheSize));
    kernel.extend([
        Resource::PhysPages,
        Resource::SwapPages,
        Resource::OomGuarPages,
        Resource::KmemSize,
    ]);
    Ok((rows, kernel))
}

/// Refused RAM charges: a charge is tried against RAM+swap first, then RAM, so each refusal
/// counts in one of `memory.memsw.failcnt` and `memory.failcnt`. Recent kernels (6.18 here)
/// no longer count there; the OOM kills of `memory.oom_control` are refusals too, so the
/// larger of the two sums is reported (both are monotonic).
fn ram_failcnt(memory: &Path) -> Result<u64> {
    let charges = read_u64(&memory.join("memory.failcnt"))?
        + read_opt(&memory.join("memory.memsw.failcnt")).unwrap_or(0);
    let oom_kills =
        read_keyed(&memory.join("memory.oom_control")).get("oom_kill").copied().unwrap_or(0);
    Ok(charges.max(oom_kills))
}

/// numproc from a pids cgroup directory (the same files on v1 and v2).
pub(super) fn pids_row(dir: &Path) -> Result<Usage> {
    let held = read_u64(&dir.join("pids.current"))?;
    let limit = read_u64(&dir.join("pids.max"))?;
    Ok(Usage {
        resource: Resource::NumProc,
        held,
        maxheld: read_opt(&dir.join("pids.peak")).unwrap_or(held),
        barrier: limit,
        limit,
        failcnt: read_keyed(&dir.join("pids.events")).get("max").copied().unwrap_or(0),
        measured: true,
    })
}
