//! The `sage-stream` binary: its configuration, deployment behind nginx,
//! the bundled libpq, and a fleet of nodes on one Redis.

#[path = "../common/mod.rs"]
mod common;

mod bundled_libpq;
mod cli;
mod deploy;
mod fleet;

fn main() -> std::process::ExitCode {
    common::harness::run_groups(vec![
        ("cli", cli::tests()),
        ("deploy", deploy::tests()),
        ("bundled_libpq", bundled_libpq::tests()),
        ("fleet", fleet::tests()),
    ])
}
