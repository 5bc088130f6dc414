//! Security events: one NDJSON line per answered query, shaped like Microsoft Sentinel's
//! `DnsEvents` table, plus iocdns provenance columns.
//!
//! The DNS path hands a compact [`QueryRecord`] to [`EventSink::emit`], which never waits: it is a
//! `try_send` on a bounded queue, and a full queue counts a drop. A dedicated writer thread
//! ([`EventWriter`]) turns records into JSON, so formatting and disk latency never touch DNS.
//!
//! # Wire format
//! UTF-8, one JSON object per line (NDJSON), appended. Every line has every column below, in this
//! order. Types follow the `DnsEvents` schema: `EventId`, `ResultCode` and `Severity` are JSON
//! integers (`Severity` is `null` when the query matched no IOC), everything else is a string
//! (`""` when empty), including `Confidence`.
//!
//! | column | value |
//! |---|---|
//! | `TimeGenerated` | when the answer was sent, RFC 3339 UTC with milliseconds and `Z` |
//! | `Computer` | `server.computer` (default: host name) |
//! | `SourceSystem` | `events.source_system` (default `Linux`) |
//! | `EventId` | `257` when `ResultCode` is 0, else `258` (Windows DNS RESPONSE_SUCCESS/FAILURE) |
//! | `SubType` | `LookupQuery` |
//! | `ClientIP` | client address |
//! | `Name` | query name as asked, lower-cased, no trailing dot |
//! | `QueryType` | type mnemonic (`A`, `AAAA`, ...), or the decimal number for unnamed types |
//! | `ResultCode` | RCODE sent (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED...); `-1` when no answer was sent (`drop`) |
//! | `Result` | `Success` for RCODE 0, else `Failure` |
//! | `IPAddresses` | A/AAAA addresses in the answer, comma-separated, `""` if none |
//! | `Message` | human summary of an IOC hit, `""` otherwise |
//! | `MaliciousIP` | on an IOC hit: the first answer address (the sinkhole address, or the upstream's in log mode) |
//! | `IndicatorThreatType` | IOC threat type (`payload_delivery`, `botnet_cc`, ...) |
//! | `Confidence` | IOC confidence 0–100, as a string |
//! | `Severity` | 3 when confidence ≥ 90, 2 when ≥ 75, else 1; `null` without a hit |
//! | `Description` | feed, malware, IOC type and the value as published |
//! | `ReportReferenceLink` | the IOC's reference URL, or its ThreatFox page |
//! | `IocFeed` | every feed that listed the name, comma-separated, the winning feed first |
//! | `IocValue` | the list entry that matched (`*.` prefixed for wildcard-only entries) |
//! | `IocId` | the feed's id of the winning entry |
//! | `IocMalware` | malware family of the winning entry |
//! | `PolicyAction` | `sinkhole`, `nxdomain`, `nodata`, `refused`, `drop`, `log` (IOC hits); `allow` (allowlisted); `forward` (no match); `denied` (client outside `server.allow`) |

mod writer;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::SystemTime;

use serde::Serialize;

use crate::config::{Action, EventQueries};
use crate::policy::{Match, PolicySnapshot};

pub use writer::{EventWriter, EventWriterError};

/// The `PolicyAction` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyAction {
    /// An IOC matched and this action was applied.
    Ioc(Action),
    /// The allowlist covered the name.
    Allow,
    /// No IOC matched; forwarded.
    Forward,
    /// The client is outside `server.allow`; REFUSED.
    Denied,
}

impl PolicyAction {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyAction::Ioc(a) => a.as_str(),
            PolicyAction::Allow => "allow",
            PolicyAction::Forward => "forward",
            PolicyAction::Denied => "denied",
        }
    }
}

/// A query name copied inline (no allocation on the DNS path).
#[derive(Clone, Copy)]
pub struct NameBuf {
    len: u8,
    bytes: [u8; 255],
}

