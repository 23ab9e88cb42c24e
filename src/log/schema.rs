// @generated automatically by Diesel CLI.

diesel::table! {
    /// One row per logged response.
    watch_logs (id) {
        /// Row id, assigned by the database.
        id -> BigInt,
        /// When the request arrived, UTC.
        created_at -> Timestamp,
        /// Media path relative to the root.
        path -> Text,
        /// User id, if any.
        user_id -> Nullable<Text>,
        /// Whether the request was authenticated.
        is_authenticated -> Bool,
        /// `u:<user id>` or `ip:<address>`: who, for grouping.
        viewer_key -> Text,
        /// Client IP.
        ip -> Nullable<Text>,
        /// Request method.
        method -> Text,
        /// Response status.
        status -> Integer,
        /// The request's Range header, bounded.
        range_header -> Nullable<Text>,
        /// Body bytes actually sent.
        bytes_sent -> BigInt,
        /// Request start to end of body, in milliseconds.
        duration_ms -> BigInt,
        /// User-Agent, bounded.
        user_agent -> Nullable<Text>,
        /// Whether the body was sent in full.
        completed -> Bool,
    }
}

diesel::table! {
    /// One row per stored batch: makes retries and spool replays idempotent.
    watch_log_batches (batch_id) {
        /// The batch's unique id.
        batch_id -> Text,
        /// Rows the batch stored.
        row_count -> Integer,
        /// When it was stored, UTC.
        stored_at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(watch_logs, watch_log_batches);
