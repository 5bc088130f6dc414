//! Markdown IOC tables, as found in threat reports (ThreatFox-derived hunting write-ups).
//!
//! A table is a line containing `|` (the header) directly followed by a delimiter row
//! (`|---|:---:|`) with the same number of cells; its rows are the following lines that contain
//! `|`, up to the first line that does not. Leading/trailing pipes are optional; `\|` is a literal
//! pipe; cell values lose surrounding backticks and `**`.
//!
//! Columns are found by header name, case-insensitively, `_`/`-` read as spaces: the value column
//! (`Value`, `IOC`, `Indicator`, `Observable`, `IOC Value`) is required; a table without one is
//! ignored with all its rows. Optional: `Type` (`domain` → Domain, `url` → UrlHost, `ip`/`ip:port`
//! → Ip, hash types ignored, unknown types rejected; without the column the kind is inferred),
//! `Threat Type`, `First Seen`/`Date`, `Last Seen`, `Confidence` (`100%` → 100), `Malware`/
//! `Malware Family`, `Tags`, `Reference`, `ID`.
//!
//! Everything outside tables (prose, KQL, code) is ignored, except that a prose
//! `Malware Family: NAME` line sets the malware of the following table rows that have no malware
//! column (the ThreatFox report layout puts it above the table).

use super::IocMeta;
use super::parse::{
    Shown, Sink, TypedKind, emit_typed, lines, non_null, parse_confidence, parse_timestamp,
    split_tags, typed_kind,
};

/// Split a table line into trimmed cells (outer pipes optional, `\|` kept as `|`).
fn cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = if t.ends_with('|') && !t.ends_with("\\|") {
        &t[..t.len() - 1]
    } else {
        t
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cur.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|c| clean_cell(&c).to_owned()).collect()
}

/// Strip whitespace, backticks and bold/italic markers around a cell value.
fn clean_cell(c: &str) -> &str {
    let mut c = c.trim();
    loop {
        let before = c;
        for m in ["**", "__", "`"] {
            if c.len() >= 2 * m.len() && c.starts_with(m) && c.ends_with(m) {
                c = c[m.len()..c.len() - m.len()].trim();
            }
        }
        if c == before {
            return c;
        }
    }
}

fn is_delimiter_row(cells: &[String]) -> bool {
    !cells.is_empty()
        && cells.iter().all(|c| {
            let c = c.strip_prefix(':').unwrap_or(c);
            let c = c.strip_suffix(':').unwrap_or(c);
            !c.is_empty() && c.bytes().all(|b| b == b'-')
        })
}

fn header_key(h: &str) -> String {
    h.chars()
        .map(|c| match c {
            '_' | '-' => ' ',
            c => c.to_ascii_lowercase(),
        })
        .filter(|c| *c != '*' && *c != '`')
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Default)]
struct Columns {
    value: usize,
    kind: Option<usize>,
    threat_type: Option<usize>,
    first_seen: Option<usize>,
    last_seen: Option<usize>,
    confidence: Option<usize>,
    malware: Option<usize>,
    tags: Option<usize>,
    reference: Option<usize>,
    id: Option<usize>,
}

impl Columns {
    fn from_header(header: &[String]) -> Option<Columns> {
        let keys: Vec<String> = header.iter().map(|h| header_key(h)).collect();
        let pos = |alts: &[&str]| keys.iter().position(|k| alts.contains(&k.as_str()));
        Some(Columns {
            value: pos(&[
                "value",
                "ioc",
                "indicator",
                "observable",
                "ioc value",
                "indicator value",
            ])?,
            kind: pos(&["type", "ioc type", "indicator type", "kind"]),
            threat_type: pos(&["threat type", "threat"]),
            first_seen: pos(&["first seen", "first seen utc", "date", "first seen (utc)"]),
            last_seen: pos(&["last seen", "last seen utc"]),
            confidence: pos(&["confidence", "confidence level"]),
            malware: pos(&["malware", "malware family", "family", "malware printable"]),
            tags: pos(&["tags", "labels"]),
            reference: pos(&["reference", "link", "report"]),
            id: pos(&["id", "ioc id"]),
        })
    }
}

enum State {
    /// Outside any table; `candidate` is the last `|` line, which may turn out to be a header.
    Prose { candidate: Option<Vec<String>> },
    /// Inside a table; `None` when the table has no value column (rows ignored).
    Table(Option<Columns>),
}

