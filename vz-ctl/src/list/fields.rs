//! vzlist's fields: name, header, column format, and how each value is read from a VE
//! (reference §4).

use vz_ubc::Resource;

use super::row::Row;

/// How a column is laid out: width, and right (`%10s`) or left (`%-32s`) alignment.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Minimum width.
    pub width: usize,
    /// `true` for `%-Ns`.
    pub left: bool,
    /// Long values are cut to the width unless the field is last or `-t` is given.
    pub trim: bool,
}

/// A field's value for one VE.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text; `None` prints `-` (JSON `null`).
    Str(Option<String>),
    /// A number; `None` prints `-`.
    Num(Option<i64>),
    /// A list (ip, nameserver…): the first element unless the field is last; JSON array.
    List(Vec<String>),
    /// yes/no; `None` prints `-`.
    Bool(Option<bool>),
    /// Text in the table (`None` prints `-`), another JSON value (a number where OpenVZ
    /// prints one: uptime in seconds, laverage as `[a, b, c]`).
    Shown {
        /// What the table shows.
        text: Option<String>,
        /// The JSON value.
        json: serde_json::Value,
    },
    /// A beancounter or a disk quota: the table shows one number (`held`, `usage`; `None`
    /// prints `-`), JSON the whole object.
    Object {
        /// The number the table shows.
        shown: Option<u64>,
        /// The JSON object.
        json: serde_json::Value,
    },
}

/// One beancounter of one VE as vzlist shows it: held/maxheld/failcnt only for a running VE
/// (`None` prints `-`, JSON 0), barrier/limit from the kernel or the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UbcCell {
    /// Current usage.
    pub held: Option<u64>,
    /// Peak usage.
    pub maxheld: Option<u64>,
    /// Barrier.
    pub barrier: Option<u64>,
    /// Limit.
    pub limit: Option<u64>,
    /// Refusals counted.
    pub failcnt: Option<u64>,
}

impl UbcCell {
    /// The JSON object `{"held","maxheld","barrier","limit","failcnt"}` (0 when unknown).
    pub fn json(&self) -> serde_json::Value {
        let n = |v: Option<u64>| serde_json::Value::from(v.unwrap_or(0));
        serde_json::json!({
            "held": n(self.held),
            "maxheld": n(self.maxheld),
            "barrier": n(self.barrier),
            "limit": n(self.limit),
            "failcnt": n(self.failcnt),
        })
    }
}

/// The beancounter `resource` of a row.
fn ubc_cell(row: &Row, resource: Resource) -> UbcCell {
    let usage = row.ubc.as_ref().and_then(|u| u.iter().find(|x| x.resource == resource));
    let config = row.ubc_config.get(resource);
    let mut cell = UbcCell {
        held: usage.map(|u| u.held),
        maxheld: usage.map(|u| u.maxheld),
        barrier: usage.map(|u| u.barrier).or(config.map(|c| c.barrier)),
        limit: usage.map(|u| u.limit).or(config.map(|c| c.limit)),
        failcnt: usage.map(|u| u.failcnt),
    };
    if resource == Resource::NumProc && cell.held.is_none() {
        cell.held = row.nproc.and_then(|n| u64::try_from(n).ok());
    }
    cell
}

/// A disk quota field: part 0 usage (the object), 1 soft, 2 hard limit; `INODES` picks
/// DISKINODES over DISKSPACE.
fn quota_get<const INODES: bool, const P: u8>(row: &Row) -> Value {
    let Some(stat) = row.quota() else { return Value::Num(None) };
    let usage = if INODES { &stat.inodes } else { &stat.blocks };
    let num = |v: u64| Value::Num(i64::try_from(v).ok());
    match P {
        0 => Value::Object {
            shown: Some(usage.usage),
            json: serde_json::json!({
                "usage": usage.usage,
                "softlimit": usage.soft,
                "hardlimit": usage.hard,
            }),
        },
        1 => num(usage.soft),
        _ => num(usage.hard),
    }
}

/// The getter of beancounter `Resource::ALL[I]`: part 0 held (the object), 1 maxheld,
/// 2 barrier, 3 limit, 4 failcnt.
fn ubc_get<const I: usize, const P: u8>(row: &Row) -> Value {
    let cell = ubc_cell(row, Resource::ALL[I]);
    let num = |v: Option<u64>| Value::Num(v.and_then(|v| i64::try_from(v).ok()));
    match P {
        0 => Value::Object { shown: cell.held, json: cell.json() },
        1 => num(cell.maxheld),
        2 => num(cell.barrier),
        3 => num(cell.limit),
        _ => num(cell.failcnt),
    }
}

