//! `cargo xtask`: the build runner.

fn main() {}
