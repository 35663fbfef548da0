//! [`TemplateName`]: the basename of a template cache, with OpenVZ's
//! `<distro>-<version>-<arch>[-<flavour>]` convention parsed when it applies.

use std::fmt;
use std::str::FromStr;

use crate::error::TemplateError;

/// Longest name accepted, in bytes: leaves room for `.tar.bz2` and a temp suffix in 255.
const MAX_LEN: usize = 200;

/// Architecture words recognised in the third (or later) field of a conventional name.
const ARCHES: &[&str] = &[
    "x86",
    "i386",
    "i486",
    "i586",
    "i686",
    "x86_64",
    "amd64",
    "ia64",
    "arm64",
    "aarch64",
    "armhf",
    "armel",
    "arm",
    "ppc",
    "ppc64",
    "ppc64le",
    "ppc64el",
    "s390x",
    "riscv64",
    "mips",
    "mipsel",
    "mips64el",
    "loongarch64",
    "noarch",
];

/// The name of a template cache: the file name of `$TEMPLATE/cache/<name>.tar[.gz|.bz2|.xz]`
/// without its suffix, as stored in `OSTEMPLATE`.
///
/// Any basename is accepted (`busybox`, `my-template`); when the name follows OpenVZ's
/// convention `<distro>-<version>-<arch>[-<flavour>]` (reference §7.1: `centos-7-x86_64`,
/// `debian-8.0-x86_64-minimal`, `fedora-core-4-i386-default`), its parts are available through
/// [`distro`](Self::distro), [`version`](Self::version), [`arch`](Self::arch) and
/// [`flavour`](Self::flavour). The convention is recognised by a known architecture word
/// ([`TemplateName::ARCHES`]) in the third or a later `-`-separated field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateName {
    name: String,
    /// Byte ranges of distro, version, arch and flavour when the convention matches.
    parts: Option<Parts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Parts {
    /// End of the distro (the '-' before the version).
    distro_end: usize,
    /// End of the version.
    version_end: usize,
    /// End of the arch; a flavour follows after one '-' when shorter than the name.
    arch_end: usize,
}

impl TemplateName {
    /// The architecture words that mark a conventional name.
    pub const ARCHES: &'static [&'static str] = ARCHES;

    /// Builds a conventional name from its parts, e.g. `("debian", "12", "x86_64",
    /// Some("minimal"))` → `debian-12-x86_64-minimal`.
    ///
    /// # Errors
    /// [`TemplateError::InvalidName`] if a part is empty, the arch is not one of
    /// [`TemplateName::ARCHES`], the version contains `-`, or the whole is not a valid name.
    pub fn from_parts(
        distro: &str,
        version: &str,
        arch: &str,
        flavour: Option<&str>,
    ) -> Result<Self, TemplateError> {
        let joined = match flavour {
            Some(f) => format!("{distro}-{version}-{arch}-{f}"),
            None => format!("{distro}-{version}-{arch}"),
        };
        let bad = |reason| TemplateError::InvalidName { name: joined.clone(), reason };
        if distro.is_empty() || version.is_empty() || flavour == Some("") {
            return Err(bad("empty part"));
        }
        if version.contains('-') {
            return Err(bad("the version contains '-'"));
        }
        if !ARCHES.contains(&arch) {
            return Err(bad("unknown architecture"));
        }
        let name: TemplateName = joined.parse()?;
        // A distro that itself contains an arch word would shift the parse: refuse it.
        if name.distro() != Some(distro) || name.arch() != Some(arch) {
            return Err(bad("the distro contains an architecture word"));
        }
        Ok(name)
    }

    /// The whole name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The distribution (`debian`, `fedora-core`), for a conventional name.
    pub fn distro(&self) -> Option<&str> {
        self.parts.map(|p| &self.name[..p.distro_end])
    }

    /// The version (`12`, `8.0`, `16.04`), for a conventional name.
    pub fn version(&self) -> Option<&str> {
        self.parts.map(|p| &self.name[p.distro_end + 1..p.version_end])
    }

    /// The architecture (`x86_64`, `i386`), for a conventional name.
    pub fn arch(&self) -> Option<&str> {
        self.parts.map(|p| &self.name[p.version_end + 1..p.arch_end])
    }

    /// The flavour (`minimal`, `default`), for a conventional name that has one.
    pub fn flavour(&self) -> Option<&str> {
        self.parts.filter(|p| p.arch_end < self.name.len()).map(|p| &self.name[p.arch_end + 1..])
    }
}

/// Checks the basename rules; returns the reason of the first one broken.
fn check(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_LEN {
        return Err("longer than 200 bytes");
    }
    if name.starts_with('.') {
        return Err("starts with '.'");
    }
    if name.contains('/') {
        return Err("contains '/'");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains a space or a control character");
    }
    Ok(())
}

