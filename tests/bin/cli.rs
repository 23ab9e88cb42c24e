//! The `sage-stream` binary itself: serve (with a graceful stop that loses
//! no row), migrate, logs in every format, sign, and start-up errors.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::harness::Test;
use common::served::{Served, BIN};
use common::Fixture;
use sage_stream::log::{LogFilter, SqliteStore, WatchLogStore};
use sage_stream::permission::{Permission, RequestHead, SignedUrl};

pub fn tests() -> Vec<Test> {
    vec![
        Test::sync("prune_sqlite", prune_sqlite),
        #[cfg(feature = "postgres")]
        Test::sync("prune_postgres", prune_postgres).needs(common::harness::Requirement::Postgres),
        Test::sync(
            "serve_with_retention_prunes_as_it_starts",
            serve_with_retention_prunes_as_it_starts,
        ),
        Test::sync(
            "sign_prefix_cors_cache_control_and_mime_on_a_real_server",
            sign_prefix_cors_cache_control_and_mime_on_a_real_server,
        ),
        Test::sync(
            "serve_logs_every_request_and_a_graceful_stop_loses_none",
            serve_logs_every_request_and_a_graceful_stop_loses_none,
        ),
        Test::sync(
            "migrate_logs_and_their_formats",
            migrate_logs_and_their_formats,
        ),
        Test::sync(
            "sign_prints_a_url_the_permission_accepts",
            sign_prints_a_url_the_permission_accepts,
        ),
        Test::sync(
            "bad_configuration_stops_start_up_with_a_clear_message",
            bad_configuration_stops_start_up_with_a_clear_message,
        ),
        Test::sync(
            "sign_honours_the_configured_path_variable",
            sign_honours_the_configured_path_variable,
        ),
        Test::sync(
            "logs_escape_control_characters_in_every_format",
            logs_escape_control_characters_in_every_format,
        ),
        Test::sync(
            "logs_into_a_closed_pipe_exits_cleanly",
            logs_into_a_closed_pipe_exits_cleanly,
        ),
        Test::sync(
            "serve_without_a_media_root_says_to_pass_root",
            serve_without_a_media_root_says_to_pass_root,
        ),
        Test::sync(
            "kill_9_with_the_durable_log_loses_no_row",
            kill_9_with_the_durable_log_loses_no_row,
        ),
        Test::sync(
            "serve_applies_the_open_file_cache_and_zero_copy_flags",
            serve_applies_the_open_file_cache_and_zero_copy_flags,
        ),
        Test::sync("import_django_from_sqlite", import_django_from_sqlite),
        Test::sync(
            "import_django_skips_bad_rows_and_bounds_fields",
            import_django_skips_bad_rows_and_bounds_fields,
        ),
        #[cfg(feature = "postgres")]
        Test::sync("import_django_from_postgres", import_django_from_postgres)
            .needs(common::harness::Requirement::Postgres),
    ]
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn serve_logs_every_request_and_a_graceful_stop_loses_none() {
    let fx = Fixture::new();
    let data = fx.file("clip.mp4", 200_000);
    let db = format!("sqlite://{}", fx.dir.path().join("log.db").display());
    let root = fx.root.to_str().unwrap();
    let served = Served::start(
        &["--root", root, "--database", &db, "--admin-token", "t"],
        &[],
    );
    let base = served.base.clone();
    assert!(served.banner.contains("/admin/"), "{}", served.banner);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        for i in 0..25u64 {
            let res = client
                .get(format!("{base}/api/stream?path=clip.mp4"))
                .header("range", format!("bytes={}-{}", i * 1000, i * 1000 + 999))
                .send()
                .await
                .unwrap();
            assert_eq!(
                res.bytes().await.unwrap().as_ref(),
                &data[(i * 1000) as usize..(i * 1000 + 1000) as usize]
            );
        }
    });
    // SIGTERM right away: the rows are still in the writer's queue.
    let (ok, rest) = served.stop();
    assert!(ok, "{rest}");
    assert!(rest.contains("25 recorded, 25 written"), "{rest}");
    let store = SqliteStore::open(fx.dir.path().join("log.db")).unwrap();
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 25);
}

fn migrate_logs_and_their_formats() {
    let fx = Fixture::new();
    let path = fx.dir.path().join("cli.db");
    let db = format!("sqlite://{}", path.display());
    let (ok, out, _) = run(&["migrate", "--database", &db], &[]);
    assert!(ok && out.contains("up to date"), "{out}");
    let store = SqliteStore::open(&path).unwrap();
    let rows: Vec<_> = (0..3)
        .map(|i| sage_stream::log::WatchRecord {
            created_at: chrono::Utc::now() - chrono::Duration::minutes(i),
            path: if i == 0 {
                "a,b.mp4".into()
            } else {
                "c.webm".into()
            },
            user_id: Some("alice".into()),
            is_authenticated: true,
            ip: Some("127.0.0.1".into()),
            method: "GET".into(),
            status: 206,
            range_header: Some("bytes=0-".into()),
            bytes_sent: 1000,
            duration_ms: 5,
            user_agent: None,
            completed: true,
            range_start: None,
        })
        .collect();
    store
        .insert_batch(&sage_stream::log::WatchBatch::new(rows))
        .unwrap();

    let (ok, table, _) = run(&["logs", "--database", &db], &[]);
    assert!(ok);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.lines().next().unwrap().starts_with("created (UTC)"));

    let (ok, csv, _) = run(
        &[
            "logs",
            "--database",
            &db,
            "--format",
            "csv",
            "--path",
            "a,b.mp4",
        ],
        &[],
    );
    assert!(ok);
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains("\"a,b.mp4\",alice,true"));

    let (ok, json, _) = run(
        &[
            "logs",
            "--database",
            &db,
            "--format",
            "json",
            "--search",
            "webm",
        ],
        &[],
    );
    assert!(ok);
    let parsed: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed.len(), 2);

    let (ok, stats, _) = run(
        &["logs", "--database", &db, "--stats", "--format", "csv"],
        &[],
    );
    assert!(ok);
    assert!(stats.contains("c.webm,2,1,2000"), "{stats}");

    let (ok, page, _) = run(&["logs", "--database", &db, "--limit", "2"], &[]);
    assert!(ok);
    let cursor = page
        .lines()
        .last()
        .unwrap()
        .strip_prefix("more: --after ")
        .unwrap()
        .to_owned();
    let (ok, next, _) = run(
        &[
            "logs",
            "--database",
            &db,
            "--limit",
            "2",
            "--after",
            &cursor,
        ],
        &[],
    );
    assert!(ok);
    assert_eq!(next.lines().count(), 2, "{next}");

    let (ok, _, err) = run(&["logs", "--database", &db, "--since", "last tuesday"], &[]);
    assert!(!ok && err.contains("bad time"), "{err}");
}

