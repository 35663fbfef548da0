//! The table of vzctl's commands and options: which command takes which option, its value
//! syntax, the CTID.conf key it sets and its help. The parser (`parse.rs`), `vzctl --help` and
//! `vzctl <command> --help`, the man pages and the shell completions (`doc.rs`) read these
//! tables; a new command is a [`Cmd`] variant and a [`COMMANDS`] row, a new option one
//! [`OPTIONS`] row.

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
    /// `console`
    Console,
    /// `runscript`
    Runscript,
    /// `chkpnt` / `suspend`
    Chkpnt,
    /// `restore` / `resume`
    Restore,
    /// `exec3`
    Exec3,
    /// `snapshot`
    Snapshot,
    /// `snapshot-switch`
    SnapshotSwitch,
    /// `snapshot-delete`
    SnapshotDelete,
    /// `snapshot-mount`
    SnapshotMount,
    /// `snapshot-umount`
    SnapshotUmount,
    /// `snapshot-list`
    SnapshotList,
    /// `compact`
    Compact,
    /// `convert`
    Convert,
    /// `quotaon`
    Quotaon,
    /// `quotaoff`
    Quotaoff,
    /// `quotainit`
    Quotainit,
}

/// A command's row: its words, its arguments after the CTID, and what it does.
#[derive(Debug)]
pub struct CmdDef {
    /// The command.
    pub cmd: Cmd,
    /// The word on the command line; the first is the canonical one.
    pub words: &'static [&'static str],
    /// Positional arguments after the CTID and the options (`COMMAND [ARG...]`), or "".
    pub args: &'static str,
    /// What it does, one sentence.
    pub help: &'static str,
    /// Whether OpenVZ takes the CT lock for it (not for exec, enter, status).
    pub locks: bool,
}

use Cmd::*;

