//! `vzlist`: lists VEs and their parameters (reference §4).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::process::ExitCode;

use vz_ctl::cli::tool::{self, ToolArg, VZLIST};
use vz_ctl::config::GlobalConfig;
use vz_ctl::ctid::Ctid;
use vz_ctl::error::{CtlError, Tool, ToolError};
use vz_ctl::list::{self, Which};

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
    help: bool,
}

fn parse(argv: &[String]) -> Result<Args, ToolError> {
    let mut args = Args::default();
    for arg in tool::parse(&VZLIST, argv)? {
        let (key, value) = match arg {
            ToolArg::Word(ctid) => {
                args.ctids.push(ctid);
                continue;
            }
            ToolArg::Opt(key, value) => (key, value.unwrap_or_default()),
        };
        match key.as_str() {
            "all" => args.which = Some(Which::All),
            "stopped" => args.which = Some(Which::Stopped),
            "no-header" => args.no_header = true,
            "no-trim" => args.no_trim = true,
            "json" => args.json = true,
            "name" => args.smart_name = true,
            "1" => {
                args.no_header = true;
                args.output = Some("ctid".to_owned());
            }
            "list" => args.list_fields = true,
            "output" => args.output = Some(value),
            "sort" => args.sort = Some(value),
            "hostname" => args.filters.push(("HOSTNAME", value)),
            "name_filter" => args.filters.push(("NAME", value)),
            "description" => args.filters.push(("DESCRIPTION", value)),
            _ => args.help = true,
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let outcome = parse(&argv).and_then(|args| {
        if args.help {
            return Ok(VZLIST.usage());
        }
        run(args)
    });
    let code = tool::exit(Tool::Vzlist, &VZLIST, outcome);
    if ROW_FAILED.load(std::sync::atomic::Ordering::Relaxed) {
        return ExitCode::from(1);
    }
    code
}

fn run(args: Args) -> Result<String, ToolError> {
    if args.list_fields {
        return Ok(list::fields::FIELDS
            .iter()
            .map(|f| format!("{:<15} {:<15}\n", f.name, f.header))
            .collect());
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Err(ToolError::NotRoot);
    }
    let global = GlobalConfig::load().map_err(CtlError::GlobalConfig)?;
    let mut ctids = Vec::new();
    for arg in &args.ctids {
        ctids.push(
            Ctid::resolve(arg, &global.names_dir()).map_err(|_| ToolError::BadCtid(arg.clone()))?,
        );
    }
    let which = args.which.unwrap_or(if ctids.is_empty() { Which::Running } else { Which::All });
    let (mut rows, failed) = list::rows_or_errors(&global, &ctids, which)?;
    for (ctid, e) in &failed {
        // Only this VE's row is missing; the others are listed.
        eprintln!("vzlist: CT {ctid}: {}", vz_ctl::error::chain(e));
        ROW_FAILED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    rows.retain(|row| {
        args.filters.iter().all(|(key, pattern)| row.get(key).is_some_and(|v| glob(pattern, v)))
    });
    if !ctids.is_empty() && rows.is_empty() {
        return Err(ToolError::Failed("Container(s) not found".to_owned()));
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
        return Err(ToolError::Failed(format!(
            "Field {part} can not be used with -j: use the field without suffix"
        )));
    }
    let fields = list::fields(&names).map_err(ToolError::Failed)?;
    if let Some(spec) = &args.sort {
        list::sort(&mut rows, spec).map_err(ToolError::Failed)?;
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
