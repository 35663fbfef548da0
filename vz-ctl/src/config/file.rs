//! `ConfigFile`: one file in OpenVZ's `KEY="value"` syntax, every line kept so that saving
//! edits it in place (comments, blank lines and order preserved, new keys appended).

use std::path::Path;

use super::atomic;
use super::error::{ConfigError, ConfigWarning, IoContext, Result, WarningKind};
use super::syntax::{self, Parsed};

/// One line of the file: its text, and the entry it holds if it is `KEY=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    /// The line as it will be written back (without newline).
    text: String,
    /// Canonical key and value, for an entry line.
    entry: Option<(String, String)>,
}

/// An OpenVZ configuration file (`vz.conf`, `CTID.conf`, a sample), kept line by line.
///
/// Lookup follows OpenVZ's rules for repeated keys (reference §2.1): the **first** occurrence
/// wins, except the UBC keys ([`last_wins`](super::last_wins)), where the last wins, and
/// `NAMESERVER`/`SEARCHDOMAIN`, whose occurrences accumulate, space-joined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFile {
    lines: Vec<Line>,
    /// Effective values by canonical key, in order of first appearance.
    values: Vec<(String, String)>,
}

impl ConfigFile {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `text`. Never fails: lines that cannot be used are kept (so they are written
    /// back unchanged) and reported as warnings with their 1-based line number.
    pub fn parse(text: &str) -> (Self, Vec<ConfigWarning>) {
        let mut warnings = Vec::new();
        let mut lines = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let warn = |kind| ConfigWarning { line: index + 1, text: raw.to_owned(), kind };
            let entry = match syntax::parse_line(raw) {
                Parsed::Blank => None,
                Parsed::NoEquals => {
                    warnings.push(warn(WarningKind::NoEquals));
                    None
                }
                Parsed::BadKey => {
                    warnings.push(warn(WarningKind::BadKey));
                    None
                }
                Parsed::Entry { key, value, unterminated } => {
                    if unterminated {
                        warnings.push(warn(WarningKind::Unterminated));
                    }
                    Some((syntax::canonical_key(key).to_owned(), value.into_owned()))
                }
            };
            lines.push(Line { text: raw.to_owned(), entry });
        }
        let mut file = ConfigFile { lines, values: Vec::new() };
        for (index, key) in file.recompute() {
            warnings.push(ConfigWarning {
                line: index + 1,
                text: file.lines[index].text.clone(),
                kind: WarningKind::Duplicate { key },
            });
        }
        warnings.sort_by_key(|w| w.line);
        (file, warnings)
    }

