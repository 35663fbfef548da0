//! User beancounters on cgroups.
