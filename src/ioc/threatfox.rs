//! ThreatFox (abuse.ch) CSV export and JSON (export and API response) formats.
//!
//! Shared mapping (also used by markdown tables): `ioc_type` `domain` → `Domain`, `url` →
//! `UrlHost` (the URL's host), `ip:port` → `Ip` (port stripped), hash types → ignored, anything
//! else → rejected. A `domain`/`url` whose host is an IP address becomes an `Ip` indicator.
//! Metadata: `id` = `ioc_id`/`id` (export: the object key), `threat_type`, `malware` =
//! `malware_printable` (kept as published, including `Unknown malware`; falls back to
//! `malware`/`fk_malware`), `confidence` = `confidence_level` (clamped to 0..=100), `first_seen` /
//! `last_seen` (`YYYY-MM-DD HH:MM:SS`, optional ` UTC`), `reference`, `tags` (comma-split string or
//! array), `raw_value` = the IOC value as published. `None`, `null` and `""` are empty.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::IocMeta;
use super::json::{Cursor, JsonError};
use super::parse::{
    Shown, Sink, TypedKind, emit_typed, lines, non_null, parse_confidence, parse_timestamp,
    split_tags, typed_kind,
};

/// Split one CSV record: quoted fields (`""` = a literal quote) or bare fields, whitespace after
/// a separator skipped (ThreatFox writes `", "`), bare fields trimmed.
pub(crate) fn split_csv(line: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut seg = i;
            let mut owned: Option<String> = None;
            loop {
                let Some(j) = b[i..].iter().position(|&c| c == b'"').map(|p| p + i) else {
                    return Err(format!("unterminated quoted field {}", out.len() + 1));
                };
                if b.get(j + 1) == Some(&b'"') {
                    owned
                        .get_or_insert_with(String::new)
                        .push_str(&line[seg..=j]);
                    i = j + 2;
                    seg = i;
                    continue;
                }
                let field = match owned {
                    Some(mut s) => {
                        s.push_str(&line[seg..j]);
                        Cow::Owned(s)
                    }
                    None => Cow::Borrowed(&line[seg..j]),
                };
                out.push(field);
                i = j + 1;
                break;
            }
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            match b.get(i) {
                None => return Ok(out),
                Some(b',') => i += 1,
                Some(_) => {
                    return Err(format!("unexpected text after quoted field {}", out.len()));
                }
            }
        } else {
            let j = b[i..]
                .iter()
                .position(|&c| c == b',')
                .map_or(b.len(), |p| p + i);
            out.push(Cow::Borrowed(line[i..j].trim()));
            if j == b.len() {
                return Ok(out);
            }
            i = j + 1;
        }
    }
}

/// Column positions, by header name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Columns {
    count: usize,
    value: usize,
    kind: Option<usize>,
    id: Option<usize>,
    threat_type: Option<usize>,
    malware_printable: Option<usize>,
    fk_malware: Option<usize>,
    confidence: Option<usize>,
    first_seen: Option<usize>,
    last_seen: Option<usize>,
    reference: Option<usize>,
    tags: Option<usize>,
}

const COLS_15: [&str; 15] = [
    "first_seen_utc",
    "ioc_id",
    "ioc_value",
    "ioc_type",
    "threat_type",
    "fk_malware",
    "malware_alias",
    "malware_printable",
    "last_seen_utc",
    "confidence_level",
    "is_compromised",
    "reference",
    "tags",
    "anonymous",
    "reporter",
];

impl Columns {
    fn from_names<S: AsRef<str>>(names: &[S]) -> Option<Columns> {
        let pos = |alts: &[&str]| {
            names.iter().position(|n| {
                let n = n.as_ref().trim();
                alts.iter().any(|a| n.eq_ignore_ascii_case(a))
            })
        };
        Some(Columns {
            count: names.len(),
            value: pos(&["ioc_value", "ioc"])?,
            kind: pos(&["ioc_type"]),
            id: pos(&["ioc_id", "id"]),
            threat_type: pos(&["threat_type"]),
            malware_printable: pos(&["malware_printable"]),
            fk_malware: pos(&["fk_malware", "malware"]),
            confidence: pos(&["confidence_level", "confidence"]),
            first_seen: pos(&["first_seen_utc", "first_seen"]),
            last_seen: pos(&["last_seen_utc", "last_seen"]),
            reference: pos(&["reference"]),
            tags: pos(&["tags"]),
        })
    }

