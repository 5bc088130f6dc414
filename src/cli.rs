//! The offline commands: `check` (explain the decision for one name) and `lint` (load every feed
//! and report). Both print to the given writer and never touch the network.

use std::io::Write;
use std::net::IpAddr;

use time::OffsetDateTime;

use crate::config::{Action, Config};
use crate::dns::ClientAcl;
use crate::events::severity_of;
use crate::policy::{self, BuildReport, Coverage, PolicySnapshot, RuleEffect, Verdict, suffix_of};

/// `iocdns check NAME`: prints the decision and every matching entry. Returns the exit code:
/// 0 allowed/forwarded, 1 matched (blocked or logged), 2 client refused.
pub fn check(
    cfg: &Config,
    name: &str,
    qtype: &str,
    client: Option<IpAddr>,
    out: &mut dyn Write,
) -> std::io::Result<i32> {
    let (snap, report) = policy::build(&cfg.policy, OffsetDateTime::now_utc(), None);
    for f in report.feeds.iter().filter(|f| f.error.is_some()) {
        if let Some(e) = &f.error {
            writeln!(out, "warning: feed {} not loaded: {e}", f.name)?;
        }
    }
    let qname = match crate::ioc::normalize_host(name) {
        Ok(n) => n,
        Err(e) => {
            writeln!(out, "{name}: not a valid domain name: {e}")?;
            return Ok(2);
        }
    };
    let qtype = qtype.to_ascii_uppercase();
    writeln!(out, "query:    {qname} {qtype}")?;
    if let Some(ip) = client {
        let acl = ClientAcl::new(cfg.server.allow.clone());
        if !acl.allows(ip) {
            writeln!(out, "client:   {ip} is outside server.allow")?;
            writeln!(out, "decision: REFUSED (EDE 18 Prohibited)")?;
            return Ok(2);
        }
        writeln!(out, "client:   {ip} allowed")?;
    }
    let verdict = snap.decide(qname.as_bytes());
    let code = match verdict {
        Verdict::Forward => {
            writeln!(out, "decision: forward (no IOC entry matches)")?;
            0
        }
        Verdict::Allowlisted => {
            writeln!(
                out,
                "decision: allow (allowlist or feed exception covers the name); forward"
            )?;
            0
        }
        Verdict::Matched(m) => {
            let action = snap.action_of(&m);
            let rule = snap.rule(m.rule);
            let feed = &snap.feeds[rule.feed as usize].name;
            let entry = String::from_utf8_lossy(suffix_of(qname.as_bytes(), m.suffix_labels));
            let line = rule_line(&snap, rule, &entry);
            writeln!(
                out,
                "decision: {} ({}) by feed {feed}, entry {entry} (line {line})",
                action.as_str().to_uppercase(),
                describe_answer(&snap, action, &qtype),
            )?;
            1
        }
    };
    let matches = snap.all_matches(qname.as_bytes());
    if !matches.is_empty() {
        writeln!(out, "matching entries ({}):", matches.len())?;
    }
    for (idx, labels) in matches {
        print_rule(&snap, idx, labels, qname.as_bytes(), out)?;
    }
    Ok(code)
}

/// The entry's line: recorded for entries with metadata; for plain-list entries (which keep no
/// line number, to stay at 8 bytes per entry) found by scanning the feed file, which is fine
/// for an offline command.
fn rule_line(snap: &PolicySnapshot, rule: &crate::policy::Rule, entry: &str) -> String {
    if let Some(l) = snap.line(rule) {
        return l.to_string();
    }
    let path = &snap.feeds[rule.feed as usize].path;
    let Ok(text) = std::fs::read(path) else {
        return "?".into();
    };
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(line).to_ascii_lowercase();
        let mut words = line
            .split(|c: char| c.is_whitespace() || "|^,\"'".contains(c))
            .map(|w| w.trim_start_matches("*.").trim_end_matches('.'));
        if words.any(|w| w == entry) {
            return (i + 1).to_string();
        }
    }
    "?".into()
}

fn describe_answer(snap: &PolicySnapshot, action: Action, qtype: &str) -> String {
    let s = &snap.settings;
    match (action, qtype) {
        (Action::Sinkhole, "A") => format!("A {} ttl {}", s.sinkhole_ipv4, s.ttl),
        (Action::Sinkhole, "AAAA") => format!("AAAA {} ttl {}", s.sinkhole_ipv6, s.ttl),
        (Action::Sinkhole, _) => "NOERROR, no answer (NODATA) for this type".into(),
        (Action::Nxdomain, _) => "NXDOMAIN".into(),
        (Action::Nodata, _) => "NOERROR, no answer".into(),
        (Action::Refused, _) => "REFUSED".into(),
        (Action::Drop, _) => "no answer".into(),
        (Action::Log, _) => "forwarded, recorded as IOC hit".into(),
    }
}

