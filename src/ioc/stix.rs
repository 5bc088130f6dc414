//! STIX 2.1 indicators.
//!
//! Input: a bundle (`{"type":"bundle","objects":[...]}`), a bare array of objects, or a single
//! indicator object. Only `indicator` objects are read; every other object (identity, malware,
//! relationship, marking...) counts as ignored, and so do `revoked: true` indicators.
//!
//! Patterns: one or more observation expressions joined by `OR`, each `[cmp OR cmp ...]`, where
//! every comparison is `<path> = '<string>'` (`\'` and `\\` escapes). Paths `domain-name:value` →
//! `Domain`, `url:value` → `UrlHost`, `ipv4-addr:value` / `ipv6-addr:value` → `Ip` (a `/32` or
//! `/128` suffix is accepted, other CIDRs rejected). One indicator per supported comparison.
//! Comparisons on other objects (`file:hashes...`, `email-addr:value`) are skipped; a pattern
//! with none supported counts as ignored. Rejected with a reason: `AND`, operators other than `=`
//! (`!=`, `LIKE`, `MATCHES`, `IN`...), qualifiers (`WITHIN`, `REPEATS`, `START`), `FOLLOWEDBY`,
//! `pattern_type` other than `stix`, missing/unparsable patterns.
//!
//! Metadata: `id`; `confidence`; `valid_until`; `first_seen` = `valid_from`; `tags` = `labels`
//! then `indicator_types`; `threat_type` = first `indicator_types`, else first `labels`;
//! `malware` = `name` unless the name is just the pattern or one of its values (OpenCTI names
//! indicators after the observable); `reference` = first `external_references[].url`;
//! `raw_value` = the comparison's string as written (unescaped).

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::json::Cursor;
use super::parse::{Shown, Sink, TypedKind, emit_typed, parse_timestamp, split_tags};
use super::threatfox::finish;
use super::{IocMeta, parse::ip_indicator};

/// One `path = 'value'` comparison.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub(crate) path: String,
    pub(crate) value: String,
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn ws(&mut self) {
        let rest = &self.s[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.ws();
        if self.s[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// A bare word (path, keyword, operator word).
    fn word(&mut self) -> &'a str {
        self.ws();
        let rest = &self.s[self.pos..];
        let n = rest
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '=' | '!' | '<' | '>' | '[' | ']' | '(' | ')')
            })
            .unwrap_or(rest.len());
        self.pos += n;
        &rest[..n]
    }

    fn at_end(&mut self) -> bool {
        self.ws();
        self.pos >= self.s.len()
    }

    /// A single-quoted string literal with `\'` and `\\` escapes.
    fn string(&mut self) -> Result<String, String> {
        self.ws();
        let rest = &self.s[self.pos..];
        let Some(body) = rest.strip_prefix('\'') else {
            return Err("expected a quoted string after '='".into());
        };
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e @ ('\'' | '\\'))) => out.push(e),
                    Some((_, e)) => {
                        out.push('\\');
                        out.push(e);
                    }
                    None => break,
                },
                '\'' => {
                    self.pos += 1 + i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err("unterminated string literal".into())
    }
}

/// Parse the supported STIX pattern subset into its comparisons.
pub(crate) fn parse_pattern(p: &str) -> Result<Vec<Comparison>, String> {
    let mut lx = Lexer { s: p, pos: 0 };
    let mut out = Vec::new();
    loop {
        if !lx.eat('[') {
            return Err(if lx.eat('(') {
                "parenthesised observation expressions are not supported".into()
            } else {
                "expected '['".into()
            });
        }
        loop {
            let path = lx.word();
            if path.is_empty() {
                return Err("expected an object path".into());
            }
            lx.ws();
            let op_rest = &lx.s[lx.pos..];
            if op_rest.starts_with("!=") || op_rest.starts_with('<') || op_rest.starts_with('>') {
                return Err("only '=' comparisons are supported".into());
            }
            if !lx.eat('=') {
                let w = lx.word();
                return Err(if w.is_empty() {
                    "expected '='".to_string()
                } else {
                    format!("operator {w} is not supported (only '=')")
                });
            }
            let value = lx.string()?;
            out.push(Comparison {
                path: path.to_ascii_lowercase(),
                value,
            });
            if lx.eat(']') {
                break;
            }
            let kw = lx.word();
            if !kw.eq_ignore_ascii_case("OR") {
                return Err(if kw.eq_ignore_ascii_case("AND") {
                    "AND patterns are not supported".into()
                } else {
                    format!("unexpected {} in pattern", Shown(kw))
                });
            }
        }
        if lx.at_end() {
            return Ok(out);
        }
        let kw = lx.word();
        if !kw.eq_ignore_ascii_case("OR") {
            return Err(match kw.to_ascii_uppercase().as_str() {
                "AND" => "AND patterns are not supported".into(),
                "FOLLOWEDBY" => "FOLLOWEDBY patterns are not supported".into(),
                "WITHIN" | "REPEATS" | "START" | "STOP" => {
                    "qualifiers (WITHIN/REPEATS/START) are not supported".into()
                }
                _ => format!("unexpected {} in pattern", Shown(kw)),
            });
        }
    }
}