    /// Parses the bytes of a file: [`parse`](Self::parse) once they are known to be UTF-8.
    ///
    /// # Errors
    /// The 1-based line and the reason when they are not text (invalid UTF-8, NUL).
    pub fn parse_bytes(
        bytes: &[u8],
    ) -> std::result::Result<(Self, Vec<ConfigWarning>), (usize, String)> {
        let line_of = |offset: usize| bytes[..offset].iter().filter(|b| **b == b'\n').count() + 1;
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let column = e.valid_up_to()
                - bytes[..e.valid_up_to()].iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            (line_of(e.valid_up_to()), format!("invalid UTF-8 at byte {} of the line", column + 1))
        })?;
        if let Some(offset) = text.find('\0') {
            return Err((line_of(offset), "NUL byte".to_owned()));
        }
        Ok(Self::parse(text))
    }

    /// Reads and parses the file at `path`, logging each warning with `tracing::warn!`.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] when it does not exist, [`ConfigError::Io`] when it cannot be
    /// read, [`ConfigError::Unparsable`] when it is not text.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing { path: path.to_path_buf() });
            }
            Err(e) => return Err(e).op("read", path),
        };
        let (file, warnings) = Self::parse_bytes(&bytes).map_err(|(line, reason)| {
            ConfigError::Unparsable { path: path.to_owned(), line, reason }
        })?;
        for warning in warnings {
            tracing::warn!(path = %path.display(), "{warning}");
        }
        Ok(file)
    }

    /// The effective value of `key` (an alias such as `DCACHE` finds `DCACHESIZE`).
    pub fn get(&self, key: &str) -> Option<&str> {
        let key = syntax::canonical_key(key);
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Sets `key` to `value`: the first line holding the key is replaced in place, later
    /// lines holding it are dropped (so the new value is the value, whatever the key's repeat
    /// rule), and a key not present is appended. Written quoted: `KEY="value"`.
    ///
    /// `key` must be a valid key name ([`is_valid_key`](super::is_valid_key)); callers take
    /// keys from their option tables. Line breaks in `value` are written as spaces.
    pub fn set(&mut self, key: &str, value: &str) {
        let key = syntax::canonical_key(key);
        debug_assert!(syntax::is_valid_key(key), "invalid configuration key {key:?}");
        let text = syntax::format_entry(key, value);
        let stored = syntax::parse_line(&text);
        let value = match stored {
            Parsed::Entry { value, .. } => value.into_owned(),
            _ => value.to_owned(),
        };
        let new_line = Line { text, entry: Some((key.to_owned(), value)) };
        let mut placed = false;
        let mut new_line = Some(new_line);
        self.lines.retain_mut(|line| {
            if line.entry.as_ref().is_none_or(|(k, _)| k != key) {
                return true;
            }
            if placed {
                return false;
            }
            placed = true;
            if let Some(new) = new_line.take() {
                *line = new;
            }
            true
        });
        if let Some(new) = new_line {
            self.lines.push(new);
        }
        self.recompute();
    }

    /// Removes every line holding `key`.
    pub fn remove(&mut self, key: &str) {
        let key = syntax::canonical_key(key);
        self.lines.retain(|line| line.entry.as_ref().is_none_or(|(k, _)| k != key));
        self.recompute();
    }

    /// Every key with its effective value, in order of first appearance.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The file's text: every line as read or set, each ending with a newline.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            text.push_str(&line.text);
            text.push('\n');
        }
        text
    }

    /// Writes [`to_text`](Self::to_text) to `path` atomically: `<path>.tmp` in the same
    /// directory, fsync, `rename()`, fsync of the directory; mode 0644. When `path` is a
    /// symbolic link, its target is written and the link kept.
    ///
    /// # Errors
    /// [`ConfigError::Io`] naming the step and path; no `.tmp` file is left behind.
    pub fn write_atomic(&self, path: &Path) -> Result<()> {
        atomic::write_atomic(path, self.to_text().as_bytes(), 0o644)
    }

    /// Rebuilds the effective values from the lines; returns the ignored duplicates
    /// (line index, key) of first-wins keys.
    fn recompute(&mut self) -> Vec<(usize, String)> {
        let mut ignored = Vec::new();
        let mut values: Vec<(String, String)> = Vec::new();
        for (index, line) in self.lines.iter().enumerate() {
            let Some((key, value)) = &line.entry else { continue };
            match values.iter_mut().find(|(k, _)| k == key) {
                None => values.push((key.clone(), value.clone())),
                Some((_, old)) if syntax::accumulates(key) => {
                    if old.trim().is_empty() {
                        *old = value.clone();
                    } else if !value.trim().is_empty() {
                        old.push(' ');
                        old.push_str(value);
                    }
                }
                Some((_, old)) if syntax::last_wins(key) => *old = value.clone(),
                Some(_) => ignored.push((index, key.clone())),
            }
        }
        self.values = values;
        ignored
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn parse(text: &str) -> ConfigFile {
        ConfigFile::parse(text).0
    }

    #[test]
    fn reads_values_and_reports_bad_lines() {
        let text = "# comment\n\nHOSTNAME=\"ve\"\ngarbage here\nONBOOT=yes\n9X=1\nD=\"open\n";
        let (file, warnings) = ConfigFile::parse(text);
        assert_eq!(file.get("HOSTNAME"), Some("ve"));
        assert_eq!(file.get("ONBOOT"), Some("yes"));
        assert_eq!(file.get("D"), Some("open"));
        assert_eq!(file.get("MISSING"), None);
        let got: Vec<(usize, &WarningKind)> = warnings.iter().map(|w| (w.line, &w.kind)).collect();
        assert_eq!(
            got,
            [
                (4, &WarningKind::NoEquals),
                (6, &WarningKind::BadKey),
                (7, &WarningKind::Unterminated)
            ]
        );
        assert_eq!(warnings[0].text, "garbage here");
        assert_eq!(file.to_text(), text, "every line is kept for writing back");
    }

    #[test]
    fn repeated_keys_first_wins_with_a_warning() {
        let (file, warnings) = ConfigFile::parse("HOSTNAME=\"a\"\nX=1\nHOSTNAME=\"b\"\n");
        assert_eq!(file.get("HOSTNAME"), Some("a"));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 3);
        assert_eq!(warnings[0].kind, WarningKind::Duplicate { key: "HOSTNAME".into() });
    }

    #[test]
    fn repeated_ubc_keys_last_wins_without_warning() {
        let (file, warnings) = ConfigFile::parse(
            "KMEMSIZE=\"1:2\"\nKMEMSIZE=\"3:4\"\nDCACHE=\"5\"\nDCACHESIZE=\"6\"\n",
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(file.get("KMEMSIZE"), Some("3:4"));
        assert_eq!(file.get("DCACHESIZE"), Some("6"));
        assert_eq!(file.get("DCACHE"), Some("6"));
    }

    #[test]
    fn nameserver_and_searchdomain_accumulate() {
        let file = parse(
            "NAMESERVER=\"10.0.0.1\"\nNAMESERVER=\"\"\nNAMESERVER=\"10.0.0.2 10.0.0.3\"\n\
             SEARCHDOMAIN=a.example\nSEARCHDOMAIN=b.example\n",
        );
        assert_eq!(file.get("NAMESERVER"), Some("10.0.0.1 10.0.0.2 10.0.0.3"));
        assert_eq!(file.get("SEARCHDOMAIN"), Some("a.example b.example"));
    }

    #[test]
    fn set_replaces_in_place_keeping_comments_and_order() {
        let text = "# head\nHOSTNAME=old # tail\n\n# cpu\nCPUUNITS=\"1000\"\n";
        let mut file = parse(text);
        file.set("HOSTNAME", "new host");
        file.set("ONBOOT", "yes");
        assert_eq!(
            file.to_text(),
            "# head\nHOSTNAME=\"new host\"\n\n# cpu\nCPUUNITS=\"1000\"\nONBOOT=\"yes\"\n"
        );
        assert_eq!(file.get("HOSTNAME"), Some("new host"));
        let keys: Vec<_> = file.keys().collect();
        assert_eq!(keys, [("HOSTNAME", "new host"), ("CPUUNITS", "1000"), ("ONBOOT", "yes")]);
    }

    #[test]
    fn set_drops_later_duplicates_whatever_the_rule() {
        let mut file = parse("KMEMSIZE=1\n# x\nKMEMSIZE=2\nNAMESERVER=a\nNAMESERVER=b\n");
        file.set("KMEMSIZE", "9");
        file.set("NAMESERVER", "c");
        assert_eq!(file.to_text(), "KMEMSIZE=\"9\"\n# x\nNAMESERVER=\"c\"\n");
        assert_eq!(file.get("KMEMSIZE"), Some("9"));
        assert_eq!(file.get("NAMESERVER"), Some("c"));
    }

    #[test]
    fn set_through_an_alias_writes_the_canonical_key() {
        let mut file = parse("DCACHE=\"1\"\n");
        file.set("DCACHESIZE", "2");
        assert_eq!(file.to_text(), "DCACHESIZE=\"2\"\n");
    }

    #[test]
    fn remove_drops_every_occurrence() {
        let mut file = parse("A=1\n# keep\nB=2\nA=3\n");
        file.remove("A");
        assert_eq!(file.to_text(), "# keep\nB=2\n");
        assert_eq!(file.get("A"), None);
    }

    #[test]
    fn appending_to_text_without_final_newline() {
        let mut file = parse("A=1");
        file.set("B", "2");
        assert_eq!(file.to_text(), "A=1\nB=\"2\"\n");
    }

    #[test]
    fn load_missing_and_present() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vz.conf");
        assert!(matches!(ConfigFile::load(&path), Err(ConfigError::Missing { .. })));
        std::fs::write(&path, "VERBOSE=2\nbroken line\n").unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().get("VERBOSE"), Some("2"));
        std::fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Unparsable { line: 1, .. }), "{err}");
        assert!(err.to_string().starts_with(&format!("{}:1: invalid UTF-8", path.display())));
    }

    #[test]
    fn write_atomic_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("101.conf");
        let mut file = parse("# sample\nPHYSPAGES=\"0:256M\"\n");
        file.set("HOSTNAME", "ve101");
        file.write_atomic(&path).unwrap();
        let back = ConfigFile::load(&path).unwrap();
        assert_eq!(back, file);
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no .tmp left behind");
    }

    fn key() -> impl Strategy<Value = String> {
        "[A-Za-z_][A-Za-z0-9_]{0,12}"
    }

    /// Any one-line value: printable text, quotes, `#`, `$`, `=`, spaces at either end.
    fn value() -> impl Strategy<Value = String> {
        "[ -~\t]{0,24}"
    }

    proptest! {
        #[test]
        fn any_map_survives_to_text_and_parse(map in prop::collection::btree_map(key(), value(), 0..12)) {
            let mut file = ConfigFile::new();
            for (k, v) in &map {
                file.set(k, v);
            }
            let (back, warnings) = ConfigFile::parse(&file.to_text());
            prop_assert!(warnings.is_empty(), "{:?}", warnings);
            let expected: BTreeMap<&str, &str> = map
                .iter()
                .map(|(k, v)| (syntax::canonical_key(k), v.as_str()))
                .collect();
            let got: BTreeMap<&str, &str> = back.keys().collect();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn set_then_get(text in "([A-Z]{1,3}=[ -~]{0,8}\n|# [ -~]{0,8}\n|\n){0,10}", k in key(), v in value()) {
            let mut file = parse(&text);
            file.set(&k, &v);
            prop_assert_eq!(file.get(&k), Some(v.as_str()));
            let reparsed = parse(&file.to_text());
            prop_assert_eq!(reparsed.get(&k), Some(v.as_str()));
        }

        #[test]
        fn parse_never_loses_a_line(text in "[ -~\n]{0,200}") {
            let file = parse(&text);
            let expected: Vec<&str> = text.lines().collect();
            let text_back = file.to_text();
            let got: Vec<&str> = text_back.lines().collect();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn bytes_that_are_not_text_name_their_line() {
        assert_eq!(
            ConfigFile::parse_bytes(b"A=\"1\"\nB=\"\xff\"\n").unwrap_err(),
            (2, "invalid UTF-8 at byte 4 of the line".to_owned())
        );
        assert_eq!(ConfigFile::parse_bytes(b"A=1\n\nC=\0").unwrap_err().0, 3);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_parse_or_fail_cleanly_and_text_round_trips(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)
        ) {
            if let Ok((file, _)) = ConfigFile::parse_bytes(&bytes) {
                // What was read is written back line by line, and reads the same.
                let (again, _) = ConfigFile::parse(&file.to_text());
                proptest::prop_assert_eq!(again.keys().collect::<Vec<_>>(), file.keys().collect::<Vec<_>>());
            }
        }

        #[test]
        fn set_values_read_back_exactly(key in "[A-Z_][A-Z0-9_]{0,8}", value in "\\PC*") {
            proptest::prop_assume!(super::super::syntax::unrepresentable(&value).is_none());
            let mut file = ConfigFile::parse("# head\n").0;
            file.set(&key, &value);
            let (again, warnings) = ConfigFile::parse(&file.to_text());
            proptest::prop_assert!(warnings.is_empty());
            proptest::prop_assert_eq!(again.get(&key), Some(value.as_str()));
        }
    }
}