    /// The built-in layouts, used when the file has no header comment.
    fn positional(count: usize) -> Option<Columns> {
        match count {
            15 => Columns::from_names(&COLS_15),
            14 => {
                let legacy: Vec<&str> = COLS_15
                    .iter()
                    .copied()
                    .filter(|c| *c != "is_compromised")
                    .collect();
                Columns::from_names(&legacy)
            }
            _ => None,
        }
    }
}

/// ThreatFox CSV: see the module docs. The header is read from the `# "first_seen_utc",...`
/// comment line (any `#` line containing `ioc_value`); without one, rows of 15 then 14 fields use
/// the built-in column orders. A row whose field count differs from the header is rejected.
pub(crate) fn parse_csv(input: &[u8], r: &mut Sink<'_>) {
    let mut header: Option<Columns> = None;
    let fallback15 = Columns::positional(15);
    let fallback14 = Columns::positional(14);
    for (no, bytes) in lines(input) {
        let line = match std::str::from_utf8(bytes) {
            Ok(l) => l,
            Err(e) => {
                r.reject_utf8(no, e);
                continue;
            }
        };
        let t = line.trim();
        if let Some(comment) = t.strip_prefix('#') {
            let c = comment.trim();
            if c.contains("ioc_value")
                && let Ok(names) = split_csv(c)
                && let Some(cols) = Columns::from_names(&names)
            {
                header = Some(cols);
            }
            r.ignore();
            continue;
        }
        if t.is_empty() {
            r.ignore();
            continue;
        }
        let fields = match split_csv(t) {
            Ok(f) => f,
            Err(e) => {
                r.reject(no, format_args!("malformed CSV row: {e}"));
                continue;
            }
        };
        let cols = match &header {
            Some(h) if h.count == fields.len() => Some(h),
            Some(h) => {
                r.reject(
                    no,
                    format_args!(
                        "expected {} fields (per the header), found {}",
                        h.count,
                        fields.len()
                    ),
                );
                continue;
            }
            None => match fields.len() {
                15 => fallback15.as_ref(),
                14 => fallback14.as_ref(),
                _ => None,
            },
        };
        let Some(cols) = cols else {
            r.reject(
                no,
                format_args!(
                    "expected 15 or 14 fields (no header line), found {}",
                    fields.len()
                ),
            );
            continue;
        };
        let get = |i: Option<usize>| i.and_then(|i| fields.get(i)).and_then(|f| non_null(f));
        let Some(value) = get(Some(cols.value)) else {
            r.reject(no, format_args!("empty ioc_value"));
            continue;
        };
        let kind = match get(cols.kind) {
            None => TypedKind::Infer,
            Some(t) => match typed_kind(t) {
                Some(k) => k,
                None => {
                    r.reject(no, format_args!("unsupported ioc_type {}", Shown(t)));
                    continue;
                }
            },
        };
        if kind == TypedKind::Ignore {
            r.ignore();
            continue;
        }
        let mut meta = IocMeta {
            id: get(cols.id).map(str::to_owned),
            threat_type: get(cols.threat_type).map(str::to_owned),
            malware: get(cols.malware_printable)
                .or_else(|| get(cols.fk_malware))
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
}

fn str_field<'v>(o: &'v Map<String, Value>, keys: &[&str]) -> Option<Cow<'v, str>> {
    keys.iter().find_map(|k| match o.get(*k)? {
        Value::String(s) => non_null(s).map(Cow::Borrowed),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    })
}

