//! The `vzlist` binary.

fn main() {}
