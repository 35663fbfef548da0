//! vzctl's command line: the option table, the parser, the dispatch to `ops`, the help
//! texts, and what the table generates (man pages, completions); the small tools' tables and
//! parser.

pub mod defs;
pub mod doc;
pub mod parse;
pub mod run;
mod run_more;
pub mod tool;

use defs::{COMMANDS, Cmd, GLOBAL_FLAGS, OptDef};
pub use parse::{Action, Invocation, parse};
pub use run::run;

/// The usage text of `vzctl --help`: the global flags and every command.
pub fn usage() -> String {
    let mut text = String::from(
        "Usage: vzctl [--quiet | --verbose] [--skiplock] <command> <ctid|name> [options]\n\
         \x20      vzctl <command> --help\n\nGlobal flags (before the command):\n",
    );
    for (flag, help) in GLOBAL_FLAGS {
        text.push_str(&format!("  --{flag:<26} {help}\n"));
    }
    text.push_str("\nCommands:\n");
    for def in COMMANDS {
        text.push_str(&format!("  {:<28} {}\n", def.words.join(" | "), def.help));
    }
    text
}

/// The usage text of `vzctl <command> --help`: its synopsis and every option it takes.
pub fn command_usage(cmd: Cmd) -> String {
    let def = cmd.def();
    let mut text = format!("Usage: vzctl {} <ctid|name> [options]", cmd.name());
    if !def.args.is_empty() {
        text.push(' ');
        text.push_str(def.args);
    }
    text.push('\n');
    text.push_str(def.help);
    text.push('\n');
    let options: Vec<&OptDef> = defs::options_of(cmd).collect();
    if !options.is_empty() {
        text.push_str("\nOptions:\n");
    }
    for opt in options {
        text.push_str(&format!("  {:<34} {}\n", spelling(opt), opt.help));
    }
    text
}

/// `-k, --kmemsize BARRIER[:LIMIT]` as the help texts show an option.
pub fn spelling(opt: &OptDef) -> String {
    let mut text = opt.short.map(|c| format!("-{c}, ")).unwrap_or_default();
    text.push_str("--");
    text.push_str(opt.name);
    if let Some(syntax) = opt.value {
        text.push(' ');
        text.push_str(syntax);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_help_naming_its_options() {
        for def in COMMANDS {
            let text = command_usage(def.cmd);
            assert!(text.starts_with(&format!("Usage: vzctl {} ", def.words[0])), "{text}");
            for opt in defs::options_of(def.cmd) {
                assert!(text.contains(&format!("--{}", opt.name)), "{text}");
            }
            assert!(usage().contains(def.words[0]));
        }
        assert!(command_usage(Cmd::Set).contains("-k, --kmemsize BARRIER[:LIMIT]"));
    }
}
