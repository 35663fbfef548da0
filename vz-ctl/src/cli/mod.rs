//! vzctl's command line: the option table, the parser, and the dispatch to `ops`.

pub mod defs;
pub mod parse;
pub mod run;

pub use parse::{Action, Invocation, parse};
pub use run::run;

/// The usage text of `vzctl --help`.
pub fn usage() -> String {
    let mut text = String::from(
        "Usage: vzctl [--quiet | --verbose] [--skiplock] <command> <ctid|name> [options]\n\
         Commands: create destroy start stop restart status mount umount set exec exec2 enter runscript\n\
         chkpnt (suspend) restore (resume)\n\
         Options:\n",
    );
    for opt in defs::OPTIONS {
        let arg = if opt.takes_value { " <value>" } else { "" };
        text.push_str(&format!("  --{}{arg}\t{}\n", opt.name, opt.help));
    }
    text
}