impl NameBuf {
    /// Copies a dotted name, lower-cased, without its trailing dot (truncated at 255 bytes).
    pub fn new(name: &[u8]) -> Self {
        let name = name.strip_suffix(b".").unwrap_or(name);
        let len = name.len().min(255);
        let mut bytes = [0u8; 255];
        for (d, s) in bytes.iter_mut().zip(&name[..len]) {
            *d = s.to_ascii_lowercase();
        }
        Self {
            len: len as u8,
            bytes,
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Up to [`AnswerAddrs::CAP`] answer addresses, inline.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnswerAddrs {
    len: u8,
    addrs: [Option<IpAddr>; AnswerAddrs::CAP],
}

impl AnswerAddrs {
    /// Addresses kept per event; more are rare and dropped from the record.
    pub const CAP: usize = 8;

    /// Adds one (ignored past the capacity).
    pub fn push(&mut self, ip: IpAddr) {
        if (self.len as usize) < Self::CAP {
            self.addrs[self.len as usize] = Some(ip);
            self.len += 1;
        }
    }

    /// The addresses.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addrs[..self.len as usize].iter().flatten().copied()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What the DNS path knows about one answered query. Formatting happens on the writer thread.
#[derive(Clone, Debug)]
pub struct QueryRecord {
    /// When the answer was sent.
    pub time: SystemTime,
    /// Client address.
    pub client: IpAddr,
    /// Query name.
    pub name: NameBuf,
    /// Query type code.
    pub qtype: u16,
    /// RCODE sent, or `None` when no answer was sent.
    pub rcode: Option<u16>,
    /// A/AAAA answers.
    pub answers: AnswerAddrs,
    /// What the policy did.
    pub action: PolicyAction,
    /// The IOC hit, with the snapshot it came from (kept alive until written).
    pub hit: Option<(Arc<PolicySnapshot>, Match)>,
}

/// Counters shared by the sink and the writer.
#[derive(Debug, Default)]
pub struct EventStats {
    /// Lines written.
    pub written: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped_queue: AtomicU64,
    /// Records lost to write errors.
    pub dropped_io: AtomicU64,
}

/// The DNS path's handle on the event stream. Clone is cheap.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: Option<SyncSender<QueryRecord>>,
    /// `events.queries`, changeable on reload (0 all, 1 matches, 2 none).
    queries: Arc<AtomicU8>,
    stats: Arc<EventStats>,
}

fn queries_code(q: EventQueries) -> u8 {
    match q {
        EventQueries::All => 0,
        EventQueries::Matches => 1,
        EventQueries::None => 2,
    }
}

impl EventSink {
    /// A sink that discards everything (events disabled).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            queries: Arc::new(AtomicU8::new(queries_code(EventQueries::None))),
            stats: Arc::default(),
        }
    }

    /// Whether a record with this action would be written; lets the DNS path skip building it.
    pub fn wants(&self, action: PolicyAction) -> bool {
        if self.tx.is_none() {
            return false;
        }
        match self.queries.load(Ordering::Relaxed) {
            0 => true,
            1 => matches!(action, PolicyAction::Ioc(_)),
            _ => false,
        }
    }

    /// Queues a record. Never blocks: when the queue is full the record is counted as dropped.
    pub fn emit(&self, record: QueryRecord) {
        if !self.wants(record.action) {
            return;
        }
        if let Some(tx) = &self.tx {
            match tx.try_send(record) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.stats.dropped_queue.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Changes which queries are written (live, on config reload).
    pub fn set_queries(&self, q: EventQueries) {
        self.queries.store(queries_code(q), Ordering::Relaxed);
    }

    /// Shared counters.
    pub fn stats(&self) -> &Arc<EventStats> {
        &self.stats
    }
}

/// One `DnsEvents`-shaped line. Field order is the wire order.
#[derive(Debug, Serialize)]
pub struct DnsEvent<'a> {
    #[serde(rename = "TimeGenerated")]
    time_generated: String,
    #[serde(rename = "Computer")]
    computer: &'a str,
    #[serde(rename = "SourceSystem")]
    source_system: &'a str,
    #[serde(rename = "EventId")]
    event_id: i32,
    #[serde(rename = "SubType")]
    sub_type: &'static str,
    #[serde(rename = "ClientIP")]
    client_ip: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "QueryType")]
    query_type: String,
    #[serde(rename = "ResultCode")]
    result_code: i32,
    #[serde(rename = "Result")]
    result: &'static str,
    #[serde(rename = "IPAddresses")]
    ip_addresses: String,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "MaliciousIP")]
    malicious_ip: String,
    #[serde(rename = "IndicatorThreatType")]
    indicator_threat_type: String,
    #[serde(rename = "Confidence")]
    confidence: String,
    #[serde(rename = "Severity")]
    severity: Option<i32>,
    #[serde(rename = "Description")]
    description: String,
    #[serde(rename = "ReportReferenceLink")]
    report_reference_link: String,
    #[serde(rename = "IocFeed")]
    ioc_feed: String,
    #[serde(rename = "IocValue")]
    ioc_value: String,
    #[serde(rename = "IocId")]
    ioc_id: String,
    #[serde(rename = "IocMalware")]
    ioc_malware: String,
    #[serde(rename = "PolicyAction")]
    policy_action: &'static str,
}

