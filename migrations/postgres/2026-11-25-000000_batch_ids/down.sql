DROP TABLE watch_log_batches;
ALTER TABLE watch_logs ADD COLUMN record_id TEXT;
UPDATE watch_logs SET record_id = 'row-' || id;
ALTER TABLE watch_logs ALTER COLUMN record_id SET NOT NULL;
CREATE UNIQUE INDEX watch_logs_record_id ON watch_logs (record_id);