/// The binary's flags reach the file service: with a trust window the old
/// file is still served after a replacement, without one the new file is;
/// `--zero-copy` serves exact bytes.
fn serve_applies_the_open_file_cache_and_zero_copy_flags() {
    let fx = Fixture::new();
    let old = fx.file("a.mp4", 3 << 20);
    let root = fx.root.to_str().unwrap();
    let trusting = Served::start(
        &[
            "--root",
            root,
            "--database",
            "memory://",
            "--open-file-cache-valid",
            "60s",
            "--zero-copy",
        ],
        &[],
    );
    let checking = Served::start(&["--root", root, "--database", "memory://"], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let get = |base: &str, range: &str| {
            client
                .get(format!("{base}/api/stream?path=a.mp4"))
                .header("range", range)
                .send()
        };
        for served in [&trusting, &checking] {
            let res = get(&served.base, "bytes=12345-").await.unwrap();
            let body = res.bytes().await.unwrap();
            assert_eq!(body, old[12345..]);
        }
        let new = common::pattern(3 << 20, 99);
        let tmp = fx.root.join(".a.tmp");
        std::fs::write(&tmp, &new).unwrap();
        std::fs::rename(&tmp, fx.path("a.mp4")).unwrap();
        let trusted = get(&trusting.base, "bytes=0-999").await.unwrap();
        assert_eq!(trusted.bytes().await.unwrap(), old[..1000], "trust window");
        let checked = get(&checking.base, "bytes=0-999").await.unwrap();
        assert_eq!(
            checked.bytes().await.unwrap(),
            new[..1000],
            "stat per request"
        );
    });
    for served in [trusting, checking] {
        let (ok, rest) = served.stop();
        assert!(ok, "{rest}");
    }
}

fn sign_prints_a_url_the_permission_accepts() {
    let (ok, out, _) = run(
        &[
            "sign",
            "dir/clip one.mp4",
            "--expires",
            "10m",
            "--key",
            "k3y",
        ],
        &[],
    );
    assert!(ok);
    let url: http::Uri = out.trim().parse().unwrap();
    assert_eq!(url.path(), "/api/stream");
    let req = http::Request::get(url).body(()).unwrap();
    assert_eq!(SignedUrl::new("k3y").check(&RequestHead::of(&req)), Ok(()));
    assert!(SignedUrl::new("other")
        .check(&RequestHead::of(&req))
        .is_err());
    // The key may come from the environment instead.
    let (ok, from_env, _) = run(&["sign", "a.mp4"], &[("STREAM_SIGNING_KEY", "k3y")]);
    assert!(ok && from_env.contains("signature="));
}

/// Arguments, environment, and a piece of the expected error message.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

