//! The [`parse_feed`] entry point and the plumbing shared by the format parsers: line splitting,
//! the report/sink wrapper, timestamp parsing and the typed-IOC (`type` + `value`) mapping used by
//! ThreatFox CSV/JSON and markdown tables.

use std::fmt;
use std::net::IpAddr;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::normalize::{HostOrIp, normalize_value};
use super::{
    FeedFormat, Indicator, IocKind, IocMeta, LineError, MAX_REPORTED_REJECTS, ParseReport,
};

/// Parse a feed, handing every accepted indicator to `sink` as it is found (nothing is
/// collected, so a million-line feed costs one indicator at a time).
///
/// `FeedFormat::Auto` runs [`super::detect_format`] first. Total: any bytes in, never a panic.
/// Bad lines are counted in [`ParseReport::rejected`] (the first [`MAX_REPORTED_REJECTS`] are kept
/// with their 1-based line numbers and a reason); comments, blank lines and valid rows this
/// resolver has no use for (hash IOCs, RPZ SOA/NS, `localhost` in hosts files...) are counted in
/// [`ParseReport::ignored`].
pub fn parse_feed(
    input: &[u8],
    format: FeedFormat,
    sink: &mut dyn FnMut(Indicator),
) -> ParseReport {
    let format = match format {
        FeedFormat::Auto => super::detect_format(input),
        f => f,
    };
    let mut r = Sink::new(format, sink);
    match format {
        // detect_format never returns Auto; parse as a domain list if it ever did.
        FeedFormat::Domains | FeedFormat::Auto => super::text::parse_domains(input, &mut r),
        FeedFormat::Hosts => super::text::parse_hosts(input, &mut r),
        FeedFormat::Adblock => super::text::parse_adblock(input, &mut r),
        FeedFormat::Rpz => super::rpz::parse_rpz(input, &mut r),
        FeedFormat::ThreatfoxCsv => super::threatfox::parse_csv(input, &mut r),
        FeedFormat::ThreatfoxJson => super::threatfox::parse_json(input, &mut r),
        FeedFormat::Stix => super::stix::parse_stix(input, &mut r),
        FeedFormat::Markdown => super::markdown::parse_markdown(input, &mut r),
    }
    r.report
}

/// Wraps the caller's sink and builds the [`ParseReport`].
pub(crate) struct Sink<'a> {
    pub(crate) report: ParseReport,
    sink: &'a mut dyn FnMut(Indicator),
}

impl<'a> Sink<'a> {
    pub(crate) fn new(format: FeedFormat, sink: &'a mut dyn FnMut(Indicator)) -> Self {
        Sink {
            report: ParseReport {
                format: Some(format),
                ..ParseReport::default()
            },
            sink,
        }
    }

    pub(crate) fn accept(&mut self, ind: Indicator) {
        self.report.accepted += 1;
        (self.sink)(ind);
    }

    pub(crate) fn ignore(&mut self) {
        self.report.ignored += 1;
    }

    /// Record a rejected line; the reason is only formatted while under the cap.
    pub(crate) fn reject(&mut self, line: u32, reason: fmt::Arguments<'_>) {
        self.report.rejected += 1;
        if self.report.rejects.len() < MAX_REPORTED_REJECTS {
            self.report.rejects.push(LineError {
                line,
                reason: reason.to_string(),
            });
        }
    }

    pub(crate) fn reject_utf8(&mut self, line: u32, e: std::str::Utf8Error) {
        self.reject(
            line,
            format_args!(
                "line is not valid UTF-8 (invalid byte at column {})",
                e.valid_up_to() + 1
            ),
        );
    }
}

/// Displays a feed value quoted, escaped and truncated, for reject reasons.
pub(crate) struct Shown<'a>(pub(crate) &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 100;
        f.write_str("\"")?;
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX {
                f.write_str("…")?;
                break;
            }
            write!(f, "{}", c.escape_debug())?;
        }
        f.write_str("\"")
    }
}

/// Strip a UTF-8 byte-order mark.
pub(crate) fn strip_bom(input: &[u8]) -> &[u8] {
    input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input)
}

/// Iterate the lines of a feed as `(1-based line number, bytes)`, BOM stripped, `\n` or `\r\n`
/// terminated, no phantom empty line after a final newline.
pub(crate) fn lines(input: &[u8]) -> Lines<'_> {
    Lines {
        rest: strip_bom(input),
        no: 0,
        done: false,
    }
}

pub(crate) struct Lines<'a> {
    rest: &'a [u8],
    no: u32,
    done: bool,
}

