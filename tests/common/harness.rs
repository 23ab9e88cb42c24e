//! A `harness = false` test runner (libtest-mimic) for tests that need an
//! outside program or server: when one is missing the test reports as
//! *ignored* with the reason in the runner's own summary, and fails instead
//! when its `SAGE_STREAM_REQUIRE_*` variable is `1` (as `.ci/run` sets).
//!
//! A target using it sets `harness = false` in Cargo.toml and lists its
//! tests in `main` (see docs/testing.md):
//!
//! ```ignore
//! use common::harness::{Requirement, Test};
//!
//! fn main() -> std::process::ExitCode {
//!     common::harness::run(vec![
//!         Test::sync("plain_test", plain_test),
//!         Test::tokio("async_test", async_test),
//!         Test::tokio("needs_ffmpeg", needs_ffmpeg).needs(Requirement::Ffmpeg),
//!     ])
//! }
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// Something outside the crate that a test needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `node` on `PATH` (the e2e driver runs on it).
    Node,
    /// Chromium at `$CHROMIUM`, else `/usr/bin/chromium`.
    Chromium,
    /// `e2e/node_modules/playwright-core` (`cd e2e && npm ci`).
    Playwright,
    /// `ffmpeg` on `PATH`.
    Ffmpeg,
    /// `ffprobe` on `PATH`.
    Ffprobe,
    /// `python3` on `PATH`.
    Python,
    /// The shared PostgreSQL server at [`super::pg::ADMIN_URL`].
    Postgres,
    /// PostgreSQL's server binaries (`initdb`, `pg_ctl`), for a server of
    /// the test's own.
    PostgresServer,
    /// nginx at `$NGINX`, else `nginx` on `PATH`, else `/usr/sbin/nginx`.
    Nginx,
    /// Mounting a small tmpfs (root, or `CAP_SYS_ADMIN`), for a filesystem
    /// that fills up.
    Mount,
    /// The shared Redis at 127.0.0.1:6379 (`redis-server --port 6379 --save ''`).
    Redis,
    /// `redis-server` on `PATH`, for a Redis of the test's own that it
    /// stops and restarts.
    RedisServer,
}

const ALL: [Requirement; 12] = [
    Requirement::Node,
    Requirement::Chromium,
    Requirement::Playwright,
    Requirement::Ffmpeg,
    Requirement::Ffprobe,
    Requirement::Python,
    Requirement::Postgres,
    Requirement::PostgresServer,
    Requirement::Nginx,
    Requirement::Mount,
    Requirement::Redis,
    Requirement::RedisServer,
];

impl Requirement {
    /// The short name shown in `ignored (needs NAME: …)`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Chromium => "chromium",
            Self::Playwright => "playwright-core",
            Self::Ffmpeg => "ffmpeg",
            Self::Ffprobe => "ffprobe",
            Self::Python => "python3",
            Self::Postgres => "postgresql",
            Self::PostgresServer => "postgresql server binaries",
            Self::Nginx => "nginx",
            Self::Mount => "a tmpfs mount",
            Self::Redis => "redis at 127.0.0.1:6379",
            Self::RedisServer => "redis-server",
        }
    }

    /// The variable that, set to `1`, turns a missing requirement into a
    /// failure.
    pub fn require_var(self) -> &'static str {
        match self {
            Self::Node | Self::Chromium | Self::Playwright | Self::Ffmpeg | Self::Ffprobe => {
                "SAGE_STREAM_REQUIRE_BROWSER"
            }
            Self::Python => "SAGE_STREAM_REQUIRE_PYTHON",
            Self::Postgres | Self::PostgresServer => "SAGE_STREAM_REQUIRE_POSTGRES",
            Self::Nginx => "SAGE_STREAM_REQUIRE_NGINX",
            Self::Mount => "SAGE_STREAM_REQUIRE_MOUNT",
            Self::Redis | Self::RedisServer => "SAGE_STREAM_REQUIRE_REDIS",
        }
    }

    /// Whether the requirement's variable is `1`.
    pub fn required(self) -> bool {
        std::env::var(self.require_var()).is_ok_and(|v| v == "1")
    }

    /// Whether the requirement is met, else why not. Probed once per test
    /// binary, on first use.
    pub fn probe(self) -> Result<(), String> {
        static PROBED: [OnceLock<Result<(), String>>; ALL.len()] =
            [const { OnceLock::new() }; ALL.len()];
        let slot = ALL.iter().position(|r| *r == self).unwrap_or(0);
        PROBED[slot].get_or_init(|| self.check()).clone()
    }

    fn check(self) -> Result<(), String> {
        match self {
            Self::Node => runs("node", "--version", "apt-get install nodejs npm"),
            Self::Chromium => {
                let path = chromium();
                if path.exists() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} not found (apt-get install chromium, or set CHROMIUM)",
                        path.display()
                    ))
                }
            }
            Self::Playwright => {
                let dir =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/node_modules/playwright-core");
                if dir.exists() {
                    Ok(())
                } else {
                    Err("e2e/node_modules is missing (cd e2e && npm ci)".into())
                }
            }
            Self::Ffmpeg => runs("ffmpeg", "-version", "apt-get install ffmpeg"),
            Self::Ffprobe => runs("ffprobe", "-version", "apt-get install ffmpeg"),
            Self::Python => runs("python3", "--version", "apt-get install python3"),
            Self::Postgres => postgres_reachable(),
            Self::PostgresServer => postgres_server(),
            Self::Nginx => runs(nginx(), "-v", "apt-get install nginx, or set NGINX"),
            Self::Mount => TinyFs::mount(64 * 1024).map(drop),
            Self::Redis => redis_reachable(),
            Self::RedisServer => runs("redis-server", "--version", "apt-get install redis-server"),
        }
    }
}

