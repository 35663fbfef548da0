//! CTIDs and CT names: parsing, validation and the name → CTID lookup.
//!
//! A CTID is a number `0 … 2147483644` (OpenVZ's `VEID_MAX`); CT 0 is the host. A
//! non-numeric argument is a CT name, found through the symlink `<names dir>/<name>` →
//! `<conf dir>/<CTID>.conf` (reference §1.1).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{CtlError, IoContext, Result};

/// The largest CTID OpenVZ accepts.
pub const CTID_MAX: u32 = 2_147_483_644;

/// A container ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ctid(u32);

impl Ctid {
    /// The CTID as a number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Whether this is CT 0, the host.
    pub fn is_host(self) -> bool {
        self.0 == 0
    }

    /// Resolves a command line argument: a number, or a CT name known in `names_dir`.
    ///
    /// # Errors
    /// [`CtlError::BadCtid`] for an out-of-range number or an unknown name.
    pub fn resolve(arg: &str, names_dir: &Path) -> Result<Ctid> {
        if let Ok(ctid) = arg.parse() {
            return Ok(ctid);
        }
        if arg.is_empty() || arg.bytes().all(|b| b.is_ascii_digit()) || !is_valid_name(arg) {
            return Err(CtlError::BadCtid(arg.to_owned()));
        }
        let target = std::fs::read_link(names_dir.join(arg))
            .map_err(|_| CtlError::BadCtid(arg.to_owned()))?;
        target
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.strip_suffix(".conf"))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| CtlError::BadCtid(arg.to_owned()))
    }
}

impl FromStr for Ctid {
    type Err = CtlError;

    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CtlError::BadCtid(s.to_owned()));
        }
        match s.parse::<u64>() {
            Ok(n) if n <= u64::from(CTID_MAX) => {
                Ok(Ctid(u32::try_from(n).map_err(|_| CtlError::BadCtid(s.to_owned()))?))
            }
            _ => Err(CtlError::BadCtid(s.to_owned())),
        }
    }
}

impl fmt::Display for Ctid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether `name` is a valid CT name: `[0-9A-Za-z]` and ` -+_.`, not all digits.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.bytes().all(|b| b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b" -+_.".contains(&b))
        && name != "."
        && name != ".."
}

/// Points `<names_dir>/<name>` at `conf_path`, replacing a link of the same CT.
///
/// # Errors
/// [`CtlError::Name`] when the name is invalid or belongs to another CT.
pub fn set_name(names_dir: &Path, name: &str, conf_path: &Path) -> Result<()> {
    if !is_valid_name(name) {
        return Err(CtlError::Name(format!("Error: invalid name {name}")));
    }
    let link = names_dir.join(name);
    std::fs::create_dir_all(names_dir).op("create names directory", names_dir)?;
    // The names directory is shared by all VEs: claiming a name (and replacing a stale
    // link) is done under an flock of it, so two VEs never both get one name.
    let dir = std::fs::File::open(names_dir).op("open names directory", names_dir)?;
    let _guard = nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| std::io::Error::from(errno))
        .op("lock names directory", names_dir)?;
    if let Ok(existing) = std::fs::read_link(&link) {
        if existing == conf_path {
            return Ok(());
        }
        if existing.exists() {
            return Err(CtlError::Name(format!(
                "Conflict: name {name} already used by {}",
                existing.display()
            )));
        }
        std::fs::remove_file(&link).op("remove stale name link", &link)?;
    }
    std::os::unix::fs::symlink(conf_path, &link).op("create name link", &link)
}

/// Removes every link in `names_dir` that points at `conf_path`.
///
/// # Errors
/// [`CtlError::Io`] when a link cannot be removed.
pub fn remove_names(names_dir: &Path, conf_path: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(names_dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let link: PathBuf = entry.path();
        if std::fs::read_link(&link).is_ok_and(|t| t == conf_path) {
            std::fs::remove_file(&link).op("remove name link", &link)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn numbers_in_range_are_ctids() {
        assert_eq!("101".parse::<Ctid>().unwrap().get(), 101);
        assert!("0".parse::<Ctid>().unwrap().is_host());
        assert!("2147483644".parse::<Ctid>().is_ok());
        assert!("2147483645".parse::<Ctid>().is_err());
        assert!("-1".parse::<Ctid>().is_err());
        assert!("10a".parse::<Ctid>().is_err());
        assert!("".parse::<Ctid>().is_err());
    }

    #[test]
    fn names_follow_openvz_rules() {
        assert!(is_valid_name("web-1.example_com+x y"));
        assert!(!is_valid_name("123"));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(".."));
    }

    #[test]
    fn names_resolve_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let names = dir.path().join("names");
        let conf = dir.path().join("conf/101.conf");
        set_name(&names, "web", &conf).unwrap();
        assert_eq!(Ctid::resolve("web", &names).unwrap().get(), 101);
        assert_eq!(Ctid::resolve("102", &names).unwrap().get(), 102);
        assert!(matches!(Ctid::resolve("nope", &names), Err(CtlError::BadCtid(_))));
        remove_names(&names, &conf).unwrap();
        assert!(Ctid::resolve("web", &names).is_err());
    }

    proptest! {
        #[test]
        fn ctid_round_trips(n in 0u32..=CTID_MAX) {
            let ctid: Ctid = n.to_string().parse().unwrap();
            prop_assert_eq!(ctid.to_string(), n.to_string());
        }
    }
}