fn bad_configuration_stops_start_up_with_a_clear_message() {
    let fx = Fixture::new();
    let root = fx.root.to_str().unwrap();
    let bad_file = fx.dir.path().join("bad.toml");
    std::fs::write(&bad_file, "[stream]\nmax_load_volume = \"lots\"\n").unwrap();
    let bad_file = bad_file.to_str().unwrap();
    let cases: &[Case<'_>] = &[
        // Each source is named: the variable, or the file and its key.
        (
            &["serve", "--root", root, "--bind", "127.0.0.1:0"],
            &[("STREAM_ZERO_COPY", "maybe")],
            "STREAM_ZERO_COPY",
        ),
        (
            &["serve", "--bind", "127.0.0.1:0", "--config", bad_file],
            &[],
            "key `stream.max_load_volume`",
        ),
        (
            &["serve", "--root", root, "--bind", "127.0.0.1:0"],
            &[("STREAM_MAX_LOAD_VOLUME", "lots")],
            "STREAM_MAX_LOAD_VOLUME",
        ),
        (
            &["serve", "--root", root, "--bind", "127.0.0.1:0"],
            &[("STREAM_WATCH_LOG_ENABLED", "maybe")],
            "STREAM_WATCH_LOG_ENABLED",
        ),
        (
            &[
                "serve",
                "--root",
                "/nonexistent/media",
                "--bind",
                "127.0.0.1:0",
            ],
            &[],
            "not a directory",
        ),
        (
            &[
                "serve",
                "--root",
                root,
                "--bind",
                "127.0.0.1:0",
                "--database",
                "mysql://x",
            ],
            &[],
            "unsupported database URL",
        ),
        (
            &[
                "serve",
                "--root",
                root,
                "--bind",
                "127.0.0.1:0",
                "--config",
                "/nonexistent.toml",
            ],
            &[],
            "cannot read",
        ),
    ];
    for (args, env, want) in cases {
        let (ok, _, err) = run(args, env);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// `sign` reads the path variable as the server does: with
/// `STREAM_DEFAULT_VIDEO_PATH_URL_VAR=video` and `SignedUrl`, the printed
/// link plays (206) on a real server, and a tampered one does not.
fn sign_honours_the_configured_path_variable() {
    let fx = Fixture::new();
    let data = fx.file("clip.mp4", 50_000);
    let env = [
        ("STREAM_DEFAULT_VIDEO_PATH_URL_VAR", "video"),
        ("STREAM_DEFAULT_PERMISSION_CLASSES", "SignedUrl"),
        ("STREAM_SIGNING_KEY", "k3y"),
    ];
    let db = format!("sqlite://{}", fx.dir.path().join("log.db").display());
    let served = Served::start(
        &["--root", fx.root.to_str().unwrap(), "--database", &db],
        &env,
    );
    let endpoint = format!("{}/api/stream", served.base);
    let (ok, out, err) = run(&["sign", "clip.mp4", "--base", &endpoint], &env);
    assert!(ok, "{err}");
    let link = out.trim().to_owned();
    assert!(
        link.starts_with(&format!("{endpoint}?video=clip.mp4&")),
        "{link}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, body, tampered) = rt.block_on(async {
        let client = reqwest::Client::new();
        let res = client
            .get(&link)
            .header("range", "bytes=100-199")
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.bytes().await.unwrap();
        let tampered = client
            .get(link.replace("video=clip.mp4", "video=other.mp4"))
            .send()
            .await
            .unwrap()
            .status();
        (status, body, tampered)
    });
    served.stop();
    assert_eq!(status, reqwest::StatusCode::PARTIAL_CONTENT);
    assert_eq!(body.as_ref(), &data[100..200]);
    assert_eq!(tampered, reqwest::StatusCode::FORBIDDEN);
}

/// A logged path or user id holding terminal control sequences is shown
/// escaped by `logs` (no retitled or cleared terminal, no forged row);
/// CSV keeps the exact text.
/// Every format of `logs` (rows and `--stats`, table, CSV and JSON) shows
/// control characters as visible escapes: no ESC, BEL, CR, LF, C1 (U+009B)
/// or line separator (U+2028) reaches the terminal raw, so a logged path
/// cannot retitle the terminal or forge a row. JSON stays exact once parsed.
fn logs_escape_control_characters_in_every_format() {
    let fx = Fixture::new();
    let path = fx.dir.path().join("esc.db");
    let db = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&path).unwrap();
    let hostile = "a\u{1b}]0;owned\u{7}\u{1b}[2Jb\r\n2099-01-01 00:00:00.000 fake.mp4\u{9b}31m\u{2028}FORGED\u{2029}\u{202e}x\u{7f}";
    let row = sage_stream::log::WatchRecord {
        created_at: chrono::Utc::now(),
        path: hostile.into(),
        user_id: Some("u\u{1b}[31m\nFORGED".into()),
        is_authenticated: true,
        ip: Some("127.0.0.1".into()),
        method: "GET".into(),
        status: 200,
        range_header: Some("bytes=0-\r".into()),
        bytes_sent: 1,
        duration_ms: 1,
        user_agent: Some("ua\u{85}\u{9b}2J\nFORGED".into()),
        completed: true,
        range_start: None,
    };
    store
        .insert_batch(&sage_stream::log::WatchBatch::new(vec![row]))
        .unwrap();
    let raw = [
        '\u{1b}', '\u{7}', '\u{7f}', '\u{85}', '\u{9b}', '\u{2028}', '\u{2029}', '\u{202e}',
    ];
    for format in ["csv", "json", "table"] {
        for stats in [false, true] {
            let mut args = vec!["logs", "--format", format, "--database", &db];
            if stats {
                args.push("--stats");
            }
            let (ok, out, err) = run(&args, &[]);
            assert!(ok, "{format} {stats}: {err}");
            let what = format!("{format}, stats {stats}: {out:?}");
            assert!(!out.contains(raw), "{what}");
            // CR only as CSV's line ending; LF only to end a line.
            assert!(!out.replace("\r\n", "").contains('\r'), "{what}");
            assert!(
                !out.lines().any(|l| {
                    let start = l.trim_start_matches([' ', '"']);
                    start.starts_with("2099") || start.starts_with("FORGED")
                }),
                "a line of the attacker's: {what}"
            );
            match format {
                "json" => {
                    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
                    let first = &value[0];
                    assert_eq!(first["path"], hostile, "exact once parsed: {what}");
                    if !stats {
                        assert_eq!(first["user_id"], "u\u{1b}[31m\nFORGED", "{what}");
                        assert_eq!(first["user_agent"], "ua\u{85}\u{9b}2J\nFORGED", "{what}");
                    }
                }
                _ => {
                    assert_eq!(out.lines().count(), 2, "header and one row: {what}");
                    assert!(
                        out.contains("a\\x1b]0;owned\\x07\\x1b[2Jb\\r\\n2099"),
                        "{what}"
                    );
                    assert!(
                        out.contains("\\x9b31m\\u2028FORGED\\u2029\\u202ex\\x7f"),
                        "{what}"
                    );
                }
            }
        }
    }
}

