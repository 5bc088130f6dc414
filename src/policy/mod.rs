//! Policy: the frozen, shareable answer to "what do we do with this name?".
//!
//! A [`PolicySnapshot`] is built off the query path from the feeds and the allowlist
//! ([`build`](fn@build)), then published through [`SharedPolicy`] (an `ArcSwap`): a query does one
//! lock-free load and a handful of hash probes, with no allocation and no lock.
//!
//! # Matching semantics
//! * Names are compared case-insensitively, trailing dot ignored, as IDNA A-labels.
//! * An entry covers its name and every name below it when the feed's `subdomains` is true
//!   (default), unless the format says otherwise: RPZ owners are exact and `*.name` owners cover
//!   only names strictly below; adblock `||d^` and domain-list `*.d` cover `d` and below.
//! * URL IOC hosts (ThreatFox `url` rows) match their host exactly, never its subdomains.
//! * The `[allow]` list wins over every feed, for the listed name and every name below it.
//! * Feed exceptions (RPZ `rpz-passthru.`, adblock `@@||d^`) suppress block entries on the same
//!   name or on its parents, but not entries more specific than the exception.
//! * When several entries match, the winner is the most severe action
//!   (`drop > refused > nxdomain > nodata > sinkhole > log`), then the highest confidence, then
//!   the most specific name; the event lists every feed that matched in `IocFeed`.

pub mod build;
mod huge;
pub mod matcher;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::ControlFlow;
use std::sync::Arc;

use arc_swap::ArcSwap;
use time::OffsetDateTime;

use crate::config::{Action, PolicyConfig};
use crate::ioc::{IocKind, IocMeta};
use matcher::DomainMatcher;

pub use build::{BuildReport, FeedReport, PolicyError, build};

/// Upper bound on configured feeds (a feed set is a 64-bit mask on the query path).
pub const MAX_FEEDS: usize = 64;

/// How an entry's name relates to the query names it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Coverage {
    /// The name only.
    Exact,
    /// The name and all names below it.
    Subtree,
    /// Only names strictly below it.
    BelowOnly,
}

impl Coverage {
    fn covers(self, exact: bool) -> bool {
        match self {
            Coverage::Exact => exact,
            Coverage::Subtree => true,
            Coverage::BelowOnly => !exact,
        }
    }
}

/// What an entry does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleEffect {
    /// Enforce (or, for [`Action::Log`], record) with this action.
    Act(Action),
    /// An exception: never block this name (RPZ passthru, adblock `@@`).
    Except,
}

/// One loaded feed entry, compact (8 bytes: a million entries cost 8 MB). Everything a plain
/// list entry does not need (metadata, confidence other than the feed's, line number, RPZ local
/// data) lives in the [`RuleExtra`] side table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Index into the snapshot's [`RuleExtra`] side table, or `u32::MAX` for none.
    pub extra: u32,
    /// Index into [`PolicySnapshot::feeds`].
    pub feed: u8,
    /// Names covered.
    pub coverage: Coverage,
    /// Effect on a match.
    pub effect: RuleEffect,
    /// Domain, URL host or other.
    pub kind: IocKind,
}

/// Per-entry data that most entries of plain lists do not have.
#[derive(Clone, Debug, Default)]
pub struct RuleExtra {
    /// Effective confidence 0–100 (the feed's default is kept in [`FeedInfo`] instead).
    pub confidence: u8,
    /// 1-based line in the feed file.
    pub line: u32,
    /// Threat-intel metadata.
    pub meta: IocMeta,
    /// RPZ local data: answer with these instead of the configured sinkhole addresses.
    pub local_v4: Option<Ipv4Addr>,
    /// RPZ local data, AAAA.
    pub local_v6: Option<Ipv6Addr>,
    /// RPZ local data present (a missing family then gets NODATA).
    pub local_data: bool,
}

/// A loaded feed as the policy knows it.
#[derive(Clone, Debug)]
pub struct FeedInfo {
    /// Feed name (`IocFeed`).
    pub name: Arc<str>,
    /// Path it was loaded from.
    pub path: std::path::PathBuf,
    /// Loaded from a ThreatFox export (IOC ids link to `threatfox.abuse.ch/ioc/<id>/`).
    pub threatfox: bool,
    /// Entries in service from this feed.
    pub entries: u64,
    /// When the version in service was successfully loaded (`None`: never).
    pub loaded_at: Option<OffsetDateTime>,
    /// Newest first/last-seen date among its entries.
    pub newest: Option<OffsetDateTime>,
    /// Confidence of its entries that have no [`RuleExtra`].
    pub confidence: u8,
}