/// Whether something at 127.0.0.1:6379 answers `PING` with `+PONG`.
fn redis_reachable() -> Result<(), String> {
    use std::io::{Read, Write};
    let fail = |e: std::io::Error| {
        format!("127.0.0.1:6379: {e} (redis-server --port 6379 --save '' --daemonize yes)")
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 6379));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
        .map_err(fail)?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .map_err(fail)?;
    stream.write_all(b"PING\r\n").map_err(fail)?;
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).map_err(fail)?;
    if &answer == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(format!(
            "127.0.0.1:6379 answered {:?}, not +PONG",
            String::from_utf8_lossy(&answer)
        ))
    }
}

/// Chromium's path: `$CHROMIUM`, else `/usr/bin/chromium`.
pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// nginx's path: `$NGINX`, else `nginx` on `PATH`, else `/usr/sbin/nginx`
/// (Debian's, which is not on a non-root `PATH`).
pub fn nginx() -> PathBuf {
    if let Some(path) = std::env::var_os("NGINX") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

/// Whether `program arg` starts and exits 0.
fn runs(program: impl AsRef<std::ffi::OsStr>, arg: &str, install: &str) -> Result<(), String> {
    let program = program.as_ref();
    match Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "`{} {arg}` exited with {status}",
            program.to_string_lossy()
        )),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let program = program.to_string_lossy();
            if program.contains('/') {
                Err(format!("{program} not found ({install})"))
            } else {
                Err(format!("not found on PATH ({install})"))
            }
        }
        Err(err) => Err(format!(
            "{} cannot be run: {err} ({install})",
            program.to_string_lossy()
        )),
    }
}

#[cfg(feature = "postgres")]
fn postgres_reachable() -> Result<(), String> {
    use diesel::Connection;
    diesel::PgConnection::establish(super::pg::ADMIN_URL)
        .map(drop)
        .map_err(|err| format!("unreachable at {}: {err}", super::pg::ADMIN_URL))
}

#[cfg(not(feature = "postgres"))]
fn postgres_reachable() -> Result<(), String> {
    Err("built without the `postgres` feature".into())
}

#[cfg(feature = "postgres")]
fn postgres_server() -> Result<(), String> {
    super::own_pg::bin_dir().map(drop).ok_or_else(|| {
        "no pg_ctl under /usr/lib/postgresql/*/bin (apt-get install postgresql)".into()
    })
}

#[cfg(not(feature = "postgres"))]
fn postgres_server() -> Result<(), String> {
    Err("built without the `postgres` feature".into())
}

/// A tmpfs of `bytes` mounted on a temporary directory, unmounted on drop:
/// a filesystem that really fills up (ENOSPC) without touching the disk.
pub struct TinyFs {
    dir: tempfile::TempDir,
}

