CREATE INDEX watch_logs_created_at ON watch_logs (created_at, id);
ALTER TABLE watch_logs
    DROP CONSTRAINT watch_logs_pkey,
    ADD CONSTRAINT watch_logs_pkey PRIMARY KEY (id);
