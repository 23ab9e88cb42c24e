DROP TABLE watch_logs;
