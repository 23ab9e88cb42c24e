CREATE TABLE watch_logs (
    id BIGSERIAL PRIMARY KEY,
    record_id TEXT NOT NULL,
    -- UTC, without time zone so both backends share one schema.
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
-- Retried and replayed batches insert the same record_id again: ignored.
CREATE UNIQUE INDEX watch_logs_record_id ON watch_logs (record_id);
CREATE INDEX watch_logs_created_at ON watch_logs (created_at, id);
CREATE INDEX watch_logs_path ON watch_logs (path, created_at);
CREATE INDEX watch_logs_user_id ON watch_logs (user_id, created_at);
