//! `vzoversell [FILE]`: OpenVZ's vzoversell — each running VE's RAM (physpages) and swap
//! (swappages) used, peak, limit and fails, the totals, and how much of the node's RAM, swap
//! and both the limits promise. OpenVZ's script read `/proc/bc/resources`; this reads vz's
//! own accounting (vz-ubc), or the text of `/proc/user_beancounters` from FILE (what
//! `vzubc --proc` prints).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::fmt::Write as _;
use std::process::ExitCode;

use vz_ctl::cli::tool::{self, ToolArg, VZOVERSELL};
use vz_ctl::config::GlobalConfig;
use vz_ctl::error::{CtlError, Tool, ToolError};
use vz_ctl::list::usage::{self, human, is_unlimited, percent};
use vz_ubc::{Resource, Usage};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = tool::parse(&VZOVERSELL, &args).and_then(|parsed| {
        let mut file = None;
        for arg in parsed {
            match arg {
                ToolArg::Opt(..) => return Ok(VZOVERSELL.usage()),
                ToolArg::Word(_) if file.is_some() => {
                    return Err(ToolError::Usage("only one FILE".to_owned()));
                }
                ToolArg::Word(word) => file = Some(word),
            }
        }
        run(file.as_deref())
    });
    tool::exit(Tool::Vzoversell, &VZOVERSELL, outcome)
}

fn run(file: Option<&str>) -> Result<String, ToolError> {
    let rows = match file {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).map_err(|e| ToolError::Failed(format!("{f}: {e}")))?;
            vz_ubc::parse_proc_view(&text)
        }
        None => {
            if !nix::unistd::Uid::effective().is_root() {
                return Err(ToolError::NotRoot);
            }
            let global = GlobalConfig::load().map_err(CtlError::GlobalConfig)?;
            usage::all_beancounters(&global)?
        }
    };
    let page = vz_ubc::page_size();
    let (ram, swap) = usage::host_memory()?;
    Ok(render(&rows, ram / page, swap / page, page / 1024))
}

/// Used, peak, limit, fails of one parameter.
#[derive(Debug, Default, Clone, Copy)]
struct Four {
    held: u64,
    maxheld: u64,
    limit: u64,
    failcnt: u64,
}

impl Four {
    fn add(&mut self, o: &Four) {
        self.held = self.held.saturating_add(o.held);
        self.maxheld = self.maxheld.saturating_add(o.maxheld);
        self.limit = self.limit.saturating_add(o.limit);
        self.failcnt = self.failcnt.saturating_add(o.failcnt);
    }

    fn cells(&self, page_kb: u64) -> String {
        format!(
            "{:>5} {:>5} {:>5} {:>5}",
            human(true, self.held, page_kb),
            human(true, self.maxheld, page_kb),
            human(true, self.limit, page_kb),
            human(false, self.failcnt, page_kb)
        )
    }
}

/// The report; `ram` and `swap` are the node's, in pages.
fn render(rows: &[(u32, Vec<Usage>)], ram: u64, swap: u64, page_kb: u64) -> String {
    let mut out = String::from(
        "           --------- RAM ---------  -------- Swap ---------  Flags\n            used  peak limit fails   used  peak limit fails\n",
    );
    let (mut t_ram, mut t_swap, mut t_flags) = (Four::default(), Four::default(), String::new());
    for (id, usage) in rows.iter().filter(|(id, _)| *id > 0) {
        let get = |r: Resource| usage.iter().find(|u| u.resource == r).copied();
        let four = |r: Resource| {
            get(r).map_or(Four::default(), |u| Four {
                held: u.held,
                maxheld: u.maxheld,
                limit: u.limit,
                failcnt: u.failcnt,
            })
        };
        let (mut ram_ve, mut swap_ve) = (four(Resource::PhysPages), four(Resource::SwapPages));
        let mut flags = String::new();
        if ram_ve.limit == 0 || is_unlimited(ram_ve.limit) {
            // Not VSwap: the RAM limit guessed from privvmpages, as OpenVZ does.
            flags.push('R');
            ram_ve.limit = four(Resource::PrivvmPages).limit / 2;
        }
        if is_unlimited(swap_ve.limit) {
            flags.push('S');
            swap_ve.limit = 0;
        }
        let fails: u64 = usage.iter().map(|u| u.failcnt).fold(0, u64::saturating_add);
        if fails > 0 {
            flags.push(if fails == ram_ve.failcnt { 'f' } else { 'F' });
        }
        t_ram.add(&ram_ve);
        t_swap.add(&swap_ve);
        t_flags.push_str(&flags);
        let _ = writeln!(
            out,
            "{id:>10} {}  {}  {flags}",
            ram_ve.cells(page_kb),
            swap_ve.cells(page_kb)
        );
    }
    out.push_str("           ----- ----- ----- -----  ----- ----- ----- -----\n");
    let _ = writeln!(out, " TOTAL     {}  {}\n", t_ram.cells(page_kb), t_swap.cells(page_kb));
    let both = t_ram.limit.saturating_add(t_swap.limit);
    for (name, avail, alloc) in [
        ("RAM       ", ram, t_ram.limit),
        ("Swap      ", swap, t_swap.limit),
        ("RAM+Swap  ", ram + swap, both),
    ] {
        let _ = writeln!(
            out,
            "{name} available: {:>5}  allocated: {:>5}  oversell: {}",
            human(true, avail, page_kb),
            human(true, alloc, page_kb),
            percent(alloc, avail)
        );
    }
    if !t_flags.is_empty() {
        out.push_str("\nFlags:\n");
        for (flag, text) in [
            ('R', "  R: non-VSwap container, RAM limit guessed based on privvmpages"),
            ('S', "  S: unlimited swap (ok for non-vswap), not counted into total swap limit"),
            ('f', "  f: RAM failctl > 0 (swap used), use vzubc to check details"),
            ('F', "  F: beancounter failctl > 0, use vzubc to check details"),
        ] {
            if t_flags.contains(flag) {
                out.push_str(text);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vz_ubc::UNLIMITED;

    fn u(resource: Resource, held: u64, limit: u64, failcnt: u64) -> Usage {
        Usage { resource, held, maxheld: held, barrier: 0, limit, failcnt, measured: true }
    }

    #[test]
    fn report_is_openvz_vzoversell() {
        let rows = vec![
            (
                101,
                vec![
                    u(Resource::PhysPages, 25_600, 65_536, 0),
                    u(Resource::SwapPages, 0, 131_072, 0),
                ],
            ),
            (
                102,
                vec![
                    u(Resource::PhysPages, 1, UNLIMITED, 2),
                    u(Resource::PrivvmPages, 1, 131_072, 0),
                    u(Resource::SwapPages, 0, UNLIMITED, 0),
                ],
            ),
        ];
        // 1 GiB of RAM and 512 MiB of swap in 4 KiB pages.
        let text = render(&rows, 262_144, 131_072, 4);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "       101  100M  100M  256M    -      -     -   512M    -   ");
        assert_eq!(lines[3], "       102    4K    4K  256M    2      -     -     -     -   RSf");
        assert_eq!(lines[5], " TOTAL      100M  100M  512M    2      -     -   512M    - ");
        assert_eq!(lines[7], "RAM        available:    1G  allocated:  512M  oversell: 50%");
        assert_eq!(lines[8], "Swap       available:  512M  allocated:  512M  oversell: 100%");
        assert_eq!(lines[9], "RAM+Swap   available:  1.5G  allocated:    1G  oversell: 66%");
        assert!(text.contains("  R: non-VSwap container"), "{text}");
    }
}
