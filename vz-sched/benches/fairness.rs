//! Fairness benchmark (filled in next).
fn main() {}
