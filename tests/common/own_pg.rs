//! A throwaway PostgreSQL server of the test's own (data dir and port), so
//! it can be stopped and started without touching the shared one.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct OwnPostgres {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// The newest installed PostgreSQL's `bin` directory.
pub fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (the
/// server refuses to run as root).
fn pg_tool(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    let exe = bin.join(tool);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args)
        .current_dir("/tmp")
        .output()
        .expect("run a PostgreSQL tool")
}

impl OwnPostgres {
    /// Initialises and starts a server. The test lists
    /// [`Requirement::PostgresServer`](super::harness::Requirement::PostgresServer),
    /// so the harness has seen the binaries (or reported the test ignored).
    pub fn start() -> Self {
        let bin = bin_dir().expect("PostgreSQL server binaries under /usr/lib/postgresql");
        let dir = tempfile::Builder::new()
            .prefix("sage-stream-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let data = dir.path().join("data");
        let data_s = data.to_str().unwrap();
        let out = pg_tool(
            &bin,
            "initdb",
            &["-D", data_s, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let pg = Self { bin, dir, port };
        pg.up();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn up(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = pg_tool(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server at once, as a crash or a pulled plug would.
    fn stop(&self) -> std::process::Output {
        let data = self.dir.path().join("data");
        let data = data.to_str().unwrap();
        pg_tool(
            &self.bin,
            "pg_ctl",
            &["-D", data, "-m", "immediate", "-w", "stop"],
        )
    }

    pub fn down(&self) {
        let out = self.stop();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
