//! The table of vzctl's options: which command takes which option, and whether it takes a
//! value. The parser, `--help` and the compatibility tests read this one table.

/// A vzctl command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// `create`
    Create,
    /// `destroy` / `delete`
    Destroy,
    /// `start`
    Start,
    /// `stop`
    Stop,
    /// `restart`
    Restart,
    /// `status`
    Status,
    /// `mount`
    Mount,
    /// `umount`
    Umount,
    /// `set`
    Set,
    /// `exec`
    Exec,
    /// `exec2`
    Exec2,
    /// `enter`
    Enter,
    /// `runscript`
    Runscript,
    /// `chkpnt` / `suspend`
    Chkpnt,
    /// `restore` / `resume`
    Restore,
}

impl Cmd {
    /// The command named `word` on the command line.
    pub fn from_word(word: &str) -> Option<Cmd> {
        Some(match word {
            "create" => Cmd::Create,
            "destroy" | "delete" => Cmd::Destroy,
            "start" => Cmd::Start,
            "stop" => Cmd::Stop,
            "restart" => Cmd::Restart,
            "status" => Cmd::Status,
            "mount" => Cmd::Mount,
            "umount" => Cmd::Umount,
            "set" => Cmd::Set,
            "exec" => Cmd::Exec,
            "exec2" => Cmd::Exec2,
            "enter" => Cmd::Enter,
            "runscript" => Cmd::Runscript,
            "chkpnt" | "suspend" => Cmd::Chkpnt,
            "restore" | "resume" => Cmd::Restore,
            _ => return None,
        })
    }

    /// Whether OpenVZ takes the CT lock for this command (not for exec, enter, status).
    pub fn takes_lock(self) -> bool {
        !matches!(self, Cmd::Exec | Cmd::Exec2 | Cmd::Enter | Cmd::Status)
    }
}

/// One option: its canonical name, other spellings, whether it takes a value, and the
/// commands that accept it.
#[derive(Debug)]
pub struct OptDef {
    /// Canonical long name, without dashes.
    pub name: &'static str,
    /// Other long names OpenVZ accepts.
    pub aliases: &'static [&'static str],
    /// Whether a value follows (`--opt value` or `--opt=value`).
    pub takes_value: bool,
    /// Commands that accept it.
    pub commands: &'static [Cmd],
    /// One line of help.
    pub help: &'static str,
}

use Cmd::*;

