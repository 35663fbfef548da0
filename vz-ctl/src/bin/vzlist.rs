//! `vzlist`: lists VEs and their parameters (reference §4).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::io::Write;
use std::process::ExitCode;

use vz_ctl::config::GlobalConfig;
use vz_ctl::ctid::Ctid;
use vz_ctl::list::{self, Which};

const USAGE: &str = "Usage: vzlist [-a|-S] [-n] [-H] [-t] [-j] [-o name[,name...] | -1] [-s [-]name]\n\
       [-h pattern] [-N pattern] [-d pattern] [CTID ...]\n       vzlist -L | --list";

/// Whether a VE's row could not be read (vzlist then exits 1 after listing the others).
static ROW_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[derive(Default)]
struct Args {
    which: Option<Which>,
    no_header: bool,
    no_trim: bool,
    json: bool,
    smart_name: bool,
    output: Option<String>,
    sort: Option<String>,
    filters: Vec<(&'static str, String)>,
    ctids: Vec<String>,
    list_fields: bool,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next().cloned().ok_or_else(|| format!("option {name} requires an argument"))
        };
        match arg.as_str() {
            "-a" | "--all" => args.which = Some(Which::All),
            "-S" | "--stopped" => args.which = Some(Which::Stopped),
            "-H" | "--no-header" => args.no_header = true,
            "-t" | "--no-trim" => args.no_trim = true,
            "-j" | "--json" => args.json = true,
            "-n" | "--name" => args.smart_name = true,
            "-1" => {
                args.no_header = true;
                args.output = Some("ctid".to_owned());
            }
            "-L" | "--list" => args.list_fields = true,
            "-o" | "--output" => args.output = Some(value(arg)?),
            "-s" | "--sort" => args.sort = Some(value(arg)?),
            "-h" | "--hostname" => args.filters.push(("HOSTNAME", value(arg)?)),
            "-N" | "--name_filter" => args.filters.push(("NAME", value(arg)?)),
            "-d" | "--description" => args.filters.push(("DESCRIPTION", value(arg)?)),
            "--help" => return Err(String::new()),
            other if other.starts_with('-') && other.len() > 1 => {
                return Err(format!("Invalid option {other}"));
            }
            other => args.ctids.push(other.to_owned()),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    match run(args) {
        Ok(text) => {
            // A closed pipe (`vzlist | head`) ends quietly.
            let _ = std::io::stdout().write_all(text.as_bytes());
            if ROW_FAILED.load(std::sync::atomic::Ordering::Relaxed) {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<String, String> {
    if args.list_fields {
        return Ok(list::fields::FIELDS
            .iter()
            .map(|f| format!("{:<15} {:<15}\n", f.name, f.header))
            .collect());
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Err("This program can only be run under root.".to_owned());
    }
    let global = GlobalConfig::load().map_err(|e| e.to_string())?;
    let mut ctids = Vec::new();
    for arg in &args.ctids {
        ctids.push(
            Ctid::resolve(arg, &global.names_dir())
                .map_err(|_| format!("CT ID {arg} is invalid."))?,
        );
    }
    let which = args.which.unwrap_or(if ctids.is_empty() { Which::Running } else { Which::All });
    let (mut rows, failed) =
        list::rows_or_errors(&global, &ctids, which).map_err(|e| e.to_string())?;
    for (ctid, e) in &failed {
        // Only this VE's row is missing; the others are listed.
        eprintln!("vzlist: CT {ctid}: {}", vz_ctl::error::chain(e));
        ROW_FAILED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    rows.retain(|row| {
        args.filters.iter().all(|(key, pattern)| row.get(key).is_some_and(|v| glob(pattern, v)))
    });
    if !ctids.is_empty() && rows.is_empty() {
        return Err("Container(s) not found".to_owned());
    }
    let default: Vec<&str> = if args.smart_name {
        let mut d = list::DEFAULT_FIELDS.to_vec();
        d[0] = "smart_name";
        d
    } else {
        list::DEFAULT_FIELDS.to_vec()
    };
    let names: Vec<&str> = match &args.output {
        Some(o) => o.split(',').collect(),
        // JSON carries whole objects (a beancounter, a quota): the suffixed fields are parts.
        None if args.json => {
            list::fields::FIELDS.iter().map(|f| f.name).filter(|n| !n.contains('.')).collect()
        }
        None => default,
    };
    if let Some(part) = names.iter().find(|n| args.json && n.contains('.')) {
        return Err(format!("Field {part} can not be used with -j: use the field without suffix"));
    }
    let fields = list::fields(&names)?;
    if let Some(spec) = &args.sort {
        list::sort(&mut rows, spec)?;
    }
    if args.json {
        return Ok(list::render::json(&fields, &rows) + "\n");
    }
    let mut out = String::new();
    if !args.no_header {
        out.push_str(&list::render::header(&fields));
        out.push('\n');
    }
    for row in &rows {
        out.push_str(&list::render::line(&fields, row, args.no_trim));
        out.push('\n');
    }
    Ok(out)
}

/// Shell wildcard match (`*`, `?`, `[...]`), as vzlist's fnmatch filters.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    fn matches(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| matches(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && matches(&p[1..], &t[1..]),
            Some('[') => match (p.iter().position(|c| *c == ']'), t.first()) {
                (Some(end), Some(c)) if end > 1 => {
                    p[1..end].contains(c) && matches(&p[end + 1..], &t[1..])
                }
                _ => false,
            },
            Some(c) => t.first() == Some(c) && matches(&p[1..], &t[1..]),
        }
    }
    matches(&p, &t)
}
