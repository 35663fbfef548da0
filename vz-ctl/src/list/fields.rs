//! vzlist's fields: name, header, column format, and how each value is read from a VE
//! (reference §4).

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

/// Every field, in `vzlist -L` order.
pub const FIELDS: &[Field] = &[
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
    Field { name: "name", aliases: &[], header: "NAME", column: left(32), get: |r| key(r, "NAME") },
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
    Field {
        name: "numproc",
        aliases: &[],
        header: "NPROC",
        column: right(10),
        get: |r| Value::Num(r.nproc),
    },
    Field {
        name: "uptime",
        aliases: &[],
        header: "UPTIME",
        column: right(15),
        get: |r| Value::Str(r.uptime.map(format_uptime)),
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
        name: "disabled",
        aliases: &[],
        header: "DISABL",
        column: right(6),
        get: |r| Value::Bool(Some(r.get("DISABLED") == Some("yes"))),
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
];

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
    fn uptime_has_openvz_form() {
        assert_eq!(format_uptime(90_061), "001d01h:01m:01s");
    }
}
