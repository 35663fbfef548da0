//! The option tables of the small tools (vzlist, vzubc, vzcpucheck, vzcfgvalidate, vzquota)
//! and their getopt-compatible parser on lexopt: clustered short options (`-HS`), a value
//! attached or apart (`-octid`, `-o ctid`, `--output=ctid`), `--` ending the options. The same
//! tables make each tool's `--help`, man page and completions (`super::doc`).

use std::ffi::OsString;
use std::process::ExitCode;

use crate::error::{Tool, ToolError, chain};

/// One option of a small tool.
#[derive(Debug)]
pub struct ToolOpt {
    /// The one-letter form, if any.
    pub short: Option<char>,
    /// The long form without dashes, if any.
    pub long: Option<&'static str>,
    /// The value's name in help texts (`name[,name...]`); `None` for a flag.
    pub value: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
}

/// One tool: its name, synopsis, what it does, and its options.
#[derive(Debug)]
pub struct ToolDef {
    /// The program name.
    pub name: &'static str,
    /// The synopsis lines, without the program name.
    pub synopsis: &'static [&'static str],
    /// What the tool does, one paragraph.
    pub about: &'static str,
    /// Its options.
    pub options: &'static [ToolOpt],
    /// The exit status section of its man page.
    pub exit_status: &'static str,
}

impl ToolDef {
    /// The usage text (`--help`).
    pub fn usage(&self) -> String {
        let mut text = String::new();
        for (i, line) in self.synopsis.iter().enumerate() {
            let lead = if i == 0 { "Usage:" } else { "      " };
            text.push_str(&format!("{lead} {} {line}\n", self.name));
        }
        text.push_str(self.about);
        text.push_str("\nOptions:\n");
        for opt in self.options {
            text.push_str(&format!("  {:<28} {}\n", opt.spelling(), opt.help));
        }
        text
    }

    /// The option `-<c>`.
    fn short(&self, c: char) -> Option<&'static ToolOpt> {
        self.options.iter().find(|o| o.short == Some(c))
    }

    /// The option `--<name>`.
    fn long(&self, name: &str) -> Option<&'static ToolOpt> {
        self.options.iter().find(|o| o.long == Some(name))
    }
}

impl ToolOpt {
    /// `-o, --output name[,name...]` as help texts show it.
    pub fn spelling(&self) -> String {
        let mut forms = Vec::new();
        if let Some(c) = self.short {
            forms.push(format!("-{c}"));
        }
        if let Some(l) = self.long {
            forms.push(format!("--{l}"));
        }
        let mut text = forms.join(", ");
        if let Some(v) = self.value {
            text.push(' ');
            text.push_str(v);
        }
        text
    }

    /// The name the tool's code matches on: the long form, else the letter.
    pub fn key(&self) -> String {
        self.long.map_or_else(|| self.short.map(String::from).unwrap_or_default(), str::to_owned)
    }
}

/// One parsed argument of a small tool.
#[derive(Debug, PartialEq, Eq)]
pub enum ToolArg {
    /// An option of the table (its [`ToolOpt::key`]) and its value.
    Opt(String, Option<String>),
    /// A positional argument.
    Word(String),
}

/// Parses `args` (without the program name) against `tool`'s table.
///
/// # Errors
/// [`ToolError::Usage`] for an unknown option, a missing value, a value given to a flag, or an
/// argument that is not UTF-8.
pub fn parse(tool: &ToolDef, args: &[String]) -> Result<Vec<ToolArg>, ToolError> {
    use lexopt::Arg;
    let mut parser = lexopt::Parser::from_args(args.iter().map(OsString::from));
    let mut parsed = Vec::new();
    let usage = |e: lexopt::Error| ToolError::Usage(e.to_string());
    while let Some(arg) = parser.next().map_err(usage)? {
        let (opt, shown, long) = match arg {
            Arg::Short(c) => (tool.short(c), format!("-{c}"), false),
            Arg::Long(name) => (tool.long(name), format!("--{name}"), true),
            Arg::Value(word) => {
                parsed.push(ToolArg::Word(utf8(word)?));
                continue;
            }
        };
        let opt = opt.ok_or_else(|| ToolError::Usage(format!("Invalid option {shown}")))?;
        let value = match opt.value {
            Some(_) => Some(utf8(parser.value().map_err(usage)?)?),
            // `--all=1`; in a short cluster (`-HL`) the rest are more options.
            None if long => {
                if let Some(v) = parser.optional_value() {
                    let v = v.to_string_lossy();
                    return Err(ToolError::Usage(format!("option {shown} takes no value ({v})")));
                }
                None
            }
            None => None,
        };
        parsed.push(ToolArg::Opt(opt.key(), value));
    }
    Ok(parsed)
}

