//! What a watch-log row costs the store: wall time and this process's CPU
//! per row, for batches the size the writer makes, on each backend.
//!
//! ```sh
//! cargo run --release --all-features --example bench_log_insert              # SQLite in a temp dir
//! cargo run --release --all-features --example bench_log_insert -- 200000 \
//!     sqlite:///tmp/x.db postgres://postgres@127.0.0.1:5432/emptydb
//! ```
//!
//! Two row mixes: `alike` (one path, no user: what `bench/run.sh` sends)
//! and `spread` (50 paths, 1 000 users, varied IPs: index pages all over).
//! For PostgreSQL the server's own CPU is not in the figure.
//! `BENCH_BATCH` sets the rows per batch (default 5 000, the writer's);
//! `BENCH_MIX=alike` or `spread` runs one mix only (for a profiler).

use std::time::Instant;

use chrono::Utc;
use sage_stream::log::{open_store, WatchBatch, WatchLogStore, WatchRecord};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(200_000);
    let urls: Vec<String> = args.collect();
    let batch: usize = std::env::var("BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(5_000);
    let dir = tempfile::tempdir()?;
    println!("| store | rows | batch | mix | wall µs/row | CPU µs/row |");
    println!("|---|---:|---:|---|---:|---:|");
    let only = std::env::var("BENCH_MIX").ok();
    for spread in [false, true] {
        let mix = if spread { "spread" } else { "alike" };
        if only.as_deref().is_some_and(|m| m != mix) {
            continue;
        }
        let records = records(rows, spread);
        let urls = if urls.is_empty() {
            vec![format!(
                "sqlite://{}",
                dir.path().join(format!("{mix}.db")).display()
            )]
        } else {
            urls.clone()
        };
        for url in urls {
            let store = open_store(&url)?;
            store.migrate()?;
            // Built before the clock starts; dropped inside it, as the
            // writer drops what it stored.
            let batches: Vec<WatchBatch> = records
                .chunks(batch.max(1))
                .map(|chunk| WatchBatch::new(chunk.to_vec()))
                .collect();
            let cpu = cpu_seconds();
            let wall = Instant::now();
            for batch in batches {
                store.insert_batch(&batch)?;
            }
            let wall = wall.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu;
            let scheme = url.split("://").next().unwrap_or("?");
            println!(
                "| {scheme} | {rows} | {batch} | {mix} | {:.2} | {:.2} |",
                wall * 1e6 / rows as f64,
                cpu * 1e6 / rows as f64
            );
        }
    }
    Ok(())
}

fn records(rows: usize, spread: bool) -> Vec<WatchRecord> {
    let start = Utc::now();
    (0..rows)
        .map(|i| WatchRecord {
            created_at: start + chrono::Duration::microseconds(i as i64 * 40),
            path: if spread {
                format!("videos/clip{}.mp4", i % 50).into()
            } else {
                "big.bin".into()
            },
            user_id: (spread && i % 3 == 0).then(|| format!("user{}", i % 1000).into()),
            is_authenticated: spread && i % 3 == 0,
            ip: Some(if spread {
                format!("10.0.{}.{}", (i / 256) % 256, i % 256).into()
            } else {
                "127.0.0.1".into()
            }),
            method: "GET".into(),
            status: 206,
            range_header: Some(format!("bytes={}-{}", i * 65536, i * 65536 + 65535).into()),
            bytes_sent: 65536,
            duration_ms: 1,
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0".into()),
            completed: true,
            range_start: None,
        })
        .collect()
}

/// User + system CPU of this process so far, from `/proc/self/stat`
/// (clock ticks, 100 per second on Linux); 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