/// Mnemonic of common query types without allocating.
fn qtype_static(code: u16) -> Option<&'static str> {
    Some(match code {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        _ => return None,
    })
}

/// Appends `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    esc(out, s);
    out.push(b'"');
}

/// Whether `s` is printable ASCII without `"` or `\\`, i.e. needs no JSON escaping. Written as a
/// fold without early exit so the compiler checks 16–32 bytes per instruction.
fn plain_json(s: &[u8]) -> bool {
    s.iter().fold(true, |ok, &b| {
        ok & (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\')
    })
}

/// Appends `s` escaped for the inside of a JSON string (no quotes), exactly as serde_json does.
fn esc(out: &mut Vec<u8>, s: &[u8]) {
    if plain_json(s) {
        out.extend_from_slice(s);
    } else {
        let text = String::from_utf8_lossy(s);
        let mut quoted = Vec::with_capacity(s.len() + 8);
        let _ = serde_json::to_writer(&mut quoted, &*text);
        out.extend_from_slice(&quoted[1..quoted.len() - 1]);
    }
}

/// Appends `ip` as `Display` writes it. IPv4 (every client and A answer) and the unspecified
/// IPv6 sinkhole `::` are written directly: `core::fmt` was a tenth of the writer's time.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    text[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    text[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                text[n] = b'0' + octet % 10;
                n += 1;
            }
            out.extend_from_slice(&text[..n]);
        }
        IpAddr::V6(v6) if v6.is_unspecified() => out.extend_from_slice(b"::"),
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Writes the IOC-hit columns (from `Message` to `IocMalware`) by hand.
fn write_hit(out: &mut Vec<u8>, policy: &PolicySnapshot, m: &Match, rec: &QueryRecord) {
    let rule = policy.rule(m.rule);
    let feed = &policy.feeds[rule.feed as usize];
    let meta = policy.extra(rule).map(|e| &e.meta);
    let suffix = crate::policy::suffix_of(rec.name.as_bytes(), m.suffix_labels);
    let below = rule.coverage == crate::policy::Coverage::BelowOnly;
    fn nonempty(v: Option<&String>) -> Option<&str> {
        v.map(String::as_str).filter(|s| !s.is_empty())
    }
    let threat = meta.and_then(|m| nonempty(m.threat_type.as_ref()));
    let id = meta.and_then(|m| nonempty(m.id.as_ref()));
    let malware = meta.and_then(|m| nonempty(m.malware.as_ref()));
    let confidence = policy.confidence(rule);
    let kind = match rule.kind {
        crate::ioc::IocKind::Domain => "domain",
        crate::ioc::IocKind::UrlHost => "url",
        crate::ioc::IocKind::Ip => "ip",
    };
    let qtype_owned;
    let qtype = match qtype_static(rec.qtype) {
        Some(t) => t,
        None => {
            qtype_owned = qtype_name(rec.qtype);
            &qtype_owned
        }
    };
    // Message
    out.extend_from_slice(b",\"Message\":\"");
    for &b in rec.action.as_str().as_bytes() {
        out.push(b.to_ascii_uppercase());
    }
    out.push(b' ');
    esc(out, rec.name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(qtype.as_bytes());
    for (i, ip) in rec.answers.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b" -> " } else { b"," });
        push_ip(out, ip);
    }
    out.extend_from_slice(b" (");
    esc(out, feed.name.as_bytes());
    if let Some(l) = policy.line(rule) {
        out.extend_from_slice(b" line ");
        out.extend_from_slice(itoa::Buffer::new().format(l).as_bytes());
    }
    if let Some(id) = id {
        out.extend_from_slice(b", ioc ");
        esc(out, id.as_bytes());
    }
    out.extend_from_slice(b")\",\"MaliciousIP\":\"");
    if let Some(ip) = rec.answers.iter().next() {
        push_ip(out, ip);
    }
    out.extend_from_slice(b"\",\"IndicatorThreatType\":\"");
    esc(out, threat.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\",\"Confidence\":\"");
    out.extend_from_slice(itoa::Buffer::new().format(confidence).as_bytes());
    out.extend_from_slice(b"\",\"Severity\":");
    out.extend_from_slice(
        itoa::Buffer::new()
            .format(severity_of(confidence))
            .as_bytes(),
    );
    out.extend_from_slice(b",\"Description\":\"");
    esc(out, feed.name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b" IOC ");
    match meta.and_then(|m| m.raw_value.as_deref()) {
        Some(raw) => esc(out, raw.as_bytes()),
        None => {
            if below {
                out.extend_from_slice(b"*.");
            }
            esc(out, suffix);
        }
    }
    if let Some(mw) = malware {
        out.extend_from_slice(b" (");
        esc(out, mw.as_bytes());
        out.push(b')');
    }
    if let Some(id) = id {
        out.extend_from_slice(b" ioc_id=");
        esc(out, id.as_bytes());
    }
    if let Some(t) = threat {
        out.extend_from_slice(b" threat_type=");
        esc(out, t.as_bytes());
    }
    out.extend_from_slice(b"\",\"ReportReferenceLink\":\"");
    match (
        meta.and_then(|m| nonempty(m.reference.as_ref())),
        id,
        feed.threatfox,
    ) {
        (Some(r), _, _) => esc(out, r.as_bytes()),
        (None, Some(id), true) => {
            out.extend_from_slice(b"https://threatfox.abuse.ch/ioc/");
            esc(out, id.as_bytes());
            out.push(b'/');
        }
        _ => {}
    }
    out.extend_from_slice(b"\",\"IocFeed\":\"");
    esc(out, feed.name.as_bytes());
    for f in policy.feed_names(m.feeds) {
        if f != &*feed.name {
            out.push(b',');
            esc(out, f.as_bytes());
        }
    }
    out.extend_from_slice(b"\",\"IocValue\":\"");
    if below {
        out.extend_from_slice(b"*.");
    }
    esc(out, suffix);
    out.extend_from_slice(b"\",\"IocId\":\"");
    esc(out, id.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\",\"IocMalware\":\"");
    esc(out, malware.unwrap_or("").as_bytes());
    out.push(b'"');
}

