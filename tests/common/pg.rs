//! A PostgreSQL database of its own for each test, on the shared server.

use diesel::{Connection, PgConnection, RunQueryDsl};

pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test and dropped after it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Creates a fresh database. The test lists
    /// [`Requirement::Postgres`](super::harness::Requirement::Postgres), so
    /// the harness has seen the server answer (or reported the test ignored).
    pub fn create() -> Self {
        let mut admin = PgConnection::establish(ADMIN_URL)
            .unwrap_or_else(|err| panic!("PostgreSQL at {ADMIN_URL}: {err}"));
        let name = format!("sage_stream_test_{}", uuid::Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .unwrap();
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        Self { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(ADMIN_URL) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}
