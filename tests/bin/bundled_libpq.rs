//! The PostgreSQL store works from the libpq that the default features build
//! from source (`bundled-libpq`): over TLS, and without the system's libpq.

use crate::common;

use chrono::Utc;
use common::harness::{Requirement, Test};
use common::pg::TestDb;
use diesel::{Connection, PgConnection, RunQueryDsl};
use sage_stream::log::{LogFilter, PgStore, WatchBatch, WatchLogStore, WatchRecord};

pub fn tests() -> Vec<Test> {
    let mut tests =
        vec![Test::sync("postgres_over_tls", postgres_over_tls).needs(Requirement::Postgres)];
    if cfg!(all(feature = "bundled-libpq", target_os = "linux")) {
        tests.push(Test::sync(
            "no_system_libpq_is_linked",
            no_system_libpq_is_linked,
        ));
    }
    tests
}

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ssl: bool,
}

/// `sslmode=require` negotiates TLS (the vendored OpenSSL), and the store
/// writes and reads back through such a connection.
fn postgres_over_tls() {
    let db = TestDb::create();
    let url = format!("{}?sslmode=require", db.url);
    let mut conn = match PgConnection::establish(&url) {
        Ok(conn) => conn,
        Err(err) => {
            assert!(
                !Requirement::Postgres.required(),
                "SAGE_STREAM_REQUIRE_POSTGRES=1 but TLS to {url} failed: {err}"
            );
            eprintln!("SKIPPED postgres_over_tls: the server offers no TLS ({err})");
            return;
        }
    };
    let row: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .unwrap();
    assert!(row.ssl, "sslmode=require gave a connection without TLS");

    let store = PgStore::connect(&url).unwrap();
    store.migrate().unwrap();
    let record = WatchRecord {
        created_at: Utc::now(),
        path: "clip.mp4".into(),
        user_id: Some("alice".into()),
        is_authenticated: true,
        ip: Some("192.0.2.1".into()),
        method: "GET".into(),
        status: 206,
        range_header: Some("bytes=0-".into()),
        bytes_sent: 100,
        duration_ms: 3,
        user_agent: None,
        completed: true,
        range_start: None,
    };
    assert_eq!(
        store.insert_batch(&WatchBatch::new(vec![record])).unwrap(),
        1
    );
    let page = store.query(&LogFilter::default(), None, 10).unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].path, "clip.mp4");
}

/// Nothing links the system's libpq or OpenSSL at run time.
fn no_system_libpq_is_linked() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("ldd")
        .arg(&exe)
        .output()
        .unwrap();
    let libs = String::from_utf8_lossy(&out.stdout);
    for lib in ["libpq.so", "libssl.so", "libcrypto.so"] {
        assert!(
            !libs.contains(lib),
            "{} links {lib}:\n{libs}",
            exe.display()
        );
    }
}