/// Formats `TimeGenerated` without allocating: the part up to the second is cached.
#[derive(Debug, Default)]
pub struct TimeCache {
    secs: u64,
    prefix: Vec<u8>,
}

impl TimeCache {
    fn write(&mut self, t: SystemTime, out: &mut Vec<u8>) {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        if self.prefix.is_empty() || d.as_secs() != self.secs {
            let full = format_time(t);
            self.secs = d.as_secs();
            self.prefix.clear();
            self.prefix
                .extend_from_slice(&full.as_bytes()[..full.len().saturating_sub(4)]);
        }
        out.extend_from_slice(&self.prefix);
        let ms = d.subsec_millis();
        out.extend_from_slice(&[
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    }
}

/// Writes the NDJSON line (with `\n`) for `rec` into `out` (cleared first).
///
/// Written by hand, with no allocation for the common values; [`DnsEvent`] (serde) is the
/// reference the unit tests pin these bytes to, hits and non-hits.
pub fn write_line(
    rec: &QueryRecord,
    computer: &str,
    source_system: &str,
    times: &mut TimeCache,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    out.clear();
    let rcode = rec.rcode.map_or(-1, i32::from);
    out.extend_from_slice(b"{\"TimeGenerated\":\"");
    times.write(rec.time, out);
    out.extend_from_slice(b"\",\"Computer\":");
    json_str(out, computer.as_bytes());
    out.extend_from_slice(b",\"SourceSystem\":");
    json_str(out, source_system.as_bytes());
    out.extend_from_slice(if rcode == 0 {
        b",\"EventId\":257,\"SubType\":\"LookupQuery\",\"ClientIP\":\""
    } else {
        b",\"EventId\":258,\"SubType\":\"LookupQuery\",\"ClientIP\":\""
    });
    push_ip(out, rec.client);
    out.extend_from_slice(b"\",\"Name\":");
    json_str(out, rec.name.as_bytes());
    out.extend_from_slice(b",\"QueryType\":\"");
    match qtype_static(rec.qtype) {
        Some(t) => out.extend_from_slice(t.as_bytes()),
        None => out.extend_from_slice(qtype_name(rec.qtype).as_bytes()),
    }
    out.extend_from_slice(b"\",\"ResultCode\":");
    out.extend_from_slice(itoa::Buffer::new().format(rcode).as_bytes());
    out.extend_from_slice(b",\"Result\":\"");
    out.extend_from_slice(if rcode == 0 { b"Success" } else { b"Failure" });
    out.extend_from_slice(b"\",\"IPAddresses\":\"");
    for (i, ip) in rec.answers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_ip(out, ip);
    }
    if let Some((policy, m)) = &rec.hit {
        out.push(b'"');
        write_hit(out, policy, m, rec);
        out.extend_from_slice(b",\"PolicyAction\":\"");
        out.extend_from_slice(rec.action.as_str().as_bytes());
        out.extend_from_slice(b"\"}\n");
        return Ok(());
    }
    out.extend_from_slice(b"\",\"Message\":\"\",\"MaliciousIP\":\"\",\"IndicatorThreatType\":\"\",\"Confidence\":\"\",\"Severity\":null,\"Description\":\"\",\"ReportReferenceLink\":\"\",\"IocFeed\":\"\",\"IocValue\":\"\",\"IocId\":\"\",\"IocMalware\":\"\",\"PolicyAction\":\"");
    out.extend_from_slice(rec.action.as_str().as_bytes());
    out.extend_from_slice(b"\"}\n");
    Ok(())
}

/// Severity from confidence: ≥ 90 → 3, ≥ 75 → 2, else 1.
pub fn severity_of(confidence: u8) -> i32 {
    match confidence {
        90.. => 3,
        75.. => 2,
        _ => 1,
    }
}

/// RFC 3339 UTC with milliseconds and `Z`.
pub fn format_time(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&fmt).unwrap_or_default()
}

