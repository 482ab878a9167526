//! The `portcullis` command line: `run` serves, `check` validates a config and exits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::app::{App, Listeners, SocketSource, StartOptions};
use portcullis::config;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Identity-aware reverse proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic with a config file.
    Run {
        /// The config file.
        #[arg(long, short, default_value = "portcullis.toml")]
        config: PathBuf,
        /// Take over from a Portcullis running with this config: listen beside it
        /// (`SO_REUSEPORT`), wait for its session store while it drains (send it SIGTERM), then
        /// serve. See docs/operations.md, "Upgrades and restarts".
        #[arg(long)]
        takeover: bool,
        /// Allow a `[dev_idp]` beside an `[oidc] discovery` of another provider (development).
        #[arg(long)]
        dev: bool,
    },
    /// Validate a config file: prints `ok`, or every problem (exit 1). With `[oidc]`, the
    /// provider's discovery document is fetched and checked too, unless `--offline`.
    Check {
        /// The config file.
        #[arg(long, short, default_value = "portcullis.toml")]
        config: PathBuf,
        /// Do not contact the identity provider.
        #[arg(long)]
        offline: bool,
        /// Allow a `[dev_idp]` beside an `[oidc] discovery` of another provider (development).
        #[arg(long)]
        dev: bool,
    },
    /// The quickstart: a development identity provider, a demo backend and the proxy serving
    /// examples/quickstart/portcullis.toml. Development only.
    Demo {
        /// The proxy's address (loopback).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where sessions are kept (default: a temporary folder, deleted at exit).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The quickstart config.
        #[arg(long, default_value = "examples/quickstart/portcullis.toml")]
        config: PathBuf,
    },
    /// Work with policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run one decision of a policy and print it as JSON. Exit 0; 1 when it differs from
    /// `--expect`; 2 when the policy fails (compile, runtime, limit) or an input is bad.
    Test(PolicyTest),
}

/// The arguments of `portcullis policy test`.
#[derive(clap::Args)]
struct PolicyTest {
    /// The policy file (`.rhai` or `.wasm`); or `--route` with `--config`.
    file: Option<PathBuf>,
    /// ID-token claims: JSON ('{"sub": "alice", "groups": ["admins"]}') or @file.json.
    #[arg(long)]
    claims: String,
    /// The request: JSON with method, path, query, host, headers, client_ip, route (all
    /// optional), or @file.json.
    #[arg(long)]
    request: Option<String>,
    /// `key=value` for the policy's config; JSON values are parsed (`groups=["a","b"]`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The config file whose `--route` is tested (as `run` and `check` take it).
    #[arg(long = "config", value_name = "FILE")]
    config: Vec<String>,
    /// Test this route of `--config`: its policy, `policy_config`, identity headers and
    /// limits, as the proxy decides for it.
    #[arg(long)]
    route: Option<String>,
    /// The decision you expect.
    #[arg(long, value_parser = ["allow", "deny", "login"])]
    expect: Option<String>,
    /// How long the decision may take (`policy_limits.timeout`), e.g. `500ms`; default as the
    /// proxy's (20ms). Raise it on a busy machine such as a shared CI runner.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    timeout: Option<std::time::Duration>,
}

