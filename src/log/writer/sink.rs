//! [`WatchLogSink`]: what the request's thread does with a row — push it
//! onto a queue, nothing more.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::config::WriterStats;
use super::spool::Spool;
use super::{Counters, Shared};
use crate::log::ack::RowAck;
use crate::log::record::WatchRecord;
use crate::log::sink::RecordSink;

/// Where the logging layer puts rows; cheap to clone, never does I/O.
///
/// A row is pushed onto the writer's in-memory queue, or, with
/// [`WriterConfig::durable`](super::WriterConfig::durable), onto the journal
/// thread's inbox; either is one short lock. Everything that touches a disk
/// (the journal, spills to the spool) runs on the writer's own threads.
#[derive(Clone)]
pub struct WatchLogSink {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for WatchLogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchLogSink").finish_non_exhaustive()
    }
}

impl WatchLogSink {
    /// The writer's counters now (as
    /// [`WriterHandle::stats`](super::WriterHandle::stats)), for metrics
    /// read where only the sink is at hand.
    pub fn stats(&self) -> WriterStats {
        self.shared.stats()
    }

    /// Whether the writer's last store call failed and it is waiting to
    /// retry (rows are kept meanwhile, in memory or the spool).
    pub fn store_failing(&self) -> bool {
        self.shared.backing_off.load(Ordering::Relaxed)
    }

    /// Bytes in the spool file and in spool files set aside for replay.
    pub fn spool_bytes(&self) -> u64 {
        self.shared.spool.as_ref().map_or(0, Spool::bytes)
    }

    /// Queues one row (or, with
    /// [`WriterConfig::durable`](super::WriterConfig::durable), hands it to
    /// the journal thread). Never does I/O. Rows recorded after shutdown
    /// began are still queued and written by the final drain.
    pub fn record(&self, record: WatchRecord) {
        self.hand_over(record, None);
    }

    fn hand_over(&self, record: WatchRecord, ack: Option<RowAck>) {
        let shared = &self.shared;
        Counters::add(&shared.counters.recorded, 1);
        // A journal that just failed is left alone for a backoff: the row
        // is queued in memory meanwhile, and its response does not wait.
        let record = match &shared.journal {
            // Full, stalled or closed: given back (its response released)
            // and queued below.
            Some(journal) if shared.queue.spool_usable() => match journal.offer(record, ack) {
                None => return,
                Some(record) => record,
            },
            _ => record,
        };
        shared.queue.push(record);
    }
}

impl RecordSink for WatchLogSink {
    fn record(&self, row: WatchRecord) {
        WatchLogSink::record(self, row);
    }

    /// With [`WriterConfig::durable`](super::WriterConfig::durable): a
    /// complete response waits until its row is journaled.
    fn acknowledges(&self) -> bool {
        self.shared.journal.is_some()
    }

    fn record_acked(&self, row: WatchRecord, ack: RowAck) {
        self.hand_over(row, Some(ack));
    }
}
