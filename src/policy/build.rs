//! Building a [`PolicySnapshot`] from the configured feeds and allowlist.
//!
//! Runs off the query path (startup, `check`, `lint`, reload on a blocking thread). It reads
//! files, so it must never be called from a DNS task directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::matcher::DomainMatcherBuilder;
use super::{
    AnswerSettings, Coverage, FeedInfo, PolicySnapshot, Rule, RuleEffect, RuleExtra, count_labels,
};
use crate::config::{Action, FeedConfig, PolicyConfig, UrlHosts};
use crate::ioc::{self, EntryAction, FeedFormat, IocKind, LineError, Scope};

/// A feed that could not be used at all.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
}

/// What loading one feed (or allowlist file) produced.
#[derive(Debug, Clone, Default)]
pub struct FeedReport {
    /// Feed name (`allow` for allowlist files).
    pub name: String,
    /// File read.
    pub path: PathBuf,
    /// Format used (after auto-detection).
    pub format: Option<FeedFormat>,
    /// Entries loaded into the policy (all kinds, including exceptions and log-only).
    pub loaded: u64,
    /// Of `loaded`: domain IOCs.
    pub domains: u64,
    /// Of `loaded`: URL IOC hosts.
    pub url_hosts: u64,
    /// Of `loaded`: enforced with the feed's action (not log-only, not exceptions).
    pub enforced: u64,
    /// Of `loaded`: log-only (confidence between the bands, URL hosts in `log` mode, `log` action).
    pub log_only: u64,
    /// Of `loaded`: exceptions (passthru, `@@`).
    pub exceptions: u64,
    /// IP IOCs seen (kept for answer inspection, not matched on query names).
    pub ips: u64,
    /// Entries dropped because they are older than `max_age_days` or past `valid_until`.
    pub expired: u64,
    /// Entries dropped because their confidence is below `min_confidence`.
    pub below_min: u64,
    /// URL hosts dropped by `url_hosts = "ignore"`.
    pub url_hosts_ignored: u64,
    /// Lines skipped by design (comments, blank lines, unsupported IOC types).
    pub ignored: u64,
    /// Rejected lines (all of them counted).
    pub rejected: u64,
    /// The rejected lines with reasons (capped).
    pub rejects: Vec<LineError>,
    /// Newest first/last-seen date among loaded entries.
    pub newest: Option<OffsetDateTime>,
    /// Set when the feed could not be used at all.
    pub error: Option<PolicyError>,
    /// Set when this version of the feed was refused (unreadable, emptied, too many rejects)
    /// and the last good version stayed in service.
    pub failure: Option<String>,
    /// The last good version of the feed was kept (see `failure`).
    pub kept_previous: bool,
}

/// What a whole build produced.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    /// One report per configured feed, in config order.
    pub feeds: Vec<FeedReport>,
    /// One report per allowlist file.
    pub allow_files: Vec<FeedReport>,
    /// Policy warnings for `lint` (risky allow entries, feeds that list allowlisted names).
    pub warnings: Vec<String>,
}

impl BuildReport {
    /// True when some feed or allow file could not be read.
    pub fn has_errors(&self) -> bool {
        self.feeds
            .iter()
            .chain(&self.allow_files)
            .any(|f| f.error.is_some())
    }
}

