//! Run with `cargo run --release --example bench_admin [ROWS] [postgres://...]`.
//!
//! Fills a fresh watch log (SQLite in a temp dir, or the PostgreSQL URL
//! given, which must name an empty database) with ROWS rows (default one
//! million) and times what the admin does: the first page, a page deep down
//! the keyset chain, counts, a search, per-video totals and views per day.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use sage_stream::log::{LogFilter, WatchBatch, WatchLogStore, WatchRecord};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn WatchLogStore> = match args.next() {
        Some(url) => sage_stream::log::open_store(&url)?,
        None => sage_stream::log::open_store(&format!(
            "sqlite://{}",
            dir.path().join("log.db").display()
        ))?,
    };
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .ok_or("date")?;
    let filled = Instant::now();
    let mut batch = Vec::with_capacity(5000);
    for i in 0..rows {
        batch.push(WatchRecord {
            created_at: start + Duration::seconds(i as i64 * 20),
            path: format!("videos/v{:03}.mp4", i % 500).into(),
            user_id: (i % 3 == 0).then(|| format!("user{}", i % 2000).into()),
            is_authenticated: i % 3 == 0,
            ip: Some(format!("10.{}.{}.{}", i % 200, (i / 200) % 250, i % 7).into()),
            method: "GET".into(),
            status: if i % 50 == 0 { 403 } else { 206 },
            range_header: Some(format!("bytes={}-", (i % 100) * 65536).into()),
            bytes_sent: 65536,
            duration_ms: 4,
            user_agent: Some("Mozilla/5.0 bench".into()),
            completed: true,
            range_start: None,
        });
        if batch.len() == 5000 {
            store.insert_batch(&WatchBatch::new(std::mem::take(&mut batch)))?;
        }
    }
    store.insert_batch(&WatchBatch::new(batch))?;
    println!(
        "filled {rows} rows in {:.1} s",
        filled.elapsed().as_secs_f64()
    );

    let time = |name: &str,
                f: &mut dyn FnMut() -> Result<String, Box<dyn std::error::Error>>|
     -> Result<(), Box<dyn std::error::Error>> {
        let t = Instant::now();
        let what = f()?;
        println!(
            "| {name} | {:.1} ms | {what} |",
            t.elapsed().as_secs_f64() * 1000.0
        );
        Ok(())
    };
    let all = LogFilter::default();
    println!("| admin query | time | result |\n|---|---:|---|");
    time("first page (50, newest first)", &mut || {
        Ok(format!(
            "{} rows",
            store.query(&all, None, 50)?.entries.len()
        ))
    })?;
    time("100 pages down the keyset chain", &mut || {
        let mut after = None;
        for _ in 0..100 {
            after = store.query(&all, after, 50)?.next;
        }
        Ok("page 101 reached".into())
    })?;
    time("count, no filter", &mut || {
        Ok(store.count(&all)?.to_string())
    })?;
    let by_user = LogFilter {
        user_id: Some("user42".into()),
        ..Default::default()
    };
    time("first page, user filter", &mut || {
        Ok(format!(
            "{} rows",
            store.query(&by_user, None, 50)?.entries.len()
        ))
    })?;
    let by_path = LogFilter {
        path: Some("videos/v007.mp4".into()),
        ..Default::default()
    };
    time("count, path filter", &mut || {
        Ok(store.count(&by_path)?.to_string())
    })?;
    let search = LogFilter {
        search: Some("v123".into()),
        ..Default::default()
    };
    time("first page, search 'v123'", &mut || {
        Ok(format!(
            "{} rows",
            store.query(&search, None, 50)?.entries.len()
        ))
    })?;
    time("count, search 'v123'", &mut || {
        Ok(store.count(&search)?.to_string())
    })?;
    time("per-video totals (top 100)", &mut || {
        Ok(format!("{} paths", store.path_stats(&all, 100)?.len()))
    })?;
    time("views per day", &mut || {
        Ok(format!("{} days", store.views_per_day(&all)?.len()))
    })?;
    Ok(())
}
