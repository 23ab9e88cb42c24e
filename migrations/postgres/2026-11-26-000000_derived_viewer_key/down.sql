DROP INDEX watch_logs_user_id;
CREATE INDEX watch_logs_user_id ON watch_logs (user_id, created_at);
ALTER TABLE watch_logs RENAME COLUMN viewer_key TO viewer_key_generated;
ALTER TABLE watch_logs ADD COLUMN viewer_key TEXT;
UPDATE watch_logs SET viewer_key = viewer_key_generated;
ALTER TABLE watch_logs ALTER COLUMN viewer_key SET NOT NULL;
ALTER TABLE watch_logs DROP COLUMN viewer_key_generated;
