-- Less work per row. viewer_key is derived from user_id and ip, so it
-- becomes a VIRTUAL generated column: computed when read, nothing to bind
-- or store per row.
ALTER TABLE watch_logs DROP COLUMN viewer_key;
ALTER TABLE watch_logs ADD COLUMN viewer_key TEXT NOT NULL GENERATED ALWAYS AS (
    CASE WHEN user_id IS NOT NULL THEN 'u:' || user_id
         WHEN ip IS NOT NULL THEN 'ip:' || ip
         ELSE 'anonymous' END) VIRTUAL;
-- Anonymous rows skip the user index: a lookup by `user_id = ?` implies
-- NOT NULL, so it still uses the index.
DROP INDEX watch_logs_user_id;
CREATE INDEX watch_logs_user_id ON watch_logs (user_id, created_at) WHERE user_id IS NOT NULL;
-- Every SQLite index key already ends with the rowid (= id), so an index on
-- created_at alone orders rows by (created_at, id) without storing id twice.
DROP INDEX watch_logs_created_at;
CREATE INDEX watch_logs_created_at ON watch_logs (created_at);
