//! Hot reload: rebuild the policy off the query path and swap it in atomically.
//!
//! Triggers arrive as [`ReloadRequest`]s on a bounded channel of capacity 1 (a pending request
//! absorbs later ones): from the file watcher ([`watcher`]), from SIGHUP, and from the remote-feed
//! refresher. A single [`Reloader`] task handles them one at a time:
//!
//! 1. `ConfigChanged` / `Signal`: re-read the config file. A bad config is rejected whole and the
//!    running config stays. Live parts (feeds, allow, policy, client ACL, which queries are
//!    written) apply; parts that need a restart (listeners, upstream, event file path, metrics
//!    listener) are logged as such.
//! 2. Build a new snapshot on a blocking thread with the running snapshot as fallback: a feed
//!    that fails as a whole keeps its last good entries (see [`crate::policy::build`](fn@crate::policy::build)).
//! 3. Publish. In-flight queries finish on the snapshot they loaded; new ones see the new one.

pub mod watcher;

use std::path::PathBuf;
use std::sync::Arc;

use std::sync::atomic::{AtomicU8, Ordering};
use time::OffsetDateTime;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::app::log_report;
use crate::config::Config;
use crate::dns::ClientAcl;
use crate::events::EventSink;
use crate::metrics::FeedMetrics;
use crate::policy::{self, BuildReport, SharedPolicy};

/// Why a reload was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadRequest {
    /// A feed or allow file changed on disk (or a remote feed was downloaded).
    FilesChanged,
    /// The config file changed.
    ConfigChanged,
    /// SIGHUP: re-read the config and every feed.
    Signal,
}

/// Sender side of the reload trigger. Clone is cheap; requesting never blocks.
///
/// Pending requests are merged into a bit set (a burst of file events, a SIGHUP and a download
/// that arrive while a reload runs become one more reload that covers all of them), so a
/// request is never lost and the queue can never grow.
#[derive(Clone, Debug, Default)]
pub struct ReloadHandle(Arc<Pending>);

#[derive(Debug, Default)]
struct Pending {
    bits: AtomicU8,
    notify: Notify,
}

const FILES: u8 = 1;
const CONFIG: u8 = 2;

impl ReloadHandle {
    /// Asks for a reload.
    pub fn request(&self, r: ReloadRequest) {
        let bit = match r {
            ReloadRequest::FilesChanged => FILES,
            ReloadRequest::ConfigChanged | ReloadRequest::Signal => CONFIG,
        };
        self.0.bits.fetch_or(bit, Ordering::SeqCst);
        self.0.notify.notify_one();
    }

    /// Waits for the next request (merged with any others pending).
    pub async fn next(&self) -> ReloadRequest {
        loop {
            let bits = self.0.bits.swap(0, Ordering::SeqCst);
            if bits & CONFIG != 0 {
                return ReloadRequest::ConfigChanged;
            }
            if bits & FILES != 0 {
                return ReloadRequest::FilesChanged;
            }
            self.0.notify.notified().await;
        }
    }
}

/// The reload task's state.
pub struct Reloader {
    /// Config file to re-read (`None`: config given in memory; only feeds reload).
    pub config_path: Option<PathBuf>,
    /// The config in force.
    pub config: Config,
    /// The live policy.
    pub policy: SharedPolicy,
    /// The live client ACL.
    pub clients: ClientAcl,
    /// The live event sink (its `queries` mode is live).
    pub events: EventSink,
    /// Per-feed gauges.
    pub feed_metrics: FeedMetrics,
    /// Paths the watcher should watch; updated after a config change.
    pub watch: Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

impl Reloader {
    /// Handles requests until `shutdown`.
    pub async fn run(mut self, trigger: ReloadHandle, shutdown: CancellationToken) {
        loop {
            let req = tokio::select! {
                r = trigger.next() => r,
                _ = shutdown.cancelled() => return,
            };
            self.reload(req).await;
        }
    }

    /// One reload. Returns the build report when a new snapshot was published.
    pub async fn reload(&mut self, req: ReloadRequest) -> Option<BuildReport> {
        let started = std::time::Instant::now();
        if matches!(req, ReloadRequest::ConfigChanged | ReloadRequest::Signal)
            && let Some(path) = self.config_path.clone()
        {
            let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
            match loaded {
                Ok(Ok(new)) => self.apply_config(new),
                Ok(Err(e)) => {
                    error!(error = %e, "config reload rejected; the running config stays");
                    self.feed_metrics.reload_result(false);
                    return None;
                }
                Err(e) => {
                    error!(error = %e, "config reload task failed");
                    return None;
                }
            }
        }
        let pcfg = self.config.policy.clone();
        let prev = self.policy.current();
        let built = tokio::task::spawn_blocking(move || {
            policy::build(&pcfg, OffsetDateTime::now_utc(), Some(&prev))
        })
        .await;
        let (snapshot, report) = match built {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "policy build failed; keeping the running policy");
                self.feed_metrics.reload_result(false);
                return None;
            }
        };
        log_report(&report);
        for f in &report.feeds {
            if let Some(reason) = &f.failure {
                if f.kept_previous {
                    error!(feed = %f.name, %reason, kept = f.loaded, "feed update refused; last good version stays in service");
                } else {
                    error!(feed = %f.name, %reason, "feed failed and has no earlier version");
                }
            }
        }
        let names = snapshot.names();
        let entries = snapshot.rules_len();
        let old = self.policy.publish(snapshot);
        let current = self.policy.current();
        self.feed_metrics.update(&current, &report);
        self.feed_metrics.reload_result(true);
        info!(
            generation = current.generation,
            names,
            entries,
            took_ms = started.elapsed().as_millis() as u64,
            reason = ?req,
            "policy reloaded"
        );
        // Free the old snapshot off the DNS path: wait until queries in flight (and queued
        // events) have let go of it, so the last reference is dropped here, not on a worker.
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            drop(old);
        });
        Some(report)
    }

    fn apply_config(&mut self, new: Config) {
        let old = &self.config;
        if old.server.listen != new.server.listen {
            warn!("server.listen changed: restart iocdns to apply");
        }
        if old.upstream.servers != new.upstream.servers
            || old.upstream.timeout != new.upstream.timeout
            || old.upstream.cache_size != new.upstream.cache_size
        {
            warn!("[upstream] changed: restart iocdns to apply");
        }
        if old.events.path != new.events.path || old.events.queue != new.events.queue {
            warn!("events.path / events.queue changed: restart iocdns to apply");
        }
        if old.metrics_listen != new.metrics_listen {
            warn!("metrics.listen changed: restart iocdns to apply");
        }
        if old.server.computer != new.server.computer {
            warn!("server.computer changed: restart iocdns to apply");
        }
        self.clients.set(new.server.allow.clone());
        self.events.set_queries(new.events.queries);
        if let Ok(mut w) = self.watch.lock() {
            *w = watch_paths(&new);
        }
        info!("config reloaded");
        self.config = new;
    }
}

/// Files whose change triggers a reload: the config, every feed and allow file.
pub fn watch_paths(cfg: &Config) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = cfg.source.iter().cloned().collect();
    v.extend(cfg.policy.feeds.iter().map(|f| f.path.clone()));
    v.extend(cfg.policy.allow_files.iter().cloned());
    v
}
