//! `vzmemcheck [-v] [-A]`: the node's memory as the running VEs use it (util) and are
//! promised it (commit), OpenVZ's vzmemcheck with its formulas (vzctl's `validate.c`):
//! low memory is 40% of RAM against kmemsize and the socket buffers; RAM against physpages;
//! memory and swap against oomguarpages; allocated memory against privvmpages (util),
//! vmguarpages (commit) and the privvmpages limit. OpenVZ read `/proc/user_beancounters`;
//! this reads vz's own accounting of each VE (vz-ubc).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::fmt::Write as _;
use std::process::ExitCode;

use vz_ctl::cli::tool::{self, ToolArg, VZMEMCHECK};
use vz_ctl::config::GlobalConfig;
use vz_ctl::error::{CtlError, Tool, ToolError};
use vz_ctl::list::usage;
use vz_ubc::{Resource, Usage};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = tool::parse(&VZMEMCHECK, &args).and_then(|parsed| {
        let (mut verbose, mut absolute) = (false, false);
        for arg in parsed {
            match arg {
                ToolArg::Opt(key, _) if key == "v" => verbose = true,
                ToolArg::Opt(key, _) if key == "A" => absolute = true,
                ToolArg::Opt(..) => return Ok(VZMEMCHECK.usage()),
                ToolArg::Word(word) => {
                    return Err(ToolError::Usage(format!("Invalid argument {word}")));
                }
            }
        }
        run(verbose, absolute)
    });
    tool::exit(Tool::Vzmemcheck, &VZMEMCHECK, outcome)
}

fn run(verbose: bool, absolute: bool) -> Result<String, ToolError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(ToolError::NotRoot);
    }
    let global = GlobalConfig::load().map_err(CtlError::GlobalConfig)?;
    let rows = usage::all_beancounters(&global)?;
    let (ram, swap) = usage::host_memory()?;
    let host = Host::new(ram, swap);
    Ok(render(&rows, &host, vz_ubc::page_size(), verbose, absolute))
}

/// The node's memory in bytes, as vzmemcheck counts it.
#[derive(Debug, Clone, Copy)]
struct Host {
    /// 40% of RAM (a 64-bit kernel has no separate low memory).
    lowmem: f64,
    ram: f64,
    swap: f64,
}

impl Host {
    #[allow(clippy::cast_precision_loss, reason = "memory sizes in a report")]
    fn new(ram: u64, swap: u64) -> Host {
        // OpenVZ takes 1 byte of swap when it cannot read it, to avoid a division by zero.
        Host { lowmem: ram as f64 * 0.4, ram: ram as f64, swap: swap.max(1) as f64 }
    }
}

/// The eight columns of one VE or of the sum: low memory util and commit, RAM util, memory
/// and swap util and commit, allocated util, commit and limit.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Columns([f64; 8]);

/// Which number of a beancounter row a formula takes.
type Pick = fn(&Usage) -> u64;

/// The columns of one VE, in bytes (`absolute`) or as shares of the node.
#[allow(clippy::cast_precision_loss, reason = "memory sizes in a report")]
fn columns(usage: &[Usage], host: &Host, page: u64, absolute: bool) -> Columns {
    let get = |r: Resource| usage.iter().find(|u| u.resource == r).copied();
    let page = page as f64;
    let sum = |pick: Pick| {
        [Resource::KmemSize, Resource::TcpRcvBuf, Resource::TcpSndBuf, Resource::DgramRcvBuf]
            .into_iter()
            .chain([Resource::OtherSockBuf])
            .filter_map(get)
            .map(|u| pick(&u) as f64)
            .sum::<f64>()
    };
    let value = |r: Resource, pick: Pick| get(r).map_or(0.0, |u| pick(&u) as f64);
    let held: Pick = |u| u.held;
    let barrier: Pick = |u| u.barrier;
    let limit: Pick = |u| u.limit;
    let kmem_util = sum(held);
    let kmem_commit = sum(limit);
    let memswap = host.ram + host.swap;
    let share = |v: f64, of: f64| if absolute { v / (1024.0 * 1024.0) } else { v / of * 100.0 };
    Columns([
        share(kmem_util, host.lowmem),
        share(kmem_commit, host.lowmem),
        share(value(Resource::PhysPages, held) * page + kmem_util, host.ram),
        share(value(Resource::OomGuarPages, held) * page + kmem_util, memswap),
        share(value(Resource::OomGuarPages, barrier) * page + kmem_commit, memswap),
        share(value(Resource::PrivvmPages, held) * page + kmem_util, memswap),
        share(value(Resource::VmGuarPages, barrier) * page + kmem_commit, memswap),
        share(value(Resource::PrivvmPages, limit) * page + kmem_commit, memswap),
    ])
}