/// Every command, in the order of `vzctl --help` and the man page.
#[rustfmt::skip]
pub const COMMANDS: &[CmdDef] = &[
    CmdDef { cmd: Create, words: &["create"], args: "", locks: true, help: "Creates a container: its private area from a template cache and CTID.conf from a sample configuration." },
    CmdDef { cmd: Destroy, words: &["destroy", "delete"], args: "", locks: true, help: "Removes a stopped container's private area and renames its configuration to CTID.conf.destroyed." },
    CmdDef { cmd: Start, words: &["start"], args: "", locks: true, help: "Mounts the container, sets its limits and network, and starts its init." },
    CmdDef { cmd: Stop, words: &["stop"], args: "", locks: true, help: "Asks the container's init to power off, then kills what remains, and unmounts it." },
    CmdDef { cmd: Restart, words: &["restart"], args: "", locks: true, help: "Stops the container if it runs, then starts it." },
    CmdDef { cmd: Status, words: &["status"], args: "", locks: false, help: "Prints CTID <id> <exist|deleted> <mounted|unmounted> <running|down>." },
    CmdDef { cmd: Mount, words: &["mount"], args: "", locks: true, help: "Mounts the container's private area at its root." },
    CmdDef { cmd: Umount, words: &["umount"], args: "", locks: true, help: "Unmounts the container's root." },
    CmdDef { cmd: Set, words: &["set"], args: "", locks: true, help: "Changes settings at once on a running container and, with --save, in CTID.conf." },
    CmdDef { cmd: Exec, words: &["exec"], args: "COMMAND [ARG...]", locks: false, help: "Runs a command line in the container through /bin/sh -c; exit 8 when it fails." },
    CmdDef { cmd: Exec2, words: &["exec2"], args: "COMMAND [ARG...]", locks: false, help: "Like exec, but exits with the command's own exit status." },
    CmdDef { cmd: Enter, words: &["enter"], args: "", locks: false, help: "Opens a root shell in the container on a pty of its own devpts." },
    CmdDef { cmd: Console, words: &["console"], args: "[TTYNUM]", locks: false, help: "Attaches to the container's console (tty 1, its /dev/console): its output live, your input to it; Esc . at the start of a line detaches. A stopped container's console waits for its start; it stays attached across restarts." },
    CmdDef { cmd: Runscript, words: &["runscript"], args: "SCRIPT", locks: true, help: "Runs a script of the host inside the container (mounted if it is stopped)." },
    CmdDef { cmd: Chkpnt, words: &["chkpnt", "suspend"], args: "", locks: true, help: "Checkpoints a running container into a dump (CRIU) and stops it; stages --suspend, --dump, --resume, --kill." },
    CmdDef { cmd: Restore, words: &["restore", "resume"], args: "", locks: true, help: "Restores a container from its dump, its processes and connections as they were." },
    CmdDef { cmd: Exec3, words: &["exec3"], args: "COMMAND [ARG...]", locks: false, help: "Runs a program in the container directly (no shell), exiting with its exit status." },
    CmdDef { cmd: Snapshot, words: &["snapshot"], args: "", locks: true, help: "Takes a snapshot of an image-layout (ploop) container: its image copied with the file system frozen, its CTID.conf, and a running container's memory (a CRIU dump; it runs on)." },
    CmdDef { cmd: SnapshotSwitch, words: &["snapshot-switch"], args: "", locks: true, help: "Replaces the container's current state by a snapshot: image and CTID.conf back, and a snapshot with memory restored running." },
    CmdDef { cmd: SnapshotDelete, words: &["snapshot-delete"], args: "", locks: true, help: "Deletes a snapshot; its children descend from its parent." },
    CmdDef { cmd: SnapshotMount, words: &["snapshot-mount"], args: "", locks: true, help: "Mounts a snapshot's image read-only at a directory." },
    CmdDef { cmd: SnapshotUmount, words: &["snapshot-umount"], args: "", locks: true, help: "Unmounts a snapshot mounted by snapshot-mount." },
    CmdDef { cmd: SnapshotList, words: &["snapshot-list"], args: "", locks: true, help: "Lists the container's snapshots (fields parent_uuid, current, uuid, date, name by default)." },
    CmdDef { cmd: Compact, words: &["compact"], args: "", locks: true, help: "Gives the free blocks of an image-layout container back to the host (FITRIM: holes punched in its image)." },
    CmdDef { cmd: Convert, words: &["convert"], args: "", locks: true, help: "Converts a stopped simfs container to the image (ploop) layout of DISKSPACE's size." },
    CmdDef { cmd: Quotaon, words: &["quotaon"], args: "", locks: true, help: "OpenVZ's vzquota on wrapper: reports a simfs container's usage against CTID.conf's limits (enforced by the host file system's project quota where it has it, else accounted only); 60 when DISK_QUOTA is not yes; obsolete (0) for the image layout." },
    CmdDef { cmd: Quotaoff, words: &["quotaoff"], args: "", locks: true, help: "OpenVZ's vzquota off wrapper: nothing is enforced on simfs to turn off; 66 when DISK_QUOTA is not yes; obsolete (0) for the image layout." },
    CmdDef { cmd: Quotainit, words: &["quotainit"], args: "", locks: true, help: "OpenVZ's vzquota init wrapper: records CTID.conf's DISKSPACE, DISKINODES and QUOTATIME for a simfs container and counts its usage; 61 when DISK_QUOTA is not yes; obsolete (0) for the image layout." },
];

impl Cmd {
    /// The command named `word` on the command line.
    pub fn from_word(word: &str) -> Option<Cmd> {
        COMMANDS.iter().find(|c| c.words.contains(&word)).map(|c| c.cmd)
    }

    /// The command's row of [`COMMANDS`].
    pub fn def(self) -> &'static CmdDef {
        COMMANDS.iter().find(|c| c.cmd == self).unwrap_or(&COMMANDS[0])
    }

    /// The canonical word of the command.
    pub fn name(self) -> &'static str {
        self.def().words[0]
    }

    /// Whether OpenVZ takes the CT lock for this command (not for exec, enter, status).
    pub fn takes_lock(self) -> bool {
        self.def().locks
    }
}

/// The flags accepted before the command: name (without dashes) and help.
pub const GLOBAL_FLAGS: &[(&str, &str)] = &[
    ("quiet", "no console output"),
    ("verbose", "more console output (may be repeated)"),
    ("skiplock", "do not take the container's lock"),
    ("version", "print the version and exit"),
    ("help", "print this help (after a command: that command's help)"),
];

