// @generated automatically by Diesel CLI.

diesel::table! {
    /// One row per logged response.
    watch_logs (id) {
        /// Row id, assigned by the database.
        id -> BigInt,
        /// Unique id assigned when the response was logged; makes retries idempotent.
        record_id -> Text,
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
