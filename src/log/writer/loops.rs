//! The writer's threads: the writer (batches into the store, retries,
//! replays), the spooler (keeps the queue within its bound and hands late
//! rows to the spool file) and the journal (durable rows to the spool file
//! before their responses complete).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::backoff::Backoff;
use super::queue::InFlight;
use super::spool::{ReplayError, Spool};
use super::{Counters, Shared};
use crate::log::record::{WatchBatch, WatchRecord};
use crate::log::store::{StoreError, WatchLogStore};

/// The writer thread: a round every flush interval (or full batch), a
/// backoff while the store fails; at shutdown, rounds until everything is
/// stored or the shutdown timeout passes, then the rest goes to the spool.
pub(super) fn run_writer<S: WatchLogStore>(shared: &Shared, store: &S) {
    let config = &shared.config;
    let mut backoff = Backoff::new(config.max_backoff);
    let mut closing_since: Option<Instant> = None;
    loop {
        let round = shared.queue.take_batch(
            backoff.pause(config.flush_interval),
            backoff.is_backing_off(),
        );
        if round.closing {
            closing_since.get_or_insert_with(Instant::now);
        }
        if closing_since.is_some_and(|t| t.elapsed() >= config.shutdown_timeout) {
            // Out of time: everything left goes to the spool (or back into
            // memory, loudly, when there is none).
            // The process is about to stop: rows the spool cannot take now
            // are dropped and counted, not kept in a memory about to go.
            let rest = shared.queue.take_all(round.batch);
            if rest.rows() > 0 {
                spill_or_drop(shared, rest, false);
            } else {
                shared.queue.complete(rest);
            }
            return;
        }
        let stored = write_round(shared, store, round.spool_dirty, round.batch);
        shared.backing_off.store(!stored, Ordering::Relaxed);
        if stored {
            backoff.succeeded();
            if round.closing && shared.queue.is_drained() {
                return;
            }
        } else {
            backoff.failed();
        }
    }
}

/// Stores the batch, then replays the spool if it holds rows; a batch that
/// fails goes back to the front of the queue (and the spool waits for the
/// next round). The batch goes first because it is only in memory, while
/// the spool's rows are already safe in a file: a long replay must not
/// hold rows that a `kill -9` would lose. (Rows are not stored in the order
/// they came, which nothing needs: each has its time.) Returns whether
/// everything succeeded.
fn write_round<S: WatchLogStore>(
    shared: &Shared,
    store: &S,
    spool_dirty: bool,
    batch: Option<InFlight<WatchBatch>>,
) -> bool {
    if let Some(batch) = batch {
        match store_batch(shared, store, &batch) {
            Ok(()) => shared.queue.complete(batch),
            Err(err) => {
                tracing::warn!(%err, rows = batch.rows(), "watch log write failed; will retry");
                requeue(shared, batch);
                return false;
            }
        }
    }
    match (&shared.spool, spool_dirty) {
        (Some(spool), true) => {
            // What the journal, hand-offs and spills wrote since the last
            // round reaches the disk (at most a round's worth, in a power
            // loss).
            spool.sync();
            match replay(shared, spool, store) {
                Ok(()) => true,
                Err(ReplayError::Store) => false,
                // A spool that cannot be read must not hold back the rows in
                // memory: they are stored meanwhile, the spool when it can be.
                Err(ReplayError::Io) => true,
            }
        }
        _ => true,
    }
}

/// Puts a failed batch back to retry, spilling what that takes over the
/// memory bound.
fn requeue(shared: &Shared, batch: InFlight<WatchBatch>) {
    if let Some(excess) = shared.queue.requeue(batch) {
        spill(shared, excess.into_unnamed(shared.config.batch_size));
    }
}

/// Stores every spooled batch and empties the spool; an error if the store
/// or the spool failed (the spool is kept and replayed later).
fn replay<S: WatchLogStore>(shared: &Shared, spool: &Spool, store: &S) -> Result<(), ReplayError> {
    let replayed = spool.replay(
        &shared.queue,
        shared.config.batch_size,
        |batch| match store_batch(shared, store, batch) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(%err, "watch-log spool replay failed; will retry");
                false
            }
        },
    );
    let rows = replayed?;
    shared.counters.replayed.fetch_add(rows, Ordering::Relaxed);
    Ok(())
}

