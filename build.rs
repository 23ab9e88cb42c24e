//! Rebuilds the crate when a migration is added or changed: the stores embed
//! `migrations/` with `embed_migrations!`, and cargo would otherwise not
//! notice a new migration folder (diesel's documented build script).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
