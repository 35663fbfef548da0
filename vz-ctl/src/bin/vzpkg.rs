//! The `vzpkg` binary.

fn main() {}