/// Mnemonic of a query type code, else its decimal number.
pub fn qtype_name(code: u16) -> String {
    let rt = hickory_proto::rr::RecordType::from(code);
    match rt {
        hickory_proto::rr::RecordType::Unknown(n) => n.to_string(),
        other => other.to_string(),
    }
}

impl<'a> DnsEvent<'a> {
    /// Builds the line for a record.
    pub fn from_record(rec: &QueryRecord, computer: &'a str, source_system: &'a str) -> Self {
        let rcode = rec.rcode.map_or(-1, i32::from);
        let ips: Vec<String> = rec.answers.iter().map(|ip| ip.to_string()).collect();
        let name = String::from_utf8_lossy(rec.name.as_bytes()).into_owned();
        let qtype = qtype_name(rec.qtype);
        let mut ev = DnsEvent {
            time_generated: format_time(rec.time),
            computer,
            source_system,
            event_id: if rcode == 0 { 257 } else { 258 },
            sub_type: "LookupQuery",
            client_ip: rec.client.to_string(),
            name,
            query_type: qtype,
            result_code: rcode,
            result: if rcode == 0 { "Success" } else { "Failure" },
            ip_addresses: ips.join(","),
            message: String::new(),
            malicious_ip: String::new(),
            indicator_threat_type: String::new(),
            confidence: String::new(),
            severity: None,
            description: String::new(),
            report_reference_link: String::new(),
            ioc_feed: String::new(),
            ioc_value: String::new(),
            ioc_id: String::new(),
            ioc_malware: String::new(),
            policy_action: rec.action.as_str(),
        };
        if let Some((policy, m)) = &rec.hit {
            ev.fill_hit(policy, m, rec);
        }
        ev
    }

