//! Metric names and pre-registered handles.
//!
//! Names are `pub const`s so they are documented in one place (and in the README). Handles are
//! registered once at startup; the DNS path only increments them. Without an installed recorder
//! (metrics disabled, tests) every handle is a no-op.

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::Action;
use crate::events::{EventStats, PolicyAction};
use crate::policy::{BuildReport, Match, PolicySnapshot};

/// Counter: queries received, label `type` (A, AAAA, ..., `other`).
pub const QUERIES_TOTAL: &str = "iocdns_queries_total";
/// Counter: answers by policy outcome, label `action` (sinkhole, nxdomain, nodata, refused, drop,
/// log, allow, forward, denied).
pub const RESPONSES_TOTAL: &str = "iocdns_responses_total";
/// Counter: IOC hits, labels `feed` (the winning feed) and `action`.
pub const IOC_HITS_TOTAL: &str = "iocdns_ioc_hits_total";
/// Histogram (seconds): time spent waiting for the upstream (cache hits included).
pub const UPSTREAM_DURATION_SECONDS: &str = "iocdns_upstream_duration_seconds";
/// Counter: upstream failures, label `reason` (timeout, error, overload).
pub const UPSTREAM_ERRORS_TOTAL: &str = "iocdns_upstream_errors_total";

/// Gauge: entries in service per feed, label `feed`.
pub const FEED_ENTRIES: &str = "iocdns_feed_entries";
/// Gauge: rejected lines in the last load attempt per feed, label `feed`.
pub const FEED_REJECTED_LINES: &str = "iocdns_feed_rejected_lines";
/// Gauge: Unix time of the last successful load of the version in service, label `feed`.
pub const FEED_LAST_SUCCESS_TIMESTAMP: &str = "iocdns_feed_last_success_timestamp_seconds";
/// Gauge: age in seconds of the newest IOC (first/last seen) in service, label `feed`.
pub const FEED_NEWEST_IOC_AGE: &str = "iocdns_feed_newest_ioc_age_seconds";
/// Counter: load attempts of a feed that failed (unreadable, emptied, too many rejects), label `feed`.
pub const FEED_LOAD_FAILURES_TOTAL: &str = "iocdns_feed_load_failures_total";
/// Gauge: 1 while the version in service is an older one kept after a failed update, label `feed`.
pub const FEED_STALE: &str = "iocdns_feed_stale";
/// Counter: policy reloads, label `result` (ok, error).
pub const RELOADS_TOTAL: &str = "iocdns_reloads_total";
/// Gauge: generation number of the policy in service.
pub const POLICY_GENERATION: &str = "iocdns_policy_generation";
/// Gauge: distinct names in the policy in service.
pub const POLICY_NAMES: &str = "iocdns_policy_names";
/// Counter: event lines written.
pub const EVENTS_WRITTEN_TOTAL: &str = "iocdns_events_written_total";
/// Counter: events dropped, label `reason` (queue_full, io_error).
pub const EVENTS_DROPPED_TOTAL: &str = "iocdns_events_dropped_total";
/// Counter: answers served from the forwarding cache (upstream latency below 1 ms).
pub const CACHE_HITS_TOTAL: &str = "iocdns_cache_hits_total";
/// Counter: answers that needed the upstream.
pub const CACHE_MISSES_TOTAL: &str = "iocdns_cache_misses_total";

const QTYPES: [RecordType; 11] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::PTR,
    RecordType::HTTPS,
    RecordType::SRV,
    RecordType::NS,
    RecordType::SOA,
    RecordType::ANY,
];

const ACTIONS: [PolicyAction; 9] = [
    PolicyAction::Ioc(Action::Sinkhole),
    PolicyAction::Ioc(Action::Nxdomain),
    PolicyAction::Ioc(Action::Nodata),
    PolicyAction::Ioc(Action::Refused),
    PolicyAction::Ioc(Action::Drop),
    PolicyAction::Ioc(Action::Log),
    PolicyAction::Allow,
    PolicyAction::Forward,
    PolicyAction::Denied,
];

const HIT_ACTIONS: [Action; 6] = [
    Action::Log,
    Action::Sinkhole,
    Action::Nodata,
    Action::Nxdomain,
    Action::Refused,
    Action::Drop,
];

fn action_index(a: Action) -> usize {
    HIT_ACTIONS.iter().position(|x| *x == a).unwrap_or(0)
}