fn utf8(word: OsString) -> Result<String, ToolError> {
    word.into_string()
        .map_err(|w| ToolError::Usage(format!("argument {} is not UTF-8", w.to_string_lossy())))
}

/// Ends a small tool: writes its output (a closed pipe, `vzlist | head`, ends quietly), or
/// its error once with its causes (and the usage after a bad command line), and returns its
/// exit code. `vzcfgvalidate`'s [`ToolError::Invalid`] prints nothing: its findings did.
pub fn exit(tool: Tool, def: &ToolDef, outcome: Result<String, ToolError>) -> ExitCode {
    use std::io::Write;
    match outcome {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut stderr = std::io::stderr().lock();
            let prefix = if tool == Tool::Vzquota { "vzquota: " } else { "" };
            if !matches!(e, ToolError::Invalid) {
                let _ = writeln!(stderr, "{prefix}{}", chain(&e));
            }
            if matches!(e, ToolError::Usage(_)) {
                let _ = stderr.write_all(def.usage().as_bytes());
            }
            ExitCode::from(e.exit_code(tool))
        }
    }
}

/// `vzlist` (reference §4).
pub const VZLIST: ToolDef = ToolDef {
    name: "vzlist",
    synopsis: &[
        "[-a|-S] [-n] [-H] [-t] [-j] [-o name[,name...] | -1] [-s [-]name] [-h pattern] [-N pattern] [-d pattern] [CTID ...]",
        "-L | --list",
    ],
    about: "Lists containers (only the running ones by default) and their parameters, as a table or JSON.",
    options: &[
        ToolOpt { short: Some('a'), long: Some("all"), value: None, help: "list all containers" },
        ToolOpt {
            short: Some('S'),
            long: Some("stopped"),
            value: None,
            help: "list only the containers that are not running",
        },
        ToolOpt {
            short: Some('n'),
            long: Some("name"),
            value: None,
            help: "show the name (else the CTID) in the first column",
        },
        ToolOpt { short: Some('H'), long: Some("no-header"), value: None, help: "no header line" },
        ToolOpt {
            short: Some('t'),
            long: Some("no-trim"),
            value: None,
            help: "do not cut long values to their column",
        },
        ToolOpt { short: Some('j'), long: Some("json"), value: None, help: "JSON output" },
        ToolOpt {
            short: Some('o'),
            long: Some("output"),
            value: Some("name[,name...]"),
            help: "the fields to show (vzlist -L lists them)",
        },
        ToolOpt { short: Some('1'), long: None, value: None, help: "only CTIDs: -H -o ctid" },
        ToolOpt {
            short: Some('s'),
            long: Some("sort"),
            value: Some("[-]name"),
            help: "sort by a field; -name sorts in reverse",
        },
        ToolOpt {
            short: Some('h'),
            long: Some("hostname"),
            value: Some("pattern"),
            help: "only host names matching a shell pattern",
        },
        ToolOpt {
            short: Some('N'),
            long: Some("name_filter"),
            value: Some("pattern"),
            help: "only names matching a shell pattern",
        },
        ToolOpt {
            short: Some('d'),
            long: Some("description"),
            value: Some("pattern"),
            help: "only descriptions matching a shell pattern",
        },
        ToolOpt {
            short: Some('L'),
            long: Some("list"),
            value: None,
            help: "list the fields and their headers",
        },
        ToolOpt { short: None, long: Some("help"), value: None, help: "show this help" },
    ],
    exit_status: "0 on success; 1 on any error (bad option, unknown field, invalid CTID, \
                  container not found, not root).",
};

