//! Simulator throughput: GETs per second and create+poll cycles per second (printed; no harness).
fn main() {}
