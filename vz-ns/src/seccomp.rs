//! The default seccomp policy of every VE process ([`SeccompPolicy`]), in the spirit of
//! LXC's and Docker's defaults: system calls that reach the host kernel's global state
//! (modules, kexec, kernel keyrings, the kernel log, swap, process accounting), the
//! file-handle calls behind the "shocker" escape, BPF, perf and userfaultfd fail; the
//! `TIOCSTI` and `TIOCLINUX` ioctls (typing into a terminal) and forced unmounts fail;
//! system calls of another ABI (i386 `int 0x80`, x32) fail with ENOSYS, so a filter on
//! x86-64 numbers cannot be sidestepped. The quotactl and sysinfo interceptions of
//! [`crate::intercept`] are rules of the same filter: one filter, one listener (the kernel
//! gives a task's filter chain at most one listener: a second `NEW_LISTENER` filter fails
//! with EBUSY, so the two interceptions cannot be two filters with two listeners).
//!
//! The filter is classic BPF over `struct seccomp_data` (nr at offset 0, arch at 4, the
//! arguments from 16), built here without unsafe code and installed by [`crate::sys`].

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{NsError, Result};

/// A system call the default policy refuses, and the errno it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Denied {
    name: &'static str,
    nr: i64,
    errno: i32,
}

/// The default deny list. ENOSYS for the keyring calls, as LXC does: programs take it for
/// "no keyrings here" and carry on, where EPERM would be an error.
const DEFAULT_DENIED: [Denied; 17] = [
    Denied { name: "kexec_load", nr: libc::SYS_kexec_load, errno: libc::EPERM },
    Denied { name: "kexec_file_load", nr: libc::SYS_kexec_file_load, errno: libc::EPERM },
    Denied { name: "init_module", nr: libc::SYS_init_module, errno: libc::EPERM },
    Denied { name: "finit_module", nr: libc::SYS_finit_module, errno: libc::EPERM },
    Denied { name: "delete_module", nr: libc::SYS_delete_module, errno: libc::EPERM },
    Denied { name: "open_by_handle_at", nr: libc::SYS_open_by_handle_at, errno: libc::EPERM },
    Denied { name: "keyctl", nr: libc::SYS_keyctl, errno: libc::ENOSYS },
    Denied { name: "add_key", nr: libc::SYS_add_key, errno: libc::ENOSYS },
    Denied { name: "request_key", nr: libc::SYS_request_key, errno: libc::ENOSYS },
    Denied { name: "syslog", nr: libc::SYS_syslog, errno: libc::EPERM },
    Denied { name: "acct", nr: libc::SYS_acct, errno: libc::EPERM },
    Denied { name: "swapon", nr: libc::SYS_swapon, errno: libc::EPERM },
    Denied { name: "swapoff", nr: libc::SYS_swapoff, errno: libc::EPERM },
    Denied { name: "bpf", nr: libc::SYS_bpf, errno: libc::EPERM },
    Denied { name: "perf_event_open", nr: libc::SYS_perf_event_open, errno: libc::EPERM },
    Denied { name: "userfaultfd", nr: libc::SYS_userfaultfd, errno: libc::EPERM },
    Denied { name: "iopl", nr: libc::SYS_iopl, errno: libc::EPERM },
];

/// Terminal ioctls refused whatever the overrides: they push input into a terminal
/// (TIOCSTI) or act on the host's virtual consoles (TIOCLINUX).
const DENIED_IOCTLS: [u32; 2] = [0x5412, 0x541C];

/// `MNT_FORCE` of umount2(2): a forced unmount is refused (LXC's `reject_force_umount`).
const MNT_FORCE: u32 = 1;

/// The seccomp policy of a VE's processes: the default deny list less the calls a VE's
/// config allows (CTID.conf `SYSCALLS="keyctl:on bpf:on"`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SeccompPolicy {
    allowed: Vec<&'static str>,
    no_netfilter: bool,
    sysinfo_server: Option<PathBuf>,
}