/// `sage-stream logs | head` ends quietly when `head` stops reading: exit
/// 0, no panic (it used to exit 101 on the closed pipe).
fn logs_into_a_closed_pipe_exits_cleanly() {
    let fx = Fixture::new();
    let path = fx.dir.path().join("pipe.db");
    let db = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&path).unwrap();
    let rows = (0..3000)
        .map(|i| sage_stream::log::WatchRecord {
            created_at: chrono::Utc::now(),
            path: format!("clip-{i}.mp4").into(),
            user_id: None,
            is_authenticated: false,
            ip: Some("127.0.0.1".into()),
            method: "GET".into(),
            status: 200,
            range_header: None,
            bytes_sent: 1,
            duration_ms: 1,
            user_agent: Some("x".repeat(200).into()),
            completed: true,
            range_start: None,
        })
        .collect();
    store
        .insert_batch(&sage_stream::log::WatchBatch::new(rows))
        .unwrap();
    for format in ["table", "csv", "json"] {
        let mut child = Command::new(BIN)
            .args([
                "logs",
                "--limit",
                "3000",
                "--format",
                format,
                "--database",
                &db,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line, then hang up, as `head -1` does.
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{format}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!first.is_empty());
    }
}

/// No media root is baked in at build time: away from a checkout (no
/// `./media`) and without `--root`, `serve` stops and says what to pass.
fn serve_without_a_media_root_says_to_pass_root() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--database", "memory://"])
        .current_dir(empty.path())
        .env_remove("STREAM_MEDIA_ROOT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--root"), "{err}");
}

/// `--durable-log`: a server killed with SIGKILL the moment the client has
/// its last response loses no row; the next start replays the journal,
/// once.
fn kill_9_with_the_durable_log_loses_no_row() {
    let fx = Fixture::new();
    let data = fx.file("clip.mp4", 100_000);
    let db_path = fx.dir.path().join("log.db");
    let db = format!("sqlite://{}", db_path.display());
    let root = fx.root.to_str().unwrap();
    let served = Served::start(
        &["--root", root, "--database", &db],
        &[("STREAM_DURABLE_LOG", "true")],
    );
    let url = format!("{}/api/stream?path=clip.mp4", served.base);
    let requests = 400usize;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        for chunk in (0..requests).collect::<Vec<_>>().chunks(8) {
            let mut calls = Vec::new();
            for &i in chunk {
                let (client, url) = (client.clone(), url.clone());
                calls.push(tokio::spawn(async move {
                    let start = i * 100;
                    let res = client
                        .get(url)
                        .header("range", format!("bytes={start}-{}", start + 99))
                        .send()
                        .await
                        .unwrap();
                    (start, res.bytes().await.unwrap())
                }));
            }
            for call in calls {
                let (start, body) = call.await.unwrap();
                assert_eq!(body.as_ref(), &data[start..start + 100]);
            }
        }
    });
    // No pause: a response's last bytes leave the server only once its row
    // is in the journal, so the kill may come the moment the client has them.
    let mut served = served;
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    let before = SqliteStore::open(&db_path)
        .unwrap()
        .count(&LogFilter::default())
        .unwrap();

    let served = Served::start(&["--root", root, "--database", &db], &[]);
    let (ok, rest) = served.stop();
    assert!(ok, "{rest}");
    let after = SqliteStore::open(&db_path)
        .unwrap()
        .count(&LogFilter::default())
        .unwrap();
    assert_eq!(
        after, requests as u64,
        "{before} rows were in the database at the kill; the rest came from the journal"
    );
}

/// Django 4.2's DDL for django-sage-streaming's models (from `sqlmigrate`),
/// per backend.
const DJANGO_SQLITE_DDL: &[&str] = &[
    r#"CREATE TABLE "auth_user" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "password" varchar(128) NOT NULL, "last_login" datetime NULL, "is_superuser" bool NOT NULL, "username" varchar(150) NOT NULL UNIQUE, "last_name" varchar(150) NOT NULL, "email" varchar(254) NOT NULL, "is_staff" bool NOT NULL, "is_active" bool NOT NULL, "date_joined" datetime NOT NULL, "first_name" varchar(150) NOT NULL)"#,
    r#"CREATE TABLE "sage_stream_watchlog" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "video_path" varchar(255) NOT NULL, "is_authenticated" bool NOT NULL, "ip" char(39) NULL, "created" datetime NOT NULL, "user_id" integer NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED)"#,
    r#"CREATE INDEX "sage_stream_watchlog_user_id_2d4f0c4b" ON "sage_stream_watchlog" ("user_id")"#,
];

#[cfg(feature = "postgres")]
const DJANGO_PG_DDL: &[&str] = &[
    r#"CREATE TABLE "auth_user" ("id" integer NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, "password" varchar(128) NOT NULL, "last_login" timestamp with time zone NULL, "is_superuser" boolean NOT NULL, "username" varchar(150) NOT NULL UNIQUE, "first_name" varchar(150) NOT NULL, "last_name" varchar(150) NOT NULL, "email" varchar(254) NOT NULL, "is_staff" boolean NOT NULL, "is_active" boolean NOT NULL, "date_joined" timestamp with time zone NOT NULL)"#,
    r#"CREATE TABLE "sage_stream_watchlog" ("id" bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, "video_path" varchar(255) NOT NULL, "is_authenticated" boolean NOT NULL, "ip" inet NULL, "created" timestamp with time zone NOT NULL, "user_id" integer NULL)"#,
    r#"ALTER TABLE "sage_stream_watchlog" ADD CONSTRAINT "sage_stream_watchlog_user_id_2d4f0c4b_fk_auth_user_id" FOREIGN KEY ("user_id") REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED"#,
    r#"CREATE INDEX "sage_stream_watchlog_user_id_2d4f0c4b" ON "sage_stream_watchlog" ("user_id")"#,
];

