//! `vzubc`: OpenVZ's human-readable view of the beancounters of running VEs (all, or the
//! CTIDs or names given): held and peak with their share of barrier and limit, pages shown
//! as bytes, `-` for zero and unlimited; `-q` only the ones near their limits or failing,
//! `-c` in color, `-r`/`-i` against the values of the previous run (a state directory,
//! `/tmp/vzubc.store` by default), `-w` under watch(1).
//!
//! OpenVZ's vzubc read `/proc/bc/resources` or `/proc/user_beancounters`; a stock kernel has
//! neither and vz cannot add them to the host's /proc, so this one reads vz's own accounting
//! (vz-ubc, from each VE's cgroups). `--proc` prints that accounting as the text of
//! `/proc/user_beancounters` (OpenVZ's own vzubc and vzoversell read it with `-f -`), and
//! `-f FILE` reads such a text instead of measuring.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vz_ctl::cli::tool::{self, VZUBC};
use vz_ctl::config::GlobalConfig;
use vz_ctl::ctid::Ctid;
use vz_ctl::error::{CtlError, Tool, ToolError};
use vz_ctl::list::usage::{self, human, is_unlimited, percent};
use vz_ubc::{UbUnit, Usage};

const C_BRIGHT: &str = "\x1b[1;32m";
const C_ERROR: &str = "\x1b[1;31m";
const C_WARNING: &str = "\x1b[1;33m";
const C_NORMAL: &str = "\x1b[0;39m";

/// The command line, as OpenVZ's vzubc reads it (its two-letter options are not getopt's).
#[derive(Debug, Clone, PartialEq)]
struct Args {
    watch: bool,
    watch_args: Vec<String>,
    quiet: bool,
    thresholds: bool,
    q_held: f64,
    q_maxheld: f64,
    verbose: bool,
    relative: bool,
    incremental: bool,
    color: bool,
    store: PathBuf,
    /// State files to remove before the run: (directory, suffix).
    clear: Vec<(PathBuf, &'static str)>,
    file: Option<String>,
    proc_text: bool,
    ctids: Vec<String>,
    help: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            watch: false,
            watch_args: Vec::new(),
            quiet: false,
            thresholds: false,
            q_held: 0.5,
            q_maxheld: 0.8,
            verbose: false,
            relative: false,
            incremental: false,
            color: false,
            store: PathBuf::from("/tmp/vzubc.store"),
            clear: Vec::new(),
            file: None,
            proc_text: false,
            ctids: Vec::new(),
            help: false,
        }
    }
}

fn parse(argv: &[String]) -> Result<Args, ToolError> {
    let mut a = Args::default();
    let mut it = argv.iter();
    let value = |it: &mut std::slice::Iter<'_, String>, opt: &str| {
        it.next()
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| ToolError::Usage(format!("Error: option {opt} requires an argument")))
    };
    let ratio = |text: String, opt: &str| {
        text.parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| ToolError::Usage(format!("Error: bad ratio for {opt}: {text}")))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            // Internal: the run under watch(1).
            "-W" => a.watch = false,
            "-w" | "--watch" => a.watch = true,
            "-wd" => {
                a.watch = true;
                a.watch_args.push("-d".into());
            }
            "-wt" => {
                a.watch = true;
                a.watch_args.push("-t".into());
            }
            "-wn" => {
                a.watch = true;
                let n = value(&mut it, "-wn")?;
                a.watch_args.extend(["-n".to_owned(), n]);
            }
            "-q" | "--quiet" => a.quiet = true,
            "-qh" => {
                a.thresholds = true;
                a.q_held = ratio(value(&mut it, "-qh")?, "-qh")?;
            }
            "-qm" => {
                a.thresholds = true;
                a.q_maxheld = ratio(value(&mut it, "-qm")?, "-qm")?;
            }
            "-v" | "--verbose" => a.verbose = true,
            "-r" | "--relative" => a.relative = true,
            "-rc" => a.clear.push((a.store.clone(), ".failcnt")),
            "-rd" | "-id" => a.store = PathBuf::from(value(&mut it, arg)?),
            "-i" | "--incremental" => a.incremental = true,
            "-ic" => a.clear.push((a.store.clone(), ".held")),
            "-c" | "--color" => a.color = true,
            "-f" | "--file" => a.file = Some(value(&mut it, arg)?),
            "--proc" => a.proc_text = true,
            "-h" | "--help" => a.help = true,
            opt if opt.starts_with('-') && opt != "-" => {
                return Err(ToolError::Usage(format!("Unrecognized option: {opt}")));
            }
            ctid => a.ctids.push(ctid.to_owned()),
        }
    }
    if a.watch && a.color {
        return Err(ToolError::Usage("Error: can't use --watch and --color together".into()));
    }
    if a.thresholds && !a.color && !a.quiet {
        return Err(ToolError::Usage(
            "Error: -qh and -qm only make sense with --quiet or --color".into(),
        ));
    }
    if a.quiet && a.verbose {
        return Err(ToolError::Usage(
            "Error: options --quiet and --verbose can't be used together".into(),
        ));
    }
    Ok(a)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let outcome = parse(&argv).and_then(|args| {
        if args.help {
            return Ok(VZUBC.usage());
        }
        if args.watch {
            return Err(watch(&args, &argv));
        }
        run(&args)
    });
    tool::exit(Tool::Vzubc, &VZUBC, outcome)
}

