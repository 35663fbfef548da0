//! `vzquota`: a VE's disk quota (reference §5). `stat|show [-t] <CTID>` prints the first
//! level in vzquota's format (with `-t`, whether the kernel enforces its soft limits, and the
//! second level: its state and usage per uid and gid); `setlimit2 <CTID> -u UID|-g GID -b soft -B hard -i soft -I hard` sets one user's or
//! group's limits inside the VE (second level, QUOTAUGIDLIMIT > 0). The first-level limits
//! are set by `vzctl create/set --diskspace --diskinodes`, as on an OpenVZ host.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command line program")]

use std::fmt::Write as _;
use std::process::ExitCode;

use vz_ctl::Ve;
use vz_ctl::config::GlobalConfig;
use vz_ctl::ctid::Ctid;
use vz_quota::{PrivateArea, QuotaError, QuotaOwner, SecondLevel, SoftLimits, UgidLimit};

const USAGE: &str = "Usage: vzquota [-b] stat|show [-t] <CTID>\n\
       vzquota setlimit2 <CTID> -u UID|-g GID -b bsoft -B bhard -i isoft -I ihard";

/// A failure: vzquota's exit code and the message.
type Failure = (u8, String);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match words.as_slice() {
        ["setlimit2", id, options @ ..] => setlimit2(id, options).map(|()| String::new()),
        [first, rest @ ..] => {
            let batch = *first == "-b";
            let rest: Vec<&str> = if batch { rest.to_vec() } else { words.clone() };
            match rest.as_slice() {
                ["stat" | "show", id] => stat(id, batch, false),
                ["stat" | "show", "-t", id] | ["stat" | "show", id, "-t"] => stat(id, batch, true),
                _ => Err((2, USAGE.to_owned())),
            }
        }
        [] => Err((2, USAGE.to_owned())),
    };
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("vzquota: {message}");
            ExitCode::from(code)
        }
    }
}

/// The VE's private area and root.
fn area_of(id: &str) -> Result<(PrivateArea, std::path::PathBuf), Failure> {
    let global = GlobalConfig::load().map_err(|e| (1, e.to_string()))?;
    let ctid = Ctid::resolve(id, &global.names_dir()).map_err(|e| (2, e.to_string()))?;
    let ve = Ve::load(global, ctid).map_err(|e| (1, e.to_string()))?;
    let private = ve.private().map_err(|e| (1, e.to_string()))?;
    let root = ve.root().map_err(|e| (1, e.to_string()))?;
    let area = PrivateArea::open(&private).map_err(|e| (11, e.to_string()))?;
    Ok((area, root))
}

fn stat(id: &str, batch: bool, second_level: bool) -> Result<String, Failure> {
    let (area, root) = area_of(id)?;
    let stat = area.stat(&root).map_err(|e| (1, e.to_string()))?;
    let mut text = if batch { stat.batch() } else { stat.to_string() };
    if second_level {
        let soft = match area.first_level_soft(&root).map_err(|e| (1, e.to_string()))? {
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
fn second_level_report(area: &PrivateArea, root: &std::path::Path) -> Result<String, Failure> {
    let state = match area.second_level(root).map_err(|e| (1, e.to_string()))? {
        SecondLevel::Off => "off".to_owned(),
        SecondLevel::Enforced => "on,active".to_owned(),
        SecondLevel::Unavailable { reason } => format!("on,inactive ({reason})"),
        other => format!("{other:?}"),
    };
    let mut text = format!("User/group quota: {state}\n");
    let Ok(usage) = area.ugid_usage(root) else { return Ok(text) };
    // OpenVZ's counters: ids with files (every one is loaded: the kernel tracks them all).
    let ids = usage.by_uid.len() + usage.by_gid.len();
    let limit = area.ugid_limit().map_err(|e| (1, e.to_string()))?;
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

fn setlimit2(id: &str, options: &[&str]) -> Result<(), Failure> {
    let usage = || (2, USAGE.to_owned());
    let mut owner = None;
    let mut limit = UgidLimit::default();
    let mut rest = options.iter();
    while let (Some(flag), Some(value)) = (rest.next(), rest.next()) {
        let number: u64 =
            value.parse().map_err(|_| (2, format!("bad value {value} for {flag}")))?;
        let id = || u32::try_from(number).map_err(|_| (2, format!("bad id {value}")));
        match *flag {
            "-u" => owner = Some(QuotaOwner::User(id()?)),
            "-g" => owner = Some(QuotaOwner::Group(id()?)),
            "-b" => limit.blocks_soft = number,
            "-B" => limit.blocks_hard = number,
            "-i" => limit.inodes_soft = number,
            "-I" => limit.inodes_hard = number,
            _ => return Err(usage()),
        }
    }
    if !options.len().is_multiple_of(2) {
        return Err(usage());
    }
    let owner = owner.ok_or_else(usage)?;
    let (area, root) = area_of(id)?;
    area.set_ugid_limits(&root, owner, limit).map_err(|e| match e {
        // "running but ugid quota inactive".
        QuotaError::SecondLevelUnavailable { .. } => (9, e.to_string()),
        other => (1, other.to_string()),
    })
}
