//! A `sage-stream serve` child process, for the tests that run the binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_sage-stream");

/// A running `sage-stream serve` and the base URL its banner printed.
pub struct Served {
    pub child: std::process::Child,
    pub base: String,
    pub banner: String,
    pub stdout: BufReader<std::process::ChildStdout>,
}

impl Served {
    /// Starts `serve` with `args` and `env`, waits for its banner.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(BIN);
        command.env("RUST_LOG", "warn").stderr(Stdio::null());
        Self::spawn(command, args, env)
    }

    /// As [`Served::start`], with the log at its default level written to
    /// the file `stderr`.
    pub fn start_logging(args: &[&str], env: &[(&str, &str)], stderr: &std::path::Path) -> Self {
        let mut command = Command::new(BIN);
        command
            .env_remove("RUST_LOG")
            .stderr(std::fs::File::create(stderr).unwrap());
        Self::spawn(command, args, env)
    }

    /// The URL the banner printed after `label:` (`"metrics"`, …).
    pub fn banner_url(&self, label: &str) -> Option<String> {
        self.banner.lines().find_map(|line| {
            let url = line.trim().strip_prefix(label)?.strip_prefix(':')?;
            Some(url.trim().to_owned())
        })
    }

    fn spawn(mut command: Command, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = command
            .arg("serve")
            .args(args)
            .args(["--bind", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        let mut base = None;
        // The banner ends with the watch-log line.
        while !banner.contains("watch log") {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!("serve exited early: {banner}");
            }
            if let Some(url) = line.trim().strip_prefix("player:") {
                base = Some(url.trim().trim_end_matches('/').to_owned());
            }
            banner.push_str(&line);
        }
        let base = base.unwrap_or_else(|| panic!("no player URL in {banner}"));
        Self {
            child,
            base,
            banner,
            stdout,
        }
    }

    /// SIGTERM, then what it printed until it exited, and whether it
    /// exited successfully.
    pub fn stop(mut self) -> (bool, String) {
        let termed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !termed {
            // No `kill` to run: SIGKILL rather than wait for ever (and the
            // exit status says it was not a clean stop).
            let _ = self.child.kill();
        }
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stdout, &mut rest);
        let ok = self.child.wait().is_ok_and(|s| s.success());
        (ok, rest)
    }
}