/// One option: its canonical name, other spellings, its value syntax, the commands that
/// accept it, the CTID.conf key it sets, and its help.
#[derive(Debug)]
pub struct OptDef {
    /// Canonical long name, without dashes.
    pub name: &'static str,
    /// Other long names OpenVZ accepts.
    pub aliases: &'static [&'static str],
    /// The one-letter form (`-k` for `--kmemsize`, OpenVZ's `PARAM_LINE`).
    pub short: Option<char>,
    /// The value's syntax (`BARRIER[:LIMIT]`, `yes|no`); `None` for a flag. A value follows
    /// as `--opt value` or `--opt=value` (`-k value` or `-kvalue`).
    pub value: Option<&'static str>,
    /// Commands that accept it.
    pub commands: &'static [Cmd],
    /// The CTID.conf key it sets, if it is saved.
    pub key: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
}

impl OptDef {
    /// Whether a value follows.
    pub fn takes_value(&self) -> bool {
        self.value.is_some()
    }

    /// The fixed choices of its value (`yes|no` → yes, no), if its syntax is a list of words.
    pub fn choices(&self) -> Vec<&'static str> {
        let Some(syntax) = self.value else { return Vec::new() };
        let words: Vec<&str> = syntax.split('|').collect();
        let plain = |w: &&str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase());
        if words.len() > 1 && words.iter().all(plain) { words } else { Vec::new() }
    }

    const fn takes(mut self, syntax: &'static str) -> OptDef {
        self.value = Some(syntax);
        self
    }

    const fn key(mut self, key: &'static str) -> OptDef {
        self.key = Some(key);
        self
    }

    const fn alias(mut self, aliases: &'static [&'static str]) -> OptDef {
        self.aliases = aliases;
        self
    }

    const fn short(mut self, letter: char) -> OptDef {
        self.short = Some(letter);
        self
    }
}

/// A flag of `commands`; `.takes(syntax)` makes it take a value.
const fn opt(name: &'static str, commands: &'static [Cmd], help: &'static str) -> OptDef {
    OptDef { name, aliases: &[], short: None, value: None, commands, key: None, help }
}

