//! Metric names and pre-registered handles.
//!
//! Names are `pub const`s so they are documented in one place (and in the README). Handles are
//! registered once at startup; the DNS path only increments them. Without an installed recorder
//! (metrics disabled, tests) every handle is a no-op.

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use metrics::{Counter, Histogram, counter, describe_counter, describe_histogram, histogram};

use crate::config::Action;
use crate::events::PolicyAction;
use crate::policy::{Match, PolicySnapshot};

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

    /// One IOC hit (only on hits, so the per-feed label lookup is off the common path).
    pub fn ioc_hit(&self, policy: &PolicySnapshot, m: &Match, action: Action) {
        let feed = &policy.feeds[policy.rule(m.rule).feed as usize].name;
        counter!(IOC_HITS_TOTAL, "feed" => feed.to_string(), "action" => action.as_str())
            .increment(1);
    }

    /// Time spent on one upstream resolution.
    pub fn upstream_latency(&self, d: Duration) {
        self.0.upstream_latency.record(d.as_secs_f64());
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
