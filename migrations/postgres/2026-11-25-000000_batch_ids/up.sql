-- Idempotency moves from one id per row to one id per batch (see
-- WatchBatch): a unique index probed on every row becomes one row per batch.
DROP INDEX watch_logs_record_id;
ALTER TABLE watch_logs DROP COLUMN record_id;

CREATE TABLE watch_log_batches (
    batch_id TEXT PRIMARY KEY,
    row_count INTEGER NOT NULL,
    stored_at TIMESTAMP NOT NULL
);