/// Fills a Django database through `exec`: two users, then `rows`
/// watch-log rows from id `from` (even ids by user 1 from 10.0.x.y, odd
/// ones anonymous; paths stored as full server paths below
/// /srv/site/media/; times in UTC, written with `zone` appended).
fn fill_django(exec: &mut dyn FnMut(&str), ddl: &[&str], zone: &str, from: usize, rows: usize) {
    if from == 1 {
        for statement in ddl {
            exec(statement);
        }
        for (id, name) in [(1, "alice"), (2, "bob")] {
            exec(&format!(
                "INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined) \
                 VALUES ({id}, '', false, '{name}', '', '', '', false, true, '2024-01-01 00:00:00{zone}')"
            ));
        }
    }
    let mut values = Vec::new();
    for id in from..from + rows {
        let (user, auth, ip) = if id % 2 == 0 {
            (
                "1".to_owned(),
                "true",
                format!("'10.0.{}.{}'", id / 256 % 256, id % 256),
            )
        } else {
            ("NULL".to_owned(), "false", "NULL".to_owned())
        };
        values.push(format!(
            "({id}, '/srv/site/media/clips/{}.mp4', {auth}, {ip}, '2024-05-01 10:{:02}:{:02}{zone}', {user})",
            id % 13,
            id / 60 % 60,
            id % 60
        ));
    }
    for chunk in values.chunks(500) {
        exec(&format!(
            "INSERT INTO sage_stream_watchlog (id, video_path, is_authenticated, ip, created, user_id) VALUES {}",
            chunk.join(",")
        ));
    }
}

/// Imports 10 000 Django rows from `from` into a fresh SQLite log, checks
/// them field by field, reruns (nothing added), adds rows and reruns
/// (only those added).
fn import_and_check(from: &str, add_rows: impl FnOnce()) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.db");
    let db = format!("sqlite://{}", log.display());
    let import = || {
        run(
            &[
                "import-django",
                "--from",
                from,
                "--database",
                &db,
                "--strip-prefix",
                "/srv/site/media/",
            ],
            &[],
        )
    };
    let (ok, out, err) = import();
    assert!(ok, "{err}");
    assert!(
        out.contains("10000 rows read") && out.contains("10000 written"),
        "{out}"
    );
    let store = SqliteStore::open(&log).unwrap();
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 10_000);
    let alice = LogFilter {
        user_id: Some("alice".to_owned()),
        ..LogFilter::default()
    };
    assert_eq!(store.count(&alice).unwrap(), 5_000);
    let page = store.query(&LogFilter::default(), None, 20_000).unwrap();
    let row = page
        .entries
        .iter()
        .find(|e| e.ip.as_deref() == Some("10.0.1.2"))
        .expect("the row of Django id 258");
    assert_eq!(row.path, format!("clips/{}.mp4", 258 % 13));
    assert_eq!(row.user_id.as_deref(), Some("alice"), "auth_user.username");
    assert_eq!((row.status, row.bytes_sent), (0, 0), "unknown, marked");
    assert!(row.is_authenticated);
    assert_eq!(row.created_at.to_string(), "2024-05-01 10:04:18".to_owned());
    assert!(!row.completed);
    assert_eq!(
        row.user_agent.as_deref(),
        Some("django-sage-streaming import")
    );
    let anonymous = page.entries.iter().filter(|e| e.user_id.is_none()).count();
    assert_eq!(anonymous, 5_000);
    // The admin and the analytics show them, with the Django user names.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use tower::ServiceExt;
        let media = tempfile::tempdir().unwrap();
        let store: std::sync::Arc<dyn WatchLogStore> =
            std::sync::Arc::new(SqliteStore::open(&log).unwrap());
        let (sink, writer) = sage_stream::log::WatchLogWriter::spawn(
            store.clone(),
            sage_stream::log::WriterConfig::default(),
        )
        .unwrap();
        let mut config = sage_stream::app::AppConfig::new(media.path());
        config.admin_token = Some("t".to_owned());
        let app = sage_stream::app::router(&config, store, sink).unwrap();
        for (uri, wanted) in [
            ("/admin/?user=alice", "alice"),
            ("/admin/?user=alice", "unknown"),
            ("/admin/analytics", "clips/"),
        ] {
            let req = http::Request::get(uri)
                .header("authorization", "Bearer t")
                .body(axum::body::Body::empty())
                .unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), http::StatusCode::OK, "{uri}");
            let body = http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap()
                .to_bytes();
            let html = String::from_utf8_lossy(&body);
            assert!(html.contains(wanted), "{uri} shows {wanted}");
        }
        writer.shutdown_async().await;
    });

    // Idempotent: a rerun adds nothing.
    let (ok, out, err) = import();
    assert!(ok, "{err}");
    assert!(out.contains("0 rows read"), "{out}");
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 10_000);
    // New Django rows since: only they come over.
    add_rows();
    let (ok, out, err) = import();
    assert!(ok, "{err}");
    assert!(
        out.contains("7 rows read") && out.contains("7 written"),
        "{out}"
    );
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 10_007);
}

