//! Real `redis-server` processes for tests and benches: one server, or a 3-master Redis Cluster,
//! on loopback ports nobody else uses, with a throw-away data folder each. Everything stops when
//! the value is dropped.
//!
//! Needs Debian's `redis-server` and `redis-tools` (`scripts/test` installs them).

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first `PING`, or a cluster to agree.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A `redis-server` on `127.0.0.1:<port>`, its data in a folder removed on drop.
pub struct RedisServer {
    port: u16,
    process: Option<Child>,
    extra_config: Vec<String>,
    folder: tempfile::TempDir,
    /// TLS only (`rediss://`): the PEM file of the CA that signed its certificate.
    tls_ca: Option<std::path::PathBuf>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis.conf` lines (e.g. `"maxmemory-policy noeviction"`).
    pub fn start_with(extra_config: &[&str]) -> Self {
        let folder = tempfile::tempdir().expect("a temporary folder for redis");
        let mut server = RedisServer {
            port: free_port(false),
            process: None,
            extra_config: extra_config.iter().map(|line| line.to_string()).collect(),
            folder,
            tls_ca: None,
        };
        server.resume();
        server
    }

    /// Starts a server that speaks TLS only, with the certificate and key in these PEM files, and
    /// `ca` (a PEM file) as what clients verify it with. Clients present no certificate.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Self {
        let folder = tempfile::tempdir().expect("a temporary folder for redis");
        let port = free_port(false);
        let mut server = RedisServer {
            port,
            process: None,
            extra_config: vec![
                "port 0".to_owned(),
                format!("tls-port {port}"),
                format!("tls-cert-file {}", cert.display()),
                format!("tls-key-file {}", key.display()),
                format!("tls-ca-cert-file {}", ca.display()),
                "tls-auth-clients no".to_owned(),
            ],
            folder,
            tls_ca: Some(ca.to_owned()),
        };
        server.resume();
        server
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data folder (where `redis.conf`, the log and any dump are).
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// Stops the server (SIGKILL: an outage, not a clean shutdown). [`Self::resume`] starts it
    /// again on the same port.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts the server (again) on its port, with an empty data set, and waits until it answers.
    pub fn resume(&mut self) {
        assert!(
            self.process.is_none(),
            "the redis server is running already"
        );
        let config = self.folder.path().join("redis.conf");
        let mut lines = vec![
            format!("port {}", self.port),
            "bind 127.0.0.1".to_owned(),
            format!("dir {}", self.folder.path().display()),
            "save \"\"".to_owned(),
            "appendonly no".to_owned(),
            "protected-mode yes".to_owned(),
            format!("logfile {}", self.folder.path().join("redis.log").display()),
        ];
        lines.extend(self.extra_config.iter().cloned());
        std::fs::write(&config, lines.join("\n") + "\n").expect("write redis.conf");
        let process = Command::new("redis-server")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (scripts/test installs Debian's redis-server)");
        self.process = Some(process);
        let deadline = Instant::now() + START_TIMEOUT;
        // A server with a password answers NOAUTH: it is up all the same.
        let answers = |server: &Self| {
            let ping = server.cli(&["PING"]);
            ping.stdout.starts_with(b"PONG")
                || [&ping.stdout, &ping.stderr]
                    .iter()
                    .any(|out| String::from_utf8_lossy(out).contains("NOAUTH"))
        };
        while !answers(self) {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer; its log: {}",
                self.port,
                std::fs::read_to_string(self.folder.path().join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `redis-cli` against this server (raw output, no cluster redirects).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(ca) = &self.tls_ca {
            command.arg("--tls").arg("--cacert").arg(ca);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli (scripts/test installs Debian's redis-tools)")
    }

    /// `redis-cli` output as text, trimmed.
    pub fn cli_text(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.cli(args).stdout)
            .trim()
            .to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three masters (no replicas) agreeing on one cluster, each on a free port whose cluster bus
/// port (`port + 10000`) is free too.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them with `redis-cli --cluster create` and
    /// waits until every node reports `cluster_state:ok`.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let folder = tempfile::tempdir().expect("a temporary folder for redis");
                let mut node = RedisServer {
                    tls_ca: None,
                    port: free_port(true),
                    process: None,
                    extra_config: vec![
                        "cluster-enabled yes".to_owned(),
                        format!(
                            "cluster-config-file {}",
                            folder.path().join("nodes.conf").display()
                        ),
                        "cluster-node-timeout 5000".to_owned(),
                    ],
                    folder,
                };
                node.resume();
                node
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let deadline = Instant::now() + START_TIMEOUT;
        for node in &nodes {
            while !node
                .cli_text(&["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
            {
                assert!(Instant::now() < deadline, "the cluster did not form");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

/// A loopback port nothing listens on (and, for a cluster node, whose bus port is free too).
fn free_port(with_bus: bool) -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("bind a loopback port")
            .port();
        if !with_bus {
            return port;
        }
        if let Some(bus) = port.checked_add(10000)
            && TcpListener::bind((Ipv4Addr::LOCALHOST, bus)).is_ok()
        {
            return port;
        }
    }
    panic!("no free loopback port for redis")
}
