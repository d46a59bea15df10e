//! Shared test support: running the `bridgewarden` binary, paths into the repository.

use std::io::Write;

pub mod irc;
pub mod matrix;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Run {
    /// The exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `bridgewarden ARGS` in the repository root, feeding `stdin` bytes.
pub fn bridgewarden(args: &[&str], stdin: &[u8]) -> Run {
    run_in(&repo(), args, stdin)
}

pub fn run_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bridgewarden"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bridgewarden");
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.to_vec();
    // Feed stdin from a thread so a large input cannot deadlock against a full stdout pipe.
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().expect("wait for bridgewarden");
    feeder.join().expect("stdin feeder");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A server process a test started: stopped (by its PID, never by name) when dropped, which
/// also happens when the test panics.
pub struct Server {
    pub name: &'static str,
    child: Option<std::process::Child>,
    /// Where its files and logs are.
    pub dir: std::path::PathBuf,
    /// Signal to stop it with (SIGTERM lets Atheme write its database).
    pub stop_signal: i32,
}

impl Server {
    /// Starts `program args` in `dir`, output to `dir/NAME.log`.
    pub fn start(name: &'static str, program: &str, args: &[&str], dir: &Path) -> Server {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let child = std::process::Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {program}: {e} (run contrib/test.sh to install the test servers)"
                )
            });
        Server {
            name,
            child: Some(child),
            dir: dir.to_path_buf(),
            stop_signal: libc_sigkill(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Kills it with SIGKILL and waits.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops it with its stop signal and waits (up to 5 s, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.stop_signal != libc_sigkill() {
                let _ = std::process::Command::new("kill")
                    .args([format!("-{}", self.stop_signal), c.id().to_string()])
                    .status();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while std::time::Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn libc_sigkill() -> i32 {
    9
}

/// A free TCP port on 127.0.0.1 (bound and released; tests use it right away).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// Fills `{name}` placeholders of a template.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}