/// A numeric column 10 wide (beancounter and disk quota fields).
const fn numeric(name: &'static str, header: &'static str, get: fn(&Row) -> Value) -> Field {
    Field { name, aliases: &[], header, column: right(10), get }
}

/// Builds [`FIELDS`]: the fields given, then five per beancounter.
macro_rules! with_ubc {
    ([$($base:expr),* $(,)?], [$(($i:literal, $name:literal, $hdr:literal)),* $(,)?]) => {
        &[
            $($base,)*
            $(
                numeric($name, $hdr, ubc_get::<$i, 0>),
                numeric(concat!($name, ".m"), concat!($hdr, ".M"), ubc_get::<$i, 1>),
                numeric(concat!($name, ".b"), concat!($hdr, ".B"), ubc_get::<$i, 2>),
                numeric(concat!($name, ".l"), concat!($hdr, ".L"), ubc_get::<$i, 3>),
                numeric(concat!($name, ".f"), concat!($hdr, ".F"), ubc_get::<$i, 4>),
            )*
        ]
    };
}

/// One vzlist field.
#[derive(Debug)]
pub struct Field {
    /// The `-o` name.
    pub name: &'static str,
    /// Other names accepted by `-o`.
    pub aliases: &'static [&'static str],
    /// The header text.
    pub header: &'static str,
    /// Layout.
    pub column: Column,
    /// Reads the value.
    pub get: fn(&Row) -> Value,
}

const fn right(width: usize) -> Column {
    Column { width, left: false, trim: false }
}

const fn left(width: usize) -> Column {
    Column { width, left: true, trim: true }
}

fn key(row: &Row, key: &str) -> Value {
    Value::Str(row.get(key).filter(|v| !v.is_empty()).map(str::to_owned))
}

fn list(row: &Row, key: &str) -> Value {
    Value::List(
        row.get(key).map(|v| v.split_whitespace().map(str::to_owned).collect()).unwrap_or_default(),
    )
}

fn yes_no(row: &Row, key: &str) -> Value {
    Value::Bool(row.get(key).and_then(|v| match v {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }))
}

fn number(row: &Row, key: &str) -> Value {
    Value::Num(row.get(key).and_then(|v| v.parse().ok()))
}

/// A decimal key (VM_OVERCOMMIT): as written in the table, a JSON number.
fn decimal(row: &Row, key: &str) -> Value {
    let text = row.get(key).filter(|v| !v.is_empty()).map(str::to_owned);
    let json = text
        .as_deref()
        .and_then(|t| t.parse::<f64>().ok())
        .map_or(serde_json::Value::Null, serde_json::Value::from);
    Value::Shown { text, json }
}

/// `a/b/c` in the table, `[a, b, c]` in JSON (running VEs only).
fn laverage(row: &Row) -> Value {
    match row.laverage {
        Some(l) => Value::Shown {
            text: Some(format!("{:.2}/{:.2}/{:.2}", l[0], l[1], l[2])),
            json: serde_json::json!(l),
        },
        None => Value::Shown { text: None, json: serde_json::Value::Null },
    }
}

/// vzlist's uptime form in the table, seconds in JSON.
fn uptime(row: &Row) -> Value {
    Value::Shown {
        text: row.uptime.map(format_uptime),
        json: row.uptime.map_or(serde_json::Value::Null, serde_json::Value::from),
    }
}

