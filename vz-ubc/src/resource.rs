//! The beancounter parameters: names in the config file, on the command line and in
//! `/proc/user_beancounters`, their units and their row index in the kernel's table.
//!
//! This is a declarative table (reference §3.1); every entry is checked by the tests below.

/// The unit a parameter is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UbUnit {
    /// Bytes (`kmemsize`, the socket buffers, `dcachesize`).
    Bytes,
    /// Memory pages of the host's page size (`*pages`).
    Pages,
    /// Objects (`num*`, `avnumproc`): suffixes are refused.
    Items,
}

/// One beancounter parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// Unswappable kernel memory.
    KmemSize,
    /// Pages locked with `mlock()`.
    LockedPages,
    /// Allocated private (and shared anonymous) virtual memory.
    PrivvmPages,
    /// IPC shared memory, shared anonymous memory and tmpfs.
    ShmPages,
    /// Processes and threads.
    NumProc,
    /// Resident memory (the RAM limit of VSwap).
    PhysPages,
    /// Memory allocation guarantee.
    VmGuarPages,
    /// Guarantee against the out-of-memory killer.
    OomGuarPages,
    /// TCP sockets.
    NumTcpSock,
    /// File locks.
    NumFlock,
    /// Pseudo-terminals.
    NumPty,
    /// Queued signals (siginfo structures).
    NumSiginfo,
    /// TCP send buffers.
    TcpSndBuf,
    /// TCP receive buffers.
    TcpRcvBuf,
    /// Unix-domain and UDP send buffers.
    OtherSockBuf,
    /// Datagram receive buffers.
    DgramRcvBuf,
    /// Non-TCP sockets.
    NumOtherSock,
    /// Dentry and inode caches.
    DcacheSize,
    /// Open files.
    NumFile,
    /// Netfilter (iptables) entries.
    NumIptent,
    /// Average number of processes: a config value for formulas, not a kernel resource.
    AvNumProc,
    /// Swap (the swap limit of VSwap).
    SwapPages,
}

struct Entry {
    resource: Resource,
    key: &'static str,
    unit: UbUnit,
    index: Option<u8>,
    vzlist: &'static str,
}

const fn e(
    resource: Resource,
    key: &'static str,
    unit: UbUnit,
    index: Option<u8>,
    vzlist: &'static str,
) -> Entry {
    Entry { resource, key, unit, index, vzlist }
}

use Resource as R;
use UbUnit::{Bytes, Items, Pages};

/// The table: config key, unit, row in `/proc/user_beancounters`, vzlist header.
const TABLE: [Entry; 22] = [
    e(R::KmemSize, "KMEMSIZE", Bytes, Some(0), "KMEMSIZE"),
    e(R::LockedPages, "LOCKEDPAGES", Pages, Some(1), "LOCKEDP"),
    e(R::PrivvmPages, "PRIVVMPAGES", Pages, Some(2), "PRIVVMP"),
    e(R::ShmPages, "SHMPAGES", Pages, Some(3), "SHMP"),
    e(R::NumProc, "NUMPROC", Items, Some(5), "NPROC"),
    e(R::PhysPages, "PHYSPAGES", Pages, Some(6), "PHYSP"),
    e(R::VmGuarPages, "VMGUARPAGES", Pages, Some(7), "VMGUARP"),
    e(R::OomGuarPages, "OOMGUARPAGES", Pages, Some(8), "OOMGUARP"),
    e(R::NumTcpSock, "NUMTCPSOCK", Items, Some(9), "NTCPSOCK"),
    e(R::NumFlock, "NUMFLOCK", Items, Some(10), "NFLOCK"),
    e(R::NumPty, "NUMPTY", Items, Some(11), "NPTY"),
    e(R::NumSiginfo, "NUMSIGINFO", Items, Some(12), "NSIGINFO"),
    e(R::TcpSndBuf, "TCPSNDBUF", Bytes, Some(13), "TCPSNDB"),
    e(R::TcpRcvBuf, "TCPRCVBUF", Bytes, Some(14), "TCPRCVB"),
    e(R::OtherSockBuf, "OTHERSOCKBUF", Bytes, Some(15), "OTHSOCKB"),
    e(R::DgramRcvBuf, "DGRAMRCVBUF", Bytes, Some(16), "DGRAMRB"),
    e(R::NumOtherSock, "NUMOTHERSOCK", Items, Some(17), "NOTHSOCK"),
    e(R::DcacheSize, "DCACHESIZE", Bytes, Some(18), "DCACHESZ"),
    e(R::NumFile, "NUMFILE", Items, Some(19), "NFILE"),
    e(R::NumIptent, "NUMIPTENT", Items, Some(23), "NIPTENT"),
    e(R::AvNumProc, "AVNUMPROC", Items, None, "AVNPROC"),
    e(R::SwapPages, "SWAPPAGES", Pages, Some(24), "SWAPP"),
];

/// Rows of `/proc/user_beancounters`: indices 0…23, the unused ones are printed as `dummy`.
pub const PROC_ROWS: u8 = 24;