fn rfc3339(v: Option<&Value>) -> Option<OffsetDateTime> {
    let s = v?.as_str()?;
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .or_else(|| parse_timestamp(s))
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

fn stix_object(r: &mut Sink<'_>, line: u32, v: Value) {
    let Value::Object(o) = v else {
        r.reject(line, format_args!("expected a STIX object"));
        return;
    };
    if o.get("type").and_then(Value::as_str) != Some("indicator") {
        r.ignore();
        return;
    }
    if o.get("revoked").and_then(Value::as_bool) == Some(true) {
        r.ignore();
        return;
    }
    indicator(r, line, &o);
}

fn indicator(r: &mut Sink<'_>, line: u32, o: &Map<String, Value>) {
    if let Some(pt) = o.get("pattern_type").and_then(Value::as_str)
        && pt != "stix"
    {
        r.reject(line, format_args!("unsupported pattern_type {}", Shown(pt)));
        return;
    }
    let Some(pattern) = o.get("pattern").and_then(Value::as_str) else {
        r.reject(line, format_args!("indicator without a pattern"));
        return;
    };
    let cmps = match parse_pattern(pattern) {
        Ok(c) => c,
        Err(e) => {
            r.reject(
                line,
                format_args!("unsupported STIX pattern {}: {e}", Shown(pattern)),
            );
            return;
        }
    };
    let mut meta = IocMeta {
        id: o.get("id").and_then(Value::as_str).map(str::to_owned),
        confidence: o
            .get("confidence")
            .and_then(Value::as_u64)
            .map(|c| c.min(100) as u8),
        valid_until: rfc3339(o.get("valid_until")),
        first_seen: rfc3339(o.get("valid_from")),
        ..IocMeta::default()
    };
    let labels = strings(o.get("labels"));
    let types = strings(o.get("indicator_types"));
    for t in labels.iter().chain(types.iter()) {
        split_tags(t, &mut meta.tags);
    }
    meta.threat_type = types.first().or(labels.first()).map(|s| (*s).to_owned());
    if let Some(name) = o.get("name").and_then(Value::as_str).map(str::trim)
        && !name.is_empty()
        && name != pattern
        && !cmps.iter().any(|c| c.value.eq_ignore_ascii_case(name))
    {
        meta.malware = Some(name.to_owned());
    }
    meta.reference = o
        .get("external_references")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find_map(|r| r.get("url").and_then(Value::as_str))
        })
        .map(str::to_owned);
    let mut any = false;
    for c in &cmps {
        let kind = match c.path.as_str() {
            "domain-name:value" => TypedKind::Domain,
            "url:value" => TypedKind::Url,
            "ipv4-addr:value" | "ipv6-addr:value" => {
                any = true;
                let (addr, prefix) = match c.value.split_once('/') {
                    Some((a, p)) => (a, Some(p)),
                    None => (c.value.as_str(), None),
                };
                let host_prefix = match prefix {
                    None => true,
                    Some(p) => (p == "32" && c.path.starts_with("ipv4")) || p == "128",
                };
                match addr.trim().parse() {
                    Ok(ip) if host_prefix => {
                        let mut m = meta.clone();
                        m.raw_value = Some(c.value.clone());
                        r.accept(ip_indicator(ip, None, m, line));
                    }
                    Ok(_) => r.reject(
                        line,
                        format_args!("CIDR ranges are not supported: {}", Shown(&c.value)),
                    ),
                    Err(_) => {
                        r.reject(line, format_args!("invalid IP address {}", Shown(&c.value)))
                    }
                }
                continue;
            }
            _ => continue,
        };
        any = true;
        emit_typed(r, line, kind, &c.value, meta.clone());
    }
    if !any {
        r.ignore();
    }
}

