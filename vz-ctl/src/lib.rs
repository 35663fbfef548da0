//! The vz front end as a library: CTIDs, configuration files, locking, VE state and the
//! operations behind `vzctl`, `vzlist` and `vzpkg`.
