//! Runs the real `portcullis` binary as a child process, for what only a process shows: signals,
//! exit codes, resident memory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The binary built for this test run.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

/// A running `portcullis run`; killed when dropped.
pub struct RunningProxy {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin listener, when the config has one.
    pub admin: Option<SocketAddr>,
}

impl RunningProxy {
    /// Starts `portcullis run --config <config>` and waits for its "listening on" line. Its log
    /// goes to `<config dir>/portcullis.log`, filtered by the config's `[log] level` (a
    /// `RUST_LOG` of the test run is not passed on).
    pub fn start(config: &Path) -> Self {
        Self::start_with_env(config, &[])
    }

    /// [`RunningProxy::start`] with these environment variables set. The process starts with
    /// umask 022, the usual default, whatever the test run's is.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        Self::launch(config, env, Launch::Plain)
    }

    /// Starts it as systemd socket activation does: `socket` (kept open by the test, as systemd
    /// keeps it across restarts) is its fd 3, with `LISTEN_FDS=1` and `LISTEN_PID` set.
    pub fn start_activated(config: &Path, socket: &std::net::TcpListener) -> Self {
        Self::launch(config, &[], Launch::Activated(socket))
    }

    /// Starts `portcullis run --takeover` beside a running one on `addr`; returns once it
    /// listens there (it serves once the running one let go of the session store).
    pub fn start_takeover(config: &Path, addr: SocketAddr) -> Self {
        Self::launch(config, &[], Launch::Takeover(addr))
    }

    fn launch(config: &Path, env: &[(&str, &str)], how: Launch<'_>) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.with_file_name("portcullis.log"))
            .unwrap();
        let script = match how {
            Launch::Activated(_) => {
                "umask 022; fd=$SOCKET_FD; unset SOCKET_FD; export LISTEN_FDS=1 LISTEN_PID=$$; exec \"$@\" 3<&\"$fd\""
            }
            _ => "umask 022 && exec \"$@\"",
        };
        // bash: dash's redirections take one-digit descriptors only.
        let mut command = Command::new("bash");
        command
            .args(["-c", script, "sh"])
            .arg(env!("CARGO_BIN_EXE_portcullis"))
            .args(["run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log);
        match how {
            Launch::Activated(socket) => {
                use std::os::fd::AsRawFd;
                command.env("SOCKET_FD", socket.as_raw_fd().to_string());
            }
            Launch::Takeover(_) => {
                command.arg("--takeover");
            }
            Launch::Plain => {}
        }
        let mut child = match how {
            // Inherited by the child: not closed when it execs, for the instant of the spawn
            // only (every other child of this test process would inherit it too).
            Launch::Activated(socket) => {
                use nix::fcntl::{FcntlArg, FdFlag, fcntl};
                fcntl(socket, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
                let child = command.spawn();
                fcntl(socket, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
                child
            }
            _ => command.spawn(),
        }
        .expect("start the portcullis binary");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut admin = None;
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!(
                        "portcullis exited before listening; log: {}",
                        read_log(config)
                    )
                })
                .unwrap();
            if let Some(url) = line.strip_prefix("portcullis: admin on http://") {
                admin = Some(url.parse().unwrap());
            }
            if let Some(url) = line.strip_prefix("portcullis: listening on http://") {
                break url.parse().unwrap();
            }
            if let (Launch::Takeover(addr), true) =
                (&how, line.starts_with("portcullis: listening beside"))
            {
                break *addr;
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        RunningProxy { child, addr, admin }
    }

    /// Peak resident memory of the process so far, in bytes (Linux `VmHWM`).
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib * 1024
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Waits for the process to exit (after [`RunningProxy::terminate`]), off the async runtime.
    pub async fn exited(mut self) -> std::process::ExitStatus {
        tokio::task::spawn_blocking(move || {
            let status = self.child.wait().unwrap();
            drop(self);
            status
        })
        .await
        .unwrap()
    }

    /// Sends a signal (`"-HUP"`) through kill(1): the crate forbids unsafe code, libc::kill
    /// included.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How [`RunningProxy::launch`] starts the binary.
#[derive(Clone, Copy)]
enum Launch<'a> {
    Plain,
    /// With this listening socket as systemd passes it.
    Activated(&'a std::net::TcpListener),
    /// `--takeover` beside a process on this address.
    Takeover(SocketAddr),
}

/// A blocking `GET path` to `addr`; returns the response body.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// What the process started with `config` has logged so far.
pub fn read_log(config: &Path) -> String {
    std::fs::read_to_string(config.with_file_name("portcullis.log")).unwrap_or_default()
}
