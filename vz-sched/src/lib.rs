//! Two-level fair CPU scheduler on the VE's cgroup.
