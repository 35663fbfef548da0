//! One line of an OpenVZ configuration file: `KEY="value"`, `KEY=value`, comments and blanks
//! (reference §2.1, OpenVZ vzctl `src/lib/util.c: parse_line`), and which keys repeat how.

use std::borrow::Cow;

/// The UBC keys (reference §2.2): when repeated, the **last** occurrence wins.
const UBC_KEYS: &[&str] = &[
    "KMEMSIZE",
    "LOCKEDPAGES",
    "PRIVVMPAGES",
    "SHMPAGES",
    "NUMPROC",
    "PHYSPAGES",
    "VMGUARPAGES",
    "OOMGUARPAGES",
    "NUMTCPSOCK",
    "NUMFLOCK",
    "NUMPTY",
    "NUMSIGINFO",
    "TCPSNDBUF",
    "TCPRCVBUF",
    "OTHERSOCKBUF",
    "DGRAMRCVBUF",
    "NUMOTHERSOCK",
    "NUMFILE",
    "DCACHESIZE",
    "NUMIPTENT",
    "AVNUMPROC",
    "SWAPPAGES",
];

/// What one line holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    /// Blank, or a comment (`#` after optional whitespace).
    Blank,
    /// `KEY=value`; `unterminated` when an opening `"` has no closing one.
    Entry {
        /// The key as written (not canonicalised).
        key: &'a str,
        /// The value, quotes removed and, inside quotes, sh's escapes (`\"`, `\\`, `\$`,
        /// `` \` ``) undone.
        value: Cow<'a, str>,
        /// The opening quote was not closed.
        unterminated: bool,
    },
    /// No `=` on a non-comment line.
    NoEquals,
    /// The text before `=` is not a key name.
    BadKey,
}

/// Parses one line (without its newline).
///
/// Leading and trailing whitespace is ignored; a value that opens with `"` ends at the **last**
/// `"` of the line, so `KEY="a"b"` is `a"b` and `CONFIGFILE="basic" # note` is `basic`
/// (OpenVZ ships its vz.conf with such a comment). An unquoted value is the rest of the line.
/// Inside the quotes a backslash before `"`, `\`, `$` or `` ` `` is removed, as sh does, so a
/// value reads back exactly as `. CTID.conf` gives it.
pub(crate) fn parse_line(line: &str) -> Parsed<'_> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Parsed::Blank;
    }
    let Some((key, rest)) = line.split_once('=') else {
        return Parsed::NoEquals;
    };
    let key = key.trim_end();
    if !is_valid_key(key) {
        return Parsed::BadKey;
    }
    let rest = rest.trim_start();
    match rest.strip_prefix('"') {
        Some(quoted) => match last_unescaped_quote(quoted) {
            Some(end) => {
                Parsed::Entry { key, value: unescape(&quoted[..end]), unterminated: false }
            }
            None => Parsed::Entry { key, value: unescape(quoted), unterminated: true },
        },
        None => Parsed::Entry { key, value: Cow::Borrowed(rest), unterminated: false },
    }
}

/// The characters sh gives a meaning inside double quotes, escaped when written.
const ESCAPED: [char; 4] = ['"', '\\', '$', '`'];

/// The byte offset of the last `"` not escaped by a backslash.
fn last_unescaped_quote(text: &str) -> Option<usize> {
    let mut last = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => last = Some(i),
            _ => {}
        }
    }
    last
}