/// Every field, in `vzlist -L` order: the config and state fields, then each beancounter
/// with its `.m .b .l .f` variants (index into [`Resource::ALL`], name, header).
pub const FIELDS: &[Field] = with_ubc!(
    [
        Field {
            name: "ctid",
            aliases: &["veid", "vpsid"],
            header: "CTID",
            column: right(10),
            get: |r| Value::Num(Some(i64::from(r.ctid))),
        },
        Field {
            name: "private",
            aliases: &[],
            header: "PRIVATE",
            column: left(32),
            get: |r| Value::Str(r.private()),
        },
        Field {
            name: "root",
            aliases: &[],
            header: "ROOT",
            column: left(32),
            get: |r| Value::Str(r.root()),
        },
        Field {
            name: "mount_opts",
            aliases: &[],
            header: "MOUNT_OPTS",
            column: left(16),
            get: |r| key(r, "MOUNT_OPTS"),
        },
        Field {
            name: "origin_sample",
            aliases: &[],
            header: "ORIGIN_SAMPLE",
            column: right(32),
            get: |r| key(r, "ORIGIN_SAMPLE"),
        },
        Field {
            name: "hostname",
            aliases: &[],
            header: "HOSTNAME",
            column: left(32),
            get: |r| key(r, "HOSTNAME"),
        },
        Field {
            name: "name",
            aliases: &[],
            header: "NAME",
            column: left(32),
            get: |r| key(r, "NAME")
        },
        Field {
            name: "smart_name",
            aliases: &[],
            header: "SMARTNAME",
            column: right(10),
            get: |r| {
                Value::Str(Some(
                    r.get("NAME")
                        .filter(|n| !n.is_empty())
                        .map_or_else(|| r.ctid.to_string(), str::to_owned),
                ))
            },
        },
        Field {
            name: "description",
            aliases: &[],
            header: "DESCRIPTION",
            column: left(32),
            get: |r| key(r, "DESCRIPTION"),
        },
        Field {
            name: "ostemplate",
            aliases: &[],
            header: "OSTEMPLATE",
            column: left(32),
            get: |r| key(r, "OSTEMPLATE"),
        },
        Field {
            name: "ip",
            aliases: &[],
            header: "IP_ADDR",
            column: left(15),
            get: |r| list(r, "IP_ADDRESS"),
        },
        Field {
            name: "nameserver",
            aliases: &[],
            header: "NAMESERVER",
            column: left(15),
            get: |r| list(r, "NAMESERVER"),
        },
        Field {
            name: "searchdomain",
            aliases: &[],
            header: "SEARCHDOMAIN",
            column: left(15),
            get: |r| list(r, "SEARCHDOMAIN"),
        },
        Field {
            name: "status",
            aliases: &[],
            header: "STATUS",
            column: Column { width: 9, left: true, trim: false },
            get: |r| Value::Str(Some(r.status_word().to_owned())),
        },
        Field { name: "uptime", aliases: &[], header: "UPTIME", column: right(15), get: uptime },
        Field {
            name: "laverage",
            aliases: &[],
            header: "LAVERAGE",
            column: right(14),
            get: laverage,
        },
        Field {
            name: "cpulimit",
            aliases: &[],
            header: "CPULIM",
            column: right(7),
            get: |r| number(r, "CPULIMIT"),
        },
        Field {
            name: "cpuunits",
            aliases: &[],
            header: "CPUUNI",
            column: right(7),
            get: |r| number(r, "CPUUNITS"),
        },
        Field {
            name: "cpus",
            aliases: &[],
            header: "CPUS",
            column: right(5),
            get: |r| number(r, "CPUS"),
        },
        Field {
            name: "ioprio",
            aliases: &[],
            header: "IOP",
            column: right(3),
            get: |r| number(r, "IOPRIO"),
        },
        Field {
            name: "iolimit",
            aliases: &[],
            header: "IOLIMIT",
            column: right(10),
            get: |r| number(r, "IOLIMIT"),
        },
        Field {
            name: "iopslimit",
            aliases: &[],
            header: "IOPS",
            column: right(4),
            get: |r| number(r, "IOPSLIMIT"),
        },
        Field {
            name: "onboot",
            aliases: &[],
            header: "ONBOOT",
            column: right(6),
            get: |r| yes_no(r, "ONBOOT"),
        },
        Field {
            name: "bootorder",
            aliases: &[],
            header: "BOOTORDER",
            column: right(10),
            get: |r| number(r, "BOOTORDER"),
        },
        Field {
            name: "layout",
            aliases: &[],
            header: "LAYOUT",
            column: right(6),
            get: |r| key(r, "VE_LAYOUT"),
        },
        Field {
            name: "features",
            aliases: &[],
            header: "FEATURES",
            column: left(15),
            get: |r| key(r, "FEATURES"),
        },
        Field {
            name: "vswap",
            aliases: &[],
            header: "VSWAP",
            column: right(5),
            get: |r| Value::Bool(Some(r.ubc_config.is_vswap())),
        },
        Field {
            name: "disabled",
            aliases: &[],
            header: "DISABL",
            column: right(6),
            get: |r| Value::Bool(Some(r.get("DISABLED") == Some("yes"))),
        },
        Field {
            name: "vm_overcommit",
            aliases: &[],
            header: "VM_OVC",
            column: right(6),
            get: |r| decimal(r, "VM_OVERCOMMIT"),
        },
        Field {
            name: "netfilter",
            aliases: &[],
            header: "NETFILTER",
            column: left(9),
            get: |r| key(r, "NETFILTER"),
        },
        Field {
            name: "capability",
            aliases: &[],
            header: "CAPABILITY",
            column: left(15),
            get: |r| key(r, "CAPABILITY"),
        },
        numeric("diskspace", "DSPACE", quota_get::<false, 0>),
        numeric("diskspace.s", "DSPACE.S", quota_get::<false, 1>),
        numeric("diskspace.h", "DSPACE.H", quota_get::<false, 2>),
        numeric("diskinodes", "DINODES", quota_get::<true, 0>),
        numeric("diskinodes.s", "DINODES.S", quota_get::<true, 1>),
        numeric("diskinodes.h", "DINODES.H", quota_get::<true, 2>),
    ],
    [
        (0, "kmemsize", "KMEMSIZE"),
        (1, "lockedpages", "LOCKEDP"),
        (2, "privvmpages", "PRIVVMP"),
        (3, "shmpages", "SHMP"),
        (4, "numproc", "NPROC"),
        (5, "physpages", "PHYSP"),
        (6, "vmguarpages", "VMGUARP"),
        (7, "oomguarpages", "OOMGUARP"),
        (8, "numtcpsock", "NTCPSOCK"),
        (9, "numflock", "NFLOCK"),
        (10, "numpty", "NPTY"),
        (11, "numsiginfo", "NSIGINFO"),
        (12, "tcpsndbuf", "TCPSNDB"),
        (13, "tcprcvbuf", "TCPRCVB"),
        (14, "othersockbuf", "OTHSOCKB"),
        (15, "dgramrcvbuf", "DGRAMRB"),
        (16, "numothersock", "NOTHSOCK"),
        (17, "dcachesize", "DCACHESZ"),
        (18, "numfile", "NFILE"),
        (19, "numiptent", "NIPTENT"),
        (21, "swappages", "SWAPP"),
    ]
);

