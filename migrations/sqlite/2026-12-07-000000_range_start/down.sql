ALTER TABLE watch_logs DROP COLUMN range_start;