/// Every option of every command.
pub const OPTIONS: &[OptDef] = &[
    // Checkpoint and restore (reference §8.1).
    OptDef {
        name: "dumpfile",
        aliases: &[],
        takes_value: true,
        commands: &[Chkpnt, Restore],
        help: "the dump (a CRIU images directory) instead of DUMPDIR/Dump.CTID",
    },
    OptDef {
        name: "suspend",
        aliases: &[],
        takes_value: false,
        commands: &[Chkpnt],
        help: "only freeze the container",
    },
    OptDef {
        name: "dump",
        aliases: &[],
        takes_value: false,
        commands: &[Chkpnt],
        help: "only dump the (suspended) container; it stays as it is",
    },
    OptDef {
        name: "resume",
        aliases: &[],
        takes_value: false,
        commands: &[Chkpnt, Restore],
        help: "only thaw a suspended container",
    },
    OptDef {
        name: "kill",
        aliases: &[],
        takes_value: false,
        commands: &[Chkpnt],
        help: "only kill the (suspended) container and release it",
    },
    OptDef {
        name: "ostemplate",
        aliases: &[],
        takes_value: true,
        commands: &[Create],
        help: "template cache to create from",
    },
    OptDef {
        name: "config",
        aliases: &[],
        takes_value: true,
        commands: &[Create],
        help: "sample config ve-NAME.conf-sample",
    },
    OptDef {
        name: "layout",
        aliases: &["ve_layout", "velayout"],
        takes_value: true,
        commands: &[Create],
        help: "simfs | ploop (an ext4 image on a loop device)",
    },
    OptDef {
        name: "private",
        aliases: &[],
        takes_value: true,
        commands: &[Create],
        help: "VE_PRIVATE path",
    },
    OptDef {
        name: "root",
        aliases: &[],
        takes_value: true,
        commands: &[Create],
        help: "VE_ROOT path",
    },
    OptDef {
        name: "ipadd",
        aliases: &["ip"],
        takes_value: true,
        commands: &[Create, Set],
        help: "IP address (stored in IP_ADDRESS)",
    },
    OptDef {
        name: "ipdel",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "IP address to remove, or all",
    },
    OptDef {
        name: "netif_add",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "veth interface ifname[,mac,host_ifname,host_mac,bridge]",
    },
    OptDef {
        name: "netif_del",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "veth interface to remove (ifname), or all",
    },
    OptDef {
        name: "diskspace",
        aliases: &[],
        takes_value: true,
        commands: &[Create, Set],
        help: "disk space soft[:hard] in KB, suffixes allowed",
    },
    OptDef {
        name: "diskinodes",
        aliases: &[],
        takes_value: true,
        commands: &[Create, Set],
        help: "inodes soft[:hard]",
    },
    OptDef {
        name: "quotatime",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "grace period over the soft disk limits, seconds",
    },
    OptDef {
        name: "quotaugidlimit",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "second-level (per user/group) quota records; 0 turns it off",
    },
    OptDef {
        name: "hostname",
        aliases: &[],
        takes_value: true,
        commands: &[Create, Set],
        help: "host name of the VE",
    },
    OptDef {
        name: "name",
        aliases: &[],
        takes_value: true,
        commands: &[Create, Set],
        help: "CT name usable instead of the CTID",
    },
    OptDef {
        name: "description",
        aliases: &[],
        takes_value: true,
        commands: &[Create, Set],
        help: "free text",
    },
    OptDef {
        name: "wait",
        aliases: &[],
        takes_value: false,
        commands: &[Start, Restart],
        help: "return when the VE finished booting",
    },
    OptDef {
        name: "force",
        aliases: &[],
        takes_value: false,
        commands: &[Start, Restart],
        help: "start even if disabled",
    },
    OptDef {
        name: "skip-fsck",
        aliases: &[],
        takes_value: false,
        commands: &[Start, Restart],
        help: "accepted for compatibility",
    },
    OptDef {
        name: "skip-remount",
        aliases: &[],
        takes_value: false,
        commands: &[Start, Restart],
        help: "accepted for compatibility",
    },
    OptDef {
        name: "fast",
        aliases: &[],
        takes_value: false,
        commands: &[Stop, Restart],
        help: "kill at once, no clean shutdown",
    },
    OptDef {
        name: "skip-umount",
        aliases: &[],
        takes_value: false,
        commands: &[Stop, Restart],
        help: "leave VE_ROOT mounted",
    },
    OptDef {
        name: "reset_ub",
        aliases: &[],
        takes_value: false,
        commands: &[Set],
        help: "put every beancounter of CTID.conf into effect again (alone)",
    },
    OptDef {
        name: "save",
        aliases: &[],
        takes_value: false,
        commands: &[Set],
        help: "write the changes to CTID.conf",
    },
    OptDef {
        name: "setmode",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "restart | ignore",
    },
    OptDef {
        name: "nameserver",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "DNS server address or inherit",
    },
    OptDef {
        name: "searchdomain",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "DNS search domain or inherit",
    },
    OptDef { name: "onboot", aliases: &[], takes_value: true, commands: &[Set], help: "yes | no" },
    OptDef {
        name: "disabled",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "yes | no",
    },
    OptDef {
        name: "userpasswd",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "user:password",
    },
    OptDef {
        name: "kmemsize",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "lockedpages",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "privvmpages",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "shmpages",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "numproc",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "physpages",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "vmguarpages",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "oomguarpages",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "numtcpsock",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "numflock",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "numpty",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "numsiginfo",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "tcpsndbuf",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "tcprcvbuf",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "othersockbuf",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "dgramrcvbuf",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "numothersock",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "dcachesize",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "numfile",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "numiptent",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "avnumproc",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "swappages",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "beancounter barrier[:limit]",
    },
    OptDef {
        name: "ram",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "VSwap RAM limit in bytes (suffixes allowed)",
    },
    OptDef {
        name: "swap",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "VSwap swap limit in bytes (suffixes allowed)",
    },
    OptDef {
        name: "vm_overcommit",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "VSwap: privvmpages = (ram + swap) x this ratio (0: unlimited)",
    },
    OptDef {
        name: "cpuunits",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "CPU weight 8-500000",
    },
    OptDef {
        name: "cpulimit",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "CPU limit N (% of one CPU), N% (of the node) or Nm (MHz)",
    },
    OptDef {
        name: "cpus",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "number of CPUs the VE may use (0 = all)",
    },
    OptDef {
        name: "cpumask",
        aliases: &[],
        takes_value: true,
        commands: &[Set],
        help: "CPUs the VE may run on: list or all",
    },
    OptDef {
        name: "exec",
        aliases: &[],
        takes_value: true,
        commands: &[Enter],
        help: "command to run in the shell",
    },
];

