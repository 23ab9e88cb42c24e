DROP INDEX watch_logs_created_at;
CREATE INDEX watch_logs_created_at ON watch_logs (created_at, id);
DROP INDEX watch_logs_user_id;
CREATE INDEX watch_logs_user_id ON watch_logs (user_id, created_at);
-- A stored viewer_key again, filled from the generated one; a rebuild keeps
-- the column's place and its NOT NULL without a default.
CREATE TABLE watch_logs_old (
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
INSERT INTO watch_logs_old (id, created_at, path, user_id, is_authenticated, viewer_key, ip,
                            method, status, range_header, bytes_sent, duration_ms, user_agent, completed)
SELECT id, created_at, path, user_id, is_authenticated, viewer_key, ip,
       method, status, range_header, bytes_sent, duration_ms, user_agent, completed
FROM watch_logs;
DROP TABLE watch_logs;
ALTER TABLE watch_logs_old RENAME TO watch_logs;
CREATE INDEX watch_logs_created_at ON watch_logs (created_at, id);
CREATE INDEX watch_logs_path ON watch_logs (path, created_at);
CREATE INDEX watch_logs_user_id ON watch_logs (user_id, created_at);
