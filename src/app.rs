//! Wiring: builds every part from a [`Config`], binds the listeners and runs until shutdown.
//!
//! [`start`] returns a [`RunningServer`] with the addresses actually bound (so port 0 works in
//! tests); [`serve`] is start + wait for a shutdown future + orderly stop: stop accepting, then
//! close the event writer, which drains the queue and flushes, so no accepted event is lost.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::Server;
use time::OffsetDateTime;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::dns::{ClientAcl, IocHandler, Upstream, UpstreamError};
use crate::events::{EventSink, EventWriter, EventWriterError};
use crate::metrics::Metrics;
use crate::policy::{self, BuildReport, SharedPolicy};

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The upstream resolver could not be set up.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The event writer could not start.
    #[error(transparent)]
    Events(#[from] EventWriterError),
    /// The policy build task failed.
    #[error("policy build failed: {0}")]
    Build(String),
}

/// A server that is up and answering.
pub struct RunningServer {
    /// Bound UDP addresses, in `server.listen` order.
    pub udp_addrs: Vec<SocketAddr>,
    /// Bound TCP addresses, in `server.listen` order.
    pub tcp_addrs: Vec<SocketAddr>,
    /// The live policy (tests and reload use it).
    pub policy: SharedPolicy,
    /// The event sink counters.
    pub events: EventSink,
    server: Server<IocHandler>,
    writer: Option<EventWriter>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("udp_addrs", &self.udp_addrs)
            .field("tcp_addrs", &self.tcp_addrs)
            .finish_non_exhaustive()
    }
}

/// Builds the policy on a blocking thread and logs one line per feed.
pub async fn load_policy(cfg: &Config) -> Result<(policy::PolicySnapshot, BuildReport), AppError> {
    let pcfg = cfg.policy.clone();
    let started = std::time::Instant::now();
    let (snap, report) =
        tokio::task::spawn_blocking(move || policy::build(&pcfg, OffsetDateTime::now_utc()))
            .await
            .map_err(|e| AppError::Build(e.to_string()))?;
    log_report(&report);
    info!(
        names = snap.names(),
        entries = snap.rules_len(),
        took_ms = started.elapsed().as_millis() as u64,
        "policy built"
    );
    Ok((snap, report))
}

/// Logs one line per feed and allow file.
pub fn log_report(report: &BuildReport) {
    for f in report.feeds.iter().chain(&report.allow_files) {
        match &f.error {
            Some(e) => error!(feed = %f.name, error = %e, "feed not loaded"),
            None => info!(
                feed = %f.name,
                path = %f.path.display(),
                format = ?f.format.unwrap_or_default(),
                loaded = f.loaded,
                enforced = f.enforced,
                log_only = f.log_only,
                rejected = f.rejected,
                expired = f.expired,
                "feed loaded"
            ),
        }
        if let Some(first) = f.rejects.first() {
            warn!(
                feed = %f.name,
                rejected = f.rejected,
                first = %format!("{}:{}: {}", f.path.display(), first.line, first.reason),
                "feed lines rejected (see `iocdns lint` for all)"
            );
        }
    }
    for w in &report.warnings {
        warn!("{w}");
    }
}

/// Starts the server: loads the policy, starts the event writer, binds every listener.
pub async fn start(cfg: Config) -> Result<RunningServer, AppError> {
    let metrics = Metrics::new();
    let (snapshot, _report) = load_policy(&cfg).await?;
    let policy = SharedPolicy::new(snapshot);
    let upstream = Upstream::from_config(&cfg.upstream)?;
    let (events, writer) = EventWriter::start(&cfg.events, &cfg.server.computer)?;
    let clients = ClientAcl::new(cfg.server.allow.clone());
    let handler = IocHandler::new(
        policy.clone(),
        upstream,
        events.clone(),
        clients,
        cfg.server.max_in_flight,
        metrics,
    );
    let mut server = Server::new(handler);
    let mut udp_addrs = Vec::new();
    let mut tcp_addrs = Vec::new();
    for addr in &cfg.server.listen {
        let (udp, tcp) = bind_pair(*addr).await?;
        let (u, t) = (
            udp.local_addr().map_err(|source| AppError::Bind {
                addr: *addr,
                proto: "udp",
                source,
            })?,
            tcp.local_addr().map_err(|source| AppError::Bind {
                addr: *addr,
                proto: "tcp",
                source,
            })?,
        );
        info!(udp = %u, tcp = %t, "listening");
        server.register_socket(udp);
        server.register_listener(tcp, cfg.server.tcp_timeout, 64 * 1024);
        udp_addrs.push(u);
        tcp_addrs.push(t);
    }
    Ok(RunningServer {
        udp_addrs,
        tcp_addrs,
        policy,
        events,
        server,
        writer,
    })
}

/// Binds UDP and TCP on the same address; with port 0 the TCP side takes the port the UDP side got.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), AppError> {
    let mut last_err = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| AppError::Bind {
                addr,
                proto: "udp",
                source,
            })?;
        let port = udp.local_addr().map(|a| a.port()).unwrap_or(addr.port());
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(source) => {
                return Err(AppError::Bind {
                    addr,
                    proto: "tcp",
                    source,
                });
            }
        }
    }
    Err(AppError::Bind {
        addr,
        proto: "tcp",
        source: last_err.unwrap_or_else(|| std::io::Error::other("no free port")),
    })
}

impl RunningServer {
    /// Stops accepting queries, waits (bounded) for the listeners to wind down, then drains and
    /// flushes the event writer.
    pub async fn stop(mut self) {
        let grace = Duration::from_secs(5);
        match tokio::time::timeout(grace, self.server.shutdown_gracefully()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "listener error during shutdown"),
            Err(_) => warn!("listeners did not stop within {grace:?}"),
        }
        if let Some(w) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || w.close()).await;
        }
        info!("stopped");
    }
}

/// Runs until `shutdown` completes, then stops cleanly.
pub async fn serve(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let server = start(cfg).await?;
    shutdown.await;
    info!("shutting down");
    server.stop().await;
    Ok(())
}
