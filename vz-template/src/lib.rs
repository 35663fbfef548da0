//! Template caches: naming, lookup, unpacking and building.
//!
//! A template cache is a tarball of a whole VE root tree, `$TEMPLATE/cache/<name>.tar[.gz|
//! .bz2|.xz]` (OpenVZ reference §7.1). [`CacheStore::find`] looks one up in OpenVZ's order,
//! [`Cache::unpack_to`] unpacks it into a new private area preserving numeric owners, modes,
//! links, fifos and sparse files while refusing any entry that would escape the destination
//! and creating no device node, and the builders make caches: [`BusyboxBuilder`] the default
//! template from the host's static busybox (no network), [`DebootstrapBuilder`] a Debian one
//! from a signed archive, [`DnfBuilder`] an RPM one with dnf and gpgcheck, described by template metadata ([`TemplateMeta`], OpenVZ's
//! `$TEMPLATE/<osname>/<osver>/<arch>/config/` layout, found by [`find_metadata`]).
//!
//! ```no_run
//! # fn main() -> Result<(), vz_template::TemplateError> {
//! use std::path::Path;
//! use vz_template::{BusyboxBuilder, CacheStore, TemplateName};
//!
//! let store = CacheStore::new(Path::new("/vz/template"));
//! let name: TemplateName = "busybox".parse()?;
//! if store.find(&name).is_err() {
//!     BusyboxBuilder::new(Path::new(BusyboxBuilder::DEFAULT_BUSYBOX)).build(&store, &name)?;
//! }
//! let stats = store.find(&name)?.unpack_to(Path::new("/vz/private/101.tmp"))?;
//! # let _ = stats; Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod build;
mod compression;
mod error;
mod metadata;
mod name;
mod store;
mod unpack;

pub use build::busybox::BusyboxBuilder;
pub use build::debootstrap::DebootstrapBuilder;
pub use build::dnf::DnfBuilder;
pub use build::{BuildEvent, BuildStep};
pub use compression::Compression;
pub use error::{Result, TemplateError};
pub use metadata::{CONF_FILE, TemplateMeta, find_metadata, host_arch, list_metadata};
pub use name::TemplateName;
pub use store::{Cache, CacheStore};
pub use unpack::UnpackStats;
