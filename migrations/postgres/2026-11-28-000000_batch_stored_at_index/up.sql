-- Retention deletes batch ids by the time they were stored (see
-- WatchLogStore::prune_chunk), oldest first and a chunk at a time: this
-- index finds them without reading the whole table.
CREATE INDEX watch_log_batches_stored_at ON watch_log_batches (stored_at);
