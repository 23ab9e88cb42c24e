//! A PostgreSQL database of its own for each test, on the shared server.

use diesel::{Connection, PgConnection, RunQueryDsl};

pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Whether CI demands PostgreSQL (then its absence fails the tests).
pub fn required() -> bool {
    std::env::var("SAGE_STREAM_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// A database created for one test and dropped after it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Creates a fresh database, or returns `None` (with a notice) when no
    /// server is reachable and PostgreSQL is not required.
    pub fn create(test: &str) -> Option<Self> {
        let mut admin = match PgConnection::establish(ADMIN_URL) {
            Ok(conn) => conn,
            Err(err) => {
                if required() {
                    panic!("SAGE_STREAM_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable at {ADMIN_URL}: {err}");
                }
                eprintln!("SKIPPED {test}: PostgreSQL unreachable at {ADMIN_URL} ({err}); set SAGE_STREAM_REQUIRE_POSTGRES=1 to fail instead");
                return None;
            }
        };
        let name = format!("sage_stream_test_{}", uuid::Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .unwrap();
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        Some(Self { name, url })
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