/// Runs itself under watch(1) with `-W`; returns only on failure.
fn watch(args: &Args, argv: &[String]) -> ToolError {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vzubc"));
    let err = std::process::Command::new("watch")
        .args(&args.watch_args)
        .arg("--")
        .arg(exe)
        .args(argv)
        .arg("-W")
        .exec();
    ToolError::Failed(format!("Error: cannot run watch(1): {err}"))
}

fn run(args: &Args) -> Result<String, ToolError> {
    let rows = read_rows(args)?;
    if args.proc_text {
        return Ok(vz_ubc::render_proc_view(&rows));
    }
    for (dir, suffix) in &args.clear {
        clear_store(dir, suffix);
    }
    if args.relative || args.incremental {
        prepare_store(&args.store)?;
    }
    let page_kb = vz_ubc::page_size() / 1024;
    let store = (args.relative || args.incremental).then_some(args.store.as_path());
    Ok(render(args, &rows, page_kb, store))
}

/// The beancounters to show: the file's (`-f`, `-` for stdin), else vz's accounting.
fn read_rows(args: &Args) -> Result<Vec<(u32, Vec<Usage>)>, ToolError> {
    let from_file = |text: &str, ids: &[u32]| {
        let mut rows = vz_ubc::parse_proc_view(text);
        rows.retain(|(id, _)| ids.is_empty() || ids.contains(id));
        rows
    };
    let numeric: Option<Vec<u32>> = args.ctids.iter().map(|c| c.parse().ok()).collect();
    if let Some(file) = &args.file
        && let Some(ids) = &numeric
    {
        let text = if file == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(file)
        }
        .map_err(|e| ToolError::Failed(format!("{file}: {e}")))?;
        return Ok(from_file(&text, ids));
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Err(ToolError::NotRoot);
    }
    let global = GlobalConfig::load().map_err(CtlError::GlobalConfig)?;
    let mut ids = Vec::new();
    for arg in &args.ctids {
        ids.push(
            Ctid::resolve(arg, &global.names_dir()).map_err(|_| ToolError::BadCtid(arg.clone()))?,
        );
    }
    if let Some(file) = &args.file {
        // Names given with -f: resolved through this host's names, then read from the file.
        let ids: Vec<u32> = ids.iter().map(|c| c.get()).collect();
        let text =
            std::fs::read_to_string(file).map_err(|e| ToolError::Failed(format!("{file}: {e}")))?;
        return Ok(from_file(&text, &ids));
    }
    if ids.is_empty() {
        return Ok(usage::all_beancounters(&global)?);
    }
    let mut rows = Vec::new();
    for ctid in ids {
        let found = usage::beancounters(&global, ctid)?
            .ok_or_else(|| ToolError::Failed(format!("Container {ctid} is not running")))?;
        rows.push((ctid.get(), found));
    }
    Ok(rows)
}

