//! The server loop on real sockets: budgets, zero copy, health, metrics
//! and operations (the attack runs, which measure the whole process's memory
//! and descriptors, have a binary of their own: `tests/attack.rs`).

#[path = "../common/mod.rs"]
mod common;

mod operations;
mod server;
mod zero_copy;