/// Every option of every command.
#[rustfmt::skip]
pub const OPTIONS: &[OptDef] = &[
    opt("dumpfile", &[Chkpnt, Restore], "the dump (a CRIU images directory) instead of DUMPDIR/Dump.CTID").takes("PATH"),
    opt("suspend", &[Chkpnt], "only freeze the container"),
    opt("dump", &[Chkpnt], "only dump the (suspended) container; it stays as it is"),
    opt("resume", &[Chkpnt, Restore], "only thaw a suspended container"),
    opt("kill", &[Chkpnt], "only kill the (suspended) container and release it"),
    opt("page-server", &[Chkpnt], "--dump: send the memory pages to a CRIU page server (with --lazy-pages: serve them there)").takes("ADDR:PORT"),
    opt("lazy-pages", &[Chkpnt, Restore], "post-copy: --dump leaves the pages to be taken from its page server; restore takes them from a criu lazy-pages daemon"),
    opt("prev-images-dir", &[Chkpnt], "--dump: only the pages changed since this pre-dump (iterative pre-copy; relative to the dump's directory)").takes("DIR"),
    opt("ostemplate", &[Create], "template cache to create from").takes("NAME").key("OSTEMPLATE"),
    opt("config", &[Create], "sample config ve-NAME.conf-sample").takes("NAME").key("ORIGIN_SAMPLE"),
    opt("layout", &[Create], "simfs (a directory) or ploop (an ext4 image on a loop device)").takes("simfs|ploop").key("VE_LAYOUT").alias(&["ve_layout", "velayout"]),
    opt("private", &[Create, Set], "VE_PRIVATE path ($VEID is the CTID); set: of a stopped, unmounted container, after you moved its area there").takes("PATH").key("VE_PRIVATE"),
    opt("root", &[Create, Set], "VE_ROOT path ($VEID is the CTID); set: of a stopped, unmounted container").takes("PATH").key("VE_ROOT"),
    opt("local_uid", &[Create], "first host uid of the container's user namespace (65536 ids; 0 with --local_gid 0: root is the host's root); default: the next free range of vz.conf's LOCAL_UID pool").takes("UID").key("LOCAL_UID"),
    opt("local_gid", &[Create], "first host gid, as --local_uid (default: the --local_uid number)").takes("GID").key("LOCAL_GID"),
    opt("ipadd", &[Create, Set], "IP address (stored in IP_ADDRESS)").takes("IP[/MASK]").key("IP_ADDRESS").alias(&["ip"]),
    opt("ipdel", &[Set], "IP address to remove, or all").takes("IP|all").key("IP_ADDRESS"),
    opt("netif_add", &[Set], "veth interface ifname[,mac,host_ifname,host_mac,bridge]").takes("IFNAME[,MAC,HOST_IFNAME,HOST_MAC,BRIDGE]").key("NETIF"),
    opt("netif_del", &[Set], "veth interface to remove (ifname), or all").takes("IFNAME|all").key("NETIF"),
    opt("ifname", &[Set], "the veth interface (in the VE) that --mac, --host_ifname, --host_mac, --bridge and --mac_filter change, at once on a running VE").takes("IFNAME").key("NETIF"),
    opt("mac", &[Set], "with --ifname: the VE end's MAC").takes("XX:XX:XX:XX:XX:XX").key("NETIF"),
    opt("host_ifname", &[Set], "with --ifname: the host end's name").takes("IFNAME").key("NETIF"),
    opt("host_mac", &[Set], "with --ifname: the host end's MAC").takes("XX:XX:XX:XX:XX:XX").key("NETIF"),
    opt("bridge", &[Set], "with --ifname: the bridge the host end joins").takes("BRIDGE").key("NETIF"),
    opt("mac_filter", &[Set], "with --ifname: on: the host end takes only frames from the VE end's MAC").takes("on|off").key("NETIF"),
    opt("diskspace", &[Create, Set], "disk space soft[:hard] in KB, suffixes allowed").takes("SOFT[:HARD]").key("DISKSPACE"),
    opt("diskinodes", &[Create, Set], "inodes soft[:hard]").takes("SOFT[:HARD]").key("DISKINODES"),
    opt("quotatime", &[Set], "grace period over the soft disk limits, seconds").takes("SECONDS").key("QUOTATIME"),
    opt("quotaugidlimit", &[Set], "second-level (per user/group) quota records; 0 turns it off").takes("N").key("QUOTAUGIDLIMIT"),
    opt("hostname", &[Create, Set], "host name of the VE").takes("NAME").key("HOSTNAME"),
    opt("name", &[Create, Set], "CT name usable instead of the CTID").takes("NAME").key("NAME"),
    opt("description", &[Create, Set], "free text").takes("TEXT").key("DESCRIPTION"),
    opt("wait", &[Start, Restart], "return when the VE finished booting"),
    opt("force", &[Start, Restart, Set], "start: even if disabled; set (with --save only): save whatever the kernel offers (vz's memory limits need no OpenVZ kernel)"),
    opt("skip-fsck", &[Start, Restart, Restore], "accepted for compatibility (vz runs no fsck when it mounts)"),
    opt("skip-remount", &[Start, Restart, Restore], "accepted for compatibility (vz does not remount a mounted container)"),
    opt("fast", &[Stop, Restart], "kill at once, no clean shutdown"),
    opt("skip-umount", &[Stop, Restart], "leave VE_ROOT mounted"),
    opt("reset_ub", &[Set], "put every beancounter of CTID.conf into effect again (alone)"),
    opt("save", &[Set], "write the changes to CTID.conf"),
    opt("skip_arpdetect", &[Set, Chkpnt, Restore], "accepted for OpenVZ's scripts: vz sends no ARP duplicate probe (it would hold each start up to a second per address), so there is none to skip"),
    opt("offline-resize", &[Set], "with --diskspace: resize the image now, of a stopped and unmounted container only").alias(&["offline"]),
    opt("diskquota", &[Set], "OpenVZ's disk quota switch: the quota commands follow it; the image layout's image bounds its disk either way (as ploop); from the next start").takes("yes|no").key("DISK_QUOTA"),
    opt("setmode", &[Set], "restart: apply settings that need a restart by restarting; ignore: only save them").takes("restart|ignore"),
    opt("nameserver", &[Set], "DNS server address or inherit").takes("IP|inherit").key("NAMESERVER"),
    opt("searchdomain", &[Set], "DNS search domain or inherit").takes("DOMAIN|inherit").key("SEARCHDOMAIN"),
    opt("onboot", &[Set], "start the VE at boot").takes("yes|no").key("ONBOOT"),
    opt("disabled", &[Set], "refuse to start the VE (unless --force)").takes("yes|no").key("DISABLED"),
    opt("userpasswd", &[Set], "set a user's password in the VE (never saved)").takes("USER:PASSWORD"),
    opt("kmemsize", &[Set], "beancounter: kernel memory, bytes").takes("BARRIER[:LIMIT]").key("KMEMSIZE").short('k'),
    opt("lockedpages", &[Set], "beancounter: memory locked with mlock, pages").takes("BARRIER[:LIMIT]").key("LOCKEDPAGES").short('l'),
    opt("privvmpages", &[Set], "beancounter: allocated memory, pages").takes("BARRIER[:LIMIT]").key("PRIVVMPAGES"),
    opt("shmpages", &[Set], "beancounter: IPC shared memory, pages").takes("BARRIER[:LIMIT]").key("SHMPAGES"),
    opt("numproc", &[Set], "beancounter: processes and threads").takes("BARRIER[:LIMIT]").key("NUMPROC").short('p'),
    opt("physpages", &[Set], "beancounter: RAM, pages").takes("BARRIER[:LIMIT]").key("PHYSPAGES"),
    opt("vmguarpages", &[Set], "beancounter: memory guaranteed for allocation, pages").takes("BARRIER[:LIMIT]").key("VMGUARPAGES"),
    opt("oomguarpages", &[Set], "beancounter: memory guaranteed against the OOM killer, pages").takes("BARRIER[:LIMIT]").key("OOMGUARPAGES"),
    opt("numtcpsock", &[Set], "beancounter: TCP sockets").takes("BARRIER[:LIMIT]").key("NUMTCPSOCK"),
    opt("numflock", &[Set], "beancounter: file locks").takes("BARRIER[:LIMIT]").key("NUMFLOCK").short('f'),
    opt("numpty", &[Set], "beancounter: pseudo-terminals").takes("BARRIER[:LIMIT]").key("NUMPTY").short('t'),
    opt("numsiginfo", &[Set], "beancounter: queued signal structures").takes("BARRIER[:LIMIT]").key("NUMSIGINFO").short('i'),
    opt("tcpsndbuf", &[Set], "beancounter: TCP send buffers, bytes").takes("BARRIER[:LIMIT]").key("TCPSNDBUF"),
    opt("tcprcvbuf", &[Set], "beancounter: TCP receive buffers, bytes").takes("BARRIER[:LIMIT]").key("TCPRCVBUF").short('b'),
    opt("othersockbuf", &[Set], "beancounter: other socket send buffers, bytes").takes("BARRIER[:LIMIT]").key("OTHERSOCKBUF"),
    opt("dgramrcvbuf", &[Set], "beancounter: datagram receive buffers, bytes").takes("BARRIER[:LIMIT]").key("DGRAMRCVBUF"),
    opt("numothersock", &[Set], "beancounter: sockets other than TCP").takes("BARRIER[:LIMIT]").key("NUMOTHERSOCK"),
    opt("dcachesize", &[Set], "beancounter: dentry and inode caches, bytes").takes("BARRIER[:LIMIT]").key("DCACHESIZE").short('x'),
    opt("numfile", &[Set], "beancounter: open files").takes("BARRIER[:LIMIT]").key("NUMFILE").short('n'),
    opt("numiptent", &[Set], "beancounter: netfilter entries").takes("BARRIER[:LIMIT]").key("NUMIPTENT").short('e'),
    opt("avnumproc", &[Set], "beancounter: expected average number of processes").takes("BARRIER[:LIMIT]").key("AVNUMPROC"),
    opt("swappages", &[Set], "beancounter: swap, pages").takes("BARRIER[:LIMIT]").key("SWAPPAGES"),
    opt("ram", &[Set], "VSwap RAM limit in bytes (suffixes allowed)").takes("BYTES").key("PHYSPAGES"),
    opt("swap", &[Set], "VSwap swap limit in bytes (suffixes allowed)").takes("BYTES").key("SWAPPAGES"),
    opt("vm_overcommit", &[Set], "VSwap: privvmpages = (ram + swap) x this ratio (0: unlimited)").takes("RATIO").key("VM_OVERCOMMIT"),
    opt("cpuunits", &[Set], "CPU weight 8-500000").takes("N").key("CPUUNITS"),
    opt("cpuweight", &[Set], "raw fairsched CPU weight, 500000/CPUUNITS (lower gets more); CPUUNITS wins when both are set").takes("N").key("CPUUWEIGHT"),
    opt("cpulimit", &[Set], "CPU limit N (% of one CPU), N% (of the node) or Nm (MHz)").takes("N[%|m]").key("CPULIMIT"),
    opt("cpus", &[Set], "number of CPUs the VE may use (0 = all)").takes("N").key("CPUS"),
    opt("cpumask", &[Set], "CPUs the VE may run on: list, all, or auto (the CPUs of --nodemask)").takes("CPUS|all|auto").key("CPUMASK"),
    opt("mount_opts", &[Set], "extra mount options of the container's image (image layout): noatime, data=writeback, commit=N, nobarrier, discard…; options reaching the host (journal_path=, errors=panic) or vz's quota options are refused; from the next mount").takes("OPT[,OPT]").key("MOUNT_OPTS"),
    opt("nodemask", &[Set], "NUMA nodes the VE's memory comes from: list or all (needs --cpumask)").takes("NODES|all").key("NODEMASK"),
    opt("capability", &[Set], "capability in the VE's bounding set, on or off (at the next start; exec and enter at once)").takes("NAME:on|off[,...]").key("CAPABILITY"),
    opt("devices", &[Set], "device access through the device allowlist; perms of rwq or none").takes("b|c:MAJOR:MINOR|all:PERMS").key("DEVICES"),
    opt("devnodes", &[Set], "host device /dev/NAME made in the VE's /dev and allowed; perms of rwq or none").takes("NAME:PERMS").key("DEVNODES"),
    opt("features", &[Set], "fuse, ppp (device nodes), bridge, ipgre, sit, ipip (host modules), sysfs; nfs and nfsd are refused").takes("NAME:on|off[,...]").key("FEATURES"),
    opt("iolimit", &[Set], "disk bandwidth limit, MB/s without a unit; 0 or unlimited for none").takes("N[B|K|M|G]").key("IOLIMIT"),
    opt("iopslimit", &[Set], "disk I/O operations per second; 0 or unlimited for none").takes("N").key("IOPSLIMIT"),
    opt("ioprio", &[Set], "disk I/O priority 0-7 (the cgroup's I/O weight; default 4)").takes("0-7").key("IOPRIO"),
    opt("applyconfig", &[Set], "merge the sample config ve-NAME.conf-sample (not names, addresses, paths)").takes("NAME"),
    opt("applyconfig_map", &[Set], "with --applyconfig: name restores the name link of NAME").takes("name"),
    opt("stop-timeout", &[Set], "seconds stop waits for a clean shutdown (needs --save; 0 = 120)").takes("SECONDS").key("STOP_TIMEOUT"),
    opt("bootorder", &[Set], "boot order: higher starts earlier").takes("N").key("BOOTORDER"),
    opt("iptables", &[Set], "obsolete: netfilter modules (iptable_filter, ipt_state, iptable_nat…); saved, and as the NETFILTER level they need (conntrack: stateful, NAT: full)").takes("MODULE[,MODULE…]").key("IPTABLES"),
    opt("netfilter", &[Set], "disabled: no netfilter calls in the VE (seccomp; exec at once, init at the next start); others: the VE's own full netfilter").takes("disabled|stateless|stateful|full").key("NETFILTER"),
    opt("netdev_add", &[Set], "move a host network device into the VE").takes("IFNAME").key("NETDEV"),
    opt("netdev_del", &[Set], "move a network device of the VE back to the host").takes("IFNAME").key("NETDEV"),
    opt("meminfo", &[Set], "the container's /proc/meminfo and sysinfo(2) (free, uptime's load): none (the host's) or its own limits (pages:N, privvmpages:N are pre-VSwap forms); from the next start").takes("none|pages:N|privvmpages:N").key("MEMINFO"),
    opt("exec", &[Enter], "command to run in the shell").takes("COMMAND"),
    opt("id", &[Snapshot, SnapshotSwitch, SnapshotDelete, SnapshotMount, SnapshotUmount, SnapshotList], "snapshot UUID (snapshot: made up when absent; snapshot-list: it and its ancestors)").takes("UUID").alias(&["uuid"]),
    opt("name", &[Snapshot], "the snapshot's name").takes("NAME"),
    opt("description", &[Snapshot], "the snapshot's description").takes("TEXT"),
    opt("skip-suspend", &[Snapshot], "no memory dump of a running container (its file system only)"),
    opt("skip-config", &[Snapshot, SnapshotSwitch], "snapshot: no copy of CTID.conf; snapshot-switch: keep the current CTID.conf"),
    opt("skip-resume", &[SnapshotSwitch], "leave the container stopped even if the snapshot holds its memory"),
    opt("must-resume", &[SnapshotSwitch], "fail unless the container is restored running from the snapshot's memory"),
    opt("target", &[SnapshotMount], "the directory to mount the snapshot at").takes("DIR"),
    opt("no-header", &[SnapshotList], "no header line").short('H'),
    opt("output", &[SnapshotList], "the fields to show: uuid, parent_uuid, current, date, name, desc, device, target").takes("FIELD[,FIELD...]").short('o'),
    opt("list", &[SnapshotList], "list the field names and exit").short('L'),
    opt("layout", &[Convert], "the layout to convert to: ploop (the image layout; a mode after : is accepted)").takes("ploop[:MODE]").alias(&["ve_layout", "velayout"]),
];

