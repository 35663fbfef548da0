//! `vzcalc [-v] CTID`: OpenVZ's vzcalc — how much of the node one container uses now, is
//! promised and may take at most, with vzctl's `vzcalc.c` formulas: its bounds are the ones
//! a start applies (CTID.conf with VSwap's derived values), its usage vz's own accounting of
//! the running VE (vz-ubc) where OpenVZ read `/proc/user_beancounters`.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::fmt::Write as _;
use std::process::ExitCode;

use vz_ctl::cli::tool::{self, ToolArg, VZCALC};
use vz_ctl::config::GlobalConfig;
use vz_ctl::ctid::Ctid;
use vz_ctl::error::{CtlError, Tool, ToolError};
use vz_ctl::list::usage;
use vz_ctl::ve::Ve;
use vz_ubc::{Resource, UNLIMITED, UbcSet, Usage};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = tool::parse(&VZCALC, &args).and_then(|parsed| {
        let (mut verbose, mut ctid) = (false, None);
        for arg in parsed {
            match arg {
                ToolArg::Opt(key, _) if key == "v" => verbose = true,
                ToolArg::Opt(..) => return Ok(VZCALC.usage()),
                ToolArg::Word(word) if ctid.is_none() => ctid = Some(word),
                ToolArg::Word(word) => {
                    return Err(ToolError::Usage(format!("Invalid argument {word}")));
                }
            }
        }
        let ctid = ctid.ok_or_else(|| ToolError::Usage(VZCALC.usage()))?;
        run(&ctid, verbose)
    });
    tool::exit(Tool::Vzcalc, &VZCALC, outcome)
}

fn run(arg: &str, verbose: bool) -> Result<String, ToolError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(ToolError::NotRoot);
    }
    let global = GlobalConfig::load().map_err(CtlError::GlobalConfig)?;
    let ctid =
        Ctid::resolve(arg, &global.names_dir()).map_err(|_| ToolError::BadCtid(arg.into()))?;
    let ve = Ve::load(global.clone(), ctid)?;
    if ve.config.is_none() {
        return Err(ToolError::Failed(format!(
            "Container configuration file: {} not found",
            ve.config_path().display()
        )));
    }
    let bounds = vz_ctl::resources::ubc_in_force(|k| ve.get(k))?;
    let current = usage::beancounters(&global, ctid)?;
    let (ram, swap) = usage::host_memory()?;
    let node = Node { ram, swap: swap.max(1), threads: threads_max()?, page: vz_ubc::page_size() };
    Ok(render(&calculate(&bounds, current.as_deref(), &node), verbose))
}

/// The kernel's limit on threads, what vzcalc measures NUMPROC against.
fn threads_max() -> Result<u64, ToolError> {
    let path = "/proc/sys/kernel/threads-max";
    let text =
        std::fs::read_to_string(path).map_err(|e| ToolError::Failed(format!("{path}: {e}")))?;
    text.trim().parse().map_err(|_| ToolError::Failed(format!("{path}: {text:?}")))
}

/// The node as vzcalc counts it (bytes, and swap at least 1 to divide by).
struct Node {
    ram: u64,
    swap: u64,
    threads: u64,
    page: u64,
}

/// Shares of the node (1.0 = all of it); `None` where OpenVZ prints n/a (no current usage of
/// a stopped container); infinite where a bound is unlimited.
#[derive(Debug, Default, PartialEq)]
struct Shares {
    low_mem: [Option<f64>; 3],
    total_ram: Option<f64>,
    mem_swap: [Option<f64>; 2],
    alloc: [Option<f64>; 3],
    num_proc: [Option<f64>; 2],
}

/// The kernel memory and socket buffers vzcalc adds to every memory figure.
const KMEM_NET: [Resource; 5] = [
    Resource::KmemSize,
    Resource::TcpRcvBuf,
    Resource::TcpSndBuf,
    Resource::DgramRcvBuf,
    Resource::OtherSockBuf,
];

#[allow(clippy::cast_precision_loss, reason = "shares of memory sizes in a report")]
fn calculate(bounds: &UbcSet, current: Option<&[Usage]>, node: &Node) -> Shares {
    let bytes = |v: u64| if v >= UNLIMITED { f64::INFINITY } else { v as f64 };
    let barrier = |r: Resource| bytes(bounds.get(r).map_or(UNLIMITED, |b| b.barrier));
    let limit = |r: Resource| bytes(bounds.get(r).map_or(UNLIMITED, |b| b.limit));
    let page = node.page as f64;
    let (lowmem, ram, memswap) =
        (node.ram as f64 * 0.4, node.ram as f64, (node.ram + node.swap) as f64);
    let kmem_max: f64 = KMEM_NET.iter().map(|r| limit(*r)).sum();
    let mut shares = Shares::default();
    if let Some(usage) = current {
        let held =
            |r: Resource| usage.iter().find(|u| u.resource == r).map_or(0.0, |u| u.held as f64);
        let kmem: f64 = KMEM_NET.iter().map(|r| held(*r)).sum();
        shares.low_mem[0] = Some(kmem / lowmem);
        shares.total_ram = Some((held(Resource::PhysPages) * page + kmem) / ram);
        shares.mem_swap[0] = Some((held(Resource::OomGuarPages) * page + kmem) / memswap);
        shares.alloc[0] = Some((held(Resource::PrivvmPages) * page + kmem) / memswap);
        shares.num_proc[0] = Some(held(Resource::NumProc) / node.threads as f64);
    }
    shares.low_mem[1] = Some(kmem_max / lowmem);
    shares.low_mem[2] = Some(kmem_max / lowmem);
    shares.mem_swap[1] = Some((barrier(Resource::OomGuarPages) * page + kmem_max) / memswap);
    shares.alloc[1] = Some((barrier(Resource::VmGuarPages) * page + kmem_max) / memswap);
    shares.alloc[2] = Some((limit(Resource::PrivvmPages) * page + kmem_max) / memswap);
    shares.num_proc[1] = Some(barrier(Resource::NumProc) / node.threads as f64);
    shares
}