/// `vzubc` (reference §10): OpenVZ's two-letter options (`-wd`, `-qh`, `-rc` …) are not
/// getopt's, so vzubc parses its own command line; this table makes its help and man page.
pub const VZUBC: ToolDef = ToolDef {
    name: "vzubc",
    synopsis: &[
        "[-w|-wd|-wt|-wn N] [-q [-qh R] [-qm R] | -v] [-r|-rc|-rd DIR] [-i|-ic|-id DIR] [-c] [-f FILE|-] [CTID ...]",
        "--proc [-f FILE|-] [CTID ...]",
    ],
    about: "Shows the beancounters of running containers (all, or the CTIDs or names given) as OpenVZ's vzubc: held and peak with their share of barrier and limit, pages as bytes, - for zero and unlimited. Reads vz's own accounting (each container's cgroups); a stock kernel has no /proc/user_beancounters, and --proc prints that file's text from the same accounting.",
    options: &[
        ToolOpt {
            short: Some('w'),
            long: Some("watch"),
            value: None,
            help: "run under watch(1); -wd shows differences, -wt hides the title, -wn N refreshes every N seconds",
        },
        ToolOpt {
            short: Some('q'),
            long: Some("quiet"),
            value: None,
            help: "only beancounters that failed or are near their barrier: held/barrier above -qh R (0.5), maxheld/barrier above -qm R (0.8); R > 1 is a percentage",
        },
        ToolOpt {
            short: Some('v'),
            long: Some("verbose"),
            value: None,
            help: "also the unlimited beancounters",
        },
        ToolOpt {
            short: Some('r'),
            long: Some("relative"),
            value: None,
            help: "fail counters since the previous run, kept in ubc.CTID.NAME.failcnt of the state directory (-rd DIR, default /tmp/vzubc.store); -rc clears them",
        },
        ToolOpt {
            short: Some('i'),
            long: Some("incremental"),
            value: None,
            help: "also the change of held since the previous run (ubc.CTID.NAME.held; -id DIR as -rd); -ic clears them",
        },
        ToolOpt {
            short: Some('c'),
            long: Some("color"),
            value: None,
            help: "red for failing or over the barrier, yellow for near it (the -q thresholds)",
        },
        ToolOpt {
            short: Some('f'),
            long: Some("file"),
            value: Some("FILE|-"),
            help: "read the text of /proc/user_beancounters from FILE (- for stdin) instead of measuring",
        },
        ToolOpt {
            short: None,
            long: Some("proc"),
            value: None,
            help: "print the text of /proc/user_beancounters (Version: 2.5) from vz's accounting",
        },
        ToolOpt { short: Some('h'), long: Some("help"), value: None, help: "show this help" },
    ],
    exit_status: "0 on success; 1 on an error (a CTID that is not running, a file that cannot be read); 2 for a bad command line.",
};

/// `vzpid` (reference §10).
pub const VZPID: ToolDef = ToolDef {
    name: "vzpid",
    synopsis: &["PID ...", "-"],
    about: "Tells which container each process belongs to: Pid, VEID (0 for the host) and Name, tab-separated. With - the pids are read from standard input. The container is the one whose cgroup holds the process.",
    options: &[ToolOpt {
        short: Some('h'),
        long: Some("help"),
        value: None,
        help: "show this help",
    }],
    exit_status: "0 on success (a pid that does not exist prints no line); 1 without arguments, for a pid that is not a number, or not root.",
};

/// `vzmemcheck` (reference §10).
pub const VZMEMCHECK: ToolDef = ToolDef {
    name: "vzmemcheck",
    synopsis: &["[-v] [-A]"],
    about: "Shows how much of the node's memory the running containers use (util) and are promised (commit), as OpenVZ's vzmemcheck: low memory (40% of RAM against kmemsize and the socket buffers), RAM (physpages), memory and swap (oomguarpages), allocated memory (privvmpages, vmguarpages). Values come from vz's accounting of each container.",
    options: &[
        ToolOpt {
            short: Some('v'),
            long: None,
            value: None,
            help: "one line per container, then the summary",
        },
        ToolOpt {
            short: Some('A'),
            long: None,
            value: None,
            help: "absolute values in megabytes instead of percent of the node",
        },
        ToolOpt { short: Some('h'), long: None, value: None, help: "show this help" },
    ],
    exit_status: "0 on success; 1 on an error or a bad command line.",
};

/// `vzoversell`: OpenVZ's vzoversell script (VSwap containers' RAM and swap against the node).
pub const VZOVERSELL: ToolDef = ToolDef {
    name: "vzoversell",
    synopsis: &["[FILE]"],
    about: "Shows each running container's RAM (physpages) and swap (swappages) used, peak, limit and fails, their totals, and how much of the node's RAM, swap and both the limits promise (oversell), as OpenVZ's vzoversell. Reads vz's accounting, or the text of /proc/user_beancounters from FILE.",
    options: &[ToolOpt {
        short: Some('h'),
        long: Some("help"),
        value: None,
        help: "show this help",
    }],
    exit_status: "0 on success; 1 on an error or a bad command line.",
};