fn line(out: &mut String, lead: &str, c: &Columns) {
    let cells: Vec<String> = c.0.iter().map(|v| format!("{v:7.2}")).collect();
    let _ = writeln!(out, "{lead}{}", cells.join(" "));
}

fn render(
    rows: &[(u32, Vec<Usage>)],
    host: &Host,
    page: u64,
    verbose: bool,
    absolute: bool,
) -> String {
    let mut out =
        String::from(if absolute { "Output values in Mbytes\n" } else { "Output values in %\n" });
    let pad = if verbose { "           " } else { "" };
    let _ = writeln!(
        out,
        "{} LowMem  LowMem     RAM MemSwap MemSwap   Alloc   Alloc   Alloc",
        if verbose { "CTID       " } else { "" },
    );
    let _ = writeln!(out, "{pad}   util  commit    util    util  commit    util  commit   limit");
    let mut total = Columns::default();
    for (ctid, usage) in rows {
        let c = columns(usage, host, page, absolute);
        if verbose {
            line(&mut out, &format!("{ctid:<10} "), &c);
        }
        for (t, v) in total.0.iter_mut().zip(c.0) {
            *t += v;
        }
    }
    if verbose {
        out.push_str(
            "--------------------------------------------------------------------------\n",
        );
    }
    line(&mut out, if verbose { "Summary:   " } else { "" }, &total);
    if absolute {
        let mb = |v: f64| v / (1024.0 * 1024.0);
        let (lm, r, rs) = (mb(host.lowmem), mb(host.ram), mb(host.ram + host.swap));
        line(&mut out, pad, &Columns([lm, lm, r, rs, rs, rs, rs, rs]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(resource: Resource, held: u64, barrier: u64, limit: u64) -> Usage {
        Usage { resource, held, maxheld: held, barrier, limit, failcnt: 0, measured: true }
    }

    #[test]
    fn formulas_are_openvz_vzmemcheck() {
        let mib = 1024 * 1024;
        // 1000 MiB of RAM, no swap (counted as 1 byte), 4 KiB pages.
        let host = Host::new(1000 * mib, 0);
        let ve = vec![
            u(Resource::KmemSize, 4 * mib, 8 * mib, 10 * mib),
            u(Resource::PhysPages, 25_600, 0, 51_200),
            u(Resource::OomGuarPages, 25_600, 51_200, u64::MAX >> 1),
            u(Resource::PrivvmPages, 12_800, 51_200, 76_800),
            u(Resource::VmGuarPages, 0, 25_600, u64::MAX >> 1),
        ];
        let c = columns(&ve, &host, 4096, false);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(c.0[0], 4.0 / 400.0 * 100.0), "low mem util {c:?}");
        assert!(close(c.0[1], 10.0 / 400.0 * 100.0), "low mem commit");
        assert!(close(c.0[2], 104.0 / 1000.0 * 100.0), "RAM util: 100 MiB + kmem");
        assert!(close(
            c.0[7],
            310.0 / 1000.0 * 100.0 * (1000.0 * mib as f64) / (1000.0 * mib as f64 + 1.0)
        ));
        let a = columns(&ve, &host, 4096, true);
        assert!(close(a.0[5], 54.0), "alloc util in MiB: 50 + 4");
        let text = render(&[(101, ve)], &host, 4096, true, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Output values in %");
        assert!(lines[3].starts_with("101           1.00    2.50   10.40"), "{text}");
        assert!(lines[5].starts_with("Summary:      1.00"), "{text}");
    }
}