impl fmt::Debug for SeccompPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeccompPolicy")
            .field("denied", &self.denied_names())
            .field("no_netfilter", &self.no_netfilter)
            .field("sysinfo_server", &self.sysinfo_server)
            .finish()
    }
}

impl SeccompPolicy {
    /// Applies a `SYSCALLS` value: `name:on` allows one of the default-denied calls,
    /// `name:off` denies it again (entries separated by spaces or commas).
    ///
    /// # Errors
    /// [`NsError::BadSpec`] naming an entry that is not `name:on|off` or a name the policy
    /// does not know. On error the policy is unchanged.
    pub fn apply_overrides(&mut self, value: &str) -> Result<()> {
        let mut allowed = self.allowed.clone();
        for entry in value.split([' ', '\t', ',']).filter(|e| !e.is_empty()) {
            let bad = |reason: String| NsError::BadSpec { field: "SYSCALLS", reason };
            let (name, switch) = entry
                .split_once(':')
                .ok_or_else(|| bad(format!("{entry:?} is not name:on or name:off")))?;
            let known = DEFAULT_DENIED
                .iter()
                .find(|d| d.name == name)
                .ok_or_else(|| bad(format!("{name:?} is not a system call the policy denies")))?;
            allowed.retain(|a| *a != known.name);
            match switch {
                "on" => allowed.push(known.name),
                "off" => {}
                _ => return Err(bad(format!("{entry:?} is not name:on or name:off"))),
            }
        }
        self.allowed = allowed;
        Ok(())
    }

    /// Refuses the VE's processes every way to program netfilter (OpenVZ's
    /// `NETFILTER=disabled`): netlink sockets of `NETLINK_NETFILTER` (nf_tables, conntrack,
    /// nfqueue, ipset) and the legacy tables' `setsockopt` calls (ip/ip6/arp/ebtables
    /// `SET_REPLACE`/`SET_ADD_COUNTERS`/`SET_ENTRIES`) fail with EPERM.
    pub fn deny_netfilter(&mut self) {
        self.no_netfilter = true;
    }

    /// Sends the VE's `sysinfo(2)` calls to a listener, so that `free`, `uptime` and
    /// `sysconf(_SC_PHYS_PAGES)` show the VE's memory, load and uptime (sysinfo has no
    /// namespace). The listener of a process [`crate::enter`] starts goes to the
    /// [`crate::ListenerInbox`] at `server` (to the quotactl server instead when one is
    /// asked for: it then answers both); the init's is kept for
    /// [`crate::PendingInit::take_listener`], as its server starts after the init. A process
    /// whose listener has no server (the server is gone, or never took it) gets ENOSYS from
    /// sysinfo, the kernel's rule for a closed listener.
    pub fn intercept_sysinfo(&mut self, server: PathBuf) {
        self.sysinfo_server = Some(server);
    }

    /// The server of [`SeccompPolicy::intercept_sysinfo`], if sysinfo is intercepted.
    pub fn sysinfo_server(&self) -> Option<&Path> {
        self.sysinfo_server.as_deref()
    }

    /// The same policy without the sysinfo interception (the kernel answers sysinfo).
    pub(crate) fn without_sysinfo(&self) -> SeccompPolicy {
        SeccompPolicy { sysinfo_server: None, ..self.clone() }
    }

