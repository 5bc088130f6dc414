//! Wiring: builds every part from a [`Config`], binds the listeners and runs until shutdown.
//!
//! Start-up order: bind the listeners first (port 0 resolves, a bad address fails fast), start
//! answering with a placeholder policy (`server.until_ready` decides: SERVFAIL or forward
//! unfiltered), load the feeds, publish, then start the reload machinery (file watcher, SIGHUP,
//! remote-feed refresher) and the metrics endpoint.
//!
//! Stop order ([`RunningServer::stop`]): stop receiving, let queries in flight finish (bounded by
//! `server.shutdown_grace_ms`), stop background tasks, then drain and flush the event writer, so
//! every answered query is in the event file.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::dns::fast::{FastPath, ResponseCache};
use crate::dns::forward::RawForwarder;
use crate::dns::server::Listeners;
use crate::dns::{ClientAcl, IocHandler, Upstream, UpstreamError};
use crate::events::{EventSink, EventWriter, EventWriterError};
use crate::metrics::{FeedMetrics, Metrics, MetricsError};
use crate::policy::{self, BuildReport, PolicySnapshot, SharedPolicy};
use crate::reload::{self, ReloadHandle, ReloadRequest, Reloader};

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
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
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
    /// Bound metrics address, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The live policy.
    pub policy: SharedPolicy,
    /// The event sink (counters).
    pub events: EventSink,
    /// Asks for a reload (what SIGHUP does).
    pub reload: ReloadHandle,
    listeners: Listeners,
    forwarder: Option<Arc<RawForwarder>>,
    background: TaskTracker,
    shutdown: CancellationToken,
    writer: Option<EventWriter>,
    grace: std::time::Duration,
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
pub async fn load_policy(
    cfg: &Config,
    previous: Option<Arc<PolicySnapshot>>,
) -> Result<(PolicySnapshot, BuildReport), AppError> {
    let pcfg = cfg.policy.clone();
    let started = std::time::Instant::now();
    let (snap, report) = tokio::task::spawn_blocking(move || {
        policy::build(&pcfg, OffsetDateTime::now_utc(), previous.as_deref())
    })
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

/// Starts the server and returns once the first policy load is in service.
pub async fn start(cfg: Config) -> Result<RunningServer, AppError> {
    let shutdown = CancellationToken::new();
    let background = TaskTracker::new();
    // Registered first: a SIGHUP that arrives during start-up is then queued, not fatal.
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();

    // Metrics first, so every handle below registers with the Prometheus recorder.
    let prometheus = match cfg.metrics_listen {
        Some(_) => Some(crate::metrics::install_prometheus()?),
        None => None,
    };
    let metrics = Metrics::new();
    let feed_metrics = FeedMetrics::new();

    let policy = SharedPolicy::new(PolicySnapshot::default());
    let upstream = Upstream::from_config(&cfg.upstream)?;
    let (events, writer) = EventWriter::start(&cfg.events, &cfg.server.computer)?;
    let clients = ClientAcl::new(cfg.server.allow.clone());
    let handler = IocHandler::new(
        policy.clone(),
        upstream,
        events.clone(),
        clients.clone(),
        cfg.server.max_in_flight,
        metrics.clone(),
        cfg.server.until_ready,
    );
    let cache = Arc::new(ResponseCache::new(cfg.upstream.cache_size as usize));
    let forwarder = match crate::dns::upstream::server_addrs(&cfg.upstream) {
        Ok(addrs) if !addrs.is_empty() => RawForwarder::start(
            &addrs,
            cfg.upstream.timeout,
            cache.clone(),
            events.clone(),
            metrics.clone(),
            &background,
            shutdown.clone(),
        )
        .await
        .map_err(|e| warn!(error = %e, "packet forwarder not started; using the resolver path"))
        .ok(),
        _ => None,
    };
    let fast = Arc::new(FastPath {
        policy: policy.clone(),
        clients: clients.clone(),
        events: events.clone(),
        metrics,
        cache,
        forwarder: forwarder.clone(),
    });

    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    let mut udp_addrs = Vec::new();
    let mut tcp_addrs = Vec::new();
    let udp_per_addr = match cfg.server.udp_sockets {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    for addr in &cfg.server.listen {
        let (us, t) = bind_group(*addr, udp_per_addr).await?;
        let (ua, ta) = (
            us[0].local_addr().map_err(|source| AppError::Bind {
                addr: *addr,
                proto: "udp",
                source,
            })?,
            t.local_addr().map_err(|source| AppError::Bind {
                addr: *addr,
                proto: "tcp",
                source,
            })?,
        );
        info!(udp = %ua, tcp = %ta, udp_sockets = us.len(), "listening");
        udp.extend(us);
        tcp.push(t);
        udp_addrs.push(ua);
        tcp_addrs.push(ta);
    }
    let listeners = Listeners::start(handler, Some(fast), udp, tcp, cfg.server.tcp_timeout);

    // First load (answers meanwhile follow server.until_ready).
    let (snapshot, report) = load_policy(&cfg, None).await?;
    policy.publish(snapshot);
    feed_metrics.update(&policy.current(), &report);
    info!(
        generation = policy.current().generation,
        "policy in service"
    );

    // Reload machinery.
    let trigger = ReloadHandle::default();
    let watch = Arc::new(Mutex::new(reload::watch_paths(&cfg)));
    if let Err(e) = reload::watcher::spawn(
        watch.clone(),
        cfg.source.clone(),
        trigger.clone(),
        shutdown.clone(),
    ) {
        warn!(error = %e, "file watcher not started; reload with SIGHUP");
    }
    #[cfg(unix)]
    {
        let t = trigger.clone();
        let stop = shutdown.clone();
        background.spawn(async move {
            let Some(mut hup) = hup else {
                return;
            };
            loop {
                tokio::select! {
                    r = hup.recv() => if r.is_none() { return },
                    _ = stop.cancelled() => return,
                }
                info!("SIGHUP: reloading config and feeds");
                t.request(ReloadRequest::Signal);
            }
        });
    }
    let reloader = Reloader {
        config_path: cfg.source.clone(),
        config: cfg.clone(),
        policy: policy.clone(),
        clients,
        events: events.clone(),
        feed_metrics,
        watch,
    };
    background.spawn(reloader.run(trigger.clone(), shutdown.clone()));

    // Remote feeds: download now and at each `refresh`; a new download triggers a reload (the
    // watcher would see the cache file change too; the explicit request makes it immediate).
    let remotes: Vec<_> = cfg
        .policy
        .feeds
        .iter()
        .filter_map(|f| f.remote.clone())
        .collect();
    if !remotes.is_empty() {
        let t = trigger.clone();
        background.spawn(crate::remote::run_refresher(
            remotes,
            shutdown.clone(),
            move |feed| {
                info!(feed, "remote feed downloaded");
                t.request(ReloadRequest::FilesChanged);
            },
        ));
    }

    let mut metrics_addr = None;
    if let (Some(addr), Some(handle)) = (cfg.metrics_listen, prometheus) {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let bound = l
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;
        info!(metrics = %bound, "metrics endpoint listening");
        metrics_addr = Some(bound);
        let p = policy.clone();
        background.spawn(crate::metrics::serve_http(
            l,
            handle,
            events.stats().clone(),
            move || p.current().ready,
            shutdown.clone(),
        ));
    }

    Ok(RunningServer {
        udp_addrs,
        tcp_addrs,
        metrics_addr,
        policy,
        events,
        reload: trigger,
        listeners,
        forwarder,
        background,
        shutdown,
        writer,
        grace: cfg.server.shutdown_grace,
    })
}

/// Binds `udp_sockets` UDP sockets (SO_REUSEPORT, so the kernel spreads clients over them and
/// each is served by its own receive loop) and one TCP listener on the same address; with port 0
/// every socket takes the port the first one got.
async fn bind_group(
    addr: SocketAddr,
    udp_sockets: usize,
) -> Result<(Vec<UdpSocket>, TcpListener), AppError> {
    let mut last_err = None;
    for _ in 0..16 {
        let first = bind_udp(addr).map_err(|source| AppError::Bind {
            addr,
            proto: "udp",
            source,
        })?;
        let bound = first.local_addr().map_err(|source| AppError::Bind {
            addr,
            proto: "udp",
            source,
        })?;
        let tcp = match TcpListener::bind(bound).await {
            Ok(tcp) => tcp,
            Err(e) if addr.port() == 0 => {
                last_err = Some(e);
                continue;
            }
            Err(source) => {
                return Err(AppError::Bind {
                    addr,
                    proto: "tcp",
                    source,
                });
            }
        };
        let mut udp = vec![first];
        for _ in 1..udp_sockets.max(1) {
            udp.push(bind_udp(bound).map_err(|source| AppError::Bind {
                addr,
                proto: "udp",
                source,
            })?);
        }
        return Ok((udp, tcp));
    }
    Err(AppError::Bind {
        addr,
        proto: "tcp",
        source: last_err.unwrap_or_else(|| std::io::Error::other("no free port")),
    })
}

/// One UDP socket with SO_REUSEPORT and a large receive buffer (absorbs bursts; the kernel caps
/// it at `net.core.rmem_max`).
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    #[cfg(unix)]
    sock.set_reuse_port(true)?;
    let _ = sock.set_recv_buffer_size(4 << 20);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

impl RunningServer {
    /// Stops receiving, answers the queries in flight (bounded by the grace period), stops the
    /// background tasks, then drains and flushes the event writer.
    pub async fn stop(mut self) {
        let left = self.listeners.stop(self.grace).await;
        if let Some(f) = &self.forwarder {
            f.wait_idle(self.grace).await;
        }
        self.shutdown.cancel();
        self.background.close();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(2), self.background.wait()).await;
        if let Some(w) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || w.close()).await;
        }
        info!(unanswered = left, "stopped");
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