fn import_django_from_sqlite() {
    use diesel::{Connection, RunQueryDsl};
    let dir = tempfile::tempdir().unwrap();
    let django = dir.path().join("db.sqlite3");
    let path = django.to_str().unwrap().to_owned();
    let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
    let mut exec = move |sql: &str| {
        diesel::sql_query(sql).execute(&mut conn).unwrap();
    };
    fill_django(&mut exec, DJANGO_SQLITE_DDL, "", 1, 10_000);
    import_and_check(&format!("sqlite://{path}"), || {
        fill_django(&mut exec, DJANGO_SQLITE_DDL, "", 10_001, 7)
    });
}

/// One bad row does not stop `import-django`, and no row is stored bigger
/// than the live log stores it: a `created` that is no time (`yesterday`,
/// February 30th) is skipped and reported by id, the rest of its batch is
/// stored; a non-UTF-8 path is stored with U+FFFD, as the live log does; a
/// 5 MiB path and a 200 000-character user are cut to the live log's 1024
/// bytes, with the import's memory bounded (21 such paths used to take
/// every one into memory twice); a rerun adds nothing and fails nothing.
fn import_django_skips_bad_rows_and_bounds_fields() {
    use diesel::{Connection, RunQueryDsl};
    let dir = tempfile::tempdir().unwrap();
    let django = dir.path().join("db.sqlite3");
    let from = format!("sqlite://{}", django.display());
    let mut conn = diesel::SqliteConnection::establish(django.to_str().unwrap()).unwrap();
    let mut exec = |sql: &str| {
        diesel::sql_query(sql).execute(&mut conn).unwrap();
    };
    for statement in DJANGO_SQLITE_DDL {
        exec(statement);
    }
    let user = |id: u32, name: &str| {
        format!(
            "INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined) \
             VALUES ({id}, '', false, {name}, '', '', '', false, true, '2024-01-01 00:00:00')"
        )
    };
    exec(&user(1, "'alice'"));
    exec(&user(3, "replace(hex(zeroblob(200000)), '00', 'u')"));
    let five_mib = "'/srv/site/media/clips/' || replace(hex(zeroblob(5242880)), '00', 'x')";
    let non_utf8 = "CAST(X'2f7372762f736974652f6d656469612f636c6970732fff2e6d7034' AS TEXT)";
    let mut rows = vec![
        (
            1,
            "'/srv/site/media/clips/1.mp4'".to_owned(),
            "'2024-05-01 10:00:01'",
            "1",
            "'10.0.0.1'",
        ),
        (
            2,
            "'/srv/site/media/clips/2.mp4'".to_owned(),
            "'yesterday'",
            "NULL",
            "NULL",
        ),
        (
            3,
            non_utf8.to_owned(),
            "'2024-05-01 10:00:03'",
            "NULL",
            "NULL",
        ),
        (
            4,
            "'/srv/site/media/clips/4.mp4'".to_owned(),
            "'2024-05-01 10:00:04'",
            "NULL",
            "'10.0.0.4'",
        ),
        (
            5,
            five_mib.to_owned(),
            "'2024-05-01 10:00:05'",
            "NULL",
            "NULL",
        ),
        (
            6,
            "'/srv/site/media/clips/6.mp4'".to_owned(),
            "'2024-05-01 10:00:06'",
            "3",
            "NULL",
        ),
        (
            7,
            "'/srv/site/media/clips/7.mp4'".to_owned(),
            "'2024-02-30 10:00:00'",
            "NULL",
            "NULL",
        ),
    ];
    for id in 8..28 {
        rows.push((
            id,
            five_mib.to_owned(),
            "'2024-05-01 11:00:00'",
            "NULL",
            "NULL",
        ));
    }
    for (id, path, created, user, ip) in &rows {
        exec(&format!(
            "INSERT INTO sage_stream_watchlog (id, video_path, is_authenticated, ip, created, user_id) \
             VALUES ({id}, {path}, {}, {ip}, {created}, {user})",
            *user != "NULL"
        ));
    }
    drop(conn);

    let log = dir.path().join("log.db");
    let db = format!("sqlite://{}", log.display());
    let import = || {
        let mut child = Command::new(BIN)
            .args(["import-django", "--from", &from, "--database", &db])
            .args(["--strip-prefix", "/srv/site/media/"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The peak resident set, read while it runs.
        let status = format!("/proc/{}/status", child.id());
        let mut peak_kib = 0u64;
        while child.try_wait().unwrap().is_none() {
            let hwm = std::fs::read_to_string(&status).ok().and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            });
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            peak_kib,
        )
    };
    let (ok, out, err, peak_kib) = import();
    assert!(ok, "rc 0 despite bad rows: {out} {err}");
    assert!(
        out.contains("27 rows read") && out.contains("25 written"),
        "{out}"
    );
    assert!(out.contains("2 skipped (ids 2, 7)"), "{out}");
    assert!(
        err.contains("skipped row 2: ") && err.contains("\"yesterday\""),
        "{err}"
    );
    assert!(err.contains("skipped row 7: "), "{err}");
    assert!(!err.contains("skipped row 3"), "{err}");
    eprintln!("import-django peak RSS: {} KiB", peak_kib);
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");

    let store = SqliteStore::open(&log).unwrap();
    let mut entries = store
        .query(&LogFilter::default(), None, 100)
        .unwrap()
        .entries;
    entries.sort_by_key(|e| (e.created_at, e.id));
    assert_eq!(entries.len(), 25);
    let by_second = |s: u32| {
        entries
            .iter()
            .find(|e| e.created_at.to_string() == format!("2024-05-01 10:00:{s:02}"))
            .unwrap_or_else(|| panic!("row at second {s}"))
    };
    let first = by_second(1);
    assert_eq!(first.path, "clips/1.mp4");
    assert_eq!(first.user_id.as_deref(), Some("alice"));
    assert!(first.is_authenticated);
    assert_eq!(first.ip.as_deref(), Some("10.0.0.1"));
    assert_eq!(by_second(3).path, "clips/\u{fffd}.mp4");
    let fourth = by_second(4);
    assert_eq!(fourth.path, "clips/4.mp4");
    assert_eq!(
        (fourth.user_id.as_deref(), fourth.ip.as_deref()),
        (None, Some("10.0.0.4"))
    );
    let long = by_second(5);
    assert_eq!(long.path, format!("clips/{}", "x".repeat(1024 - 6)));
    let sixth = by_second(6);
    assert_eq!(sixth.path, "clips/6.mp4");
    assert_eq!(sixth.user_id.as_deref(), Some("u".repeat(1024).as_str()));
    assert!(entries
        .iter()
        .all(|e| e.path.len() <= 1024 && e.user_id.as_ref().is_none_or(|u| u.len() <= 1024)));

    // A rerun neither fails on the bad rows nor stores anything twice.
    let (ok, out, err, _) = import();
    assert!(ok, "{out} {err}");
    assert!(out.contains("0 rows read"), "{out}");
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 25);
}