/// The option named `name` (canonical or alias) for `cmd`.
pub fn find(cmd: Cmd, name: &str) -> Option<&'static OptDef> {
    OPTIONS
        .iter()
        .find(|o| (o.name == name || o.aliases.contains(&name)) && o.commands.contains(&cmd))
}

/// vzctl's one-letter spellings of beancounter options (`PARAM_LINE` of OpenVZ's vzctl):
/// `-k 10M` is `--kmemsize 10M`.
pub const SHORT_OPTIONS: &[(char, &str)] = &[
    ('k', "kmemsize"),
    ('l', "lockedpages"),
    ('p', "numproc"),
    ('f', "numflock"),
    ('t', "numpty"),
    ('i', "numsiginfo"),
    ('b', "tcprcvbuf"),
    ('n', "numfile"),
    ('x', "dcachesize"),
    ('e', "numiptent"),
];

/// The option `-<letter>` of `cmd`, if it has one.
pub fn find_short(cmd: Cmd, letter: char) -> Option<&'static OptDef> {
    let (_, name) = SHORT_OPTIONS.iter().find(|(c, _)| *c == letter)?;
    find(cmd, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_found_by_alias_and_only_for_their_commands() {
        assert_eq!(find(Create, "ip").unwrap().name, "ipadd");
        assert_eq!(find(Create, "velayout").unwrap().name, "layout");
        assert!(find(Start, "ostemplate").is_none());
        assert!(find(Set, "save").is_some());
        assert_eq!(find_short(Set, 'k').unwrap().name, "kmemsize");
        assert!(find_short(Start, 'k').is_none() && find_short(Set, 'z').is_none());
        for (_, name) in SHORT_OPTIONS {
            assert!(find(Set, name).is_some_and(|o| o.takes_value), "{name}");
        }
        assert!(find(Set, "numproc").is_some_and(|o| o.takes_value));
        assert!(find(Create, "cpuunits").is_none());
    }

    #[test]
    fn every_resource_option_of_set_is_in_the_table() {
        for r in vz_ubc::Resource::ALL {
            assert!(find(Set, r.option()).is_some(), "--{}", r.option());
        }
        for name in ["ram", "swap", "vm_overcommit", "cpuunits", "cpulimit", "cpus", "cpumask"] {
            assert!(find(Set, name).is_some(), "--{name}");
        }
    }

    #[test]
    fn every_name_is_unique_per_command() {
        for a in OPTIONS {
            for b in OPTIONS {
                if std::ptr::eq(a, b) {
                    continue;
                }
                let shared = a.commands.iter().any(|c| b.commands.contains(c));
                assert!(!(shared && a.name == b.name), "{} twice", a.name);
            }
        }
    }
}