/// The field named `name` (or an alias).
pub fn find(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name || f.aliases.contains(&name))
}

/// `%.3dd%.2dh:%.2dm:%.2ds`, vzlist's uptime form.
fn format_uptime(secs: u64) -> String {
    format!(
        "{:03}d{:02}h:{:02}m:{:02}s",
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_by_name_and_alias() {
        assert_eq!(find("veid").unwrap().name, "ctid");
        assert!(find("bogus").is_none());
    }

    #[test]
    fn ubc_fields_match_the_resource_table() {
        for r in Resource::ALL.into_iter().filter(|r| *r != Resource::AvNumProc) {
            let base = find(r.name()).unwrap_or_else(|| panic!("{r}"));
            assert_eq!(base.header, r.vzlist_header());
            for (suffix, upper) in [(".m", ".M"), (".b", ".B"), (".l", ".L"), (".f", ".F")] {
                let f = find(&format!("{}{suffix}", r.name())).unwrap();
                assert_eq!(f.header, format!("{}{upper}", r.vzlist_header()));
            }
        }
        assert_eq!(FIELDS.iter().filter(|f| f.name == "numproc").count(), 1);
    }

    #[test]
    fn ubc_cell_json_has_zeros_for_a_stopped_ve() {
        let stopped = UbcCell { barrier: Some(20), limit: Some(20), ..Default::default() };
        assert_eq!(
            stopped.json(),
            serde_json::json!({"held": 0, "maxheld": 0, "barrier": 20, "limit": 20, "failcnt": 0})
        );
    }

    #[test]
    fn every_field_of_the_reference_is_listed() {
        for name in [
            "ctid",
            "private",
            "root",
            "mount_opts",
            "origin_sample",
            "hostname",
            "name",
            "smart_name",
            "description",
            "ostemplate",
            "ip",
            "nameserver",
            "searchdomain",
            "status",
            "diskspace",
            "diskinodes",
            "laverage",
            "uptime",
            "cpulimit",
            "cpuunits",
            "cpus",
            "ioprio",
            "iolimit",
            "iopslimit",
            "onboot",
            "bootorder",
            "layout",
            "features",
            "vswap",
            "disabled",
            "vm_overcommit",
            "netfilter",
            "capability",
        ] {
            assert!(find(name).is_some(), "{name}");
        }
    }

    #[test]
    fn uptime_has_openvz_form() {
        assert_eq!(format_uptime(90_061), "001d01h:01m:01s");
    }
}