    fn fill_hit(&mut self, policy: &PolicySnapshot, m: &Match, rec: &QueryRecord) {
        let rule = policy.rule(m.rule);
        let feed = &policy.feeds[rule.feed as usize];
        let extra = policy.extra(rule);
        let meta = extra.map(|e| &e.meta);
        let suffix = crate::policy::suffix_of(rec.name.as_bytes(), m.suffix_labels);
        let mut value = String::from_utf8_lossy(suffix).into_owned();
        if rule.coverage == crate::policy::Coverage::BelowOnly {
            value.insert_str(0, "*.");
        }
        let mut feeds: Vec<&str> = vec![&feed.name];
        for f in policy.feed_names(m.feeds) {
            if f != &*feed.name {
                feeds.push(f);
            }
        }
        self.ioc_feed = feeds.join(",");
        self.malicious_ip = rec
            .answers
            .iter()
            .next()
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let confidence = policy.confidence(rule);
        self.confidence = confidence.to_string();
        self.severity = Some(severity_of(confidence));
        let kind = match rule.kind {
            crate::ioc::IocKind::Domain => "domain",
            crate::ioc::IocKind::UrlHost => "url",
            crate::ioc::IocKind::Ip => "ip",
        };
        if let Some(meta) = meta {
            self.indicator_threat_type = meta.threat_type.clone().unwrap_or_default();
            self.ioc_id = meta.id.clone().unwrap_or_default();
            self.ioc_malware = meta.malware.clone().unwrap_or_default();
            self.report_reference_link = match (&meta.reference, &meta.id, feed.threatfox) {
                (Some(r), _, _) if !r.is_empty() => r.clone(),
                (_, Some(id), true) => format!("https://threatfox.abuse.ch/ioc/{id}/"),
                _ => String::new(),
            };
        }
        let raw = meta.and_then(|m| m.raw_value.as_deref()).unwrap_or(&value);
        let mut desc = format!("{}: {kind} IOC {raw}", feed.name);
        if !self.ioc_malware.is_empty() {
            desc.push_str(&format!(" ({})", self.ioc_malware));
        }
        if !self.ioc_id.is_empty() {
            desc.push_str(&format!(" ioc_id={}", self.ioc_id));
        }
        if !self.indicator_threat_type.is_empty() {
            desc.push_str(&format!(" threat_type={}", self.indicator_threat_type));
        }
        self.description = desc;
        self.ioc_value = value;
        let action = rec.action.as_str().to_ascii_uppercase();
        let answer = if self.ip_addresses.is_empty() {
            String::new()
        } else {
            format!(" -> {}", self.ip_addresses)
        };
        let line = policy
            .line(rule)
            .map(|l| format!(" line {l}"))
            .unwrap_or_default();
        self.message = format!(
            "{action} {} {}{answer} ({}{line}{})",
            self.name,
            self.query_type,
            feed.name,
            if self.ioc_id.is_empty() {
                String::new()
            } else {
                format!(", ioc {}", self.ioc_id)
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &[u8], qtype: u16, rcode: Option<u16>, action: PolicyAction) -> QueryRecord {
        let mut answers = AnswerAddrs::default();
        answers.push("192.0.2.1".parse().unwrap());
        answers.push("2001:db8::1".parse().unwrap());
        QueryRecord {
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_780_000_000_123),
            client: "198.51.100.9".parse().unwrap(),
            name: NameBuf::new(name),
            qtype,
            rcode,
            answers,
            action,
            hit: None,
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "::",
            "::1",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "fe80::1:2:3:4",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().into_bytes(), "{text}");
        }
    }