/// Registers the `iocdns_ioc_hits_total{feed, action}` counters of a set of feeds, in the order
/// [`Metrics::ioc_hit`] indexes them (feed-major). Done at policy build time, off the DNS path.
pub fn hit_counters<'a>(feeds: impl Iterator<Item = &'a str>) -> Vec<Counter> {
    let mut v = Vec::new();
    for feed in feeds {
        for a in HIT_ACTIONS {
            v.push(counter!(IOC_HITS_TOTAL, "feed" => feed.to_string(), "action" => a.as_str()));
        }
    }
    v
}

/// Pre-registered handles for the DNS path. Clone is cheap.
#[derive(Clone, Debug)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    queries: Vec<Counter>,
    queries_other: Counter,
    responses: Vec<Counter>,
    upstream_latency: Histogram,
    upstream_timeout: Counter,
    upstream_error: Counter,
    upstream_overload: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Describes every metric and registers the handles with the current recorder.
    pub fn new() -> Self {
        describe_counter!(QUERIES_TOTAL, "DNS queries received, by query type");
        describe_counter!(RESPONSES_TOTAL, "DNS answers sent, by policy outcome");
        describe_counter!(
            IOC_HITS_TOTAL,
            "queries that matched an IOC, by winning feed and action"
        );
        describe_histogram!(
            UPSTREAM_DURATION_SECONDS,
            metrics::Unit::Seconds,
            "time to get an answer from the upstream resolver (cache included)"
        );
        describe_counter!(UPSTREAM_ERRORS_TOTAL, "upstream failures, by reason");
        Self(Arc::new(Inner {
            queries: QTYPES
                .iter()
                .map(|t| counter!(QUERIES_TOTAL, "type" => t.to_string()))
                .collect(),
            queries_other: counter!(QUERIES_TOTAL, "type" => "other"),
            responses: ACTIONS
                .iter()
                .map(|a| counter!(RESPONSES_TOTAL, "action" => a.as_str()))
                .collect(),
            upstream_latency: histogram!(UPSTREAM_DURATION_SECONDS),
            upstream_timeout: counter!(UPSTREAM_ERRORS_TOTAL, "reason" => "timeout"),
            upstream_error: counter!(UPSTREAM_ERRORS_TOTAL, "reason" => "error"),
            upstream_overload: counter!(UPSTREAM_ERRORS_TOTAL, "reason" => "overload"),
            cache_hits: counter!(CACHE_HITS_TOTAL),
            cache_misses: counter!(CACHE_MISSES_TOTAL),
        }))
    }

    /// One query received.
    pub fn query(&self, qtype: RecordType) {
        match QTYPES.iter().position(|t| *t == qtype) {
            Some(i) => self.0.queries[i].increment(1),
            None => self.0.queries_other.increment(1),
        }
    }

    /// One answer with this outcome.
    pub fn action(&self, action: PolicyAction) {
        if let Some(i) = ACTIONS.iter().position(|a| *a == action) {
            self.0.responses[i].increment(1);
        }
    }

    /// One IOC hit, on the counter pre-registered in the snapshot (no allocation).
    pub fn ioc_hit(&self, policy: &PolicySnapshot, m: &Match, action: Action) {
        let feed = policy.rule(m.rule).feed as usize;
        if let Some(c) = policy
            .hit_counters
            .get(feed * HIT_ACTIONS.len() + action_index(action))
        {
            c.increment(1);
        }
    }

    /// Time spent on one upstream resolution. hickory-resolver does not say whether an answer
    /// came from its cache, so an answer faster than 1 ms is counted as a cache hit (a loopback
    /// upstream round trip takes longer than that through the resolver's queues).
    pub fn upstream_latency(&self, d: Duration) {
        self.0.upstream_latency.record(d.as_secs_f64());
        if d < Duration::from_millis(1) {
            self.0.cache_hits.increment(1);
        } else {
            self.0.cache_misses.increment(1);
        }
    }

    /// One upstream failure.
    pub fn upstream_error(&self, reason: &str) {
        match reason {
            "timeout" => self.0.upstream_timeout.increment(1),
            "overload" => self.0.upstream_overload.increment(1),
            _ => self.0.upstream_error.increment(1),
        }
    }
}

/// Per-feed health gauges, updated after every policy build.
#[derive(Clone, Debug, Default)]
pub struct FeedMetrics;