/// The immutable policy in force. Cheap to share (`Arc`), never mutated after [`build`](fn@build).
#[derive(Debug, Default)]
pub struct PolicySnapshot {
    /// False only for the placeholder served before the first load completes.
    pub ready: bool,
    /// Increases by one with every published snapshot.
    pub generation: u64,
    /// When it was built.
    pub built_at: Option<OffsetDateTime>,
    /// Settings used to answer blocked queries.
    pub settings: AnswerSettings,
    /// Feeds by index.
    pub feeds: Vec<FeedInfo>,
    /// Names listed by some feed.
    matcher: DomainMatcher,
    /// `rule_index[id]..rule_index[id + 1]` are the rules of matcher id `id`.
    rule_index: Vec<u32>,
    /// Label count of each matcher id's name (to recover the matched suffix cheaply).
    labels: Vec<u8>,
    /// All rules, grouped by name id.
    rules: Vec<Rule>,
    /// Side table of metadata.
    extras: Vec<RuleExtra>,
    /// `[allow]` names (subtree semantics).
    allow: DomainMatcher,
    /// `iocdns_ioc_hits_total` handles per feed and action (see [`crate::metrics::hit_counters`]).
    pub hit_counters: Vec<metrics::Counter>,
}

/// How synthesized answers look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerSettings {
    /// A record of the sinkhole action.
    pub sinkhole_ipv4: Ipv4Addr,
    /// AAAA record of the sinkhole action.
    pub sinkhole_ipv6: Ipv6Addr,
    /// TTL of synthesized answers.
    pub ttl: u32,
}

impl Default for AnswerSettings {
    fn default() -> Self {
        Self {
            sinkhole_ipv4: Ipv4Addr::UNSPECIFIED,
            sinkhole_ipv6: Ipv6Addr::UNSPECIFIED,
            ttl: 300,
        }
    }
}

impl From<&PolicyConfig> for AnswerSettings {
    fn from(p: &PolicyConfig) -> Self {
        Self {
            sinkhole_ipv4: p.sinkhole_ipv4,
            sinkhole_ipv6: p.sinkhole_ipv6,
            ttl: p.ttl,
        }
    }
}

/// The outcome for one query name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No entry matched: forward.
    Forward,
    /// The `[allow]` list or a feed exception covers the name: forward, never block.
    Allowlisted,
    /// An entry matched; act on it (`Action::Log` forwards).
    Matched(Match),
}

/// The winning entry of a match and who else matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    /// Index of the winning rule.
    pub rule: u32,
    /// Number of trailing labels of the query name that form the matched entry.
    pub suffix_labels: u8,
    /// Bit `i` set when feed `i` had a matching (non-exception) entry.
    pub feeds: u64,
}

impl PolicySnapshot {
    /// Decides for a query name given as dotted ASCII (any case, optional trailing dot).
    /// No allocation, no lock.
    pub fn decide(&self, qname: &[u8]) -> Verdict {
        if self.is_allowlisted(qname) {
            return Verdict::Allowlisted;
        }
        if self.matcher.is_empty() {
            return Verdict::Forward;
        }
        let total_labels = count_labels(qname);
        let mut best: Option<(Rule, u32, u8)> = None;
        let mut feeds = 0u64;
        // Label count of the most specific exception seen so far; rules on names with
        // fewer or equal labels are suppressed by it.
        let mut except_labels: Option<u8> = None;
        self.matcher.for_each_suffix(qname, |id, exact| {
            let id = id as usize;
            let labels = self.labels.get(id).copied().unwrap_or(0);
            let (start, end) = (
                self.rule_index[id] as usize,
                self.rule_index[id + 1] as usize,
            );
            // Exceptions on this name first: they outrank block rules on the same name.
            for rule in &self.rules[start..end] {
                if rule.effect == RuleEffect::Except && rule.coverage.covers(exact) {
                    except_labels = Some(except_labels.map_or(labels, |l| l.max(labels)));
                }
            }
            if except_labels.is_some_and(|l| labels <= l) {
                // Walk goes from specific to general: everything after this is suppressed.
                return ControlFlow::Break(());
            }
            for (i, rule) in self.rules[start..end].iter().enumerate() {
                let RuleEffect::Act(action) = rule.effect else {
                    continue;
                };
                if !rule.coverage.covers(exact) {
                    continue;
                }
                feeds |= 1u64 << (rule.feed as u32 % 64);
                let better = match &best {
                    None => true,
                    Some((b, _, _)) => {
                        let ba = match b.effect {
                            RuleEffect::Act(a) => a,
                            RuleEffect::Except => Action::Log,
                        };
                        (action.severity(), self.confidence(rule))
                            > (ba.severity(), self.confidence(b))
                    }
                };
                if better {
                    best = Some((*rule, (start + i) as u32, labels));
                }
            }
            ControlFlow::Continue(())
        });
        let _ = total_labels;
        match best {
            None if except_labels.is_some() => Verdict::Allowlisted,
            None => Verdict::Forward,
            Some((_, rule, labels)) => Verdict::Matched(Match {
                rule,
                suffix_labels: labels,
                feeds,
            }),
        }
    }