/// The largest of the shares given; `None` when none is known.
fn most(values: &[Option<f64>]) -> Option<f64> {
    values.iter().flatten().copied().reduce(f64::max)
}

/// A cell: a percentage, `unlimited`, or `n/a`.
fn cell(value: Option<f64>) -> String {
    match value {
        None => "n/a".to_owned(),
        Some(v) if v.is_infinite() => "unlimited".to_owned(),
        Some(v) => format!("{:.2}", v * 100.0),
    }
}

fn render(s: &Shares, verbose: bool) -> String {
    let mut out = String::from("Resource     Current(%)  Promised(%)  Max(%)\n");
    let mut row = |name: &str, cells: [Option<f64>; 3]| {
        let _ = writeln!(
            out,
            "{name:<10} {:>10} {:>10} {:>10}",
            cell(cells[0]),
            cell(cells[1]),
            cell(cells[2])
        );
    };
    if verbose {
        row("Low Mem", s.low_mem);
        row("Total RAM", [s.total_ram, None, None]);
        row("Mem + Swap", [s.mem_swap[0], s.mem_swap[1], None]);
        row("Alloc. Mem", s.alloc);
        row("Num. Proc", [s.num_proc[0], None, s.num_proc[1]]);
    }
    let current = [s.low_mem[0], s.total_ram, s.mem_swap[0], s.alloc[0], s.num_proc[0]];
    let promised = [s.low_mem[1], s.mem_swap[1], s.alloc[1]];
    let max = [s.low_mem[2], s.alloc[2], s.num_proc[1]];
    if verbose {
        out.push_str("--------------------------------------------\n");
    }
    let _ = writeln!(
        out,
        "{:<10} {:>10} {:>10} {:>10}",
        "Memory",
        cell(most(&current)),
        cell(most(&promised)),
        cell(most(&max))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vz_ubc::BarrierLimit;

    fn u(resource: Resource, held: u64) -> Usage {
        Usage { resource, held, maxheld: held, barrier: 0, limit: 0, failcnt: 0, measured: true }
    }

    #[test]
    fn formulas_are_openvz_vzcalc() {
        let mib = 1 << 20;
        let node = Node { ram: 1000 * mib, swap: 1000 * mib, threads: 1000, page: 4096 };
        let mut bounds = UbcSet::new();
        for r in KMEM_NET {
            bounds.set(r, BarrierLimit::new(mib, 2 * mib));
        }
        bounds.set(Resource::OomGuarPages, BarrierLimit::new(25_600, UNLIMITED));
        bounds.set(Resource::VmGuarPages, BarrierLimit::new(12_800, UNLIMITED));
        bounds.set(Resource::PrivvmPages, BarrierLimit::new(51_200, 76_800));
        bounds.set(Resource::NumProc, BarrierLimit::new(100, 100));
        let usage = [
            u(Resource::KmemSize, 4 * mib),
            u(Resource::PhysPages, 25_600),
            u(Resource::NumProc, 10),
        ];
        let s = calculate(&bounds, Some(&usage), &node);
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert!(close(s.low_mem[0], 4.0 / 400.0), "{s:?}");
        assert!(close(s.low_mem[1], 10.0 / 400.0));
        assert!(close(s.total_ram, 104.0 / 1000.0));
        assert!(close(s.mem_swap[1], 110.0 / 2000.0));
        assert!(close(s.alloc[1], 60.0 / 2000.0));
        assert!(close(s.alloc[2], 310.0 / 2000.0));
        assert!(close(s.num_proc[0], 0.01) && close(s.num_proc[1], 0.1));
        let text = render(&s, true);
        assert!(text.contains("Total RAM       10.40        n/a        n/a"), "{text}");
        assert!(text.ends_with("Memory          10.40       5.50      15.50\n"), "{text}");
        let stopped = render(&calculate(&UbcSet::new(), None, &node), false);
        assert!(stopped.ends_with("Memory            n/a  unlimited  unlimited\n"), "{stopped}");
    }
}