/// One ThreatFox IOC object (API `data[]` element or export array element).
fn tf_object(r: &mut Sink<'_>, line: u32, v: Value, key_id: Option<&str>) {
    let Value::Object(o) = v else {
        r.reject(line, format_args!("expected an IOC object"));
        return;
    };
    let Some(value) = str_field(&o, &["ioc", "ioc_value"]) else {
        r.reject(
            line,
            format_args!("IOC object without \"ioc\"/\"ioc_value\""),
        );
        return;
    };
    let kind = match str_field(&o, &["ioc_type"]) {
        None => TypedKind::Infer,
        Some(t) => match typed_kind(&t) {
            Some(k) => k,
            None => {
                r.reject(line, format_args!("unsupported ioc_type {}", Shown(&t)));
                return;
            }
        },
    };
    if kind == TypedKind::Ignore {
        r.ignore();
        return;
    }
    let owned = |keys: &[&str]| str_field(&o, keys).map(Cow::into_owned);
    let mut meta = IocMeta {
        id: owned(&["id", "ioc_id"]).or_else(|| key_id.map(str::to_owned)),
        threat_type: owned(&["threat_type"]),
        malware: owned(&["malware_printable", "malware"]),
        confidence: str_field(&o, &["confidence_level", "confidence"])
            .and_then(|c| parse_confidence(&c)),
        first_seen: str_field(&o, &["first_seen_utc", "first_seen"])
            .and_then(|s| parse_timestamp(&s)),
        last_seen: str_field(&o, &["last_seen_utc", "last_seen"]).and_then(|s| parse_timestamp(&s)),
        reference: owned(&["reference"]),
        ..IocMeta::default()
    };
    match o.get("tags") {
        Some(Value::String(s)) => split_tags(s, &mut meta.tags),
        Some(Value::Array(a)) => {
            for t in a.iter().filter_map(Value::as_str) {
                split_tags(t, &mut meta.tags);
            }
        }
        _ => {}
    }
    emit_typed(r, line, kind, &value, meta);
}

/// ThreatFox JSON: the export (`{"<id>": [ {ioc_value...} ], ...}`), the API response
/// (`{"query_status": "ok", "data": [ {ioc...} ]}`) or a bare array of IOC objects. A
/// `query_status` other than `ok` is one reject (`query_status: no_result`) and its `data` is
/// skipped. Each indicator carries the line its object starts on. A JSON syntax error is one
/// reject at its line; the objects before it stay loaded.
pub(crate) fn parse_json(input: &[u8], r: &mut Sink<'_>) {
    let mut c = Cursor::new(input);
    if c.at_end() {
        return;
    }
    let res = match c.peek() {
        Some(b'{') => {
            let mut status_ok = true;
            c.object(|c, key, line| match key.as_str() {
                "query_status" => {
                    let v: Value = c.value()?;
                    let s = match &v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    if s != "ok" {
                        status_ok = false;
                        let shown: String = s.chars().take(100).collect();
                        r.reject(line, format_args!("query_status: {shown}"));
                    }
                    Ok(())
                }
                "data" if !status_ok => c.skip_value(),
                _ => match c.peek() {
                    Some(b'[') => {
                        let id = (key != "data").then_some(key);
                        c.array(|c, line| {
                            let v: Value = c.value()?;
                            tf_object(r, line, v, id.as_deref());
                            Ok(())
                        })
                    }
                    Some(b'{') if key != "data" => {
                        let v: Value = c.value()?;
                        tf_object(r, line, v, Some(&key));
                        Ok(())
                    }
                    _ => c.skip_value(),
                },
            })
        }
        Some(b'[') => c.array(|c, line| {
            let v: Value = c.value()?;
            tf_object(r, line, v, None);
            Ok(())
        }),
        _ => Err(c.err("not a JSON object or array")),
    };
    finish(&mut c, res, r);
}

