-- The time index becomes the primary key: (created_at, id) is unique (id
-- comes from its sequence) and is the order every listing reads, so one
-- B-tree fewer is written per row (bench_log_insert: ~10 % less time per
-- row). A time-leading key is also what partitioning the log by time
-- would need later. Nothing looks a row up by id alone.
ALTER TABLE watch_logs
    DROP CONSTRAINT watch_logs_pkey,
    ADD CONSTRAINT watch_logs_pkey PRIMARY KEY (created_at, id);
DROP INDEX watch_logs_created_at;