/// See the module docs.
pub(crate) fn parse_stix(input: &[u8], r: &mut Sink<'_>) {
    let mut c = Cursor::new(input);
    if c.at_end() {
        return;
    }
    let start = c.line();
    let res = match c.peek() {
        Some(b'{') => {
            let mut top = Map::new();
            let mut saw_objects = false;
            let res = c.object(|c, key, _line| {
                if key == "objects" && c.peek() == Some(b'[') {
                    saw_objects = true;
                    c.array(|c, line| {
                        let v: Value = c.value()?;
                        stix_object(r, line, v);
                        Ok(())
                    })
                } else {
                    let v: Value = c.value()?;
                    top.insert(key, v);
                    Ok(())
                }
            });
            if res.is_ok() {
                match top.get("type").and_then(Value::as_str) {
                    Some("bundle") => {}
                    Some(_) if !saw_objects => stix_object(r, start, Value::Object(top)),
                    _ if saw_objects => {}
                    _ => r.reject(start, format_args!("not a STIX bundle or object")),
                }
            }
            res
        }
        Some(b'[') => c.array(|c, line| {
            let v: Value = c.value()?;
            stix_object(r, line, v);
            Ok(())
        }),
        _ => Err(c.err("not a JSON object or array")),
    };
    finish(&mut c, res, r);
}

#[cfg(test)]
mod tests {
    use super::super::{FeedFormat, Indicator, IocKind, ParseReport, parse_feed};
    use super::*;
    use time::macros::datetime;

    fn run(input: &[u8]) -> (Vec<Indicator>, ParseReport) {
        let mut v = Vec::new();
        let rep = parse_feed(input, FeedFormat::Stix, &mut |i| v.push(i));
        (v, rep)
    }