/// Undoes sh's double-quote escapes: `\` before one of [`ESCAPED`] is dropped.
fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match chars.peek() {
            Some(next) if c == '\\' && ESCAPED.contains(next) => {
                out.push(*next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Why `value` cannot be written into a config file, if it cannot: a line break or NUL has
/// no form in OpenVZ's one-line `KEY="value"` syntax that every reader (vz, sh, OpenVZ)
/// takes back the same.
pub fn unrepresentable(value: &str) -> Option<&'static str> {
    if value.contains(['\n', '\r']) {
        Some("line breaks cannot be stored in a config file")
    } else if value.contains('\0') {
        Some("NUL cannot be stored in a config file")
    } else {
        None
    }
}

/// Whether `key` is a valid configuration key: a shell variable name
/// (`[A-Za-z_][A-Za-z0-9_]*`), since the file is sourced by action scripts.
pub fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The name a key is looked up and written under: OpenVZ's read aliases `DCACHE` →
/// `DCACHESIZE` and `IPTENTRIES` → `NUMIPTENT` (reference §2.1); every other key is itself.
pub fn canonical_key(key: &str) -> &str {
    match key {
        "DCACHE" => "DCACHESIZE",
        "IPTENTRIES" => "NUMIPTENT",
        other => other,
    }
}

/// Whether a repeated `key` takes its **last** occurrence: the UBC keys (`KMEMSIZE` …
/// `SWAPPAGES`, and their aliases). Other keys keep the first, except [`accumulates`].
pub fn last_wins(key: &str) -> bool {
    UBC_KEYS.contains(&canonical_key(key))
}

/// Whether repeated occurrences of `key` accumulate (space-joined): `NAMESERVER` and
/// `SEARCHDOMAIN`.
pub fn accumulates(key: &str) -> bool {
    matches!(key, "NAMESERVER" | "SEARCHDOMAIN")
}

/// Formats an entry the way OpenVZ writes it: always quoted, `KEY="value"`, with `"`, `\`,
/// `$` and `` ` `` escaped by a backslash so that sh, sourcing the file, gets exactly `value`
/// (no expansion, no command substitution, no early end of the string).
///
/// A line break cannot be stored in this line-based format ([`unrepresentable`]; callers
/// refuse such values first), so `\n` and `\r` become spaces, and NUL is dropped.
pub(crate) fn format_entry(key: &str, value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\n' | '\r' => quoted.push(' '),
            '\0' => {}
            c if ESCAPED.contains(&c) => {
                quoted.push('\\');
                quoted.push(c);
            }
            c => quoted.push(c),
        }
    }
    format!("{key}=\"{quoted}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> Parsed<'static> {
        let (key, value) = (key.to_owned().leak(), value.to_owned().leak());
        Parsed::Entry { key, value: Cow::Borrowed(value), unterminated: false }
    }

    #[test]
    fn quoted_and_bare_values() {
        assert_eq!(parse_line("HOSTNAME=\"ve101\""), entry("HOSTNAME", "ve101"));
        assert_eq!(parse_line("HOSTNAME=ve101"), entry("HOSTNAME", "ve101"));
        assert_eq!(
            parse_line("IP_ADDRESS=\"10.0.0.1 10.0.0.2\""),
            entry("IP_ADDRESS", "10.0.0.1 10.0.0.2")
        );
        assert_eq!(parse_line("DESCRIPTION=\"\""), entry("DESCRIPTION", ""));
        assert_eq!(parse_line("DESCRIPTION="), entry("DESCRIPTION", ""));
    }

    #[test]
    fn quoted_value_ends_at_last_quote() {
        assert_eq!(parse_line("DESCRIPTION=\"say \"hi\"\""), entry("DESCRIPTION", "say \"hi\""));
        assert_eq!(
            parse_line("CONFIGFILE=\"basic\" # Use vswap-256m"),
            entry("CONFIGFILE", "basic")
        );
        assert_eq!(parse_line("A=\"x\" trailing \"y\""), entry("A", "x\" trailing \"y"));
        assert_eq!(
            parse_line("A=\"open"),
            Parsed::Entry { key: "A", value: "open".into(), unterminated: true }
        );
        assert_eq!(
            parse_line("A=\""),
            Parsed::Entry { key: "A", value: "".into(), unterminated: true }
        );
    }

    #[test]
    fn whitespace_is_trimmed_outside_quotes_only() {
        assert_eq!(parse_line("   HOSTNAME=\"a\"   \t"), entry("HOSTNAME", "a"));
        assert_eq!(parse_line("HOSTNAME = \" a b \""), entry("HOSTNAME", " a b "));
        assert_eq!(parse_line("\tVERBOSE=0  "), entry("VERBOSE", "0"));
        assert_eq!(parse_line("V=a b  "), entry("V", "a b"));
    }

    #[test]
    fn comments_blanks_and_garbage() {
        assert_eq!(parse_line(""), Parsed::Blank);
        assert_eq!(parse_line("   \t "), Parsed::Blank);
        assert_eq!(parse_line("# HOSTNAME=\"x\""), Parsed::Blank);
        assert_eq!(parse_line("   #comment"), Parsed::Blank);
        assert_eq!(parse_line("just words"), Parsed::NoEquals);
        assert_eq!(parse_line("=value"), Parsed::BadKey);
        assert_eq!(parse_line("1KEY=value"), Parsed::BadKey);
        assert_eq!(parse_line("KEY-X=value"), Parsed::BadKey);
        assert_eq!(parse_line("export KEY=value"), Parsed::BadKey);
    }

    #[test]
    fn the_value_may_contain_equals_and_dollars() {
        assert_eq!(
            parse_line("NETIF=\"ifname=eth0,mac=00:11\""),
            entry("NETIF", "ifname=eth0,mac=00:11")
        );
        assert_eq!(parse_line("VE_ROOT=/vz/root/$VEID"), entry("VE_ROOT", "/vz/root/$VEID"));
    }

    #[test]
    fn key_classes() {
        assert!(last_wins("KMEMSIZE") && last_wins("SWAPPAGES") && last_wins("PHYSPAGES"));
        assert!(last_wins("DCACHE") && last_wins("IPTENTRIES"));
        assert!(!last_wins("HOSTNAME") && !last_wins("ONBOOT") && !last_wins("CPUUNITS"));
        assert!(accumulates("NAMESERVER") && accumulates("SEARCHDOMAIN"));
        assert!(!accumulates("IP_ADDRESS"));
        assert_eq!(canonical_key("DCACHE"), "DCACHESIZE");
        assert_eq!(canonical_key("HOSTNAME"), "HOSTNAME");
    }

    #[test]
    fn valid_keys() {
        assert!(is_valid_key("VE_ROOT") && is_valid_key("_x1") && is_valid_key("a"));
        assert!(!is_valid_key("") && !is_valid_key("9A") && !is_valid_key("A B"));
    }

    #[test]
    fn entries_are_written_quoted() {
        assert_eq!(format_entry("HOSTNAME", "a b"), "HOSTNAME=\"a b\"");
        assert_eq!(format_entry("DESCRIPTION", "l1\nl2\r"), "DESCRIPTION=\"l1 l2 \"");
        assert_eq!(parse_line(&format_entry("D", "q\"uo\"te")), entry("D", "q\"uo\"te"));
        assert_eq!(format_entry("D", "a\"$(x)`y`\\"), "D=\"a\\\"\\$(x)\\`y\\`\\\\\"");
    }

    #[test]
    fn escapes_are_read_back_as_sh_reads_them() {
        assert_eq!(parse_line("D=\"a\\\"b\""), entry("D", "a\"b"));
        assert_eq!(parse_line("D=\"c:\\dir \\\\ \\$HOME\""), entry("D", "c:\\dir \\ $HOME"));
        assert_eq!(parse_line("D=\"ends with \\\\\""), entry("D", "ends with \\"));
        assert_eq!(
            parse_line("D=\"x\\\""),
            Parsed::Entry { key: "D", value: "x\"".into(), unterminated: true }
        );
        assert_eq!(unrepresentable("a\nb"), Some("line breaks cannot be stored in a config file"));
        assert_eq!(unrepresentable("a$b\"`"), None);
    }

    proptest::proptest! {
        #[test]
        fn every_representable_value_round_trips(value in "\\PC*") {
            proptest::prop_assume!(unrepresentable(&value).is_none());
            let line = format_entry("K", &value);
            proptest::prop_assert_eq!(parse_line(&line), entry("K", &value));
        }

        #[test]
        fn any_line_parses_without_panic(line in ".*") {
            let _ = parse_line(&line);
        }
    }
}
