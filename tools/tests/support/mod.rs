//! `rush serve` as a child process, for the tools' integration tests: start it, wait for its
//! `listening on` line, signal it, wait for its exit, keep its log.

#![allow(dead_code)] // Each test file uses its own part of the harness.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const RUSH: &str = env!("CARGO_BIN_EXE_rush");

/// Start-up allocates and touches every engine table (a debug build, tests side by side).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// SHUTDOWN_GRACE is 2 s; an idle server stops at once.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A `rush serve` process, killed if the test ends without stopping it.
pub struct Served {
    child: Child,
    lines: Receiver<String>,
    pub log: Vec<String>,
    /// The temporary data directory the harness gave it (removed on drop).
    data_dir: Option<std::path::PathBuf>,
}

/// A new, empty, uniquely named directory under the system's temporary directory.
pub fn fresh_data_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name =
        format!("rush-tools-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let path = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&path);
    path
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(directory) = &self.data_dir {
            let _ = std::fs::remove_dir_all(directory);
        }
    }
}

impl Served {
    /// Spawns `rush serve ARGS` (with RUSH_IO unset), its stderr read line by line. Unless
    /// ARGS name a data directory or durability, the server gets a fresh temporary data
    /// directory of its own (`rush serve` is durable by default).
    pub fn start<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Served {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|arg| arg.as_ref().to_os_string()).collect();
        let names_storage = args.iter().any(|arg| arg == "--data-dir" || arg == "--durability");
        let data_dir = (!names_storage).then(fresh_data_dir);
        let mut command = Command::new(RUSH);
        command.arg("serve").args(&args);
        // The metrics exporter's default port (7072) would collide between tests running
        // side by side: a port of the system's choosing unless the test names one.
        if !args.iter().any(|arg| arg == "--metrics-listen") {
            command.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        if let Some(directory) = &data_dir {
            command.arg("--data-dir").arg(directory);
        }
        let mut child = command
            .env_remove("RUSH_IO")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rush serve");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Served { child, lines, log: Vec::new(), data_dir }
    }

    /// Waits for `rush: listening on ADDR (public)[, ADDR (admin)]...` and returns the public
    /// and (when there is one) the admin address.
    pub fn listening(&mut self) -> (SocketAddr, Option<SocketAddr>) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    let Some(rest) = line.strip_prefix("rush: listening on ") else { continue };
                    let (public, rest) = rest.split_once(" (public)").expect("public address");
                    let public = public.parse().unwrap_or_else(|_| panic!("address in {line:?}"));
                    let admin = rest
                        .split_once(" (admin)")
                        .map(|(before, _)| before.trim_start_matches(", "))
                        .map(|admin| admin.parse().unwrap_or_else(|_| panic!("admin in {line:?}")));
                    return (public, admin);
                }
                Err(RecvTimeoutError::Timeout) => panic!("no listening line: {:?}", self.log),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("rush serve ended before listening: {:?}", self.log)
                }
            }
        }
    }

    /// The metrics address from the `rush: metrics on http://ADDR/metrics` line (logged
    /// before the `listening on` line: call after [`Served::listening`]).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.log.iter().find_map(|line| {
            let rest = line.strip_prefix("rush: metrics on http://")?;
            rest.strip_suffix("/metrics")?.parse().ok()
        })
    }

    /// Sends `signal` to the process. It is our own child, not yet waited for, so its pid
    /// cannot have been reused.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        kill(pid, signal).unwrap_or_else(|error| panic!("kill {pid} {signal}: {error}"));
    }

    /// Waits for the process to exit, then returns its status and its whole log.
    pub fn wait(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "rush serve did not exit: {:?}", self.log);
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.log.push(line);
        }
        (status, self.log.clone())
    }
}