    /// The names of the system calls this policy refuses.
    pub fn denied_names(&self) -> Vec<&'static str> {
        self.denied().map(|d| d.name).collect()
    }

    fn denied(&self) -> impl Iterator<Item = &'static Denied> + '_ {
        DEFAULT_DENIED.iter().filter(|d| !self.allowed.contains(&d.name))
    }

    /// The filter program; with `notify_quotactl`, quotactl(2) goes to the listener, and
    /// sysinfo(2) does with [`SeccompPolicy::intercept_sysinfo`].
    ///
    /// The sysinfo rule is the pair `jeq #SYS_sysinfo, 0, 1; ret #SECCOMP_RET_USER_NOTIF`
    /// after the architecture prologue: vz-cpt's restore finds exactly that pair in a
    /// dumped filter (CRIU restores no listener) and makes its `ret` an ALLOW.
    pub(crate) fn program(&self, notify_quotactl: bool) -> Vec<libc::sock_filter> {
        let mut p = Program::default();
        p.load(OFFSET_ARCH);
        p.skip_if_equal(crate::sys::AUDIT_ARCH, 1);
        p.ret(errno_action(libc::ENOSYS));
        p.load(OFFSET_NR);
        // x32 numbers carry bit 30 on the x86-64 architecture value.
        p.skip_unless_at_least(X32_SYSCALL_BIT, 1);
        p.ret(errno_action(libc::ENOSYS));
        if self.sysinfo_server.is_some() {
            p.skip_unless_equal(nr(libc::SYS_sysinfo), 1);
            p.ret(libc::SECCOMP_RET_USER_NOTIF);
        }
        for denied in self.denied() {
            p.skip_unless_equal(nr(denied.nr), 1);
            p.ret(errno_action(denied.errno));
        }
        if notify_quotactl {
            p.skip_unless_equal(nr(libc::SYS_quotactl), 1);
            p.ret(libc::SECCOMP_RET_USER_NOTIF);
        }
        // ioctl(fd, cmd): cmd is an unsigned int, so only the low word of the argument counts.
        let ioctl_rules = u8::try_from(1 + 2 * DENIED_IOCTLS.len() + 1).unwrap_or(u8::MAX);
        p.skip_unless_equal(nr(libc::SYS_ioctl), ioctl_rules);
        p.load(OFFSET_ARG1_LOW);
        for cmd in DENIED_IOCTLS {
            p.skip_unless_equal(cmd, 1);
            p.ret(errno_action(libc::EPERM));
        }
        p.ret(libc::SECCOMP_RET_ALLOW);
        if self.no_netfilter {
            netfilter_rules(&mut p);
        }
        p.skip_unless_equal(nr(libc::SYS_umount2), 3);
        p.load(OFFSET_ARG1_LOW);
        p.skip_unless_any_bit(MNT_FORCE, 1);
        p.ret(errno_action(libc::EPERM));
        p.ret(libc::SECCOMP_RET_ALLOW);
        p.0
    }
}

/// `socket(AF_NETLINK, _, NETLINK_NETFILTER)` and the legacy tables' `setsockopt` calls
/// fail with EPERM; every other socket and setsockopt call passes.
fn netfilter_rules(p: &mut Program) {
    const AF_NETLINK: u32 = 16;
    const NETLINK_NETFILTER: u32 = 12;
    const LEVELS: [u32; 2] = [0, 41]; // SOL_IP (also arptables, ebtables), SOL_IPV6
    // IPT_SO_SET_REPLACE, IPT_SO_SET_ADD_COUNTERS (ip6t the same), ARPT_…, EBT_….
    const OPTNAMES: [u32; 6] = [64, 65, 96, 97, 128, 129];
    p.skip_unless_equal(nr(libc::SYS_socket), 6);
    p.load(OFFSET_ARG0_LOW);
    p.skip_unless_equal(AF_NETLINK, 3);
    p.load(OFFSET_ARG2_LOW);
    p.skip_unless_equal(NETLINK_NETFILTER, 1);
    p.ret(errno_action(libc::EPERM));
    p.ret(libc::SECCOMP_RET_ALLOW);
    let opt_rules = u8::try_from(2 * OPTNAMES.len()).unwrap_or(u8::MAX);
    p.skip_unless_equal(nr(libc::SYS_setsockopt), 4 + opt_rules + 1);
    p.load(OFFSET_ARG1_LOW);
    p.skip_if_equal(LEVELS[0], 1);
    p.skip_unless_equal(LEVELS[1], 1 + opt_rules);
    p.load(OFFSET_ARG2_LOW);
    for opt in OPTNAMES {
        p.skip_unless_equal(opt, 1);
        p.ret(errno_action(libc::EPERM));
    }
    p.ret(libc::SECCOMP_RET_ALLOW);
}