/// `vzsplit` (reference §10).
pub const VZSPLIT: ToolDef = ToolDef {
    name: "vzsplit",
    synopsis: &["[-n NUMBER] [-f NAME] [-s SWAP_KB] [-v yes]"],
    about: "Writes a VSwap sample config that divides this node among NUMBER containers: each gets an equal share of the RAM (less 50 MB for the host) as PHYSPAGES and of the swap as SWAPPAGES, half of the VE_PRIVATE file system (less 10 GB for the host) shared out as DISKSPACE and DISKINODES, every other beancounter unlimited and CPUUNITS 1000. To standard output, or with -f to VE_CONF_DIR/ve-NAME.conf-sample (for vzctl create --config NAME). Without -n it asks for the number.",
    options: &[
        ToolOpt {
            short: Some('n'),
            long: None,
            value: Some("NUMBER"),
            help: "the number of containers",
        },
        ToolOpt {
            short: Some('f'),
            long: None,
            value: Some("NAME"),
            help: "write VE_CONF_DIR/ve-NAME.conf-sample (refused if it exists)",
        },
        ToolOpt {
            short: Some('s'),
            long: None,
            value: Some("SWAP_KB"),
            help: "the swap to share out, in kilobytes, instead of the node's",
        },
        ToolOpt {
            short: Some('v'),
            long: None,
            value: Some("yes"),
            help: "VSwap configs (vz's containers are VSwap containers: yes is the only value)",
        },
        ToolOpt { short: Some('h'), long: None, value: None, help: "show this help" },
    ],
    exit_status: "0 on success; 1 when the node cannot hold that many containers, the file exists, or on a bad command line.",
};

/// `vzcalc` (reference §10).
pub const VZCALC: ToolDef = ToolDef {
    name: "vzcalc",
    synopsis: &["[-v] CTID"],
    about: "Shows how much of the node one container uses now (Current, n/a when it is stopped), is promised (Promised) and may take at most (Max), in percent, with OpenVZ's vzcalc formulas: low memory (40% of RAM) against kmemsize and the socket buffers, RAM against physpages, memory and swap against oomguarpages, allocated memory against privvmpages and vmguarpages, processes against the kernel's threads-max. Over 100 is overcommitment. Unlimited bounds show as unlimited.",
    options: &[
        ToolOpt {
            short: Some('v'),
            long: None,
            value: None,
            help: "each resource, then the Memory summary",
        },
        ToolOpt { short: Some('h'), long: None, value: None, help: "show this help" },
    ],
    exit_status: "0 on success; 1 for an unknown container or a bad command line.",
};

/// `vzcpucheck` (reference §6).
pub const VZCPUCHECK: ToolDef = ToolDef {
    name: "vzcpucheck",
    synopsis: &["[-v]"],
    about: "Shows the CPU units promised to the host and the running containers against the power of the node.",
    options: &[
        ToolOpt {
            short: Some('v'),
            long: None,
            value: None,
            help: "also list the units of each container",
        },
        ToolOpt { short: Some('h'), long: Some("help"), value: None, help: "show this help" },
    ],
    exit_status: "0 on success; 1 on an error; 2 for a bad command line.",
};

/// `vzcfgvalidate` (reference §3.4).
pub const VZCFGVALIDATE: ToolDef = ToolDef {
    name: "vzcfgvalidate",
    synopsis: &["[-r|-i] [-v yes|no] <configfile>"],
    about: "Checks the beancounters of a container configuration against OpenVZ's consistency rules; repairs them with -r or -i.",
    options: &[
        ToolOpt { short: Some('r'), long: None, value: None, help: "repair mode" },
        ToolOpt {
            short: Some('i'),
            long: None,
            value: None,
            help: "interactive repair mode (asks before each repair)",
        },
        ToolOpt {
            short: Some('v'),
            long: None,
            value: Some("yes|no"),
            help: "force VSwap (yes) or non-VSwap (no) mode",
        },
        ToolOpt { short: Some('h'), long: Some("help"), value: None, help: "show this help" },
    ],
    exit_status: "0 when the configuration is valid; 1 on a program error or a bad command \
                  line; 2 when the validation failed.",
};