    /// True when `[allow]` covers the name.
    pub fn is_allowlisted(&self, qname: &[u8]) -> bool {
        let mut hit = false;
        self.allow.for_each_suffix(qname, |_, _| {
            hit = true;
            ControlFlow::Break(())
        });
        hit
    }

    /// The rule at `index`.
    pub fn rule(&self, index: u32) -> &Rule {
        &self.rules[index as usize]
    }

    /// The addresses a sinkhole answer for `rule` uses: its RPZ local data when it has some
    /// (a missing family then gets NODATA), else the configured sinkhole addresses.
    pub fn sinkhole_addrs(&self, rule: &Rule) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        match self.extra(rule).filter(|e| e.local_data) {
            Some(e) => (e.local_v4, e.local_v6),
            None => (
                Some(self.settings.sinkhole_ipv4),
                Some(self.settings.sinkhole_ipv6),
            ),
        }
    }

    /// Effective confidence of a rule.
    pub fn confidence(&self, rule: &Rule) -> u8 {
        match self.extras.get(rule.extra as usize) {
            Some(e) => e.confidence,
            None => self
                .feeds
                .get(rule.feed as usize)
                .map_or(100, |f| f.confidence),
        }
    }

    /// 1-based line of a rule in its feed, when recorded (entries with metadata).
    pub fn line(&self, rule: &Rule) -> Option<u32> {
        self.extras.get(rule.extra as usize).map(|e| e.line)
    }

    /// The metadata of a rule, if it has any.
    pub fn extra(&self, rule: &Rule) -> Option<&RuleExtra> {
        self.extras.get(rule.extra as usize)
    }

    /// The action a match enforces.
    pub fn action_of(&self, m: &Match) -> Action {
        match self.rule(m.rule).effect {
            RuleEffect::Act(a) => a,
            RuleEffect::Except => Action::Log,
        }
    }

    /// Names of the feeds in a feed mask, in config order.
    pub fn feed_names(&self, mask: u64) -> impl Iterator<Item = &str> {
        self.feeds
            .iter()
            .enumerate()
            .filter(move |(i, _)| mask & (1u64 << (*i as u32 % 64)) != 0)
            .map(|(_, f)| &*f.name)
    }

    /// Every rule that covers `qname` (for `iocdns check`): (rule index, matched suffix labels).
    pub fn all_matches(&self, qname: &[u8]) -> Vec<(u32, u8)> {
        let mut out = Vec::new();
        self.matcher.for_each_suffix(qname, |id, exact| {
            let id = id as usize;
            let labels = self.labels.get(id).copied().unwrap_or(0);
            for i in self.rule_index[id]..self.rule_index[id + 1] {
                if self.rules[i as usize].coverage.covers(exact) {
                    out.push((i, labels));
                }
            }
            ControlFlow::Continue(())
        });
        out
    }

    /// Number of distinct names listed by the feeds.
    pub fn names(&self) -> usize {
        self.matcher.len()
    }

    /// Number of loaded rules.
    pub fn rules_len(&self) -> usize {
        self.rules.len()
    }

    /// Approximate heap bytes of the matcher and rule tables.
    pub fn memory_bytes(&self) -> usize {
        self.matcher.memory_bytes()
            + self.allow.memory_bytes()
            + self.rules.capacity() * std::mem::size_of::<Rule>()
            + self.rule_index.capacity() * 4
            + self.labels.capacity()
            + self.extras.capacity() * std::mem::size_of::<RuleExtra>()
    }
}

/// Number of labels in a dotted name (trailing dot ignored, empty name = 0).
pub fn count_labels(name: &[u8]) -> u8 {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() {
        return 0;
    }
    (name.iter().filter(|&&b| b == b'.').count() + 1).min(255) as u8
}

/// The last `labels` labels of a dotted name.
pub fn suffix_of(name: &[u8], labels: u8) -> &[u8] {
    let name = name.strip_suffix(b".").unwrap_or(name);
    let mut seen = 0u8;
    for (i, &b) in name.iter().enumerate().rev() {
        if b == b'.' {
            seen += 1;
            if seen == labels {
                return &name[i + 1..];
            }
        }
    }
    name
}

/// The policy in force, swapped atomically on reload. Clone is cheap (one `Arc`).
#[derive(Clone, Debug)]
pub struct SharedPolicy(Arc<ArcSwap<PolicySnapshot>>);

impl SharedPolicy {
    /// Starts with `initial`.
    pub fn new(initial: PolicySnapshot) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(initial)))
    }

    /// Hot path: lock-free read of the snapshot current at call time. Holding the `Arc` across
    /// an `.await` is fine: a reload does not wait for readers.
    pub fn current(&self) -> Arc<PolicySnapshot> {
        self.0.load_full()
    }

    /// Reload path only: publishes `next` (its generation is set to previous + 1) and returns
    /// the previous snapshot.
    pub fn publish(&self, mut next: PolicySnapshot) -> Arc<PolicySnapshot> {
        next.generation = self.0.load().generation + 1;
        self.0.swap(Arc::new(next))
    }
}
