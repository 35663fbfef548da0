//! The `vzctl` binary.

fn main() {}