/// Report a structural error or trailing garbage.
pub(crate) fn finish(c: &mut Cursor<'_>, res: Result<(), JsonError>, r: &mut Sink<'_>) {
    match res {
        Err(e) => r.reject(e.line, format_args!("{}", e.msg)),
        Ok(()) => {
            if !c.at_end() {
                let line = c.line();
                r.reject(line, format_args!("trailing data after the JSON document"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FeedFormat, Indicator, IocKind, ParseReport, parse_feed};
    use super::*;
    use time::macros::datetime;

    fn run(input: &[u8], f: FeedFormat) -> (Vec<Indicator>, ParseReport) {
        let mut v = Vec::new();
        let rep = parse_feed(input, f, &mut |i| v.push(i));
        (v, rep)
    }

    const CSV15: &[u8] = b"################################################################\n\
# ThreatFox IOCs: recent additions - CSV format                #\n\
# Last updated: 2026-01-15 09:00:00 UTC                        #\n\
#                                                              #\n\
# Terms Of Use: https://threatfox.abuse.ch/faq/#tos            #\n\
################################################################\n\
#\n\
# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\",\"threat_type\",\"fk_malware\",\"malware_alias\",\"malware_printable\",\"last_seen_utc\",\"confidence_level\",\"is_compromised\",\"reference\",\"tags\",\"anonymous\",\"reporter\"\n\
\"2026-01-15 08:00:00\", \"123456\", \"c2-panel.example\", \"domain\", \"botnet_cc\", \"win.examplerat\", \"None\", \"ExampleRAT\", \"\", \"75\", \"False\", \"None\", \"examplerat,c2\", \"0\", \"example_reporter\"\n\
\"2026-01-15 07:55:10\", \"123455\", \"198.51.100.7:4444\", \"ip:port\", \"botnet_cc\", \"win.example_beacon\", \"ExBeacon,exb\", \"Example Beacon\", \"2026-01-15 08:40:00\", \"100\", \"False\", \"https://blog.example/report\", \"c2\", \"0\", \"example_reporter\"\n\
\"2026-01-15 07:50:00\", \"123454\", \"https://dl.example/payload.bin\", \"url\", \"payload_delivery\", \"unknown\", \"None\", \"Unknown malware\", \"\", \"50\", \"True\", \"None\", \"None\", \"1\", \"anonymous\"\n\
\"2026-01-15 07:45:00\", \"123453\", \"44d88612fea8a8f36de82e1278abb02f\", \"md5_hash\", \"payload\", \"unknown\", \"None\", \"Unknown malware\", \"\", \"50\", \"False\", \"None\", \"None\", \"0\", \"x\"\n\
\"2026-01-15 07:40:00\", \"123452\", \"foo..bar\", \"domain\", \"botnet_cc\", \"unknown\", \"None\", \"Unknown malware\", \"\", \"50\", \"False\", \"None\", \"None\", \"0\", \"x\"\n\
\"2026-01-15 07:40:00\", \"123451\", \"short.example\", \"domain\"\n\
\"2026-01-15 07:35:00\", \"123450\", \"hxxps://b\xc3\xbccher[.]example/x\", \"url\", \"payload_delivery\", \"unknown\", \"None\", \"Unknown malware\", \"\", \"101\", \"False\", \"None\", \"None\", \"0\", \"x\"\n\
# Number of entries: 7\n";

    #[test]
    fn csv_15_columns() {
        let (v, rep) = run(CSV15, FeedFormat::ThreatfoxCsv);
        assert_eq!(v.len(), 4, "{:#?}", rep.rejects);
        let d = &v[0];
        assert_eq!(d.kind, IocKind::Domain);
        assert_eq!(d.name, "c2-panel.example");
        assert_eq!(d.line, 9);
        assert_eq!(d.meta.id.as_deref(), Some("123456"));
        assert_eq!(d.meta.threat_type.as_deref(), Some("botnet_cc"));
        assert_eq!(d.meta.malware.as_deref(), Some("ExampleRAT"));
        assert_eq!(d.meta.confidence, Some(75));
        assert_eq!(d.meta.first_seen, Some(datetime!(2026-01-15 08:00:00 UTC)));
        assert_eq!(d.meta.last_seen, None);
        assert_eq!(d.meta.reference, None);
        assert_eq!(d.meta.tags, ["examplerat", "c2"]);
        assert_eq!(d.meta.raw_value.as_deref(), Some("c2-panel.example"));
        let ip = &v[1];
        assert_eq!(ip.kind, IocKind::Ip);
        assert_eq!(ip.name, "198.51.100.7");
        assert_eq!(ip.ip, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(ip.meta.raw_value.as_deref(), Some("198.51.100.7:4444"));
        assert_eq!(ip.meta.last_seen, Some(datetime!(2026-01-15 08:40:00 UTC)));
        assert_eq!(
            ip.meta.reference.as_deref(),
            Some("https://blog.example/report")
        );
        let u = &v[2];
        assert_eq!(u.kind, IocKind::UrlHost);
        assert_eq!(u.name, "dl.example");
        assert_eq!(
            u.meta.raw_value.as_deref(),
            Some("https://dl.example/payload.bin")
        );
        assert_eq!(u.meta.malware.as_deref(), Some("Unknown malware"));
        assert!(u.meta.tags.is_empty());
        let idn = &v[3];
        assert_eq!(idn.name, "xn--bcher-kva.example");
        assert_eq!(idn.meta.confidence, Some(100));
        assert_eq!(rep.rejected, 2);
        assert_eq!(rep.rejects[0].line, 13);
        assert_eq!(
            rep.rejects[0].reason,
            "invalid domain name \"foo..bar\": empty label"
        );
        assert_eq!(rep.rejects[1].line, 14);
        assert!(rep.rejects[1].reason.contains("expected 15 fields"));
        // 8 header/comment lines + the md5 row + the trailer.
        assert_eq!(rep.ignored, 10);
    }

    #[test]
    fn csv_14_columns_crlf_with_header() {
        let input = b"# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\",\"threat_type\",\"fk_malware\",\"malware_alias\",\"malware_printable\",\"last_seen_utc\",\"confidence_level\",\"reference\",\"tags\",\"anonymous\",\"reporter\"\r\n\
\"2024-03-01 10:00:00\", \"1\", \"evil[.]example:8080\", \"domain\", \"botnet_cc\", \"win.x\", \"None\", \"XRat\", \"2024-03-02 10:00:00\", \"90\", \"https://r.example/1\", \"a, b\", \"0\", \"me\"\r\n";
        let (v, rep) = run(input, FeedFormat::ThreatfoxCsv);
        assert!(rep.rejects.is_empty(), "{:?}", rep.rejects);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "evil.example");
        assert_eq!(v[0].meta.confidence, Some(90));
        assert_eq!(v[0].meta.reference.as_deref(), Some("https://r.example/1"));
        assert_eq!(v[0].meta.tags, ["a", "b"]);
        assert_eq!(v[0].meta.raw_value.as_deref(), Some("evil[.]example:8080"));
        assert_eq!(
            v[0].meta.last_seen,
            Some(datetime!(2024-03-02 10:00:00 UTC))
        );
    }

    #[test]
    fn csv_without_header_uses_field_count() {
        let input = b"\"2024-03-01 10:00:00\", \"1\", \"fourteen.example\", \"domain\", \"botnet_cc\", \"win.x\", \"None\", \"XRat\", \"\", \"90\", \"None\", \"t\", \"0\", \"me\"\n\
\"2026-01-15 08:00:00\", \"2\", \"fifteen.example\", \"domain\", \"botnet_cc\", \"win.x\", \"None\", \"XRat\", \"\", \"80\", \"False\", \"https://r.example/\", \"t\", \"0\", \"me\"\n\
\"only\", \"three\", \"fields\"\n";
        let (v, rep) = run(input, FeedFormat::ThreatfoxCsv);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "fourteen.example");
        assert_eq!(v[0].meta.confidence, Some(90));
        assert_eq!(v[0].meta.tags, ["t"]);
        assert_eq!(v[1].meta.confidence, Some(80));
        assert_eq!(v[1].meta.reference.as_deref(), Some("https://r.example/"));
        assert_eq!(rep.rejected, 1);
        assert_eq!(rep.rejects[0].line, 3);
    }

    #[test]
    fn csv_splitter() {
        let f = split_csv(r#""a", "b,c", "say ""hi""", x , """#).unwrap();
        assert_eq!(f, ["a", "b,c", "say \"hi\"", "x", ""]);
        assert!(split_csv(r#""open"#).is_err());
        assert!(split_csv(r#""a"b"#).is_err());
        assert_eq!(split_csv("").unwrap(), [""]);
    }

    #[test]
    fn json_api_shape() {
        let input = br#"{"query_status":"ok","data":[
{"id":"123456","ioc":"c2-panel.example","threat_type":"botnet_cc","threat_type_desc":"x","ioc_type":"domain","ioc_type_desc":"y","malware":"win.examplerat","malware_printable":"ExampleRAT","malware_alias":null,"malware_malpedia":"https://m.example","confidence_level":75,"first_seen":"2026-01-15 08:00:00 UTC","last_seen":null,"reporter":"r","reference":null,"tags":["examplerat","c2"]},
{"id":"1","ioc":"hxxp://x[.]example/a","ioc_type":"url","confidence_level":"60","tags":null},
{"id":"2","ioc":"deadbeef","ioc_type":"sha256_hash"},
{"id":"3","ioc_type":"domain"},
{"id":"4","ioc":"[2001:db8::5]:443","ioc_type":"ip:port"}
]}"#;
        let (v, rep) = run(input, FeedFormat::ThreatfoxJson);
        assert_eq!(v.len(), 3, "{:?}", rep.rejects);
        assert_eq!(v[0].name, "c2-panel.example");
        assert_eq!(v[0].line, 2);
        assert_eq!(v[0].meta.id.as_deref(), Some("123456"));
        assert_eq!(v[0].meta.confidence, Some(75));
        assert_eq!(v[0].meta.malware.as_deref(), Some("ExampleRAT"));
        assert_eq!(
            v[0].meta.first_seen,
            Some(datetime!(2026-01-15 08:00:00 UTC))
        );
        assert_eq!(v[0].meta.tags, ["examplerat", "c2"]);
        assert_eq!(v[1].kind, IocKind::UrlHost);
        assert_eq!(v[1].name, "x.example");
        assert_eq!(v[1].meta.confidence, Some(60));
        assert_eq!(v[1].line, 3);
        assert_eq!(v[2].kind, IocKind::Ip);
        assert_eq!(v[2].name, "2001:db8::5");
        assert_eq!(rep.ignored, 1);
        assert_eq!(rep.rejected, 1);
        assert_eq!(rep.rejects[0].line, 5);
    }

    #[test]
    fn json_export_shape() {
        let input = br#"{
  "123456": [
    {"ioc_value":"c2-panel.example","ioc_type":"domain","threat_type":"botnet_cc","malware":"win.examplerat","malware_alias":null,"malware_printable":"ExampleRAT","first_seen_utc":"2026-01-15 08:00:00","last_seen_utc":null,"confidence_level":75,"reference":null,"tags":"examplerat,c2","anonymous":"0","reporter":"example_reporter"}
  ],
  "123457": [
    {"ioc_value":"198.51.100.9:80","ioc_type":"ip:port","confidence_level":"100"}
  ]
}"#;
        let (v, rep) = run(input, FeedFormat::ThreatfoxJson);
        assert!(rep.rejects.is_empty(), "{:?}", rep.rejects);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].meta.id.as_deref(), Some("123456"));
        assert_eq!(v[0].meta.tags, ["examplerat", "c2"]);
        assert_eq!(v[0].line, 3);
        assert_eq!(v[1].meta.id.as_deref(), Some("123457"));
        assert_eq!(v[1].name, "198.51.100.9");
        assert_eq!(v[1].line, 6);
    }

    #[test]
    fn json_no_result_and_errors() {
        let (v, rep) = run(
            br#"{"query_status":"no_result","data":"Your search did not yield any results"}"#,
            FeedFormat::ThreatfoxJson,
        );
        assert!(v.is_empty());
        assert_eq!(rep.rejected, 1);
        assert_eq!(rep.rejects[0].reason, "query_status: no_result");
        assert_eq!(rep.rejects[0].line, 1);

        let (v, rep) = run(
            b"[{\"ioc\":\"a.example\",\"ioc_type\":\"domain\"},\n{\"ioc\": tru",
            FeedFormat::ThreatfoxJson,
        );
        assert_eq!(v.len(), 1);
        assert_eq!(rep.rejected, 1);
        assert_eq!(rep.rejects[0].line, 2);
        let (v, rep) = run(b"  ", FeedFormat::ThreatfoxJson);
        assert!(v.is_empty() && rep.rejected == 0);
        let (_, rep) = run(b"{} x", FeedFormat::ThreatfoxJson);
        assert_eq!(rep.rejected, 1);
    }
}
