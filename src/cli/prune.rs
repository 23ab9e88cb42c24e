//! `sage-stream prune`: deletes watch-log rows older than an age, with the
//! batch ids stored before the same cutoff, a chunk at a time.

use std::time::Duration;

use sage_stream::log::{retention_cutoff, Pruned, WatchLogStore, PRUNE_CHUNK};

use super::{parse_duration, redact, DatabaseArgs};

#[derive(clap::Args)]
pub(crate) struct PruneArgs {
    /// Delete rows older than this: 90d, 12h, 30m, 45s.
    #[arg(long, env = "STREAM_RETENTION", value_parser = parse_duration)]
    older_than: Duration,
    /// Only count what would be deleted.
    #[arg(long, env = "STREAM_PRUNE_DRY_RUN", value_parser = clap::builder::BoolishValueParser::new())]
    dry_run: bool,
    #[command(flatten)]
    database: DatabaseArgs,
}

pub(crate) fn run(args: PruneArgs) -> Result<(), Box<dyn std::error::Error>> {
    let store = sage_stream::log::open_store(&args.database.url())?;
    store.migrate()?;
    let cutoff = retention_cutoff(args.older_than);
    let when = format!("created before {} UTC", cutoff.format("%Y-%m-%d %H:%M:%S"));
    let url = redact(&args.database.url());
    if args.dry_run {
        let would = store.prunable(cutoff)?;
        println!(
            "sage-stream: would prune {} rows and {} batch ids {when} from {url} (dry run: nothing deleted)",
            would.rows, would.batches
        );
        return Ok(());
    }
    // Chunk by chunk, so that a node writing to the same log waits for one
    // short statement at most, with a progress line on a terminal.
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut total = Pruned::default();
    loop {
        let chunk = store.prune_chunk(cutoff, PRUNE_CHUNK)?;
        total += chunk;
        if progress {
            eprint!(
                "\r  {} rows, {} batch ids deleted",
                total.rows, total.batches
            );
        }
        if chunk.rows < PRUNE_CHUNK as u64 && chunk.batches < PRUNE_CHUNK as u64 {
            break;
        }
    }
    if progress {
        eprintln!();
    }
    println!(
        "sage-stream: pruned {} rows and {} batch ids {when} from {url}",
        total.rows, total.batches
    );
    Ok(())
}