const OFFSET_NR: u32 = 0;
/// The low 32 bits of the first argument (`args[0]`).
const OFFSET_ARG0_LOW: u32 = 16;
/// The low 32 bits of the third argument (`args[2]`).
const OFFSET_ARG2_LOW: u32 = 16 + 16;
const OFFSET_ARCH: u32 = 4;
/// The low 32 bits of the second argument (`args[1]`, little-endian).
const OFFSET_ARG1_LOW: u32 = 16 + 8;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn nr(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn errno_action(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (errno.unsigned_abs() & libc::SECCOMP_RET_DATA)
}

/// A classic BPF program under construction; jumps are relative, forward only.
#[derive(Default)]
struct Program(Vec<libc::sock_filter>);

impl Program {
    fn push(&mut self, code: u32, k: u32, jt: u8, jf: u8) {
        let code = u16::try_from(code).unwrap_or(u16::MAX);
        self.0.push(libc::sock_filter { code, jt, jf, k });
    }

    fn load(&mut self, offset: u32) {
        self.push(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset, 0, 0);
    }

    fn ret(&mut self, action: u32) {
        self.push(libc::BPF_RET | libc::BPF_K, action, 0, 0);
    }

    /// Skips the next `n` instructions when the accumulator equals `k`.
    fn skip_if_equal(&mut self, k: u32, n: u8) {
        self.push(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, k, n, 0);
    }

    /// Skips the next `n` instructions unless the accumulator equals `k`.
    fn skip_unless_equal(&mut self, k: u32, n: u8) {
        self.push(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, k, 0, n);
    }

    /// Skips the next `n` instructions unless the accumulator is at least `k`.
    fn skip_unless_at_least(&mut self, k: u32, n: u8) {
        self.push(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, k, 0, n);
    }

    /// Skips the next `n` instructions unless the accumulator has a bit of `k`.
    fn skip_unless_any_bit(&mut self, k: u32, n: u8) {
        self.push(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, k, 0, n);
    }
}

/// Installs `policy`'s filter on the calling thread (a child about to exec in the VE);
/// returns the listener when a call is notified (`notify_quotactl`, or sysinfo by the
/// policy).
pub(crate) fn install(
    policy: &SeccompPolicy,
    notify_quotactl: bool,
) -> std::result::Result<Option<std::os::fd::OwnedFd>, String> {
    let listener = notify_quotactl || policy.sysinfo_server.is_some();
    crate::sys::seccomp_install(&policy.program(notify_quotactl), listener)
        .map_err(|e| format!("install the seccomp filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the filter on a `struct seccomp_data` the way the kernel does (the subset of
    /// classic BPF the builder emits), so the tests check behaviour, not shape.
    fn run(program: &[libc::sock_filter], arch: u32, nr: i64, arg1: u64) -> u32 {
        run_args(program, arch, nr, [0, arg1, 0])
    }

    fn run_args(program: &[libc::sock_filter], arch: u32, nr: i64, args: [u64; 3]) -> u32 {
        let mut data = [0_u8; 64];
        data[16..24].copy_from_slice(&args[0].to_le_bytes());
        data[32..40].copy_from_slice(&args[2].to_le_bytes());
        let arg1 = args[1];
        data[0..4].copy_from_slice(&u32::try_from(nr).expect("a syscall number").to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[24..32].copy_from_slice(&arg1.to_le_bytes());
        let word = |off: u32| {
            let off = off as usize;
            u32::from_le_bytes(data[off..off + 4].try_into().expect("4 bytes"))
        };
        let (mut pc, mut acc) = (0_usize, 0_u32);
        loop {
            let insn = program[pc];
            let code = u32::from(insn.code);
            let jump = |taken: bool| 1 + usize::from(if taken { insn.jt } else { insn.jf });
            pc += match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    acc = word(insn.k);
                    1
                }
                c if c == libc::BPF_RET | libc::BPF_K => return insn.k,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => jump(acc == insn.k),
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => jump(acc >= insn.k),
                c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => jump(acc & insn.k != 0),
                other => panic!("unexpected opcode {other:#x}"),
            };
        }
    }

    const ARCH: u32 = crate::sys::AUDIT_ARCH;

    #[test]
    fn the_default_policy_refuses_the_host_global_calls_and_allows_the_rest() {
        let p = SeccompPolicy::default().program(false);
        assert_eq!(run(&p, ARCH, libc::SYS_init_module, 0), errno_action(libc::EPERM));
        assert_eq!(run(&p, ARCH, libc::SYS_open_by_handle_at, 0), errno_action(libc::EPERM));
        assert_eq!(run(&p, ARCH, libc::SYS_keyctl, 0), errno_action(libc::ENOSYS));
        assert_eq!(run(&p, ARCH, libc::SYS_kexec_load, 0), errno_action(libc::EPERM));
        assert_eq!(run(&p, ARCH, libc::SYS_getpid, 0), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&p, ARCH, libc::SYS_quotactl, 0), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&p, ARCH, libc::SYS_mount, 0), libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn tiocsti_and_tioclinux_fail_other_ioctls_pass_whatever_the_high_bits() {
        let p = SeccompPolicy::default().program(false);
        let eperm = errno_action(libc::EPERM);
        assert_eq!(run(&p, ARCH, libc::SYS_ioctl, 0x5412), eperm);
        assert_eq!(run(&p, ARCH, libc::SYS_ioctl, 0xffff_ffff_0000_5412), eperm);
        assert_eq!(run(&p, ARCH, libc::SYS_ioctl, 0x541C), eperm);
        assert_eq!(run(&p, ARCH, libc::SYS_ioctl, 0x5413), libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn forced_unmounts_fail_plain_ones_pass() {
        let p = SeccompPolicy::default().program(false);
        assert_eq!(run(&p, ARCH, libc::SYS_umount2, 1), errno_action(libc::EPERM));
        assert_eq!(run(&p, ARCH, libc::SYS_umount2, 2), libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn other_abis_get_enosys() {
        let p = SeccompPolicy::default().program(false);
        assert_eq!(run(&p, 0x4000_0003, 1, 0), errno_action(libc::ENOSYS));
        assert_eq!(run(&p, ARCH, 0x4000_0000 + 39, 0), errno_action(libc::ENOSYS));
    }

    #[test]
    fn quotactl_goes_to_the_listener_when_asked() {
        let p = SeccompPolicy::default().program(true);
        assert_eq!(run(&p, ARCH, libc::SYS_quotactl, 0), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&p, ARCH, libc::SYS_keyctl, 0), errno_action(libc::ENOSYS));
    }

    #[test]
    fn sysinfo_goes_to_the_listener_when_asked_as_the_pair_restore_patches() {
        let mut policy = SeccompPolicy::default();
        let plain = policy.program(false);
        assert_eq!(run(&plain, ARCH, libc::SYS_sysinfo, 0), libc::SECCOMP_RET_ALLOW);
        policy.intercept_sysinfo(PathBuf::from("/run/vz/101.sysinfo"));
        let p = policy.program(false);
        assert_eq!(run(&p, ARCH, libc::SYS_sysinfo, 0), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&p, ARCH, libc::SYS_quotactl, 0), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&p, ARCH, libc::SYS_keyctl, 0), errno_action(libc::ENOSYS));
        assert_eq!(run(&p, ARCH, libc::SYS_getpid, 0), libc::SECCOMP_RET_ALLOW);
        let both = policy.program(true);
        assert_eq!(run(&both, ARCH, libc::SYS_sysinfo, 0), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&both, ARCH, libc::SYS_quotactl, 0), libc::SECCOMP_RET_USER_NOTIF);
        // The exact pair vz-cpt's seccomp_image looks for, once.
        let jeq = u16::try_from(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K).expect("u16");
        let ret = u16::try_from(libc::BPF_RET | libc::BPF_K).expect("u16");
        let pairs = p
            .windows(2)
            .filter(|w| {
                (w[0].code, w[0].jt, w[0].jf, w[0].k) == (jeq, 0, 1, 99)
                    && (w[1].code, w[1].k) == (ret, libc::SECCOMP_RET_USER_NOTIF)
            })
            .count();
        assert_eq!(pairs, 1);
        assert_eq!(
            (p[0].code, p[0].k),
            (u16::try_from(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS).expect("u16"), 4)
        );
        assert_eq!(policy.without_sysinfo().program(false), plain);
    }

    #[test]
    fn overrides_allow_and_deny_by_name_and_refuse_unknown_names() {
        let mut policy = SeccompPolicy::default();
        policy.apply_overrides("keyctl:on, bpf:on").expect("valid");
        let p = policy.program(false);
        assert_eq!(run(&p, ARCH, libc::SYS_keyctl, 0), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&p, ARCH, libc::SYS_bpf, 0), libc::SECCOMP_RET_ALLOW);
        policy.apply_overrides("bpf:off").expect("valid");
        assert!(policy.denied_names().contains(&"bpf"));
        assert!(policy.apply_overrides("getpid:on").is_err());
        assert!(policy.apply_overrides("keyctl").is_err());
        assert!(policy.apply_overrides("keyctl:maybe").is_err());
        assert!(!policy.denied_names().contains(&"keyctl"), "unchanged after an error");
    }

    #[test]
    fn netfilter_disabled_refuses_nf_netlink_and_legacy_tables_only() {
        let mut policy = SeccompPolicy::default();
        let open = policy.program(false);
        policy.deny_netfilter();
        let p = policy.program(true);
        let (allow, eperm) = (libc::SECCOMP_RET_ALLOW, errno_action(libc::EPERM));
        let socket = |p: &[libc::sock_filter], args| run_args(p, ARCH, libc::SYS_socket, args);
        assert_eq!(socket(&p, [16, 3, 12]), eperm, "NETLINK_NETFILTER");
        assert_eq!(socket(&open, [16, 3, 12]), allow);
        assert_eq!(socket(&p, [16, 3, 0]), allow, "NETLINK_ROUTE");
        assert_eq!(socket(&p, [2, 1, 12]), allow, "AF_INET with protocol 12");
        let setsockopt = |args| run_args(&p, ARCH, libc::SYS_setsockopt, args);
        for (level, opt) in [(0, 64), (41, 64), (0, 65), (0, 96), (0, 128), (41, 129)] {
            assert_eq!(setsockopt([3, level, opt]), eperm, "{level}/{opt}");
        }
        assert_eq!(setsockopt([3, 0, 1]), allow, "IP_TOS");
        assert_eq!(setsockopt([3, 1, 64]), allow, "SOL_SOCKET");
        assert_eq!(setsockopt([3, 6, 64]), allow, "SOL_TCP");
        // The other rules still hold after these blocks.
        assert_eq!(run(&p, ARCH, libc::SYS_umount2, 1), eperm);
        assert_eq!(run(&p, ARCH, libc::SYS_umount2, 2), allow);
        assert_eq!(run(&p, ARCH, libc::SYS_quotactl, 0), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&p, ARCH, libc::SYS_getpid, 0), allow);
    }
}
