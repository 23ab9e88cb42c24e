//! `oneshot` and property tests of the layers and `ServeMedia`: every rule, bytes
//! compared with the file on disk.

#[path = "../common/mod.rs"]
mod common;

mod endpoint;
mod malformed_headers;
mod open_file_cache;
mod path_safety;
mod range_properties;