/// `vzquota`'s options before the command (reference §5).
pub const VZQUOTA: ToolDef = ToolDef {
    name: "vzquota",
    synopsis: &[
        "[-b] stat|show [-t] <CTID>",
        "setlimit2 <CTID> -u UID|-g GID -b bsoft -B bhard -i isoft -I ihard",
    ],
    about: "Shows a container's disk quota (stat, with -t the second level) and sets the limits of one user or group inside it (setlimit2).",
    options: &[
        ToolOpt {
            short: Some('b'),
            long: None,
            value: None,
            help: "batch output: usage soft hard grace expire (before stat)",
        },
        ToolOpt {
            short: Some('t'),
            long: None,
            value: None,
            help: "stat: also the kernel's enforcement and the second level",
        },
        ToolOpt { short: Some('h'), long: Some("help"), value: None, help: "show this help" },
    ],
    exit_status: "0 on success; 1 system error; 2 bad command line or CTID; 9 second-level \
                  quota inactive; 11 no quota (private area) for the container.",
};

/// `vzquota setlimit2`'s options.
pub const VZQUOTA_SETLIMIT2: ToolDef = ToolDef {
    name: "vzquota setlimit2",
    synopsis: &["<CTID> -u UID|-g GID -b bsoft -B bhard -i isoft -I ihard"],
    about: "Sets one user's or group's limits inside a container (second level).",
    options: &[
        ToolOpt { short: Some('u'), long: None, value: Some("UID"), help: "the user" },
        ToolOpt { short: Some('g'), long: None, value: Some("GID"), help: "the group" },
        ToolOpt {
            short: Some('b'),
            long: None,
            value: Some("bsoft"),
            help: "block soft limit, 1K",
        },
        ToolOpt {
            short: Some('B'),
            long: None,
            value: Some("bhard"),
            help: "block hard limit, 1K",
        },
        ToolOpt { short: Some('i'), long: None, value: Some("isoft"), help: "inode soft limit" },
        ToolOpt { short: Some('I'), long: None, value: Some("ihard"), help: "inode hard limit" },
    ],
    exit_status: "",
};

/// `vzmigrate` (reference §8.2).
pub const VZMIGRATE: ToolDef = ToolDef {
    name: "vzmigrate",
    synopsis: &[
        "[--online [--mode=auto|plain|page-server|lazy|pre-copy]] [-r yes|no] [--keep-dst] [--check-only] [-t] [--ssh=opts] <dest> <CTID>",
    ],
    about: "Moves a container to another server running vz, over ssh as root with key \
            authentication: offline (stop, copy, start there) or --online (suspend, dump, copy, \
            restore there; TCP connections kept). A failure leaves the container on the source.",
    options: &[
        ToolOpt {
            short: None,
            long: Some("online"),
            value: None,
            help: "migrate a running container without stopping it",
        },
        ToolOpt { short: None, long: Some("live"), value: None, help: "the same as --online" },
        ToolOpt {
            short: Some('r'),
            long: Some("remove-area"),
            value: Some("yes|no"),
            help: "remove the container on the source afterwards (default yes)",
        },
        ToolOpt {
            short: None,
            long: Some("keep-dst"),
            value: None,
            help: "keep the destination's copy after a failure",
        },
        ToolOpt {
            short: None,
            long: Some("check-only"),
            value: None,
            help: "only check that the migration can be done",
        },
        ToolOpt {
            short: None,
            long: Some("dry-run"),
            value: None,
            help: "the same as --check-only",
        },
        ToolOpt {
            short: Some('t'),
            long: Some("times"),
            value: None,
            help: "print the time of each phase",
        },
        ToolOpt {
            short: None,
            long: Some("ssh"),
            value: Some("options"),
            help: "more ssh options",
        },
        ToolOpt {
            short: None,
            long: Some("mode"),
            value: Some("auto|plain|page-server|lazy|pre-copy"),
            help: "online: how the memory moves (auto: post-copy where CRIU can, else iterative pre-copy where the kernel tracks dirty pages, else the page server)",
        },
        ToolOpt { short: Some('v'), long: Some("verbose"), value: None, help: "more messages" },
        ToolOpt { short: Some('h'), long: Some("help"), value: None, help: "show this help" },
    ],
    exit_status: "0 on success; 1 usage or other error; 2 online migration of a stopped \
                  container; 4 cannot connect; 6 copy failed; 7 start or restore on the \
                  destination failed; 8 stop or checkpoint on the source failed; 9 the container \
                  exists on the destination; 10 no such container; 12 an address is in use on the \
                  destination; 14 vz is not installed on the destination; 17 the asked way of \
                  checkpointing cannot work here (--mode pre-copy without soft-dirty tracking); \
                  19 cannot read the destination's vz.conf; 20 the container is locked.",
};