    #[test]
    fn patterns() {
        let c = parse_pattern("[domain-name:value = 'evil.example']").unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, "domain-name:value");
        assert_eq!(c[0].value, "evil.example");
        let c = parse_pattern(
            "[domain-name:value = 'a.example' OR url:value = 'http://b.example/it\\'s'] OR [ipv4-addr:value='192.0.2.1']",
        )
        .unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[1].value, "http://b.example/it's");
        assert_eq!(c[2].path, "ipv4-addr:value");
        let c = parse_pattern("[file:hashes.'SHA-256' = 'abc']").unwrap();
        assert_eq!(c[0].path, "file:hashes.'sha-256'");
        for bad in [
            "[domain-name:value = 'a' AND url:value = 'b']",
            "[domain-name:value != 'a']",
            "[domain-name:value LIKE '%.a']",
            "[domain-name:value = 'a'] WITHIN 5 SECONDS",
            "[domain-name:value = 'a'] FOLLOWEDBY [url:value = 'b']",
            "([domain-name:value = 'a'])",
            "[domain-name:value = 'a",
            "domain-name:value = 'a'",
            "[domain-name:value = 'a'",
            "",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
    }

    const BUNDLE: &[u8] = br#"{
  "type": "bundle",
  "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
  "objects": [
    {
      "type": "identity", "spec_version": "2.1", "id": "identity--1", "name": "ThreatFox"
    },
    {
      "type": "indicator",
      "spec_version": "2.1",
      "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
      "created": "2026-01-15T08:00:00.000Z",
      "modified": "2026-01-15T08:00:00.000Z",
      "name": "ExampleRAT C2",
      "indicator_types": ["malicious-activity"],
      "labels": ["botnet_cc", "examplerat"],
      "pattern": "[domain-name:value = 'c2-panel.example']",
      "pattern_type": "stix",
      "valid_from": "2026-01-15T08:00:00Z",
      "valid_until": "2026-07-15T08:00:00Z",
      "confidence": 75,
      "external_references": [{"source_name": "threatfox", "url": "https://threatfox.abuse.ch/ioc/123456/"}]
    },
    {"type": "indicator", "id": "indicator--2", "name": "hxxps://dl[.]example/x", "pattern": "[url:value = 'hxxps://dl[.]example/x'] OR [ipv4-addr:value = '198.51.100.7/32']", "pattern_type": "stix", "valid_from": "2026-01-15T08:00:00Z"},
    {"type": "indicator", "id": "indicator--3", "pattern": "[file:hashes.'SHA-256' = 'aa']", "pattern_type": "stix", "valid_from": "2026-01-15T08:00:00Z"},
    {"type": "indicator", "id": "indicator--4", "pattern": "[domain-name:value = 'revoked.example']", "revoked": true, "valid_from": "2026-01-15T08:00:00Z"},
    {"type": "indicator", "id": "indicator--5", "pattern": "[domain-name:value MATCHES '.*']", "pattern_type": "stix", "valid_from": "2026-01-15T08:00:00Z"},
    {"type": "indicator", "id": "indicator--6", "pattern": "title: x", "pattern_type": "sigma", "valid_from": "2026-01-15T08:00:00Z"},
    {"type": "indicator", "id": "indicator--7", "pattern": "[ipv4-addr:value = '10.0.0.0/8']", "valid_from": "2026-01-15T08:00:00Z"},
    {"type": "relationship", "id": "relationship--1", "relationship_type": "indicates"}
  ]
}"#;

    #[test]
    fn bundle() {
        let (v, rep) = run(BUNDLE);
        assert_eq!(v.len(), 3, "{:#?}", rep.rejects);
        let d = &v[0];
        assert_eq!(d.kind, IocKind::Domain);
        assert_eq!(d.name, "c2-panel.example");
        assert_eq!(d.line, 8);
        let m = &d.meta;
        assert_eq!(
            m.id.as_deref(),
            Some("indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f")
        );
        assert_eq!(m.confidence, Some(75));
        assert_eq!(m.threat_type.as_deref(), Some("malicious-activity"));
        assert_eq!(m.tags, ["botnet_cc", "examplerat", "malicious-activity"]);
        assert_eq!(m.malware.as_deref(), Some("ExampleRAT C2"));
        assert_eq!(m.first_seen, Some(datetime!(2026-01-15 08:00:00 UTC)));
        assert_eq!(m.valid_until, Some(datetime!(2026-07-15 08:00:00 UTC)));
        assert_eq!(
            m.reference.as_deref(),
            Some("https://threatfox.abuse.ch/ioc/123456/")
        );
        assert_eq!(m.raw_value.as_deref(), Some("c2-panel.example"));
        assert_eq!(v[1].kind, IocKind::UrlHost);
        assert_eq!(v[1].name, "dl.example");
        assert_eq!(
            v[1].meta.malware, None,
            "name equal to the value is not a malware name"
        );
        assert_eq!(v[1].line, 24);
        assert_eq!(v[2].kind, IocKind::Ip);
        assert_eq!(v[2].name, "198.51.100.7");
        // identity, hash-only indicator, revoked, relationship
        assert_eq!(rep.ignored, 4);
        assert_eq!(rep.rejected, 3);
        let lines: Vec<u32> = rep.rejects.iter().map(|e| e.line).collect();
        assert_eq!(lines, [27, 28, 29]);
        assert!(rep.rejects[0].reason.contains("MATCHES"));
        assert!(rep.rejects[1].reason.contains("sigma"));
        assert!(rep.rejects[2].reason.contains("CIDR"));
    }

    #[test]
    fn single_object_and_array() {
        let (v, rep) = run(
            br#"{"type":"indicator","id":"indicator--x","pattern":"[ipv6-addr:value = '2001:db8::1']","valid_from":"2026-01-15T08:00:00Z"}"#,
        );
        assert_eq!(v.len(), 1, "{:?}", rep.rejects);
        assert_eq!(v[0].name, "2001:db8::1");
        let (v, _) = run(
            br#"[{"type":"indicator","pattern":"[domain-name:value = 'a.example']"},{"type":"malware","name":"x"}]"#,
        );
        assert_eq!(v.len(), 1);
        let (v, rep) = run(br#"{"type":"bundle","objects":[{"type":"indicator","pattern":"[domain-name:value = 'a.example']"}, oops]}"#);
        assert_eq!(v.len(), 1);
        assert_eq!(rep.rejected, 1);
        let (_, rep) = run(br#"{"hello":"world"}"#);
        assert_eq!(rep.rejected, 1);
    }
}
