//! Example (under construction).

fn main() {}
