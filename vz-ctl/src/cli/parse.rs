//! Parsing vzctl's command line without I/O: `vzctl [flags] <command> <CTID|name> [options]`
//! (reference §1.1), into an [`Invocation`].

use super::defs::{self, Cmd};
use crate::error::{CtlError, Result};

/// What the command line asks for.
#[derive(Debug, Default)]
pub struct Invocation {
    /// `--quiet`.
    pub quiet: bool,
    /// `--verbose`, counted.
    pub verbose: u8,
    /// `--skiplock`.
    pub skiplock: bool,
    /// What to do.
    pub action: Action,
}

/// The action of an invocation.
#[derive(Debug, Default)]
pub enum Action {
    /// `--help`, or no arguments at all (which is an error in OpenVZ: exit 20).
    #[default]
    Help,
    /// `--version`.
    Version,
    /// `vzctl <command> --help` (or `--help` among its options): that command's help.
    CommandHelp(Cmd),
    /// A command on a CT.
    Run {
        /// The command.
        cmd: Cmd,
        /// The CTID or name as given.
        ctid: String,
        /// Options in order: (canonical name, value).
        options: Vec<(&'static str, Option<String>)>,
        /// Positional arguments after the CTID (exec's command, runscript's file).
        rest: Vec<String>,
    },
}

/// Parses `args` (without the program name).
///
/// # Errors
/// 20 for an unknown command or a missing option value, 21 (`CT ID missing`) without a
/// CTID, 21 for an option the command does not take, 20 for extra arguments.
pub fn parse(args: &[String]) -> Result<Invocation> {
    let mut inv = Invocation::default();
    let mut args = args.iter();
    let word = loop {
        match args.next().map(String::as_str) {
            Some("--quiet") => inv.quiet = true,
            Some("--verbose") => inv.verbose = inv.verbose.saturating_add(1),
            Some("--skiplock") => inv.skiplock = true,
            Some("--version") => {
                inv.action = Action::Version;
                return Ok(inv);
            }
            Some("--help" | "help") => return Ok(inv),
            Some(word) => break word,
            None => {
                return Err(CtlError::Usage(
                    "Usage: vzctl [options] <command> <ctid> [parameters]".into(),
                ));
            }
        }
    };
    let cmd =
        Cmd::from_word(word).ok_or_else(|| CtlError::Usage(format!("Bad command: {word}")))?;
    let ctid =
        args.next().ok_or_else(|| CtlError::MissingArgument("CT ID missing".into()))?.clone();
    if ctid == "--help" {
        inv.action = Action::CommandHelp(cmd);
        return Ok(inv);
    }
    let mut options = Vec::new();
    let mut rest = Vec::new();
    let free_form = matches!(cmd, Cmd::Exec | Cmd::Exec2 | Cmd::Exec3);
    while let Some(arg) = args.next() {
        if free_form || !rest.is_empty() || !arg.starts_with('-') || arg == "-" {
            rest.push(arg.clone());
            continue;
        }
        if arg == "--help" {
            inv.action = Action::CommandHelp(cmd);
            return Ok(inv);
        }
        let (def, name, inline) = match arg.strip_prefix("--") {
            Some(long) => {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_owned())),
                    None => (long, None),
                };
                (defs::find(cmd, name), name, inline)
            }
            // `-k 10M` or `-k10M`, as getopt reads OpenVZ's short options.
            None => {
                let short = &arg[1..];
                let letter = short.chars().next().unwrap_or_default();
                let inline = Some(&short[letter.len_utf8()..]).filter(|v| !v.is_empty());
                (defs::find_short(cmd, letter), short, inline.map(str::to_owned))
            }
        };
        let def = def.ok_or_else(|| CtlError::BadParameter {
            option: name.to_owned(),
            value: String::new(),
            reason: format!("unrecognized option for {word}"),
        })?;
        let name = def.name;
        let value =
            match (def.takes_value(), inline) {
                (true, Some(v)) => Some(v),
                (true, None) => Some(args.next().cloned().ok_or_else(|| {
                    CtlError::Usage(format!("option --{name} requires an argument"))
                })?),
                (false, None) => None,
                (false, Some(_)) => {
                    return Err(CtlError::Usage(format!("option --{name} takes no argument")));
                }
            };
        options.push((def.name, value));
    }
    let wants_rest =
        matches!(cmd, Cmd::Exec | Cmd::Exec2 | Cmd::Exec3 | Cmd::Runscript | Cmd::Console);
    if !wants_rest && !rest.is_empty() {
        return Err(CtlError::Usage(format!("Invalid extra arguments: {}", rest.join(" "))));
    }
    inv.action = Action::Run { cmd, ctid, options, rest };
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &str) -> Result<Invocation> {
        parse(&words.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn a_full_command_line_parses() {
        let inv =
            parse_words("--quiet create 101 --ostemplate busybox --ipadd=10.0.0.1 --ip 10.0.0.2")
                .unwrap();
        assert!(inv.quiet);
        let Action::Run { cmd, ctid, options, .. } = inv.action else { panic!() };
        assert_eq!(cmd, Cmd::Create);
        assert_eq!(ctid, "101");
        assert_eq!(options.len(), 3);
        assert_eq!(options[2], ("ipadd", Some("10.0.0.2".to_owned())));
    }

    #[test]
    fn exec_keeps_everything_after_the_ctid() {
        let inv = parse_words("exec 101 ls --all -l").unwrap();
        let Action::Run { rest, .. } = inv.action else { panic!() };
        assert_eq!(rest, ["ls", "--all", "-l"]);
    }

    #[test]
    fn short_beancounter_options_are_their_long_forms() {
        let inv = parse_words("set 101 -k 10M -p20 --save").unwrap();
        let Action::Run { options, .. } = inv.action else { panic!() };
        assert_eq!(options[0], ("kmemsize", Some("10M".to_owned())));
        assert_eq!(options[1], ("numproc", Some("20".to_owned())));
        assert_eq!(parse_words("set 101 -z 1").unwrap_err().exit_code(), 21);
        assert_eq!(parse_words("start 101 -k 1").unwrap_err().exit_code(), 21);
        assert_eq!(parse_words("set 101 -k").unwrap_err().exit_code(), 20);
    }

    #[test]
    fn help_after_a_command_is_that_commands_help() {
        for words in ["set --help", "set 101 --help", "set 101 --save --help", "destroy --help"] {
            let inv = parse_words(words).unwrap();
            assert!(matches!(inv.action, Action::CommandHelp(Cmd::Set | Cmd::Destroy)), "{words}");
        }
        let inv = parse_words("exec 101 ls --help").unwrap();
        let Action::Run { rest, .. } = inv.action else { panic!() };
        assert_eq!(rest, ["ls", "--help"]);
    }

    #[test]
    fn errors_have_openvz_exit_codes() {
        assert_eq!(parse_words("").unwrap_err().exit_code(), 20);
        assert_eq!(parse_words("frobnicate 101").unwrap_err().exit_code(), 20);
        assert_eq!(parse_words("start").unwrap_err().exit_code(), 21);
        assert_eq!(parse_words("start 101 --bogus").unwrap_err().exit_code(), 21);
        assert_eq!(parse_words("start 101 extra").unwrap_err().exit_code(), 20);
        assert_eq!(parse_words("set 101 --hostname").unwrap_err().exit_code(), 20);
    }
}
