//! [`MemoryStore`]: an in-memory store for tests, with a switch that makes it
//! fail like a database that went down.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{Pruned, StoreError, WatchLogStore};
use crate::log::query::{Cursor, DayCount, LogFilter, Page, PathStats, WatchLogEntry};
use crate::log::record::{WatchBatch, WatchRecord};

/// Rows kept in memory; nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    rows: Mutex<Rows>,
    down: AtomicBool,
    lost_commits: AtomicU32,
}

#[derive(Debug, Default)]
struct Rows {
    entries: Vec<WatchLogEntry>,
    // Each stored batch id, and when it was stored (UTC).
    batches: HashMap<String, NaiveDateTime>,
    // The id of the last row stored; ids are never reused after a prune.
    last_id: i64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail with [`StoreError::Unavailable`] while `down`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes the next `n` inserts store their batch and then fail anyway,
    /// like a database whose connection dies during `COMMIT`: the caller
    /// cannot tell that the rows were stored.
    pub fn fail_after_commit(&self, n: u32) {
        self.lost_commits.store(n, Ordering::SeqCst);
    }

    /// Every stored row, oldest first.
    pub fn entries(&self) -> Vec<WatchLogEntry> {
        self.lock().entries.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Rows> {
        // A panic in another test thread must not hide the rows.
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("memory store is down"))
        } else {
            Ok(())
        }
    }
}

impl WatchLogStore for MemoryStore {
    fn migrate(&self) -> Result<(), StoreError> {
        self.check()
    }

    fn last_batch_id(&self, prefix: &str) -> Result<Option<String>, StoreError> {
        self.check()?;
        Ok(self
            .lock()
            .batches
            .keys()
            .filter(|id| id.starts_with(prefix))
            .max()
            .cloned())
    }

    fn insert_batch(&self, batch: &WatchBatch) -> Result<usize, StoreError> {
        self.check()?;
        let mut rows = self.lock();
        if rows.batches.contains_key(&batch.id) {
            return Ok(0);
        }
        rows.batches
            .insert(batch.id.clone(), chrono::Utc::now().naive_utc());
        for record in &batch.records {
            rows.last_id += 1;
            let id = rows.last_id;
            rows.entries.push(entry(id, record));
        }
        let lost = self
            .lost_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if lost.is_ok() {
            return Err(StoreError::unavailable("connection lost during COMMIT"));
        }
        Ok(batch.records.len())
    }

    fn query(
        &self,
        filter: &LogFilter,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.check()?;
        let rows = self.lock();
        let mut matching: Vec<&WatchLogEntry> = rows
            .entries
            .iter()
            .filter(|e| filter.matches(e))
            .filter(|e| after.is_none_or(|c| (e.created_at, e.id) < (c.created_at, c.id)))
            .collect();
        matching.sort_by_key(|e| std::cmp::Reverse((e.created_at, e.id)));
        let more = matching.len() > limit;
        let entries: Vec<WatchLogEntry> = matching.into_iter().take(limit).cloned().collect();
        let next = if more {
            entries.last().map(Cursor::after)
        } else {
            None
        };
        Ok(Page { entries, next })
    }

    fn count(&self, filter: &LogFilter) -> Result<u64, StoreError> {
        self.check()?;
        Ok(self
            .lock()
            .entries
            .iter()
            .filter(|e| filter.matches(e))
            .count() as u64)
    }

    fn path_stats(&self, filter: &LogFilter, limit: usize) -> Result<Vec<PathStats>, StoreError> {
        self.check()?;
        let rows = self.lock();
        let mut by_path: HashMap<&str, (i64, HashSet<&str>, i64)> = HashMap::new();
        for e in rows.entries.iter().filter(|e| filter.matches(e)) {
            let slot = by_path.entry(&e.path).or_default();
            slot.0 += 1;
            slot.1.insert(&e.viewer_key);
            slot.2 += e.bytes_sent;
        }
        let mut stats: Vec<PathStats> = by_path
            .into_iter()
            .map(|(path, (views, viewers, bytes))| PathStats {
                path: path.to_owned(),
                views,
                unique_viewers: viewers.len() as i64,
                bytes_sent: bytes,
            })
            .collect();
        stats.sort_by(|a, b| b.views.cmp(&a.views).then_with(|| a.path.cmp(&b.path)));
        stats.truncate(limit);
        Ok(stats)
    }

    fn views_per_day(&self, filter: &LogFilter) -> Result<Vec<DayCount>, StoreError> {
        self.check()?;
        let mut days = std::collections::BTreeMap::new();
        for e in self.lock().entries.iter().filter(|e| filter.matches(e)) {
            *days.entry(e.created_at.date()).or_insert(0i64) += 1;
        }
        Ok(days
            .into_iter()
            .map(|(day, views)| DayCount { day, views })
            .collect())
    }

    fn prune_chunk(&self, cutoff: NaiveDateTime, limit: usize) -> Result<Pruned, StoreError> {
        let cutoff = super::cutoff(cutoff);
        self.check()?;
        let mut rows = self.lock();
        // The `limit` oldest rows before the cutoff, as the databases pick them.
        let mut old: Vec<(NaiveDateTime, i64)> = rows
            .entries
            .iter()
            .filter(|e| e.created_at < cutoff)
            .map(|e| (e.created_at, e.id))
            .collect();
        old.sort_unstable();
        old.truncate(limit);
        let doomed: HashSet<i64> = old.into_iter().map(|(_, id)| id).collect();
        rows.entries.retain(|e| !doomed.contains(&e.id));
        let mut old_batches: Vec<(NaiveDateTime, String)> = rows
            .batches
            .iter()
            .filter(|(_, stored)| **stored < cutoff)
            .map(|(id, stored)| (*stored, id.clone()))
            .collect();
        old_batches.sort_unstable();
        old_batches.truncate(limit);
        for (_, id) in &old_batches {
            rows.batches.remove(id);
        }
        Ok(Pruned {
            rows: doomed.len() as u64,
            batches: old_batches.len() as u64,
        })
    }

    fn prunable(&self, cutoff: NaiveDateTime) -> Result<Pruned, StoreError> {
        let cutoff = super::cutoff(cutoff);
        self.check()?;
        let rows = self.lock();
        Ok(Pruned {
            rows: rows
                .entries
                .iter()
                .filter(|e| e.created_at < cutoff)
                .count() as u64,
            batches: rows.batches.values().filter(|t| **t < cutoff).count() as u64,
        })
    }
}

fn entry(id: i64, r: &WatchRecord) -> WatchLogEntry {
    WatchLogEntry {
        id,
        created_at: r.created_at.naive_utc(),
        path: r.path.to_string(),
        user_id: r.user_id.as_deref().map(str::to_owned),
        is_authenticated: r.is_authenticated,
        viewer_key: r.viewer_key(),
        ip: r.ip.as_deref().map(str::to_owned),
        method: r.method.to_string(),
        status: i32::from(r.status),
        range_header: r.range_header.as_deref().map(str::to_owned),
        bytes_sent: i64::try_from(r.bytes_sent).unwrap_or(i64::MAX),
        duration_ms: i64::try_from(r.duration_ms).unwrap_or(i64::MAX),
        user_agent: r.user_agent.as_deref().map(str::to_owned),
        completed: r.completed,
        range_start: r.range_start.and_then(|n| i64::try_from(n).ok()),
    }
}