#[cfg(feature = "postgres")]
fn import_django_from_postgres() {
    use diesel::{Connection, RunQueryDsl};
    let db = common::pg::TestDb::create();
    let mut conn = diesel::PgConnection::establish(&db.url).unwrap();
    let mut exec = move |sql: &str| {
        diesel::sql_query(sql).execute(&mut conn).unwrap();
    };
    fill_django(&mut exec, DJANGO_PG_DDL, "+00", 1, 10_000);
    import_and_check(&db.url, || {
        fill_django(&mut exec, DJANGO_PG_DDL, "+00", 10_001, 7)
    });
}

/// Players on other origins, from the command line: `sign --prefix`
/// prints a path-signed link the server opens for every file below the
/// prefix, and `--cors-origin`, `--cache-control` and `--mime` (or their
/// variables) shape the answers.
fn sign_prefix_cors_cache_control_and_mime_on_a_real_server() {
    let fx = Fixture::new();
    let playlist = fx.file("show1/index.m3u8", 300);
    let segment = fx.file("show1/seg0.ts", 5000);
    fx.file("show10/seg0.ts", 100);
    let env = [
        ("STREAM_DEFAULT_PERMISSION_CLASSES", "SignedUrl"),
        ("STREAM_SIGNING_KEY", "k3y"),
        ("STREAM_MIME", "ts=video/x-test-ts"),
    ];
    let db = format!("sqlite://{}", fx.dir.path().join("log.db").display());
    let served = Served::start(
        &[
            "--root",
            fx.root.to_str().unwrap(),
            "--database",
            &db,
            "--cors-origin",
            "https://player.example",
            "--cors-origin",
            "https://other.example",
            "--cache-control",
            "public, max-age=60",
        ],
        &env,
    );
    assert!(served.banner.contains("/media/"), "{}", served.banner);
    let media = format!("{}/media", served.base);
    let (ok, out, err) = run(
        &[
            "sign",
            "--prefix",
            "show1/",
            "show1/index.m3u8",
            "--base",
            &media,
        ],
        &env,
    );
    assert!(ok, "{err}");
    let link = out.trim().to_owned();
    assert!(
        link.starts_with(&format!("{media}/_s/")) && link.ends_with("/show1/index.m3u8"),
        "{link}"
    );
    // Without PATH: the base of the directory, for relative names.
    let (ok, dir, _) = run(&["sign", "--prefix", "show1/", "--base", &media], &env);
    assert!(ok && dir.trim().ends_with("/show1/"), "{dir}");
    for bad in [
        &["sign", "--prefix", "show1"][..],
        &["sign", "--prefix", "show1/", "show10/a.ts"][..],
    ] {
        let (ok, _, err) = run(bad, &env);
        assert!(!ok && err.contains("prefix"), "{bad:?}: {err}");
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let res = client
            .get(&link)
            .header("origin", "https://other.example")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::OK);
        assert_eq!(
            res.headers()["content-type"],
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(res.headers()["cache-control"], "public, max-age=60");
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "https://other.example"
        );
        assert_eq!(res.bytes().await.unwrap().as_ref(), playlist.as_slice());
        let seg = link.replace("/index.m3u8", "/seg0.ts");
        let res = client
            .get(&seg)
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::PARTIAL_CONTENT);
        assert_eq!(res.headers()["content-type"], "video/x-test-ts");
        assert_eq!(res.bytes().await.unwrap().as_ref(), &segment[10..20]);
        let res = client
            .get(link.replace("/show1/index.m3u8", "/show10/seg0.ts"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::FORBIDDEN);
        assert!(res.headers().get("cache-control").is_none());
        assert_eq!(
            res.text().await.unwrap(),
            "signature does not cover this path"
        );
    });
    let (ok, _) = served.stop();
    assert!(ok);
    let store = SqliteStore::open(fx.dir.path().join("log.db")).unwrap();
    let rows = store
        .query(&LogFilter::default(), None, 100)
        .unwrap()
        .entries;
    let mut paths: Vec<(&str, i32)> = rows.iter().map(|r| (r.path.as_str(), r.status)).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            ("show1/index.m3u8", 200),
            ("show1/seg0.ts", 206),
            ("show10/seg0.ts", 403)
        ]
    );
}