    #[test]
    fn hand_written_lines_equal_serde_lines() {
        let mut times = TimeCache::default();
        for rec in [
            record(b"www.Example.test.", 1, Some(0), PolicyAction::Forward),
            record(b"odd\"name\\x", 65280, Some(3), PolicyAction::Allow),
            record(b"bin\xffary", 28, None, PolicyAction::Denied),
            record(b"x.test", 16, Some(5), PolicyAction::Denied),
        ] {
            let mut fast = Vec::new();
            write_line(&rec, "host \"1\"", "Linux", &mut times, &mut fast).unwrap();
            let mut slow =
                serde_json::to_vec(&DnsEvent::from_record(&rec, "host \"1\"", "Linux")).unwrap();
            slow.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            );
        }
    }

    #[test]
    fn hand_written_hit_lines_equal_serde_lines() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\",\"threat_type\",\"fk_malware\",\"malware_alias\",\"malware_printable\",\"last_seen_utc\",\"confidence_level\",\"is_compromised\",\"reference\",\"tags\",\"anonymous\",\"reporter\"\n\
\"2026-06-19 00:00:00\", \"77\", \"evil.example\", \"domain\", \"botnet_cc\", \"x\", \"None\", \"Rat \\\"q\\\"\", \"\", \"80\", \"False\", \"None\", \"None\", \"0\", \"r\"\n\
\"2026-06-19 00:00:00\", \"78\", \"hxxps://url[.]example/p\", \"url\", \"payload_delivery\", \"x\", \"None\", \"Unknown malware\", \"\", \"60\", \"False\", \"https://ref.example/a\", \"None\", \"0\", \"r\"\n";
        std::fs::write(dir.path().join("tf.csv"), csv).unwrap();
        std::fs::write(
            dir.path().join("p.rpz"),
            "$ORIGIN rpz.\n@ SOA a. b. 1 2 3 4 5\n*.wild.example CNAME .\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("l.txt"), "evil.example\n").unwrap();
        let cfg = crate::config::Config::from_toml(
            "[[feeds]]\nname = \"tf\"\npath = \"tf.csv\"\nurl_hosts = \"block\"\n[[feeds]]\nname = \"rpz\"\npath = \"p.rpz\"\n[[feeds]]\nname = \"plain\"\npath = \"l.txt\"\n",
            dir.path(),
        )
        .unwrap();
        let (snap, _) = crate::policy::build(&cfg.policy, time::OffsetDateTime::now_utc(), None);
        let snap = Arc::new(snap);
        let mut times = TimeCache::default();
        for (name, action) in [
            (
                &b"www.evil.example"[..],
                PolicyAction::Ioc(Action::Sinkhole),
            ),
            (b"url.example", PolicyAction::Ioc(Action::Log)),
            (b"a.wild.example", PolicyAction::Ioc(Action::Nxdomain)),
        ] {
            let crate::policy::Verdict::Matched(m) = snap.decide(name) else {
                panic!("{name:?} must match")
            };
            let mut rec = record(name, 1, Some(0), action);
            rec.hit = Some((snap.clone(), m));
            let mut fast = Vec::new();
            write_line(&rec, "h", "Linux", &mut times, &mut fast).unwrap();
            let mut slow = serde_json::to_vec(&DnsEvent::from_record(&rec, "h", "Linux")).unwrap();
            slow.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            );
        }
    }

    #[test]
    fn time_cache_formats_like_format_time() {
        let mut times = TimeCache::default();
        for ms in [0u64, 999, 1_000, 1_780_000_000_001, 1_780_000_000_999] {
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            let mut out = Vec::new();
            times.write(t, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), format_time(t));
        }
    }
}