/// One store call, counted: rows written, or a failure.
///
/// A batch the database refuses for its data (not for being unreachable)
/// is halved until each refused row stands alone; those go to the
/// quarantine and every other row is stored. The halves' ids derive from
/// the batch's, so a retry or a spool replay splits the same way and skips
/// the halves already stored.
fn store_batch<S: WatchLogStore>(
    shared: &Shared,
    store: &S,
    batch: &WatchBatch,
) -> Result<(), StoreError> {
    match store.insert_batch(batch) {
        Ok(n) => {
            Counters::add(&shared.counters.written, n);
            Ok(())
        }
        Err(err) => {
            Counters::add(&shared.counters.failures, 1);
            if err.is_unavailable() {
                return Err(err);
            }
            if let [record] = batch.records.as_slice() {
                quarantine(shared, record, &err);
                return Ok(());
            }
            let (first, second) = batch.records.split_at(batch.records.len() / 2);
            for (i, half) in [first, second].into_iter().enumerate() {
                let half = WatchBatch {
                    id: format!("{}.{i}", batch.id),
                    records: half.to_vec(),
                };
                store_batch(shared, store, &half)?;
            }
            Ok(())
        }
    }
}

/// Sets aside a row the database will never take, loudly.
fn quarantine(shared: &Shared, record: &WatchRecord, err: &StoreError) {
    Counters::add(&shared.counters.quarantined, 1);
    let line = serde_json::to_string(record).unwrap_or_default();
    let path = shared.config.quarantine_path.clone().or_else(|| {
        shared
            .config
            .spool_path
            .as_ref()
            .map(|spool| spool.with_extension("quarantine"))
    });
    let Some(path) = path else {
        tracing::error!(%err, row = %line, "watch-log row refused by the database; not stored");
        return;
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes()));
    match written {
        Ok(()) => tracing::error!(
            %err,
            quarantine = %path.display(),
            "watch-log row refused by the database; set aside in the quarantine"
        ),
        Err(io) => {
            tracing::error!(%err, %io, row = %line, "watch-log row refused by the database; quarantine not writable")
        }
    }
}

/// The spool thread: keeps the queue under its memory bound. After a spool
/// write failed it waits the queue's backoff out (`take_excess`) instead of
/// trying again at once.
pub(super) fn run_spooler(shared: &Shared) {
    while let Some(excess) = shared.queue.take_excess() {
        spill(shared, excess.into_unnamed(shared.config.batch_size));
    }
}

/// Appends new rows over the memory bound to the spool; what it cannot
/// write comes back into memory, within the bound.
fn spill(shared: &Shared, batches: InFlight<Vec<WatchBatch>>) {
    spill_or_drop(shared, batches, true);
}

/// Appends batches to the spool: what it cannot write comes back into
/// memory (`keep`) or is dropped and counted. Without a spool, which
/// happens only at the end of shutdown, the rows can go nowhere: dropped,
/// counted.
fn spill_or_drop(shared: &Shared, batches: InFlight<Vec<WatchBatch>>, keep: bool) {
    match &shared.spool {
        Some(spool) => {
            let spooled = spool.append(&shared.queue, batches, keep);
            Counters::add(&shared.counters.spooled, spooled);
        }
        None => shared.queue.drop_all(batches),
    }
}

/// The journal thread: appends each group of rows handed over meanwhile
/// with one `write`, then lets their responses complete. Rows it cannot
/// journal (the spool is backing off after a failure, or this write failed)
/// are queued in memory, within its bound, as without `durable`; rows that
/// do not fit the spool's bound are dropped there, counted. Ends once
/// shutdown began and the inbox is empty.
pub(super) fn run_journal(shared: &Shared) {
    let (Some(journal), Some(spool)) = (&shared.journal, &shared.spool) else {
        return;
    };
    while let Some(group) = journal.take() {
        let rest = if shared.queue.spool_usable() {
            let done = spool.journal(&shared.queue, group.rows);
            Counters::add(&shared.counters.journaled, done.written);
            done.failed
        } else {
            group.rows
        };
        for row in rest {
            shared.queue.push(row);
        }
        journal.written();
    }
}
