//! `iocdns` command line: `serve` (default), `check`, `lint`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use iocdns::config::Config;

/// DNS forwarding resolver that sinkholes threat-intel IOC domains and writes Sentinel
/// DnsEvents records.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Config file (relative paths inside it resolve against its directory).
    #[arg(short, long, global = true, default_value = "config/iocdns.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the DNS server (the default).
    Serve(ServeArgs),
    /// Print the decision for one name, without any network.
    Check {
        /// The name to check.
        name: String,
        /// Query type.
        #[arg(short = 't', long = "type", default_value = "A")]
        qtype: String,
        /// Client address (checked against server.allow).
        #[arg(long)]
        client: Option<IpAddr>,
    },
    /// Load the config and every feed; print counts and every rejected line.
    Lint,
}

/// Command-line overrides of the config file, for labs, tests and benchmarks.
#[derive(clap::Args, Debug, Default)]
struct ServeArgs {
    /// Replace server.listen (repeatable), e.g. --listen 127.0.0.1:0.
    #[arg(long)]
    listen: Vec<std::net::SocketAddr>,
    /// Replace upstream.servers (repeatable), e.g. --upstream 127.0.0.1:5300.
    #[arg(long)]
    upstream: Vec<std::net::SocketAddr>,
    /// Replace events.path.
    #[arg(long)]
    events: Option<PathBuf>,
    /// Add a feed file (format auto-detected, named after the file), repeatable.
    #[arg(long)]
    feed: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&cli.config)?;
    let mut stdout = std::io::stdout().lock();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Check {
            name,
            qtype,
            client,
        } => {
            let code = iocdns::cli::check(&cfg, &name, &qtype, client, &mut stdout)?;
            Ok(ExitCode::from(code as u8))
        }
        Command::Lint => {
            let code = iocdns::cli::lint(&cfg, &mut stdout)?;
            Ok(ExitCode::from(code as u8))
        }
        Command::Serve(args) => {
            drop(stdout);
            let mut cfg = cfg;
            cfg.apply_overrides(&args.listen, &args.upstream, args.events, &args.feed)?;
            init_tracing();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the tokio runtime")?;
            rt.block_on(iocdns::app::serve(cfg, shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_tracing() {
    // hickory-server logs every request at info; keep it at warn unless asked.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,hickory_server=warn,hickory_resolver=warn,hickory_net=warn,hickory_proto=warn",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
