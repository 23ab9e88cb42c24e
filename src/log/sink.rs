//! [`RecordSink`]: where the logging layer hands its rows.

use super::ack::RowAck;
use super::record::WatchRecord;

/// Where [`WatchLogLayer`](super::WatchLogLayer) hands each row: the
/// writer's [`WatchLogSink`](super::WatchLogSink), or a sink of your own (a
/// channel, a vector in a test).
///
/// `record` runs on the request's thread as the response ends: it must not
/// block, on I/O or on a lock held for long.
///
/// # Example
///
/// A sink that keeps rows in a vector, to test a stack with the layer:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use sage_stream::log::{RecordSink, WatchLogLayer, WatchRecord};
///
/// #[derive(Clone, Default)]
/// struct Rows(Arc<Mutex<Vec<WatchRecord>>>);
///
/// impl RecordSink for Rows {
///     fn record(&self, row: WatchRecord) {
///         self.0.lock().unwrap().push(row);
///     }
/// }
///
/// let rows = Rows::default();
/// let layer = WatchLogLayer::new(rows.clone());
/// # let _ = layer;
/// ```
pub trait RecordSink: Clone + Send + Sync + 'static {
    /// Takes one row. Must not block.
    fn record(&self, row: WatchRecord);

    /// Whether responses should wait for their rows to be safe
    /// ([`RecordSink::record_acked`]); default `false`. Asked once per
    /// response, before its body starts.
    fn acknowledges(&self) -> bool {
        false
    }

    /// Takes the row of a response that completed, when
    /// [`acknowledges`](RecordSink::acknowledges) said so: the response holds
    /// back its last bytes (or the end of a body of unknown length) until
    /// `ack` is released or dropped, so that a client sees a complete
    /// response only once its row is safe. Must not block either: hand the
    /// ack on with the row. The default records and releases at once.
    fn record_acked(&self, row: WatchRecord, ack: RowAck) {
        self.record(row);
        ack.release();
    }
}
