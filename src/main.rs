//! The `sage-stream` command: serve media over HTTP, keep and read the watch
//! log, and sign links.
//!
//! Run `cargo run -- serve` and open the printed URL.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Serve(args) => cli::serve::run(args),
        Command::Migrate(args) => cli::migrate(args),
        Command::Logs(args) => cli::logs::run(args),
        Command::Sign(args) => {
            cli::sign(args);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sage-stream: {err}");
            ExitCode::FAILURE
        }
    }
}