/// Finds the convention's parts: the first arch word at field index ≥ 2, with non-empty fields.
fn parse_parts(name: &str) -> Option<Parts> {
    let fields: Vec<(usize, &str)> = name
        .split('-')
        .scan(0usize, |start, field| {
            let at = *start;
            *start += field.len() + 1;
            Some((at, field))
        })
        .collect();
    if fields.iter().any(|(_, f)| f.is_empty()) {
        return None;
    }
    let arch_idx = (2..fields.len()).find(|&i| ARCHES.contains(&fields[i].1))?;
    let (version_at, version) = fields[arch_idx - 1];
    let (arch_at, arch) = fields[arch_idx];
    Some(Parts {
        distro_end: version_at - 1,
        version_end: version_at + version.len(),
        arch_end: arch_at + arch.len(),
    })
}

impl FromStr for TemplateName {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check(s).map_err(|reason| TemplateError::InvalidName { name: s.to_owned(), reason })?;
        Ok(TemplateName { name: s.to_owned(), parts: parse_parts(s) })
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for TemplateName {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    type Split = (Option<String>, Option<String>, Option<String>, Option<String>);

    fn parts(s: &str) -> Split {
        let n: TemplateName = s.parse().unwrap();
        let own = |p: Option<&str>| p.map(str::to_owned);
        (own(n.distro()), own(n.version()), own(n.arch()), own(n.flavour()))
    }

    fn expect(d: &str, v: &str, a: &str, f: Option<&str>) -> Split {
        (Some(d.into()), Some(v.into()), Some(a.into()), f.map(Into::into))
    }

    #[test]
    fn openvz_examples_parse() {
        assert_eq!(parts("centos-7-x86_64"), expect("centos", "7", "x86_64", None));
        assert_eq!(
            parts("debian-8.0-x86_64-minimal"),
            expect("debian", "8.0", "x86_64", Some("minimal"))
        );
        assert_eq!(
            parts("fedora-core-4-i386-default"),
            expect("fedora-core", "4", "i386", Some("default"))
        );
        assert_eq!(parts("ubuntu-16.04-x86_64"), expect("ubuntu", "16.04", "x86_64", None));
        assert_eq!(
            parts("debian-12-amd64-min-ssh"),
            expect("debian", "12", "amd64", Some("min-ssh"))
        );
    }

    #[test]
    fn plain_names_are_accepted_without_parts() {
        for s in ["busybox", "my-template", "a-b", "x86_64", "debian--x86_64", "debian-12-x86_64-"]
        {
            assert_eq!(parts(s), (None, None, None, None), "{s}");
            assert_eq!(s.parse::<TemplateName>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        for (s, reason) in [
            ("", "empty"),
            ("a/b", "contains '/'"),
            (".hidden", "starts with '.'"),
            ("..", "starts with '.'"),
            ("a b", "contains a space or a control character"),
            ("a\nb", "contains a space or a control character"),
            ("a\u{7f}", "contains a space or a control character"),
        ] {
            match s.parse::<TemplateName>() {
                Err(TemplateError::InvalidName { name, reason: r }) => {
                    assert_eq!((name.as_str(), r), (s, reason));
                }
                other => panic!("{s:?}: {other:?}"),
            }
        }
        assert!("x".repeat(201).parse::<TemplateName>().is_err());
        let msg = "a/b".parse::<TemplateName>().unwrap_err().to_string();
        assert_eq!(msg, "invalid template name \"a/b\": contains '/'");
    }

    #[test]
    fn from_parts_refuses_bad_parts() {
        assert!(TemplateName::from_parts("debian", "12", "vax", None).is_err());
        assert!(TemplateName::from_parts("", "12", "x86_64", None).is_err());
        assert!(TemplateName::from_parts("debian", "1-2", "x86_64", None).is_err());
        assert!(TemplateName::from_parts("a-b-x86_64", "1", "i386", None).is_err());
        assert!(TemplateName::from_parts("debian", "12", "x86_64", Some("")).is_err());
    }

    fn field() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9._]{0,7}".prop_filter("not an arch word", |s| !ARCHES.contains(&s.as_str()))
    }

    proptest! {
        #[test]
        fn parts_round_trip(
            distro in prop::collection::vec(field(), 1..3).prop_map(|v| v.join("-")),
            version in field(),
            arch in prop::sample::select(ARCHES),
            flavour in prop::option::of(prop::collection::vec(field(), 1..3).prop_map(|v| v.join("-"))),
        ) {
            let name = TemplateName::from_parts(&distro, &version, arch, flavour.as_deref()).unwrap();
            let again: TemplateName = name.to_string().parse().unwrap();
            prop_assert_eq!(&again, &name);
            prop_assert_eq!(again.distro(), Some(distro.as_str()));
            prop_assert_eq!(again.version(), Some(version.as_str()));
            prop_assert_eq!(again.arch(), Some(arch));
            prop_assert_eq!(again.flavour(), flavour.as_deref());
        }

        #[test]
        fn any_valid_name_round_trips(s in "[^/\\s\\p{Cc}.][^/\\s\\p{Cc}]{0,40}") {
            let name: TemplateName = s.parse().unwrap();
            prop_assert_eq!(name.to_string(), s.clone());
            prop_assert_eq!(s.parse::<TemplateName>().unwrap(), name);
        }

        #[test]
        fn names_with_a_slash_are_always_refused(a in "[a-z]{0,5}", b in "[a-z]{0,5}") {
            let s = format!("{a}/{b}");
            prop_assert!(s.parse::<TemplateName>().is_err());
        }
    }
}
