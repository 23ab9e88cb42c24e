-- Less work per row. viewer_key is derived from user_id and ip, so the
-- server computes it (a STORED generated column): clients no longer send it.
ALTER TABLE watch_logs DROP COLUMN viewer_key;
ALTER TABLE watch_logs ADD COLUMN viewer_key TEXT NOT NULL GENERATED ALWAYS AS (
    CASE WHEN user_id IS NOT NULL THEN 'u:' || user_id
         WHEN ip IS NOT NULL THEN 'ip:' || ip
         ELSE 'anonymous' END) STORED;
-- Anonymous rows skip the user index: a lookup by `user_id = $1` implies
-- NOT NULL, so it still uses the index.
DROP INDEX watch_logs_user_id;
CREATE INDEX watch_logs_user_id ON watch_logs (user_id, created_at) WHERE user_id IS NOT NULL;