impl<'a> Iterator for Lines<'a> {
    type Item = (u32, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.no = self.no.saturating_add(1);
        let line = match memchr::memchr(b'\n', self.rest) {
            Some(i) => {
                let l = &self.rest[..i];
                self.rest = &self.rest[i + 1..];
                if self.rest.is_empty() {
                    self.done = true;
                }
                l
            }
            None => {
                self.done = true;
                if self.rest.is_empty() {
                    return None;
                }
                self.rest
            }
        };
        Some((self.no, line.strip_suffix(b"\r").unwrap_or(line)))
    }
}

/// Parse the timestamps feeds use, always as UTC unless an explicit offset is given:
/// `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS[.frac]]` (space or `T`), optionally followed by `Z`,
/// ` UTC`, `+HH:MM`/`+HHMM`/`-HH:MM`. Anything else is `None`.
pub(crate) fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i32 = digits(&b[0..4])? as i32;
    let month = Month::try_from(digits(&b[5..7])? as u8).ok()?;
    let day = digits(&b[8..10])? as u8;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let mut rest = &s[10..];
    let mut time = Time::MIDNIGHT;
    if let Some(t) = rest.strip_prefix([' ', 'T', 't']) {
        let tb = t.as_bytes();
        if tb.len() >= 5 && tb[2] == b':' && tb[0].is_ascii_digit() {
            let h = digits(&tb[0..2])? as u8;
            let m = digits(&tb[3..5])? as u8;
            let mut sec = 0u8;
            let mut nanos = 0u32;
            let mut k = 5;
            if tb.len() >= 8 && tb[5] == b':' {
                sec = digits(&tb[6..8])? as u8;
                k = 8;
                if tb.get(8) == Some(&b'.') {
                    let frac_len = tb[9..].iter().take_while(|c| c.is_ascii_digit()).count();
                    let frac = &tb[9..9 + frac_len];
                    for (i, &c) in frac.iter().take(9).enumerate() {
                        nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
                    }
                    k = 9 + frac_len;
                }
            }
            time = Time::from_hms_nano(h, m, sec.min(59), nanos).ok()?;
            rest = &t[k..];
        }
    }
    let rest = rest.trim();
    let offset = if rest.is_empty()
        || rest.eq_ignore_ascii_case("z")
        || rest.eq_ignore_ascii_case("utc")
        || rest.eq_ignore_ascii_case("gmt")
    {
        UtcOffset::UTC
    } else {
        let rb = rest.as_bytes();
        let sign: i8 = match rb[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let r = rest[1..].replace(':', "");
        let rb = r.as_bytes();
        if rb.len() != 4 {
            return None;
        }
        let oh = digits(&rb[0..2])? as i8;
        let om = digits(&rb[2..4])? as i8;
        UtcOffset::from_hms(sign * oh, sign * om, 0).ok()?
    };
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_offset(offset)
            .to_offset(UtcOffset::UTC),
    )
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(b.iter().fold(0u32, |a, &c| a * 10 + u32::from(c - b'0')))
}

/// Parse a confidence: `75`, `"75"`, `100%`, `87.5` → 0..=100 (clamped). Anything else is `None`.
pub(crate) fn parse_confidence(s: &str) -> Option<u8> {
    let s = s.trim().trim_end_matches('%').trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(n.min(100) as u8);
    }
    let f = s.parse::<f64>().ok()?;
    (f.is_finite() && f >= 0.0).then(|| f.min(100.0).round() as u8)
}

/// Split a comma-separated tag list, trimming and dropping empties.
pub(crate) fn split_tags(s: &str, out: &mut Vec<String>) {
    for t in s.split(',') {
        let t = t.trim();
        if !t.is_empty() && !out.iter().any(|x| x == t) {
            out.push(t.to_owned());
        }
    }
}

/// `Some(s)` unless empty or a null spelling (`None`, `null`, `-`, `N/A`).
pub(crate) fn non_null(s: &str) -> Option<&str> {
    let s = s.trim();
    if s.is_empty()
        || s == "None"
        || s.eq_ignore_ascii_case("null")
        || s == "-"
        || s.eq_ignore_ascii_case("n/a")
    {
        None
    } else {
        Some(s)
    }
}

/// The kind of observable a feed's `ioc_type` / `Type` column names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypedKind {
    /// A domain IOC (an IP value is still accepted, as an `Ip` indicator).
    Domain,
    /// A URL: the host is the indicator.
    Url,
    /// An IP (`ip:port` etc.).
    Ip,
    /// No type column: guess from the value (`://` → URL, else domain or IP).
    Infer,
    /// Valid but not a network observable (hashes, files...).
    Ignore,
}

