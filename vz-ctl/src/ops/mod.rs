//! The operations behind vzctl's commands, one module per command family. Each takes the
//! loaded [`Ve`](crate::ve::Ve) and typed options, holds the CT lock where OpenVZ does, and
//! undoes its completed steps when a later one fails.

pub mod compact;
pub mod convert;
pub mod cpt;
pub mod create;
pub mod destroy;
pub mod exec;
pub mod exec3;
pub mod migrate;
pub mod mount;
pub mod net;
pub mod quotacmd;
pub mod recover;
pub mod set;
mod set_apply;
pub(crate) mod set_live;
pub mod set_params;
pub mod snapshot;
pub mod start;
pub mod status;
pub mod stop;
pub mod stopped;