/// The option named `name` (canonical or alias) for `cmd`.
pub fn find(cmd: Cmd, name: &str) -> Option<&'static OptDef> {
    OPTIONS
        .iter()
        .find(|o| (o.name == name || o.aliases.contains(&name)) && o.commands.contains(&cmd))
}

/// The option `-<letter>` of `cmd`, if it has one.
pub fn find_short(cmd: Cmd, letter: char) -> Option<&'static OptDef> {
    OPTIONS.iter().find(|o| o.short == Some(letter) && o.commands.contains(&cmd))
}

/// The options of `cmd`, in table order.
pub fn options_of(cmd: Cmd) -> impl Iterator<Item = &'static OptDef> {
    OPTIONS.iter().filter(move |o| o.commands.contains(&cmd))
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
        for o in OPTIONS.iter().filter(|o| o.short.is_some() && o.commands != [SnapshotList]) {
            assert!(o.takes_value(), "{}", o.name);
        }
        assert!(find(Set, "numproc").is_some_and(OptDef::takes_value));
        assert!(find(Create, "cpuunits").is_none());
        assert_eq!(find(Set, "onboot").unwrap().choices(), ["yes", "no"]);
        assert!(find(Set, "ipdel").unwrap().choices().is_empty());
    }

    #[test]
    fn every_resource_option_of_set_is_in_the_table() {
        for r in vz_ubc::Resource::ALL {
            let o = find(Set, r.option()).unwrap_or_else(|| panic!("--{}", r.option()));
            assert_eq!(o.key, Some(r.key()), "--{}", r.option());
        }
        for name in ["ram", "swap", "vm_overcommit", "cpuunits", "cpulimit", "cpus", "cpumask"] {
            assert!(find(Set, name).is_some(), "--{name}");
        }
    }

    #[test]
    fn every_name_and_letter_is_unique_per_command() {
        for (i, a) in OPTIONS.iter().enumerate() {
            for b in &OPTIONS[i + 1..] {
                if !a.commands.iter().any(|c| b.commands.contains(c)) {
                    continue;
                }
                let names = |o: &OptDef| std::iter::once(o.name).chain(o.aliases.iter().copied());
                assert!(!names(a).any(|n| names(b).any(|m| m == n)), "{} / {}", a.name, b.name);
                assert!(a.short.is_none() || a.short != b.short, "-{:?}", a.short);
            }
        }
    }

    #[test]
    fn every_command_has_one_row_and_its_words_are_unique() {
        for def in COMMANDS {
            assert_eq!(def.cmd.def().words, def.words);
            for word in def.words {
                assert_eq!(Cmd::from_word(word), Some(def.cmd));
            }
        }
        assert!(!Exec.takes_lock() && Set.takes_lock() && Destroy.name() == "destroy");
    }
}