/// Map a type name from ThreatFox / markdown tables to a [`TypedKind`]; `None` if unknown.
pub(crate) fn typed_kind(t: &str) -> Option<TypedKind> {
    let t = t.trim();
    let lower;
    let t = if t.bytes().any(|b| b.is_ascii_uppercase()) {
        lower = t.to_ascii_lowercase();
        lower.as_str()
    } else {
        t
    };
    Some(match t {
        "domain" | "hostname" | "fqdn" | "domain-name" | "domain name" | "host" => {
            TypedKind::Domain
        }
        "url" | "uri" | "link" => TypedKind::Url,
        "ip:port" | "ip" | "ipv4" | "ipv6" | "ip-dst" | "ip-src" | "ipv4-addr" | "ipv6-addr"
        | "ip address" | "ip-port" | "ip_port" => TypedKind::Ip,
        "" => TypedKind::Infer,
        "md5" | "sha1" | "sha256" | "sha512" | "sha384" | "ssdeep" | "imphash" | "tlsh"
        | "hash" | "file" | "filename" | "file hash" | "email" | "email-addr" | "mutex" | "ja3"
        | "registry" => TypedKind::Ignore,
        _ if t.ends_with("_hash") || t.ends_with("-hash") || t.ends_with(" hash") => {
            TypedKind::Ignore
        }
        _ => return None,
    })
}

/// Build and accept (or reject) one indicator from a typed value. `meta.raw_value` is set to the
/// value as written.
pub(crate) fn emit_typed(
    r: &mut Sink<'_>,
    line: u32,
    kind: TypedKind,
    value: &str,
    mut meta: IocMeta,
) {
    let value = value.trim();
    if value.is_empty() {
        r.reject(line, format_args!("empty IOC value"));
        return;
    }
    let kind = match kind {
        TypedKind::Ignore => {
            r.ignore();
            return;
        }
        TypedKind::Infer if value.contains("://") => TypedKind::Url,
        k => k,
    };
    let what = match kind {
        TypedKind::Url => "URL",
        TypedKind::Ip => "IP address",
        _ => "domain name",
    };
    match normalize_value(value) {
        Err(e) => r.reject(line, format_args!("invalid {what} {}: {e}", Shown(value))),
        Ok(HostOrIp::Host(name)) if kind == TypedKind::Ip => {
            drop(name);
            r.reject(
                line,
                format_args!("invalid IP address {}: not an IP address", Shown(value)),
            );
        }
        Ok(HostOrIp::Host(name)) => {
            meta.raw_value = Some(value.to_owned());
            r.accept(Indicator {
                kind: if kind == TypedKind::Url {
                    IocKind::UrlHost
                } else {
                    IocKind::Domain
                },
                name,
                ip: None,
                scope: None,
                action: None,
                meta,
                line,
            });
        }
        Ok(HostOrIp::Ip(ip)) => {
            meta.raw_value = Some(value.to_owned());
            r.accept(ip_indicator(ip, None, meta, line));
        }
    }
}

