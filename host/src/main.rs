//! The `portcullis` command line: `run` serves, `check` validates a config and exits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::{Proxy, Server, config};

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
    },
    /// Validate a config file: prints `ok`, or every problem (exit 1).
    Check {
        /// The config file.
        #[arg(long, short, default_value = "portcullis.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { config } => match config::load(&config) {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("{err}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => match run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("portcullis: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(config_path: &std::path::Path) -> anyhow::Result<()> {
    let config = config::load(config_path)?;
    portcullis::logging::init(&config.log.level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let proxy = Proxy::start(config)?;
        let server = Server::bind(proxy).await?;
        let scheme = if server.uses_tls() { "https" } else { "http" };
        for addr in server.public_addrs() {
            // On stdout, for people and for tests that start the binary on port 0.
            println!("portcullis: listening on {scheme}://{addr}");
        }
        if let Some(addr) = server.admin_addr() {
            println!("portcullis: admin on http://{addr}");
        }
        server.serve(portcullis::server::shutdown_signal()).await;
        Ok(())
    })
}