/// `prune` on the log at `url`: a dry run counts and deletes nothing, then
/// `STREAM_RETENTION` alone (no flag) deletes exactly the rows older than
/// it and the batch id stored before the cutoff. `exec` runs SQL on the
/// same database (to date a batch id back, as time would).
fn prune_and_check(url: &str, mut exec: impl FnMut(&str)) {
    use chrono::{Duration, Utc};
    use sage_stream::log::{WatchBatch, WatchRecord};
    let store = sage_stream::log::open_store(url).unwrap();
    let row = |i: i64, age: Duration| WatchRecord {
        created_at: Utc::now() - age,
        path: "clip.mp4".into(),
        user_id: None,
        is_authenticated: false,
        ip: Some("192.0.2.1".into()),
        method: "GET".into(),
        status: 206,
        range_header: Some(format!("bytes={i}-").into()),
        bytes_sent: 1,
        duration_ms: 1,
        user_agent: None,
        completed: true,
        range_start: None,
    };
    let old = WatchBatch {
        id: "old".into(),
        records: (0..3).map(|i| row(i, Duration::days(100 + i))).collect(),
    };
    let new = WatchBatch {
        id: "new".into(),
        records: vec![row(10, Duration::days(89)), row(11, Duration::hours(1))],
    };
    assert_eq!(store.insert_batch(&old).unwrap(), 3);
    assert_eq!(store.insert_batch(&new).unwrap(), 2);
    // The old batch was stored long ago too.
    exec("UPDATE watch_log_batches SET stored_at = '2026-01-01 00:00:00' WHERE batch_id = 'old'");

    let (ok, out, err) = run(
        &[
            "prune",
            "--older-than",
            "90d",
            "--dry-run",
            "--database",
            url,
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("would prune 3 rows and 1 batch ids created before"),
        "{out}"
    );
    assert_eq!(store.count(&LogFilter::default()).unwrap(), 5, "dry run");
    assert_eq!(store.last_batch_id("old").unwrap().as_deref(), Some("old"));

    let (ok, out, err) = run(
        &["prune", "--database", url],
        &[("STREAM_RETENTION", "90d")],
    );
    assert!(ok, "{err}");
    assert!(out.contains("pruned 3 rows and 1 batch ids"), "{out}");
    let mut left: Vec<String> = store
        .query(&LogFilter::default(), None, 10)
        .unwrap()
        .entries
        .into_iter()
        .filter_map(|e| e.range_header)
        .collect();
    left.sort();
    assert_eq!(left, ["bytes=10-", "bytes=11-"]);
    assert_eq!(store.last_batch_id("old").unwrap(), None);
    assert_eq!(store.last_batch_id("new").unwrap().as_deref(), Some("new"));

    let (ok, _, err) = run(
        &["prune", "--older-than", "ninety days", "--database", url],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("bad duration"), "{err}");
}

fn prune_sqlite() {
    use diesel::{Connection, RunQueryDsl};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let url = format!("sqlite://{}", path.display());
    let mut conn = None;
    prune_and_check(&url, |sql| {
        let conn = conn.get_or_insert_with(|| {
            diesel::SqliteConnection::establish(&path.to_string_lossy()).unwrap()
        });
        assert_eq!(diesel::sql_query(sql).execute(conn).unwrap(), 1);
    });
}

#[cfg(feature = "postgres")]
fn prune_postgres() {
    use diesel::{Connection, RunQueryDsl};
    let db = common::pg::TestDb::create();
    let mut conn = diesel::PgConnection::establish(&db.url).unwrap();
    prune_and_check(&db.url, |sql| {
        assert_eq!(diesel::sql_query(sql).execute(&mut conn).unwrap(), 1);
    });
}

fn serve_with_retention_prunes_as_it_starts() {
    use chrono::{Duration, Utc};
    use sage_stream::log::{WatchBatch, WatchRecord};
    let fx = Fixture::new();
    fx.file("clip.mp4", 1000);
    let path = fx.dir.path().join("log.db");
    let store = SqliteStore::open(&path).unwrap();
    let rows = [40, 31, 29, 1].map(|days| WatchRecord {
        created_at: Utc::now() - Duration::days(days),
        path: "clip.mp4".into(),
        user_id: None,
        is_authenticated: false,
        ip: None,
        method: "GET".into(),
        status: 200,
        range_header: None,
        bytes_sent: days as u64,
        duration_ms: 1,
        user_agent: None,
        completed: true,
        range_start: None,
    });
    store.insert_batch(&WatchBatch::new(rows.to_vec())).unwrap();
    let db = format!("sqlite://{}", path.display());
    let served = Served::start(
        &["--root", fx.root.to_str().unwrap(), "--database", &db],
        &[("STREAM_RETENTION", "30d")],
    );
    assert!(
        served.banner.contains("rows older than 30d deleted daily"),
        "{}",
        served.banner
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.count(&LogFilter::default()).unwrap() != 2 {
        assert!(std::time::Instant::now() < deadline, "retention never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (ok, rest) = served.stop();
    assert!(ok, "{rest}");
    let mut kept: Vec<i64> = store
        .query(&LogFilter::default(), None, 10)
        .unwrap()
        .entries
        .iter()
        .map(|e| e.bytes_sent)
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, [1, 29]);
}
