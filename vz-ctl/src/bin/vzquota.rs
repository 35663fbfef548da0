//! `vzquota`: a VE's disk quota (reference §5). `stat|show [-t] <CTID>` prints the first
//! level in vzquota's format (with `-t`, whether the kernel enforces its soft limits, and the
//! second level: its state and usage per uid and gid); `setlimit2 <CTID> -u UID|-g GID -b soft -B hard -i soft -I hard` sets one user's or
//! group's limits inside the VE (second level, QUOTAUGIDLIMIT > 0). The first-level limits
//! are set by `vzctl create/set --diskspace --diskinodes`, as on an OpenVZ host.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::fmt::Write as _;
use std::process::ExitCode;

use vz_ctl::Ve;
use vz_ctl::cli::tool::{self, ToolArg, VZQUOTA, VZQUOTA_SETLIMIT2};
use vz_ctl::config::GlobalConfig;
use vz_ctl::ctid::Ctid;
use vz_ctl::error::{CtlError, Tool, ToolError};
use vz_quota::{PrivateArea, QuotaOwner, SecondLevel, SoftLimits, UgidLimit};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.split_first() {
        Some((command, rest)) if command == "setlimit2" => setlimit2(rest).map(|()| String::new()),
        _ => stat_command(&args),
    };
    tool::exit(Tool::Vzquota, &VZQUOTA, outcome)
}

/// `[-b] stat|show [-t] <CTID>`, or `--help`.
fn stat_command(args: &[String]) -> Result<String, ToolError> {
    let (mut batch, mut second_level, mut words) = (false, false, Vec::new());
    for arg in tool::parse(&VZQUOTA, args)? {
        match arg {
            ToolArg::Opt(key, _) if key == "b" => batch = true,
            ToolArg::Opt(key, _) if key == "t" => second_level = true,
            ToolArg::Opt(..) => return Ok(VZQUOTA.usage()),
            ToolArg::Word(word) => words.push(word),
        }
    }
    match words.as_slice() {
        [command, id] if command == "stat" || command == "show" => stat(id, batch, second_level),
        [] => Err(ToolError::Usage("no command given".into())),
        [command, ..] => Err(ToolError::Usage(format!("bad command line for {command}"))),
    }
}

/// The VE's private area and root.
fn area_of(id: &str) -> Result<(PrivateArea, std::path::PathBuf), ToolError> {
    let global = GlobalConfig::load().map_err(CtlError::GlobalConfig)?;
    let ctid =
        Ctid::resolve(id, &global.names_dir()).map_err(|_| ToolError::BadCtid(id.to_owned()))?;
    let ve = Ve::load(global, ctid)?;
    let private = ve.private()?;
    let root = ve.root()?;
    let area = PrivateArea::open(&private)
        .map_err(|source| ToolError::NoQuota { ctid: id.to_owned(), source })?;
    Ok((area, root))
}

fn stat(id: &str, batch: bool, second_level: bool) -> Result<String, ToolError> {
    let (area, root) = area_of(id)?;
    let stat = area.stat(&root)?;
    let mut text = if batch { stat.batch() } else { stat.to_string() };
    if second_level {
        let soft = match area.first_level_soft(&root)? {
            SoftLimits::Enforced => "enforced by the kernel (project quota)".to_owned(),
            SoftLimits::Reported { reason } => format!("reported only ({reason})"),
            other => format!("{other:?}"),
        };
        let _ = writeln!(text, "Soft limits and grace: {soft}");
        text.push_str(&second_level_report(&area, &root)?);
    }
    Ok(text)
}

/// `User/group quota: …` and usage per uid and gid (from the kernel where it enforces, from a
/// walk of the tree otherwise: the numbers are the same files either way).
fn second_level_report(area: &PrivateArea, root: &std::path::Path) -> Result<String, ToolError> {
    let state = match area.second_level(root)? {
        SecondLevel::Off => "off".to_owned(),
        SecondLevel::Enforced => "on,active".to_owned(),
        SecondLevel::Unavailable { reason } => format!("on,inactive ({reason})"),
        other => format!("{other:?}"),
    };
    let mut text = format!("User/group quota: {state}\n");
    let Ok(usage) = area.ugid_usage(root) else { return Ok(text) };
    // OpenVZ's counters: ids with files (every one is loaded: the kernel tracks them all).
    let ids = usage.by_uid.len() + usage.by_gid.len();
    let limit = area.ugid_limit()?;
    let _ = writeln!(text, "Ugids: loaded {ids}, total {ids}, limit {limit}");
    let exceeded = if limit > 0 && ids as u64 > limit { "yes" } else { "no" };
    let _ = writeln!(text, "Ugid limit was exceeded: {exceeded}");
    let _ = writeln!(text, "{:>11} {:>8} {:>14} {:>14}", "type", "id", "1k-blocks", "inodes");
    let rows = usage.by_uid.iter().map(|(id, u)| ("user", id, u));
    for (kind, id, u) in rows.chain(usage.by_gid.iter().map(|(id, u)| ("group", id, u))) {
        let _ = writeln!(text, "{kind:>11} {id:>8} {:>14} {:>14}", u.blocks_kb, u.inodes);
    }
    Ok(text)
}

fn setlimit2(args: &[String]) -> Result<(), ToolError> {
    let usage = || ToolError::Usage("setlimit2 needs a CTID, -u UID or -g GID, and limits".into());
    let mut owner = None;
    let mut limit = UgidLimit::default();
    let mut words = Vec::new();
    for arg in tool::parse(&VZQUOTA_SETLIMIT2, args)? {
        let (flag, value) = match arg {
            ToolArg::Word(word) => {
                words.push(word);
                continue;
            }
            ToolArg::Opt(flag, value) => (flag, value.unwrap_or_default()),
        };
        let number: u64 = value
            .parse()
            .map_err(|_| ToolError::Usage(format!("bad value {value} for -{flag}")))?;
        let id = || u32::try_from(number).map_err(|_| ToolError::Usage(format!("bad id {value}")));
        match flag.as_str() {
            "u" => owner = Some(QuotaOwner::User(id()?)),
            "g" => owner = Some(QuotaOwner::Group(id()?)),
            "b" => limit.blocks_soft = number,
            "B" => limit.blocks_hard = number,
            "i" => limit.inodes_soft = number,
            _ => limit.inodes_hard = number,
        }
    }
    let ([id], Some(owner)) = (words.as_slice(), owner) else { return Err(usage()) };
    let (area, root) = area_of(id)?;
    Ok(area.set_ugid_limits(&root, owner, limit)?)
}
