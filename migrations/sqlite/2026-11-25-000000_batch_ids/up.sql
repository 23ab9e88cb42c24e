-- Idempotency moves from one id per row to one id per batch (see
-- WatchBatch): a unique index probed on every row becomes one row per
-- batch. The table is rebuilt (SQLite cannot drop an indexed column) and
-- loses AUTOINCREMENT, which updated sqlite_sequence on every insert.
CREATE TABLE watch_logs_new (
    id INTEGER PRIMARY KEY NOT NULL,
    created_at TIMESTAMP NOT NULL,
    path TEXT NOT NULL,
    user_id TEXT,
    is_authenticated BOOLEAN NOT NULL,
    viewer_key TEXT NOT NULL,
    ip TEXT,
    method TEXT NOT NULL,
    status INTEGER NOT NULL,
    range_header TEXT,
    bytes_sent BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    user_agent TEXT,
    completed BOOLEAN NOT NULL
);
INSERT INTO watch_logs_new (id, created_at, path, user_id, is_authenticated, viewer_key, ip,
                            method, status, range_header, bytes_sent, duration_ms, user_agent, completed)
SELECT id, created_at, path, user_id, is_authenticated, viewer_key, ip,
       method, status, range_header, bytes_sent, duration_ms, user_agent, completed
FROM watch_logs;
DROP TABLE watch_logs;
ALTER TABLE watch_logs_new RENAME TO watch_logs;
CREATE INDEX watch_logs_created_at ON watch_logs (created_at, id);
CREATE INDEX watch_logs_path ON watch_logs (path, created_at);
CREATE INDEX watch_logs_user_id ON watch_logs (user_id, created_at);

CREATE TABLE watch_log_batches (
    batch_id TEXT PRIMARY KEY NOT NULL,
    row_count INTEGER NOT NULL,
    stored_at TIMESTAMP NOT NULL
);