/// An `Ip` indicator.
pub(crate) fn ip_indicator(
    ip: IpAddr,
    action: Option<super::EntryAction>,
    meta: IocMeta,
    line: u32,
) -> Indicator {
    Indicator {
        kind: IocKind::Ip,
        name: ip.to_string(),
        ip: Some(ip),
        scope: None,
        action,
        meta,
        line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    #[test]
    fn line_splitting() {
        let v: Vec<_> = lines(b"\xEF\xBB\xBFa\r\nb\n\nc").collect();
        assert_eq!(
            v,
            vec![
                (1, &b"a"[..]),
                (2, &b"b"[..]),
                (3, &b""[..]),
                (4, &b"c"[..])
            ]
        );
        assert_eq!(lines(b"a\n").count(), 1);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n").count(), 1);
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp("2026-01-15 08:00:00"),
            Some(datetime!(2026-01-15 08:00:00 UTC))
        );
        assert_eq!(
            parse_timestamp("2026-01-15 08:00:00 UTC"),
            Some(datetime!(2026-01-15 08:00:00 UTC))
        );
        assert_eq!(
            parse_timestamp("2026-06-19"),
            Some(datetime!(2026-06-19 00:00:00 UTC))
        );
        assert_eq!(
            parse_timestamp("2026-01-15T08:00:00.123Z"),
            Some(datetime!(2026-01-15 08:00:00.123 UTC))
        );
        assert_eq!(
            parse_timestamp("2026-01-15T10:00:00+02:00"),
            Some(datetime!(2026-01-15 08:00:00 UTC))
        );
        assert_eq!(parse_timestamp(""), None);
        assert_eq!(parse_timestamp("None"), None);
        assert_eq!(parse_timestamp("2026-13-01"), None);
        assert_eq!(parse_timestamp("2026-01-15 08:00:00 PST"), None);
    }

    #[test]
    fn confidences() {
        assert_eq!(parse_confidence("100%"), Some(100));
        assert_eq!(parse_confidence(" 75 "), Some(75));
        assert_eq!(parse_confidence("250"), Some(100));
        assert_eq!(parse_confidence("87.6"), Some(88));
        assert_eq!(parse_confidence("high"), None);
        assert_eq!(parse_confidence("-5"), None);
    }

    #[test]
    fn reject_cap_and_shown() {
        let mut n = 0;
        let mut sink = |_: Indicator| n += 1;
        let mut s = Sink::new(FeedFormat::Domains, &mut sink);
        for i in 0..(MAX_REPORTED_REJECTS as u32 + 5) {
            s.reject(i, format_args!("bad {}", Shown("x\"y")));
        }
        assert_eq!(s.report.rejected, MAX_REPORTED_REJECTS as u64 + 5);
        assert_eq!(s.report.rejects.len(), MAX_REPORTED_REJECTS);
        assert_eq!(s.report.rejects[0].reason, "bad \"x\\\"y\"");
        let long = "a".repeat(500);
        assert_eq!(Shown(&long).to_string().chars().count(), 103);
    }

    const ALL: [FeedFormat; 9] = [
        FeedFormat::Auto,
        FeedFormat::Domains,
        FeedFormat::Hosts,
        FeedFormat::Adblock,
        FeedFormat::Rpz,
        FeedFormat::ThreatfoxCsv,
        FeedFormat::ThreatfoxJson,
        FeedFormat::Stix,
        FeedFormat::Markdown,
    ];

    fn parse_all(bytes: &[u8]) {
        for f in ALL {
            let mut n = 0u64;
            let rep = parse_feed(bytes, f, &mut |_| n += 1);
            assert_eq!(rep.accepted, n);
            assert!(rep.format.is_some() && rep.format != Some(FeedFormat::Auto));
            assert!(rep.rejects.iter().all(|e| e.line >= 1));
        }
    }

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("\n".to_string()),
            Just("\r\n".to_string()),
            Just(" ".to_string()),
            Just("\t".to_string()),
            Just("||".to_string()),
            Just("@@".to_string()),
            Just("^$important,".to_string()),
            Just("(".to_string()),
            Just(")".to_string()),
            Just(";".to_string()),
            Just("\"".to_string()),
            Just("\", \"".to_string()),
            Just("|".to_string()),
            Just("|---|".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(":".to_string()),
            Just(",".to_string()),
            Just("'".to_string()),
            Just("\\".to_string()),
            Just("*.".to_string()),
            Just(".".to_string()),
            Just("[.]".to_string()),
            Just("hxxps://".to_string()),
            Just("$ORIGIN rpz.example.\n".to_string()),
            Just("@ SOA a. b. 1 2 3 4 5".to_string()),
            Just(" IN CNAME .".to_string()),
            Just(" A 192.0.2.1".to_string()),
            Just(" AAAA ::1".to_string()),
            Just("# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\"\n".to_string()),
            Just("| Type | Value | Confidence |\n|---|---|---|\n".to_string()),
            Just("{\"type\":\"bundle\",\"objects\":[".to_string()),
            Just("{\"type\":\"indicator\",\"pattern\":\"[domain-name:value = 'a.b'] OR [url:value = '".to_string()),
            Just("{\"query_status\":\"ok\",\"data\":[{\"ioc\":".to_string()),
            Just("0.0.0.0".to_string()),
            Just("::1".to_string()),
            Just("bücher".to_string()),
            Just("evil.example".to_string()),
            Just("2026-01-15 08:00:00".to_string()),
            Just("100%".to_string()),
            "[a-zA-Z0-9._-]{0,12}",
            any::<String>().prop_map(|s| s.chars().take(8).collect()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            parse_all(&bytes);
        }

        #[test]
        fn never_panics_on_format_shaped_garbage(parts in proptest::collection::vec(fragment(), 0..60)) {
            let s = parts.concat();
            parse_all(s.as_bytes());
        }

        #[test]
        fn refang_and_normalize_never_panic(s in any::<String>()) {
            let _ = super::super::normalize::refang(&s);
            let _ = normalize_value(&s);
            let _ = parse_timestamp(&s);
            let _ = parse_confidence(&s);
        }
    }
}