/// Builds a snapshot from `cfg`, reading every feed and allow file. `now` is the reference time
/// for expiry.
///
/// With `previous` (a reload), a feed that fails as a whole keeps its entries from `previous`:
/// unreadable, empty when it had entries, or more than `max_rejected_percent` of its lines
/// rejected. Without `previous` (first load) a failing feed loads what it can and is reported.
pub fn build(
    cfg: &PolicyConfig,
    now: OffsetDateTime,
    previous: Option<&PolicySnapshot>,
) -> (PolicySnapshot, BuildReport) {
    let mut report = BuildReport::default();
    // On a reload, size everything like the running snapshot: no table doubling and no large
    // reallocations (each is an mremap/munmap that stalls the DNS threads' page faults).
    let (n_names, n_rules) = previous.map_or((0, 0), |p| (p.names(), p.rules_len()));
    let mut names = DomainMatcherBuilder::with_capacity(n_names + n_names / 16);
    let mut labels: Vec<u8> = Vec::with_capacity(n_names + n_names / 16);
    let mut pairs: Vec<(u32, Rule)> = Vec::with_capacity(n_rules + n_rules / 16);
    let mut extras: Vec<RuleExtra> = Vec::new();
    let mut feeds = Vec::new();

    for (index, feed) in cfg.feeds.iter().enumerate() {
        feeds.push(FeedInfo {
            name: Arc::from(feed.name.as_str()),
            path: feed.path.clone(),
            threatfox: false,
            entries: 0,
            loaded_at: Some(now),
            newest: None,
            confidence: feed.confidence.min(100),
        });
        let mut fr = FeedReport {
            name: feed.name.clone(),
            path: feed.path.clone(),
            ..FeedReport::default()
        };
        let (pairs_before, extras_before) = (pairs.len(), extras.len());
        match read(&feed.path) {
            Err(e) => fr.error = Some(e),
            Ok(bytes) => {
                let mut sink = FeedSink {
                    feed,
                    index: index as u8,
                    now,
                    names: &mut names,
                    labels: &mut labels,
                    pairs: &mut pairs,
                    extras: &mut extras,
                    report: &mut fr,
                };
                let parse = ioc::parse_feed(&bytes, feed.format, &mut |ind| sink.add(ind));
                fr.format = parse.format;
                fr.ignored = parse.ignored;
                fr.rejected = parse.rejected;
                fr.rejects = parse.rejects;
                feeds[index].threatfox = matches!(
                    fr.format,
                    Some(FeedFormat::ThreatfoxCsv | FeedFormat::ThreatfoxJson)
                );
            }
        }
        let prev = previous.and_then(|p| {
            p.feeds
                .iter()
                .position(|f| *f.name == *feed.name)
                .map(|i| (p, i))
        });
        let failure = feed_failure(&fr, feed, prev.map(|(p, i)| p.feeds[i].entries));
        if let Some(reason) = failure {
            match prev {
                Some((p, prev_index)) => {
                    pairs.truncate(pairs_before);
                    extras.truncate(extras_before);
                    let kept = copy_feed(
                        p,
                        prev_index,
                        index as u8,
                        &mut names,
                        &mut labels,
                        &mut pairs,
                        &mut extras,
                    );
                    let pf = &p.feeds[prev_index];
                    feeds[index].threatfox = pf.threatfox;
                    feeds[index].loaded_at = pf.loaded_at;
                    feeds[index].newest = pf.newest;
                    fr.kept_previous = true;
                    fr.loaded = kept;
                }
                None => feeds[index].loaded_at = None,
            }
            fr.failure = Some(reason);
        } else {
            feeds[index].newest = fr.newest;
        }
        feeds[index].entries = (pairs.len() - pairs_before) as u64;
        report.feeds.push(fr);
    }

    // Group rules by name id (stable: config order, then file order, within a name).
    pairs.sort_by_key(|(id, _)| *id);
    let n = names.len();
    let mut rule_index = Vec::with_capacity(n + 1);
    let mut rules = Vec::with_capacity(pairs.len());
    let mut next = 0usize;
    for id in 0..n as u32 {
        rule_index.push(rules.len() as u32);
        while next < pairs.len() && pairs[next].0 == id {
            rules.push(pairs[next].1);
            next += 1;
        }
    }
    rule_index.push(rules.len() as u32);
    drop(pairs);

    // [allow]: config domains and files, subtree semantics.
    let mut allow = DomainMatcherBuilder::new();
    let mut allow_names: Vec<String> = Vec::new();
    for d in &cfg.allow_domains {
        allow.insert(d);
        allow_names.push(d.clone());
    }
    for path in &cfg.allow_files {
        let mut fr = FeedReport {
            name: "allow".into(),
            path: path.clone(),
            ..FeedReport::default()
        };
        match read(path) {
            Err(e) => fr.error = Some(e),
            Ok(bytes) => {
                let parse = ioc::parse_feed(&bytes, FeedFormat::Auto, &mut |ind| {
                    if matches!(ind.kind, IocKind::Domain | IocKind::UrlHost) {
                        allow.insert(&ind.name);
                        allow_names.push(ind.name);
                        fr.loaded += 1;
                    }
                });
                fr.format = parse.format;
                fr.ignored = parse.ignored;
                fr.rejected = parse.rejected;
                fr.rejects = parse.rejects;
            }
        }
        report.allow_files.push(fr);
    }

    let hit_counters = crate::metrics::hit_counters(feeds.iter().map(|f| &*f.name));
    let snapshot = PolicySnapshot {
        hit_counters,
        ready: true,
        generation: 0,
        built_at: Some(now),
        settings: AnswerSettings::from(cfg),
        feeds,
        matcher: names.build(),
        rule_index,
        labels,
        rules,
        extras,
        allow: allow.build(),
    };

    // Lint warnings about the allowlist.
    for name in &allow_names {
        if count_labels(name.as_bytes()) <= 1 {
            report.warnings.push(format!(
                "allow entry {name:?} is a top-level domain: it allowlists every name below it"
            ));
        } else if is_public_suffix(name) {
            report.warnings.push(format!(
                "allow entry {name:?} is a public suffix: it allowlists every domain registered under it"
            ));
        }
        let hits = snapshot.all_matches(name.as_bytes());
        let mut feeds_hit: Vec<&str> = hits
            .iter()
            .map(|(r, _)| &*snapshot.feeds[snapshot.rule(*r).feed as usize].name)
            .collect();
        feeds_hit.dedup();
        if !feeds_hit.is_empty() {
            report.warnings.push(format!(
                "feed(s) {} list allowlisted name {name:?}; the allowlist wins",
                feeds_hit.join(", ")
            ));
        }
    }
    (snapshot, report)
}

