-- Where in the file the served bytes start, as ServeMedia reported it: the
-- row served [range_start, range_start + bytes_sent). NULL for rows written
-- before this column, imported rows, and responses ServeMedia did not serve.
-- Nullable without a default: PostgreSQL adds it without rewriting the table.
ALTER TABLE watch_logs ADD COLUMN range_start BIGINT;
