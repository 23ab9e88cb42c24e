//! The watch log: the layer, the writer and its spool, and every store
//! (memory, SQLite, PostgreSQL) through one suite.

#[path = "../common/mod.rs"]
mod common;

mod store_suite;
mod watch_log;

fn main() -> std::process::ExitCode {
    common::harness::run_groups(vec![
        ("watch_log", watch_log::tests()),
        ("store_suite", store_suite::tests()),
    ])
}