fn clear_store(dir: &Path, suffix: &str) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("ubc.") && name.ends_with(suffix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn prepare_store(dir: &Path) -> Result<(), ToolError> {
    use std::os::unix::fs::DirBuilderExt;
    let fail = |e: std::io::Error| ToolError::Failed(format!("{}: {e}", dir.display()));
    if !dir.is_dir() {
        std::fs::DirBuilder::new().mode(0o700).create(dir).map_err(fail)?;
    }
    let probe = dir.join("ubc.test");
    std::fs::write(&probe, b"").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

fn read_store(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_store(path: &Path, value: u64) {
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path);
    if let Ok(mut f) = file {
        let _ = std::io::Write::write_all(&mut f, format!("{value}\n").as_bytes());
    }
}

/// 2 failing or over the barrier, 1 near it (the quiet thresholds), 0 otherwise.
fn importance(u: &Usage, failcnt: u64, q_held: f64, q_maxheld: f64) -> u8 {
    if failcnt > 0 {
        return 2;
    }
    let bound = if u.barrier == 0 { u.limit } else { u.barrier };
    if u.held > bound && !is_unlimited(bound) {
        return 2;
    }
    #[allow(clippy::cast_precision_loss, reason = "ratios")]
    let (held, maxheld, bound) = (u.held as f64, u.maxheld as f64, bound as f64);
    if held > bound * q_held || maxheld > bound * q_maxheld {
        return 1;
    }
    0
}

/// The table of OpenVZ's vzubc for `rows`; `store` is the state directory of `-r`/`-i`.
fn render(args: &Args, rows: &[(u32, Vec<Usage>)], page_kb: u64, store: Option<&Path>) -> String {
    let (mut q_held, mut q_maxheld) = (args.q_held, args.q_maxheld);
    if q_held > 1.0 {
        q_held /= 100.0;
    }
    if q_maxheld > 1.0 {
        q_maxheld /= 100.0;
    }
    let q_held = q_held.min(q_maxheld);
    let color = |c: &'static str| if args.color { c } else { "" };
    let inc = args.incremental;
    let mut out = String::new();
    let mut printed = false;
    for (id, usages) in rows {
        let mut header = Some(format!(
            "{}--------------------------------------------------------------------{}\n\
             CT {id:<10}| HELD{}  Bar%  Lim%| MAXH  Bar%  Lim%| BAR | LIM |{}FAIL\n\
             -------------+-{}----------------+-----------------+-----+-----+------{}\n",
            color(C_BRIGHT),
            if inc { "-------" } else { "" },
            if inc { "  +/-  " } else { "" },
            if args.relative { '+' } else { ' ' },
            if inc { "-------" } else { "" },
            color(C_NORMAL),
        ));
        // As /proc/bc/resources: every kernel row (swappages too), not avnumproc.
        for u in usages.iter().filter(|u| u.resource.index().is_some()) {
            let name = u.resource.name();
            let pages = u.resource.unit() == UbUnit::Pages;
            let state =
                |suffix: &str| store.map(|dir| dir.join(format!("ubc.{id}.{name}.{suffix}")));
            let mut failcnt = u.failcnt;
            if args.relative
                && u.failcnt > 0
                && let Some(old) = state("failcnt").and_then(|f| read_store(&f))
                && old > 0
                && old <= u.failcnt
            {
                failcnt = u.failcnt - old;
            }
            let mut delta = String::new();
            let mut changed = false;
            if inc {
                delta = " ".repeat(7);
                let file = state("held");
                match file.as_deref().and_then(read_store) {
                    Some(old) if old != u.held => {
                        let (sign, d) =
                            if u.held > old { ('+', u.held - old) } else { ('-', old - u.held) };
                        delta = format!("{:>7}", format!("{sign}{}", human(pages, d, page_kb)));
                        changed = true;
                    }
                    Some(_) => {}
                    None => changed = true,
                }
                if changed && let Some(f) = &file {
                    write_store(f, u.held);
                }
                // A first run has nothing to compare with: no delta shown.
                if changed && delta.trim().is_empty() {
                    changed = false;
                }
            }
            let imp = importance(u, failcnt, q_held, q_maxheld);
            let unlimited = is_unlimited(u.barrier);
            if ((args.quiet && imp == 0) || (!args.verbose && unlimited)) && !changed {
                continue;
            }
            if let Some(h) = header.take() {
                if printed {
                    out.push('\n');
                }
                out.push_str(&h);
                printed = true;
            }
            out.push_str(color(match imp {
                2 => C_ERROR,
                1 => C_WARNING,
                _ => C_NORMAL,
            }));
            let _ = writeln!(
                out,
                "{name:>13}|{:>5}{delta} {:>5} {:>5}|{:>5} {:>5} {:>5}|{:>5}|{:>5}| {:>5}",
                human(pages, u.held, page_kb),
                percent(u.held, u.barrier),
                percent(u.held, u.limit),
                human(pages, u.maxheld, page_kb),
                percent(u.maxheld, u.barrier),
                percent(u.maxheld, u.limit),
                human(pages, u.barrier, page_kb),
                human(pages, u.limit, page_kb),
                human(false, failcnt, page_kb),
            );
            out.push_str(color(C_NORMAL));
            if args.relative
                && u.failcnt > 0
                && let Some(f) = state("failcnt")
            {
                write_store(&f, u.failcnt);
            }
        }
    }
    if printed {
        let _ = writeln!(
            out,
            "--------------------------------------------------------------------{}",
            if inc { "-------" } else { "" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vz_ubc::{Resource, UNLIMITED};

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn usage(resource: Resource, held: u64, maxheld: u64, bl: u64, failcnt: u64) -> Usage {
        Usage { resource, held, maxheld, barrier: bl, limit: bl, failcnt, measured: true }
    }

    #[test]
    fn options_follow_openvz() {
        let a = parse(&words("-q -qh 0.3 -qm 90 -r -rd /x -wn 2 -wd 101")).unwrap();
        assert!(a.quiet && a.relative && a.watch);
        assert_eq!((a.q_held, a.q_maxheld), (0.3, 90.0));
        assert_eq!(a.store, PathBuf::from("/x"));
        assert_eq!(a.watch_args, words("-n 2 -d"));
        assert_eq!(a.ctids, ["101"]);
        assert!(!parse(&words("-w -W")).unwrap().watch);
        for bad in ["-qh 0.5", "-q -v", "-w -c", "-x", "-wn", "-qh x -q"] {
            assert!(matches!(parse(&words(bad)), Err(ToolError::Usage(_))), "{bad}");
        }
        let cleared = parse(&words("-rd /a -rc -ic")).unwrap();
        assert_eq!(
            cleared.clear,
            [(PathBuf::from("/a"), ".failcnt"), (PathBuf::from("/a"), ".held")]
        );
    }

    #[test]
    fn quiet_keeps_failing_and_near_limit_rows() {
        let rows = vec![(
            101,
            vec![
                usage(Resource::NumProc, 19, 20, 20, 3),
                usage(Resource::NumFile, 10, 10, 1000, 0),
                usage(Resource::NumPty, 6, 6, 10, 0),
                usage(Resource::KmemSize, 6, 6, UNLIMITED, 0),
            ],
        )];
        let quiet = Args { quiet: true, ..Args::default() };
        let text = render(&quiet, &rows, 4, None);
        assert!(
            text.contains("CT 101       | HELD  Bar%  Lim%| MAXH  Bar%  Lim%| BAR | LIM | FAIL")
        );
        assert!(
            text.contains("      numproc|  19    95%   95%|  20   100%  100%|  20 |  20 |    3 "),
            "{text}"
        );
        assert!(text.contains("       numpty|"), "{text}");
        assert!(!text.contains("numfile") && !text.contains("kmemsize"), "{text}");
        let all = render(&Args { verbose: true, ..Args::default() }, &rows, 4, None);
        assert!(all.contains("numfile") && all.contains("kmemsize"), "{all}");
        let colored = render(&Args { color: true, ..Args::default() }, &rows, 4, None);
        assert!(colored.contains(&format!("{C_ERROR}      numproc|")), "{colored}");
        assert!(colored.contains(&format!("{C_WARNING}       numpty|")), "{colored}");
    }

    #[test]
    fn relative_mode_shows_fails_since_the_last_run() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args { relative: true, quiet: true, ..Args::default() };
        let at = |failcnt| vec![(7, vec![usage(Resource::NumProc, 1, 2, 20, failcnt)])];
        let first = render(&args, &at(3), 4, Some(dir.path()));
        assert!(
            first.contains("|+FAIL")
                && first.trim_end().lines().nth(3).unwrap().ends_with("    3 "),
            "{first}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ubc.7.numproc.failcnt")).unwrap(),
            "3\n"
        );
        let same = render(&args, &at(3), 4, Some(dir.path()));
        assert!(same.is_empty(), "no new fails, quiet: {same}");
        let more = render(&args, &at(5), 4, Some(dir.path()));
        assert!(more.lines().nth(3).unwrap().ends_with("    2 "), "{more}");
    }
}