impl TinyFs {
    /// Mounts it, or says why it cannot (not root, no `CAP_SYS_ADMIN`, a
    /// container that forbids mounts).
    pub fn mount(bytes: u64) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes}"))
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Self { dir })
        } else {
            Err(format!(
                "`mount -t tmpfs` failed (needs root or CAP_SYS_ADMIN): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        // Lazily: a writer a failed test left behind may still hold a file.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// One test: a name (what `cargo test FILTER` matches), what it needs and
/// its body, which passes unless it panics.
pub struct Test {
    name: String,
    needs: Vec<Requirement>,
    body: Box<dyn FnOnce() + Send>,
}

impl Test {
    /// A plain test, like `#[test]`.
    pub fn sync(name: impl Into<String>, body: impl FnOnce() + Send + 'static) -> Self {
        Self {
            name: name.into(),
            needs: Vec::new(),
            body: Box::new(body),
        }
    }

    /// An async test on a current-thread runtime of its own, like
    /// `#[tokio::test]`.
    pub fn tokio<F, Fut>(name: impl Into<String>, body: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        Self::sync(name, move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(body())
        })
    }

    /// An async test on a multi-thread runtime of its own, like
    /// `#[tokio::test(flavor = "multi_thread", worker_threads = N)]`.
    pub fn tokio_multi_thread<F, Fut>(name: impl Into<String>, workers: usize, body: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        Self::sync(name, move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .unwrap()
                .block_on(body())
        })
    }

    /// Adds something the test cannot run without.
    pub fn needs(mut self, requirement: Requirement) -> Self {
        self.needs.push(requirement);
        self
    }

    fn into_trial(self) -> Trial {
        let Self { name, needs, body } = self;
        Trial::ignorable_test(name, move || {
            for need in needs {
                if let Err(why) = need.probe() {
                    // One line in the summary, whatever the probe's error held.
                    let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
                    let reason = format!("needs {}: {why}", need.name());
                    if need.required() {
                        return Err(Failed::from(format!(
                            "{}=1 but it {reason}",
                            need.require_var()
                        )));
                    }
                    return Ok(Completion::ignored_with(reason));
                }
            }
            body();
            Ok(Completion::Completed)
        })
    }
}

/// Runs `tests` as libtest does (same arguments: a filter, `--exact`,
/// `--skip`, `--test-threads`, `--list`…), plus one check that the target
/// holds no `#[test]` function, which a `harness = false` target would
/// silently never run.
pub fn run(tests: Vec<Test>) -> ExitCode {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = tests.into_iter().map(Test::into_trial).collect();
    trials.push(Trial::test(
        "harness::no_test_attribute_is_left_unrun",
        no_test_attribute_is_left_unrun,
    ));
    libtest_mimic::run(&args, trials).exit_code()
}

/// Runs the tests of several modules of one target, each named
/// `module::test` (so `cargo test --test app players::` picks a module).
pub fn run_groups(groups: Vec<(&str, Vec<Test>)>) -> ExitCode {
    let tests = groups
        .into_iter()
        .flat_map(|(module, tests)| {
            tests.into_iter().map(move |mut test| {
                test.name = format!("{module}::{}", test.name);
                test
            })
        })
        .collect();
    run(tests)
}

/// A `#[test]` in a `harness = false` target would never run: every source
/// file of the target (`tests/NAME.rs`, or each file of `tests/NAME/`) is
/// checked for one.
fn no_test_attribute_is_left_unrun() -> Result<(), Failed> {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let name = env!("CARGO_CRATE_NAME");
    let dir = tests.join(name);
    let sources: Vec<PathBuf> = if dir.is_dir() {
        std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|x| x == "rs"))
            .collect()
    } else {
        vec![tests.join(format!("{name}.rs"))]
    };
    let mut stray = Vec::new();
    for source in &sources {
        let text =
            std::fs::read_to_string(source).map_err(|e| format!("{}: {e}", source.display()))?;
        stray.extend(
            text.lines()
                .enumerate()
                .filter(|(_, line)| {
                    let line = line.trim_start();
                    line.starts_with("#[test]") || line.starts_with("#[tokio::test")
                })
                .map(|(i, _)| format!("{}:{}", source.display(), i + 1)),
        );
    }
    if stray.is_empty() {
        Ok(())
    } else {
        Err(format!("list these in tests() instead: {}", stray.join(", ")).into())
    }
}