/// `Malware Family: X` in prose (cut at a following `Total IOCs:` / `IOC Types:`).
fn prose_malware(line: &str) -> Option<String> {
    const KEY: &str = "malware family:";
    let lower = line.to_ascii_lowercase();
    let at = lower.find(KEY)?;
    let rest = &line[at + KEY.len()..];
    let rest_lower = &lower[at + KEY.len()..];
    let end = ["total iocs:", "ioc types:"]
        .iter()
        .filter_map(|m| rest_lower.find(m))
        .min()
        .unwrap_or(rest.len());
    let name = rest[..end].trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// See the module docs.
pub(crate) fn parse_markdown(input: &[u8], r: &mut Sink<'_>) {
    let mut state = State::Prose { candidate: None };
    let mut prose_family: Option<String> = None;
    for (no, bytes) in lines(input) {
        let line = match std::str::from_utf8(bytes) {
            Ok(l) => l,
            Err(e) => {
                r.reject_utf8(no, e);
                state = State::Prose { candidate: None };
                continue;
            }
        };
        let has_pipe = line.contains('|');
        match &mut state {
            State::Table(cols) if has_pipe => {
                let Some(cols) = cols else {
                    r.ignore();
                    continue;
                };
                row(r, no, &cells(line), cols, prose_family.as_deref());
                continue;
            }
            State::Table(_) => {}
            State::Prose { candidate } if has_pipe => {
                let cs = cells(line);
                if let Some(header) = candidate.take()
                    && header.len() == cs.len()
                    && is_delimiter_row(&cs)
                {
                    state = State::Table(Columns::from_header(&header));
                } else {
                    *candidate = Some(cs);
                }
                r.ignore();
                continue;
            }
            State::Prose { .. } => {}
        }
        // Prose line (also the line that ends a table).
        if let Some(f) = prose_malware(line) {
            prose_family = Some(f);
        }
        state = State::Prose { candidate: None };
        r.ignore();
    }
}

fn row(r: &mut Sink<'_>, no: u32, cells: &[String], cols: &Columns, family: Option<&str>) {
    let get = |i: Option<usize>| i.and_then(|i| cells.get(i)).and_then(|c| non_null(c));
    let Some(value) = get(Some(cols.value)) else {
        r.reject(no, format_args!("table row without a value"));
        return;
    };
    let kind = match get(cols.kind) {
        None => TypedKind::Infer,
        Some(t) => match typed_kind(t) {
            Some(k) => k,
            None => {
                r.reject(no, format_args!("unsupported IOC type {}", Shown(t)));
                return;
            }
        },
    };
    let mut meta = IocMeta {
        id: get(cols.id).map(str::to_owned),
        threat_type: get(cols.threat_type).map(str::to_owned),
        malware: get(cols.malware)
            .or(if cols.malware.is_none() { family } else { None })
            .map(str::to_owned),
        confidence: get(cols.confidence).and_then(parse_confidence),
        first_seen: get(cols.first_seen).and_then(parse_timestamp),
        last_seen: get(cols.last_seen).and_then(parse_timestamp),
        reference: get(cols.reference).map(str::to_owned),
        ..IocMeta::default()
    };
    if let Some(t) = get(cols.tags) {
        split_tags(t, &mut meta.tags);
    }
    emit_typed(r, no, kind, value, meta);
}

#[cfg(test)]
mod tests {
    use super::super::{FeedFormat, Indicator, IocKind, ParseReport, parse_feed};
    use super::*;
    use time::macros::datetime;

    fn run(input: &[u8]) -> (Vec<Indicator>, ParseReport) {
        let mut v = Vec::new();
        let rep = parse_feed(input, FeedFormat::Markdown, &mut |i| v.push(i));
        (v, rep)
    }

    /// The seed sample (/work/shared/seed/000_f869d8d8c85b80bf.txt), verbatim.
    const SEED: &[u8] = include_bytes!("../../tests/data/feeds/seed_smartapesg.md");

    #[test]
    fn seed_report() {
        let (v, rep) = run(SEED);
        assert!(rep.rejects.is_empty(), "{:?}", rep.rejects);
        assert_eq!(v.len(), 3);
        let d: Vec<_> = v.iter().filter(|i| i.kind == IocKind::Domain).collect();
        assert_eq!(d.len(), 1);
        let d = d[0];
        assert_eq!(d.name, "ivorycourtyard.top");
        assert_eq!(d.line, 7);
        assert_eq!(d.meta.confidence, Some(100));
        assert_eq!(d.meta.threat_type.as_deref(), Some("payload_delivery"));
        assert_eq!(d.meta.first_seen, Some(datetime!(2026-06-19 00:00:00 UTC)));
        assert_eq!(d.meta.malware.as_deref(), Some("SmartApeSG"));
        assert_eq!(d.meta.raw_value.as_deref(), Some("ivorycourtyard.top"));
        let u: Vec<_> = v.iter().filter(|i| i.kind == IocKind::UrlHost).collect();
        assert_eq!(u.len(), 2);
        assert!(u.iter().all(|i| i.name == "ivorycourtyard.top"));
        assert_eq!(
            u[0].meta.raw_value.as_deref(),
            Some("hxxps://ivorycourtyard.top/middleware/version-schema")
        );
        assert_eq!(u[1].line, 8);
        assert_eq!(rep.accepted, 3);
        assert!(rep.ignored > 20);
    }

    #[test]
    fn inline_seed_table() {
        let input = b"IOC Summary\r\nMalware Family: SmartApeSG Total IOCs: 3 IOC Types: domain, url\r\n\
| Type | Value | Threat Type | First Seen | Confidence |\r\n\
|---|---|---|---|---|\r\n\
| url | hxxps://ivorycourtyard.top/middleware/version-schema | payload_delivery | 2026-06-19 | 100% |\r\n\
| domain | ivorycourtyard.top | payload_delivery | 2026-06-19 | 100% |\r\n\
| url | hxxps://ivorycourtyard.top/middleware/endpoint-asset.js | payload_delivery | 2026-06-19 | 100% |\r\n\
// Hunt\r\n| where Name has_any (malicious_domains)\r\n| project TimeGenerated\r\n";
        let (v, rep) = run(input);
        assert!(rep.rejects.is_empty());
        let kinds: Vec<_> = v
            .iter()
            .map(|i| (i.kind, i.name.as_str(), i.line))
            .collect();
        assert_eq!(
            kinds,
            [
                (IocKind::UrlHost, "ivorycourtyard.top", 5),
                (IocKind::Domain, "ivorycourtyard.top", 6),
                (IocKind::UrlHost, "ivorycourtyard.top", 7)
            ]
        );
        assert_eq!(v[1].meta.malware.as_deref(), Some("SmartApeSG"));
        assert_eq!(rep.ignored, 7);
    }

    #[test]
    fn other_tables_and_bad_rows() {
        let input = b"| Sentinel Table | Notes |\n|---|---|\nDnsEvents | Ensure this data connector is enabled |\n\n\
IOC | Kind | **Confidence**\n:--|:-:|--:\n`evil[.]example` | | 80\n1.2.3.4:80 | ip:port | high\n\
deadbeef | sha256 | 10\nx.example | email-ish | 10\n | domain | 1\nfoo..bar | domain | 5\n";
        let (v, rep) = run(input);
        let got: Vec<_> = v
            .iter()
            .map(|i| (i.kind, i.name.as_str(), i.meta.confidence))
            .collect();
        assert_eq!(
            got,
            [
                (IocKind::Domain, "evil.example", Some(80)),
                (IocKind::Ip, "1.2.3.4", None)
            ]
        );
        assert_eq!(rep.rejected, 3, "{:?}", rep.rejects);
        assert!(rep.rejects[0].reason.contains("email-ish"));
        assert_eq!(rep.rejects[1].line, 11);
        assert!(rep.rejects[2].reason.contains("empty label"));
        // header+delim+row of the first table, blank, header+delim, sha256 row
        assert_eq!(rep.ignored, 7);
    }

    #[test]
    fn cell_splitting() {
        assert_eq!(cells("| a | `b` | **c** |"), ["a", "b", "c"]);
        assert_eq!(cells("a|b"), ["a", "b"]);
        assert_eq!(cells(r"| a\|b | c |"), ["a|b", "c"]);
        assert_eq!(cells("|"), [""]);
        assert!(is_delimiter_row(&cells("|---|:--:|")));
        assert!(!is_delimiter_row(&cells("| where x |")));
        assert_eq!(
            prose_malware("Malware Family: X Y Total IOCs: 3"),
            Some("X Y".into())
        );
    }
}