fn main() -> ExitCode {
    // Everything this process writes (the session store, its secret, the Wasm cache) is its own:
    // files 0600 and folders 0700, whatever umask it was started with.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    match Cli::parse().command {
        Command::Check {
            config,
            offline,
            dev,
        } => check(&config, offline, dev),
        Command::Policy {
            command: PolicyCommand::Test(args),
        } => policy_test(args),
        Command::Demo {
            listen,
            data_dir,
            config,
        } => {
            let options = portcullis::demo::DemoOptions {
                config,
                listen,
                data_dir,
            };
            let ran = runtime()
                .map_err(|err| err.to_string())
                .and_then(|runtime| {
                    runtime
                        .block_on(portcullis::demo::run(options))
                        .map_err(|err| err.to_string())
                });
            match ran {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("portcullis demo: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            config,
            takeover,
            dev,
        } => match run(&config, takeover, dev) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("portcullis: {err}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The runtime `run` and `demo` start on: the admin listener, reloads, discovery, the session
/// sweeper and the development provider. Client connections are served by the workers, each on
/// a runtime of its own (`server.workers`), so this one needs few threads.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("portcullis-main")
        .enable_all()
        .build()
}

/// `portcullis run`: loads the config, binds its listeners, and serves it until SIGTERM/SIGINT,
/// reloading when the config or a file it names changes.
fn run(
    config_path: &std::path::Path,
    takeover: bool,
    dev: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let baseline = portcullis::reload::watch::Baseline::take(config_path);
    let config = config::load(config_path)?;
    if let (Some(problem), false) = (config.dev_idp_beside_a_real_provider(), dev) {
        return Err(format!("{}: {problem}", config_path.display()).into());
    }
    let _log = portcullis::logging::init(&config.log.level);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let inherited = inherited_sockets()?;
    let (source, options) = if takeover {
        let options = StartOptions {
            // The process being replaced lets go of the store when its drain ends.
            store_wait: config.server.drain_timeout + TAKEOVER_MARGIN,
            dev,
        };
        (SocketSource::JoinRunning, options)
    } else {
        let options = StartOptions {
            dev,
            ..StartOptions::default()
        };
        (SocketSource::Bind, options)
    };
    let listeners = Listeners::bind_with(&config, inherited, source)?;
    if takeover {
        println!("portcullis: listening beside the running process; send it SIGTERM to hand over");
    }
    runtime()?.block_on(async {
        let app = App::start_with(config, listeners, options).await?;
        app.watch(config_path.to_owned(), baseline);
        let scheme = if app.uses_tls() { "https" } else { "http" };
        // On stdout, for people and for tests that start the binary on port 0 (which read up to
        // the first "listening" line, so the admin line comes first).
        if let Some(addr) = app.admin_addr() {
            println!("portcullis: admin on http://{addr}");
        }
        for addr in app.public_addrs() {
            println!("portcullis: listening on {scheme}://{addr}");
        }
        app.serve(portcullis::server::shutdown_signal()).await;
        Ok(())
    })
}

/// How much longer than the replaced process's drain a takeover waits for the session store.
const TAKEOVER_MARGIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Listening sockets passed by a service manager (systemd socket activation: `LISTEN_FDS`,
/// checked against `LISTEN_PID`).
fn inherited_sockets() -> Result<Vec<std::net::TcpListener>, Box<dyn std::error::Error>> {
    let mut passed = listenfd::ListenFd::from_env();
    (0..passed.len())
        .map(|index| {
            passed
                .take_tcp_listener(index)
                .map_err(|err| format!("socket {index} passed by the service manager: {err}"))?
                .ok_or_else(|| {
                    format!("socket {index} passed by the service manager is not a TCP listener")
                        .into()
                })
        })
        .collect()
}

/// `portcullis check`: the config, then (unless `offline`) what the provider's discovery says.
/// A provider that answers with something that does not fit the config (another issuer, no
/// discovery document) is a problem; one that cannot be reached is reported and not held
/// against the config (it may be down, or not reachable from here).
fn check(path: &std::path::Path, offline: bool, dev: bool) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(problem), false) = (loaded.dev_idp_beside_a_real_provider(), dev) {
        eprintln!(
            "config file {} has 1 problem:\n  dev_idp: {problem}",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    for warning in loaded.warnings() {
        eprintln!("warning: {warning}");
    }
    if let (Some(oidc), false) = (&loaded.oidc, offline) {
        let discovered = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| portcullis::oidc::DiscoveryError::Unavailable(err.to_string()))
            .and_then(|runtime| {
                runtime.block_on(portcullis::oidc::Oidc::new(oidc.clone()).discover_now())
            });
        match discovered {
            Ok(()) => {}
            Err(err @ portcullis::oidc::DiscoveryError::Misconfigured(_)) => {
                eprintln!(
                    "config file {} has 1 problem:\n  oidc.discovery: {err}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
            Err(err) => eprintln!(
                "note: the identity provider was not checked ({err}); `--offline` skips this step"
            ),
        }
    }
    if !offline && let Err(err) = shared_store_answers(&loaded.session) {
        if refused_by_redis(&err) {
            let key = match &loaded.session.store {
                config::StoreKind::Redis(redis)
                    if matches!(redis.target, config::RedisTarget::Cluster(_)) =>
                {
                    "session.redis_nodes"
                }
                _ => "session.redis_url",
            };
            eprintln!(
                "config file {} has 1 problem:\n  {key}: Redis refused what sessions need ({err}). Check the URL's password (or ACL user) and database; the user needs GET, SET, DEL, GETDEL, EVALSHA and SCRIPT LOAD on the keys starting with `key_prefix` (and SELECT with a database number, CLUSTER SLOTS for a cluster), on Redis 6.2 or later; a single server's URL must name a master, not a replica or a cluster node",
                path.display()
            );
            return ExitCode::FAILURE;
        }
        eprintln!(
            "note: the session store could not be reached ({err}); `--offline` skips this step"
        );
    }
    println!("ok");
    ExitCode::SUCCESS
}

/// Whether a shared session store (Redis) answers, as `run` will reach it. A local store (sled)
/// is not opened: a running instance holds it.
fn shared_store_answers(session: &config::SessionConfig) -> Result<(), String> {
    if !session.store.is_shared() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| err.to_string())?;
    runtime.block_on(async {
        let sessions = portcullis::session::SessionManager::open(
            session,
            std::sync::Arc::new(portcullis::session::SystemClock),
        )
        .map_err(|err| err.to_string())?;
        sessions.probe().await.map_err(|err| err.to_string())
    })
}

/// Whether Redis answered and refused (a password, a permission, a command it lacks, not a
/// cluster) rather than not answering.
fn refused_by_redis(err: &str) -> bool {
    [
        "NOAUTH",
        "WRONGPASS",
        "NOPERM",
        "NoPerm",
        "AuthenticationFailed",
        "unknown command",
        "cluster support disabled",
        "out of range",
        "SELECT is not allowed",
        "refused to switch database",
        "no permissions",
        "can't run this command",
        "MOVED",
        "Moved",
        "READONLY",
        "ReadOnly",
        "OOM",
        "certificate",
        "InvalidClientConfig",
        "not a session record",
    ]
    .iter()
    .any(|refusal| err.contains(refusal))
}

/// The decision of route `name` of the config file `--config`, with its policy, `policy_config`,
/// identity headers and limits (`--timeout` replacing `policy_limits.timeout`).
fn route_decision(
    args: &PolicyTest,
    name: &str,
    input: &portcullis::policy::tester::TestInput,
) -> Result<portcullis::policy::Decision, portcullis::policy::tester::TestError> {
    use portcullis::policy::tester::{self, TestError};
    let [file] = args.config.as_slice() else {
        return Err(TestError::Input(
            "--route needs the config file: --config portcullis.toml".to_owned(),
        ));
    };
    if !args.set.is_empty() {
        return Err(TestError::Input(
            "--set does not apply to --route: the route's policy_config is used".to_owned(),
        ));
    }
    let path = std::path::Path::new(file);
    let text = std::fs::read_to_string(path)
        .map_err(|err| TestError::Input(format!("cannot read {file}: {err}")))?;
    let text = match args.timeout {
        None => text,
        Some(timeout) => with_policy_timeout(&text, timeout)
            .map_err(|err| TestError::Input(format!("{file}: {err}")))?,
    };
    let loaded = config::load_text(&text, path).map_err(|err| TestError::Input(err.to_string()))?;
    let Some(route) = loaded.routes.iter().find(|route| route.name == name) else {
        let names: Vec<&str> = loaded
            .routes
            .iter()
            .map(|route| route.name.as_str())
            .collect();
        return Err(TestError::Input(format!(
            "{file} has no route {name:?}; its routes: {}",
            names.join(", ")
        )));
    };
    let Some(policy) = &route.policy else {
        return Err(TestError::Input(format!(
            "route {name:?} of {file} has no policy"
        )));
    };
    tester::decide(&policy.policy, &policy.rules, input)
}

/// The config text with `policy_limits.timeout` set to `timeout`.
fn with_policy_timeout(text: &str, timeout: std::time::Duration) -> Result<String, String> {
    let mut table: toml::Table = text.parse().map_err(|err| format!("not TOML: {err}"))?;
    let limits = table
        .entry("policy_limits")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(limits) = limits.as_table_mut() else {
        return Err("policy_limits is not a table".to_owned());
    };
    limits.insert(
        "timeout".to_owned(),
        toml::Value::String(format!("{}ms", timeout.as_millis())),
    );
    toml::to_string(&table).map_err(|err| err.to_string())
}

/// `--timeout`: a duration like `500ms` or `2s`, longer than zero.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!("not a duration like \"500ms\" or \"2s\": {text:?}")),
    }
}

/// `portcullis policy test`: a policy file with `--set` values, or a route of a config file.
fn policy_test(args: PolicyTest) -> ExitCode {
    use portcullis::policy::tester::{self, TestError, TestInput};
    // print() and debug() in the policy go to stderr.
    let _log = portcullis::logging::init("info");
    let decided = match (&args.route, &args.file) {
        (Some(route), None) => {
            match TestInput::read(&args.claims, args.request.as_deref(), Some(route)) {
                Ok(input) => route_decision(&args, route, &input),
                Err(err) => Err(err),
            }
        }
        (Some(_), Some(_)) => Err(TestError::Input(
            "give either a policy FILE or --route (with --config), not both".to_owned(),
        )),
        (None, Some(file)) => {
            // Before --set and --route, --config gave the policy's values.
            let mut set = args.set.clone();
            if !args.config.is_empty() {
                eprintln!(
                    "warning: --config key=value is now --set key=value (--config names the config file of --route)"
                );
                set.extend(args.config.iter().cloned());
            }
            TestInput::read(&args.claims, args.request.as_deref(), None)
                .and_then(|input| tester::run(file, &input, &set, args.timeout))
        }
        (None, None) => Err(TestError::Input(
            "give a policy FILE, or --route NAME --config FILE".to_owned(),
        )),
    };
    match decided {
        Ok(decision) => {
            println!("{}", decision.to_json());
            match args.expect.as_deref() {
                Some(expected) if expected != decision.kind() => {
                    eprintln!(
                        "expected {expected}, the policy decided {}",
                        decision.kind()
                    );
                    ExitCode::from(1)
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(2)
        }
    }
}