impl Resource {
    /// Every parameter, in kernel index order (`avnumproc`, which has none, before `swappages`).
    pub const ALL: [Resource; 22] = {
        let mut all = [R::KmemSize; 22];
        let mut i = 0;
        while i < 22 {
            all[i] = TABLE[i].resource;
            i += 1;
        }
        all
    };

    fn entry(self) -> &'static Entry {
        // The table lists the variants in declaration order; the test below checks it.
        &TABLE[self as usize]
    }

    /// The config-file key, e.g. `KMEMSIZE`.
    pub fn key(self) -> &'static str {
        self.entry().key
    }

    /// The lower-case name used in `/proc/user_beancounters` and for vzlist fields, e.g. `kmemsize`.
    pub fn name(self) -> &'static str {
        // Upper-case keys and lower-case names are the same words in OpenVZ.
        LOWER[self as usize]
    }

    /// The `vzctl set` option without dashes (`kmemsize` for `--kmemsize`).
    pub fn option(self) -> &'static str {
        self.name()
    }

    /// The unit values are counted in.
    pub fn unit(self) -> UbUnit {
        self.entry().unit
    }

    /// The row index in the kernel's beancounter table (`None` for `avnumproc`).
    /// `swappages` has index 24 and is not shown in `/proc/user_beancounters`.
    pub fn index(self) -> Option<u8> {
        self.entry().index
    }

    /// The vzlist column header (`NPROC`, `KMEMSIZE`, …).
    pub fn vzlist_header(self) -> &'static str {
        self.entry().vzlist
    }

    /// The parameter at a kernel row index (`None` for dummy rows).
    pub fn from_index(index: u8) -> Option<Resource> {
        TABLE.iter().find(|e| e.index == Some(index)).map(|e| e.resource)
    }

    /// The parameter named by a config key, a vzctl option or a `/proc` name, in any case
    /// (`KMEMSIZE`, `kmemsize`, `--kmemsize`).
    ///
    /// # Errors
    /// [`UbcError::UnknownParameter`](crate::UbcError::UnknownParameter) for any other name.
    pub fn from_name(name: &str) -> crate::Result<Resource> {
        let bare = name.trim_start_matches('-');
        TABLE
            .iter()
            .find(|e| e.key.eq_ignore_ascii_case(bare))
            .map(|e| e.resource)
            .ok_or_else(|| crate::UbcError::UnknownParameter { key: name.to_owned() })
    }
}

const LOWER: [&str; 22] = [
    "kmemsize",
    "lockedpages",
    "privvmpages",
    "shmpages",
    "numproc",
    "physpages",
    "vmguarpages",
    "oomguarpages",
    "numtcpsock",
    "numflock",
    "numpty",
    "numsiginfo",
    "tcpsndbuf",
    "tcprcvbuf",
    "othersockbuf",
    "dgramrcvbuf",
    "numothersock",
    "dcachesize",
    "numfile",
    "numiptent",
    "avnumproc",
    "swappages",
];

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_declaration_order_and_names_match_keys() {
        for (i, entry) in TABLE.iter().enumerate() {
            assert_eq!(entry.resource as usize, i);
            assert_eq!(entry.key.to_ascii_lowercase(), LOWER[i]);
            assert_eq!(Resource::ALL[i], entry.resource);
        }
    }

    #[test]
    fn units_follow_the_naming_rule() {
        // Reference §3.1: num* are items, *pages* are pages, the rest bytes (avnumproc: items).
        for r in Resource::ALL {
            let expected = if r.name().starts_with("num") || r == Resource::AvNumProc {
                UbUnit::Items
            } else if r.name().contains("pages") {
                UbUnit::Pages
            } else {
                UbUnit::Bytes
            };
            assert_eq!(r.unit(), expected, "{r}");
        }
    }

    #[test]
    fn indices_match_the_kernel_table() {
        assert_eq!(Resource::KmemSize.index(), Some(0));
        assert_eq!(Resource::NumProc.index(), Some(5));
        assert_eq!(Resource::NumIptent.index(), Some(23));
        assert_eq!(Resource::SwapPages.index(), Some(24));
        assert_eq!(Resource::AvNumProc.index(), None);
        for dummy in [4, 20, 21, 22] {
            assert_eq!(Resource::from_index(dummy), None);
        }
        let real = (0..PROC_ROWS).filter_map(Resource::from_index).count();
        assert_eq!(real, 20);
    }

    #[test]
    fn names_parse_in_every_spelling() {
        for r in Resource::ALL {
            assert_eq!(Resource::from_name(r.key()).unwrap(), r);
            assert_eq!(Resource::from_name(r.name()).unwrap(), r);
            assert_eq!(Resource::from_name(&format!("--{}", r.option())).unwrap(), r);
        }
        let err = Resource::from_name("KMEMSIZ").unwrap_err();
        assert!(err.to_string().contains("KMEMSIZ"), "{err}");
    }
}
