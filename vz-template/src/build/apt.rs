//! The host's apt configuration as the default source of a Debian template's packages: the
//! mirror of a suite from `/etc/apt/sources.list` and `sources.list.d/` (one-line `.list` and
//! deb822 `.sources` files), so no mirror host name is written in code or metadata.

use std::fs;
use std::path::{Path, PathBuf};

/// One `deb` source: its URI and suites.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    uri: String,
    suites: Vec<String>,
}

/// The `deb` sources of the apt configuration under `etc_apt`, in apt's reading order.
/// Unreadable files are skipped; only `http(s)` and `file` URIs are kept.
fn sources(etc_apt: &Path) -> Vec<Source> {
    let mut files = vec![etc_apt.join("sources.list")];
    if let Ok(dir) = fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    let mut out = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else { continue };
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => out.extend(in_deb822(&text)),
            Some("list") => out.extend(in_one_line(&text)),
            _ => {}
        }
    }
    out.retain(|s| {
        s.uri.starts_with("http://") || s.uri.starts_with("https://") || s.uri.starts_with("file:")
    });
    out
}

/// The mirror apt uses for `suite`, else the first Debian archive mirror apt knows (a source
/// whose URI ends in `/debian`, not a `-security` suite): a host configured for bookworm can
/// build trixie from the same mirror.
pub(crate) fn mirror_for(etc_apt: &Path, suite: &str) -> Option<String> {
    let all = sources(etc_apt);
    if let Some(s) = all.iter().find(|s| s.suites.iter().any(|x| x == suite)) {
        return Some(s.uri.clone());
    }
    all.iter()
        .find(|s| {
            s.uri.trim_end_matches('/').ends_with("/debian")
                && s.suites.iter().all(|x| !x.ends_with("-security"))
        })
        .map(|s| s.uri.clone())
}

fn in_one_line(text: &str) -> Vec<Source> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            if words.next()? != "deb" {
                return None;
            }
            let mut rest: Vec<&str> = words.collect();
            // Options: `[arch=amd64 signed-by=…]`, possibly several words.
            if rest.first().is_some_and(|w| w.starts_with('[')) {
                let end = rest.iter().position(|w| w.ends_with(']'))?;
                rest.drain(..=end);
            }
            let uri = (*rest.first()?).to_owned();
            let suite = (*rest.get(1)?).to_owned();
            Some(Source { uri, suites: vec![suite] })
        })
        .collect()
}

fn in_deb822(text: &str) -> Vec<Source> {
    text.split("\n\n")
        .filter_map(|stanza| {
            let field = |key: &str| {
                stanza.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
                })
            };
            if !field("Types")?.split_whitespace().any(|t| t == "deb") {
                return None;
            }
            if field("Enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
                return None;
            }
            let suites = field("Suites")?.split_whitespace().map(str::to_owned).collect();
            let uri = field("URIs")?.split_whitespace().next()?.to_owned();
            Some(Source { uri, suites })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb\n# comment\nURIs: http://mirror.example/debian\n\
        Suites: bookworm bookworm-updates\nComponents: main\n\n\
        Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n\
        Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: sid\n";

    #[test]
    fn both_formats_are_read() {
        let s = in_deb822(DEB822);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].suites, ["bookworm", "bookworm-updates"]);
        let list = "# x\ndeb-src http://a/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm main # c\n";
        assert_eq!(
            in_one_line(list),
            [Source { uri: "http://m/debian".into(), suites: vec!["bookworm".into()] }]
        );
    }

    #[test]
    fn a_suite_s_mirror_or_the_debian_one() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sources.list.d")).unwrap();
        fs::write(dir.path().join("sources.list.d/debian.sources"), DEB822).unwrap();
        fs::write(
            dir.path().join("sources.list.d/z.list"),
            "deb https://other.example/x foo main\n",
        )
        .unwrap();
        let m = |suite| mirror_for(dir.path(), suite);
        assert_eq!(m("bookworm").as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(
            m("bookworm-security").as_deref(),
            Some("http://mirror.example/debian-security")
        );
        assert_eq!(m("foo").as_deref(), Some("https://other.example/x"));
        // trixie is not configured: the Debian mirror serves it.
        assert_eq!(m("trixie").as_deref(), Some("http://mirror.example/debian"));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(mirror_for(empty.path(), "trixie"), None);
    }
}
