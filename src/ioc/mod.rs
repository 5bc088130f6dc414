//! IOC feeds: the indicator model and the parsers for every feed format iocdns loads.
//!
//! Parsing is plain synchronous code with no tokio and no hickory server types, so it is cheap to
//! unit-test and can run on a blocking thread during (re)loads. Parsers are *total*: any bytes in,
//! never a panic out. A malformed line is rejected with a line number and a reason and the rest of
//! the feed still loads (a single bad line must never drop a whole feed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use time::OffsetDateTime;

/// The on-disk format of a feed. `Auto` sniffs the content (see [`detect_format`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FeedFormat {
    /// Detect from the content.
    #[default]
    Auto,
    /// One domain per line, `#`/`!` comments, optional `*.` prefix.
    Domains,
    /// hosts file: `ADDRESS name [name...]`, any whitespace, inline `#` comments.
    Hosts,
    /// Adblock DNS subset: `||domain^` block rules and `@@||domain^` allow rules.
    Adblock,
    /// DNS Response Policy Zone file (QNAME triggers).
    Rpz,
    /// ThreatFox CSV export (header in a `#` comment line, 14 or 15 columns).
    ThreatfoxCsv,
    /// ThreatFox JSON: the export (keyed by IOC id) or the API response (`query_status`/`data`).
    ThreatfoxJson,
    /// STIX 2.1 bundle with `indicator` objects.
    Stix,
    /// A markdown table like ThreatFox IOC reports: `| Type | Value | Threat Type | First Seen | Confidence |`.
    Markdown,
}

/// What kind of observable an indicator is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IocKind {
    /// A domain IOC: the name itself is malicious.
    Domain,
    /// The host part of a URL IOC: a weaker signal (often a compromised shared site).
    UrlHost,
    /// An IP address IOC (ThreatFox `ip:port`); kept for answer inspection, never matched on QNAME.
    Ip,
}

/// Which names an entry covers, when the feed format says so explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Only the name itself (RPZ plain owner).
    Exact,
    /// The name and every name below it (`||d^`, `*.d` in a domains list).
    Subtree,
    /// Only names strictly below it, not the name itself (RPZ `*.d` owner).
    BelowOnly,
}

/// An action carried by the entry itself (RPZ policy, adblock `@@` exception).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryAction {
    /// RPZ `CNAME .`
    Nxdomain,
    /// RPZ `CNAME *.`
    Nodata,
    /// RPZ `CNAME rpz-passthru.` or adblock `@@||d^`: an exception, never blocked.
    Allow,
    /// RPZ `CNAME rpz-drop.`: no answer at all.
    Drop,
    /// RPZ local data `A`/`AAAA`: answer with these addresses (a missing family gets NODATA).
    Sinkhole {
        /// Address for A queries.
        v4: Option<Ipv4Addr>,
        /// Address for AAAA queries.
        v6: Option<Ipv6Addr>,
    },
}

/// Threat-intel metadata of one IOC, kept through to the event record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IocMeta {
    /// Feed-side identifier (ThreatFox `ioc_id`, STIX `id`).
    pub id: Option<String>,
    /// ThreatFox `threat_type` (`botnet_cc`, `payload_delivery`, ...) or STIX indicator type.
    pub threat_type: Option<String>,
    /// Malware family (ThreatFox `malware_printable`).
    pub malware: Option<String>,
    /// Confidence 0-100 as published by the feed, if it publishes one.
    pub confidence: Option<u8>,
    /// First seen (UTC).
    pub first_seen: Option<OffsetDateTime>,
    /// Last seen (UTC).
    pub last_seen: Option<OffsetDateTime>,
    /// STIX `valid_until`: the feed's own expiry.
    pub valid_until: Option<OffsetDateTime>,
    /// Reference URL (report link).
    pub reference: Option<String>,
    /// Tags / labels.
    pub tags: Vec<String>,
    /// The value exactly as the feed wrote it (possibly defanged URL), for the event Description.
    pub raw_value: Option<String>,
}

impl IocMeta {
    /// True when no field carries information (plain domain lists), so callers can skip storing it.
    pub fn is_empty(&self) -> bool {
        *self == IocMeta::default()
    }
}

/// One parsed indicator, normalised and ready for the policy builder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indicator {
    /// What kind of observable this is.
    pub kind: IocKind,
    /// For `Domain`/`UrlHost`: the normalised host name (lowercase A-labels, no trailing dot,
    /// no `*.` prefix). For `Ip`: the address in canonical text form.
    pub name: String,
    /// For `Ip` indicators: the address.
    pub ip: Option<IpAddr>,
    /// Explicit scope from the format, or `None` to use the feed/policy `subdomains` setting.
    pub scope: Option<Scope>,
    /// Explicit action from the format (RPZ, adblock exceptions), or `None` for the feed's action.
    pub action: Option<EntryAction>,
    /// Threat-intel metadata; `IocMeta::default()` when the format has none.
    pub meta: IocMeta,
    /// 1-based line number in the feed file (for JSON formats: line where the object starts, or 1).
    pub line: u32,
}

/// A rejected line of a feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: u32,
    /// Why it was rejected, e.g. `invalid domain name "foo..bar"`.
    pub reason: String,
}

/// What one parse of a feed produced besides the indicators themselves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParseReport {
    /// The format actually used (never `Auto`).
    pub format: Option<FeedFormat>,
    /// Indicators handed to the sink.
    pub accepted: u64,
    /// Lines skipped silently by design (comments, blank lines, unsupported-but-valid rows such as
    /// hash IOCs, RPZ SOA/NS records).
    pub ignored: u64,
    /// Every rejected line (capped at [`MAX_REPORTED_REJECTS`]; `rejected` counts them all).
    pub rejects: Vec<LineError>,
    /// Total number of rejected lines.
    pub rejected: u64,
}

/// Upper bound on stored reject messages per feed, so a garbage file cannot exhaust memory.
pub const MAX_REPORTED_REJECTS: usize = 10_000;

mod detect;
mod json;
mod markdown;
mod normalize;
mod parse;
mod rpz;
mod stix;
mod text;
mod threatfox;

pub use detect::{DETECT_WINDOW, detect_format};
pub use normalize::{
    HostOrIp, MAX_LABEL_LEN, MAX_NAME_LEN, NormalizeError, normalize_host, normalize_value, refang,
};
pub use parse::parse_feed;