fn print_rule(
    snap: &PolicySnapshot,
    idx: u32,
    labels: u8,
    qname: &[u8],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let rule = snap.rule(idx);
    let feed = &snap.feeds[rule.feed as usize];
    let entry = String::from_utf8_lossy(suffix_of(qname, labels));
    let cov = match rule.coverage {
        Coverage::Exact => "exact",
        Coverage::Subtree => "name and subdomains",
        Coverage::BelowOnly => "subdomains only",
    };
    let effect = match rule.effect {
        RuleEffect::Act(a) => a.as_str(),
        RuleEffect::Except => "exception (passthru)",
    };
    let confidence = snap.confidence(rule);
    writeln!(
        out,
        "  - feed {} ({}:{}): entry {entry} [{cov}], {:?}, action {effect}, confidence {confidence} (severity {})",
        feed.name,
        feed.path.display(),
        rule_line(snap, rule, &entry),
        rule.kind,
        severity_of(confidence),
    )?;
    if let Some(extra) = snap.extra(rule) {
        let m = &extra.meta;
        let mut parts = Vec::new();
        if let Some(v) = &m.id {
            parts.push(format!("id={v}"));
        }
        if let Some(v) = &m.threat_type {
            parts.push(format!("threat_type={v}"));
        }
        if let Some(v) = &m.malware {
            parts.push(format!("malware={v}"));
        }
        if let Some(v) = &m.first_seen {
            parts.push(format!("first_seen={}", v.date()));
        }
        if let Some(v) = &m.last_seen {
            parts.push(format!("last_seen={}", v.date()));
        }
        if let Some(v) = &m.reference {
            parts.push(format!("reference={v}"));
        }
        if !m.tags.is_empty() {
            parts.push(format!("tags={}", m.tags.join(",")));
        }
        if let Some(v) = &m.raw_value {
            parts.push(format!("value={v}"));
        }
        if extra.local_data {
            parts.push(format!(
                "local_data={:?}/{:?}",
                extra.local_v4, extra.local_v6
            ));
        }
        if !parts.is_empty() {
            writeln!(out, "      {}", parts.join(" "))?;
        }
    }
    Ok(())
}

/// `iocdns lint`: loads every feed and allow file, prints counts, every rejected line and the
/// policy warnings. Returns the exit code: 0 clean (warnings allowed), 1 when a feed or allow
/// file cannot be read.
pub fn lint(cfg: &Config, out: &mut dyn Write) -> std::io::Result<i32> {
    let (snap, report) = policy::build(&cfg.policy, OffsetDateTime::now_utc(), None);
    print_report(&report, out)?;
    writeln!(
        out,
        "policy: {} names, {} entries, ~{} KiB",
        snap.names(),
        snap.rules_len(),
        snap.memory_bytes() / 1024
    )?;
    Ok(if report.has_errors() { 1 } else { 0 })
}

/// Prints a build report for humans.
pub fn print_report(report: &BuildReport, out: &mut dyn Write) -> std::io::Result<()> {
    for f in &report.feeds {
        let label = format!("feed {}", f.name);
        print_feed(&label, f, out)?;
    }
    for f in &report.allow_files {
        print_feed("allow file", f, out)?;
    }
    for w in &report.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

fn print_feed(label: &str, f: &policy::FeedReport, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(e) = &f.error {
        writeln!(out, "{label}: ERROR {e}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{label}: {} ({:?}): {} loaded ({} domains, {} url hosts; {} enforced, {} log-only, {} exceptions), {} ip iocs, {} expired, {} below min confidence, {} ignored lines, {} rejected",
        f.path.display(),
        f.format.unwrap_or_default(),
        f.loaded,
        f.domains,
        f.url_hosts,
        f.enforced,
        f.log_only,
        f.exceptions,
        f.ips,
        f.expired,
        f.below_min,
        f.ignored,
        f.rejected
    )?;
    for r in &f.rejects {
        writeln!(out, "{}:{}: {}", f.path.display(), r.line, r.reason)?;
    }
    if (f.rejects.len() as u64) < f.rejected {
        writeln!(
            out,
            "... {} more rejected lines not shown",
            f.rejected - f.rejects.len() as u64
        )?;
    }
    Ok(())
}