/// Why a freshly read feed must not replace its last good version, if it must not.
fn feed_failure(
    fr: &FeedReport,
    feed: &FeedConfig,
    previous_entries: Option<u64>,
) -> Option<String> {
    if let Some(e) = &fr.error {
        return Some(e.to_string());
    }
    let had = previous_entries.unwrap_or(0);
    if fr.loaded == 0 && had > 0 {
        return Some(format!(
            "the new version has no entries (the last good one had {had})"
        ));
    }
    let lines = fr.loaded + fr.rejected;
    if lines > 0 && fr.rejected * 100 > lines * u64::from(feed.max_rejected_percent) {
        return Some(format!(
            "{} of {lines} lines rejected (more than max_rejected_percent = {})",
            fr.rejected, feed.max_rejected_percent
        ));
    }
    None
}

/// Re-adds the entries of feed `from` of `prev` as feed `to` of the snapshot being built.
fn copy_feed(
    prev: &PolicySnapshot,
    from: usize,
    to: u8,
    names: &mut DomainMatcherBuilder,
    labels: &mut Vec<u8>,
    pairs: &mut Vec<(u32, Rule)>,
    extras: &mut Vec<RuleExtra>,
) -> u64 {
    let mut copied = 0;
    for (id, name) in prev.matcher.names() {
        let range =
            prev.rule_index[id as usize] as usize..prev.rule_index[id as usize + 1] as usize;
        for rule in &prev.rules[range] {
            if rule.feed as usize != from {
                continue;
            }
            let name = String::from_utf8_lossy(name);
            let new_id = names.insert(&name);
            if new_id as usize == labels.len() {
                labels.push(count_labels(name.as_bytes()));
            }
            let mut rule = *rule;
            rule.feed = to;
            if let Some(extra) = prev.extras.get(rule.extra as usize) {
                extras.push(extra.clone());
                rule.extra = (extras.len() - 1) as u32;
            }
            pairs.push((new_id, rule));
            copied += 1;
        }
    }
    copied
}

/// Heuristic public-suffix check for lint warnings: common multi-label registry suffixes.
fn is_public_suffix(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "co.uk",
        "org.uk",
        "ac.uk",
        "gov.uk",
        "com.au",
        "net.au",
        "org.au",
        "co.jp",
        "ne.jp",
        "or.jp",
        "com.br",
        "com.cn",
        "net.cn",
        "com.mx",
        "co.nz",
        "co.za",
        "co.in",
        "co.kr",
        "com.tr",
        "com.ru",
        "github.io",
        "blogspot.com",
        "herokuapp.com",
        "appspot.com",
        "cloudfront.net",
        "azurewebsites.net",
        "workers.dev",
        "pages.dev",
        "netlify.app",
        "vercel.app",
        "firebaseapp.com",
        "web.app",
        "duckdns.org",
        "no-ip.org",
        "ngrok.io",
        "ngrok-free.app",
        "trycloudflare.com",
        "s3.amazonaws.com",
    ];
    SUFFIXES.contains(&name)
}