/// `vzmlocal` (Virtuozzo's local move and clone).
pub const VZMLOCAL: ToolDef = ToolDef {
    name: "vzmlocal",
    synopsis: &["[-C] <CTID>:<NEWID>[:<private>[:<root>]] [...]"],
    about: "Moves a container to a new CTID, private area or root on this server (a running one \
            is stopped and started again), or with -C clones it (its own id range, MACs and no \
            name; the clone is left stopped).",
    options: &[
        ToolOpt {
            short: Some('C'),
            long: Some("copy"),
            value: None,
            help: "clone instead of moving",
        },
        ToolOpt { short: Some('h'), long: Some("help"), value: None, help: "show this help" },
    ],
    exit_status: "As vzmigrate: 0 on success; 1 usage or other error; 6 copy failed; 7 the \
                  container does not start again; 8 it does not stop; 9 the new CTID exists; \
                  10 no such container; 20 locked.",
};

/// `vzmetrics`: the VEs' metrics in Prometheus's text format.
pub const VZMETRICS: ToolDef = ToolDef {
    name: "vzmetrics",
    synopsis: &["[-o FILE] [CTID ...]"],
    about: "Prints every container's (or the given ones') beancounters (held, maxheld, barrier, limit, failcnt), CPU time, throttling, units and limit, memory and swap, disk space and inodes with their quota, and the counters of its network devices in Prometheus's text exposition format, for node-exporter's textfile collector.",
    options: &[
        ToolOpt {
            short: Some('o'),
            long: Some("output"),
            value: Some("FILE"),
            help: "replace FILE atomically instead of printing (a textfile collector's *.prom)",
        },
        ToolOpt { short: Some('h'), long: Some("help"), value: None, help: "show this help" },
    ],
    exit_status: "0 on success; 1 on an error; 2 for a bad command line.",
};

/// Every small tool with a man page.
pub const TOOLS: &[&ToolDef] = &[
    &VZLIST,
    &VZUBC,
    &VZCPUCHECK,
    &VZCFGVALIDATE,
    &VZQUOTA,
    &VZPID,
    &VZMEMCHECK,
    &VZOVERSELL,
    &VZSPLIT,
    &VZCALC,
    &VZMETRICS,
    &VZMIGRATE,
    &VZMLOCAL,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(tool: &ToolDef, words: &str) -> Result<Vec<ToolArg>, ToolError> {
        parse(tool, &words.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    fn opt(key: &str, value: Option<&str>) -> ToolArg {
        ToolArg::Opt(key.to_owned(), value.map(str::to_owned))
    }

    #[test]
    fn vzlist_takes_getopt_clusters_and_attached_values() {
        let ctid = Some("ctid");
        assert_eq!(
            parse_words(&VZLIST, "-Ho ctid").unwrap(),
            [opt("no-header", None), opt("output", ctid)]
        );
        assert_eq!(parse_words(&VZLIST, "-octid").unwrap(), [opt("output", ctid)]);
        assert_eq!(
            parse_words(&VZLIST, "-HS").unwrap(),
            [opt("no-header", None), opt("stopped", None)]
        );
        assert_eq!(parse_words(&VZLIST, "-a -1").unwrap(), [opt("all", None), opt("1", None)]);
        assert_eq!(parse_words(&VZLIST, "--output=ctid").unwrap(), [opt("output", ctid)]);
        assert_eq!(
            parse_words(&VZLIST, "-s -ctid 101").unwrap(),
            [opt("sort", Some("-ctid")), ToolArg::Word("101".into())]
        );
        assert_eq!(parse_words(&VZLIST, "-- -x").unwrap(), [ToolArg::Word("-x".into())]);
    }

    #[test]
    fn bad_options_are_usage_errors() {
        for words in ["-x", "-o", "--bogus", "--all=1", "-Hx"] {
            let err = parse_words(&VZLIST, words).unwrap_err();
            assert!(matches!(err, ToolError::Usage(_)), "{words}: {err}");
        }
    }

    #[test]
    fn every_table_is_consistent() {
        for tool in TOOLS.iter().chain([&&VZQUOTA_SETLIMIT2]) {
            for (i, a) in tool.options.iter().enumerate() {
                assert!(a.short.is_some() || a.long.is_some(), "{}", tool.name);
                for b in &tool.options[i + 1..] {
                    assert!(
                        a.short.is_none() || a.short != b.short,
                        "{} -{:?}",
                        tool.name,
                        a.short
                    );
                    assert!(a.long.is_none() || a.long != b.long, "{} --{:?}", tool.name, a.long);
                }
            }
            assert!(tool.usage().starts_with(&format!("Usage: {} ", tool.name)));
        }
    }
}