impl FeedMetrics {
    /// Describes the feed metrics.
    pub fn new() -> Self {
        describe_gauge!(FEED_ENTRIES, "IOC entries in service per feed");
        describe_gauge!(
            FEED_REJECTED_LINES,
            "rejected lines in the last load attempt per feed"
        );
        describe_gauge!(
            FEED_LAST_SUCCESS_TIMESTAMP,
            metrics::Unit::Seconds,
            "Unix time of the last successful load of the feed version in service"
        );
        describe_gauge!(
            FEED_NEWEST_IOC_AGE,
            metrics::Unit::Seconds,
            "age of the newest IOC (first/last seen) in service per feed"
        );
        describe_counter!(FEED_LOAD_FAILURES_TOTAL, "failed feed load attempts");
        describe_gauge!(
            FEED_STALE,
            "1 while a feed's last good version is kept after a failed update"
        );
        describe_counter!(RELOADS_TOTAL, "policy reloads by result");
        describe_gauge!(POLICY_GENERATION, "generation of the policy in service");
        describe_gauge!(POLICY_NAMES, "distinct names in the policy in service");
        Self
    }

    /// Sets the gauges from the snapshot in service and the report of the build that made it.
    pub fn update(&self, snap: &PolicySnapshot, report: &BuildReport) {
        let now = time::OffsetDateTime::now_utc();
        gauge!(POLICY_GENERATION).set(snap.generation as f64);
        gauge!(POLICY_NAMES).set(snap.names() as f64);
        for (info, fr) in snap.feeds.iter().zip(&report.feeds) {
            let feed = info.name.to_string();
            gauge!(FEED_ENTRIES, "feed" => feed.clone()).set(info.entries as f64);
            gauge!(FEED_REJECTED_LINES, "feed" => feed.clone()).set(fr.rejected as f64);
            if let Some(t) = info.loaded_at {
                gauge!(FEED_LAST_SUCCESS_TIMESTAMP, "feed" => feed.clone())
                    .set(t.unix_timestamp() as f64);
            }
            if let Some(t) = info.newest {
                gauge!(FEED_NEWEST_IOC_AGE, "feed" => feed.clone())
                    .set((now - t).as_seconds_f64().max(0.0));
            }
            if fr.failure.is_some() {
                counter!(FEED_LOAD_FAILURES_TOTAL, "feed" => feed.clone()).increment(1);
            }
            gauge!(FEED_STALE, "feed" => feed).set(if fr.kept_previous { 1.0 } else { 0.0 });
        }
    }

    /// Counts one reload.
    pub fn reload_result(&self, ok: bool) {
        counter!(RELOADS_TOTAL, "result" => if ok { "ok" } else { "error" }).increment(1);
    }
}

/// Copies the event writer's counters into the registry (called before each scrape).
pub fn export_event_stats(stats: &EventStats) {
    use std::sync::atomic::Ordering::Relaxed;
    counter!(EVENTS_WRITTEN_TOTAL).absolute(stats.written.load(Relaxed));
    counter!(EVENTS_DROPPED_TOTAL, "reason" => "queue_full")
        .absolute(stats.dropped_queue.load(Relaxed));
    counter!(EVENTS_DROPPED_TOTAL, "reason" => "io_error").absolute(stats.dropped_io.load(Relaxed));
}

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listener could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another recorder is installed in this process.
    #[error("cannot install the Prometheus recorder: {0}")]
    Install(String),
}

static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// Installs the process-wide Prometheus recorder once (later calls reuse it).
pub fn install_prometheus() -> Result<PrometheusHandle, MetricsError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(UPSTREAM_DURATION_SECONDS.into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
        )
        .map_err(|e| MetricsError::Install(e.to_string()))?
        .install_recorder()
        .map_err(|e| MetricsError::Install(e.to_string()))?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Serves `GET /metrics` (Prometheus text format) and `GET /health` on `listener` until
/// `shutdown`. A deliberately tiny HTTP/1.1 responder: one request per connection.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    events: Arc<EventStats>,
    ready: impl Fn() -> bool + Send + Sync + 'static,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ready = Arc::new(ready);
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            _ = shutdown.cancelled() => return,
        };
        let handle = handle.clone();
        let events = events.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, ctype, body) = match path {
                "/metrics" => {
                    export_event_stats(&events);
                    handle.run_upkeep();
                    ("200 OK", "text/plain; version=0.0.4", handle.render())
                }
                "/health" | "/ready" if ready() => ("200 OK", "text/plain", "ok\n".to_string()),
                "/health" | "/ready" => (
                    "503 Service Unavailable",
                    "text/plain",
                    "loading\n".to_string(),
                ),
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