fn read(path: &Path) -> Result<Vec<u8>, PolicyError> {
    std::fs::read(path).map_err(|e| PolicyError::Unreadable {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Turns the indicators of one feed into rules, applying the feed's policy.
struct FeedSink<'a> {
    feed: &'a FeedConfig,
    index: u8,
    now: OffsetDateTime,
    names: &'a mut DomainMatcherBuilder,
    labels: &'a mut Vec<u8>,
    pairs: &'a mut Vec<(u32, Rule)>,
    extras: &'a mut Vec<RuleExtra>,
    report: &'a mut FeedReport,
}

impl FeedSink<'_> {
    fn add(&mut self, ind: ioc::Indicator) {
        let feed = self.feed;
        let r = &mut *self.report;
        // A rebuild runs beside the DNS workers; on a machine with few cores, step aside
        // regularly so queries are not delayed behind a million-entry build.
        if self.pairs.len() % 8192 == 8191 {
            std::thread::yield_now();
        }
        if ind.kind == IocKind::Ip {
            r.ips += 1;
            return;
        }
        let meta = &ind.meta;
        if let Some(until) = meta.valid_until
            && until < self.now
        {
            r.expired += 1;
            return;
        }
        let seen = meta.last_seen.or(meta.first_seen);
        if feed.max_age_days > 0
            && let Some(seen) = seen
            && seen < self.now - Duration::days(i64::from(feed.max_age_days))
        {
            r.expired += 1;
            return;
        }
        let confidence = meta.confidence.unwrap_or(feed.confidence).min(100);
        if confidence < feed.min_confidence {
            r.below_min += 1;
            return;
        }
        if ind.kind == IocKind::UrlHost && feed.url_hosts == UrlHosts::Ignore {
            r.url_hosts_ignored += 1;
            return;
        }

        let mut local: Option<(Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>)> = None;
        let effect = match ind.action {
            Some(EntryAction::Allow) => RuleEffect::Except,
            entry => {
                let mut action = match entry {
                    Some(EntryAction::Nxdomain) => Action::Nxdomain,
                    Some(EntryAction::Nodata) => Action::Nodata,
                    Some(EntryAction::Drop) => Action::Drop,
                    Some(EntryAction::Sinkhole { v4, v6 }) => {
                        local = Some((v4, v6));
                        Action::Sinkhole
                    }
                    Some(EntryAction::Allow) | None => feed.action,
                };
                // A feed configured as log-only stays log-only whatever its entries say.
                if feed.action == Action::Log
                    || (ind.kind == IocKind::UrlHost && feed.url_hosts == UrlHosts::Log)
                    || confidence < feed.block_confidence
                {
                    action = Action::Log;
                }
                RuleEffect::Act(action)
            }
        };
        let coverage = match (ind.scope, ind.kind) {
            (Some(Scope::Exact), _) => Coverage::Exact,
            (Some(Scope::Subtree), _) => Coverage::Subtree,
            (Some(Scope::BelowOnly), _) => Coverage::BelowOnly,
            (None, IocKind::UrlHost) => Coverage::Exact,
            (None, _) if feed.subdomains => Coverage::Subtree,
            (None, _) => Coverage::Exact,
        };

        let extra =
            if ind.meta.is_empty() && local.is_none() && confidence == feed.confidence.min(100) {
                u32::MAX
            } else {
                let (local_v4, local_v6) = local.unwrap_or_default();
                self.extras.push(RuleExtra {
                    confidence,
                    line: ind.line,
                    meta: ind.meta.clone(),
                    local_v4,
                    local_v6,
                    local_data: local.is_some(),
                });
                (self.extras.len() - 1) as u32
            };
        let id = self.names.insert(&ind.name);
        if id as usize == self.labels.len() {
            self.labels.push(count_labels(ind.name.as_bytes()));
        }
        self.pairs.push((
            id,
            Rule {
                extra,
                feed: self.index,
                coverage,
                effect,
                kind: ind.kind,
            },
        ));

        r.loaded += 1;
        match ind.kind {
            IocKind::UrlHost => r.url_hosts += 1,
            _ => r.domains += 1,
        }
        match effect {
            RuleEffect::Except => r.exceptions += 1,
            RuleEffect::Act(Action::Log) => r.log_only += 1,
            RuleEffect::Act(_) => r.enforced += 1,
        }
        if let Some(seen) = seen
            && r.newest.is_none_or(|n| seen > n)
        {
            r.newest = Some(seen);
        }
    }
}
