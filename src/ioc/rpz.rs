//! DNS Response Policy Zone files (QNAME triggers only).
//!
//! Zone-file syntax handled: `$ORIGIN` (absolute or relative), `$TTL` (ignored), `;` comments
//! (outside quotes), multi-line records in parentheses, optional TTL and class columns in either
//! order, blank owner = previous owner, `@` = origin, relative owners (relative to the origin),
//! absolute owners (the origin is stripped; outside the origin → rejected).
//!
//! The origin is `$ORIGIN` if given, else the owner of the SOA record if it is absolute. With no
//! known origin (abuse.ch style: `@ SOA ...` and relative owners) relative owners are the trigger
//! names as written, and absolute owners are taken as trigger names too.
//!
//! Policies: `CNAME .` → Nxdomain, `CNAME *.` → Nodata, `CNAME rpz-passthru.` (or the legacy
//! CNAME to the trigger name itself) → Allow, `CNAME rpz-drop.` → Drop, `A`/`AAAA` → Sinkhole
//! (A and AAAA of one owner merged into one indicator, emitted after the whole file is read, at
//! the line of the owner's first record; the first address per family wins, later ones are
//! ignored). Rejected as unsupported: `CNAME rpz-tcp-only.`, CNAME rewrites to other names,
//! other local-data types (TXT, MX, ...), `$INCLUDE`. Ignored: SOA, NS, records at the apex,
//! `rpz-ip` / `rpz-nsip` / `rpz-nsdname` / `rpz-client-ip` triggers.
//!
//! Owner `*.d` → `Scope::BelowOnly` for `d`; plain owner → `Scope::Exact` (RPZ needs both records
//! to cover a name and its subdomains). `meta.raw_value` is the owner as written.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::normalize::normalize_dns_name;
use super::parse::{Shown, Sink, lines};
use super::{EntryAction, Indicator, IocKind, IocMeta, Scope};

/// Longest run of physical lines one parenthesised record may span before it is given up as
/// unterminated (an SOA takes ~8).
const MAX_RECORD_LINES: u32 = 100;

/// One logical record: the tokens of one or more physical lines joined by parentheses.
struct Record<'a> {
    line: u32,
    blank_owner: bool,
    tokens: Vec<&'a str>,
}

/// Split one physical line into tokens, updating the parenthesis depth. Quoted strings are kept
/// as one token (with their quotes); `;` outside quotes ends the line.
fn tokenize<'a>(line: &'a str, depth: &mut u32, out: &mut Vec<&'a str>) -> Result<(), String> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' => i += 1,
            b';' => break,
            b'(' => {
                *depth += 1;
                i += 1;
            }
            b')' => {
                if *depth == 0 {
                    return Err("unbalanced ')'".into());
                }
                *depth -= 1;
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if i >= b.len() {
                    return Err("unterminated quoted string".into());
                }
                i += 1;
                out.push(&line[start..i]);
            }
            _ => {
                let start = i;
                while i < b.len() && !matches!(b[i], b' ' | b'\t' | b';' | b'(' | b')' | b'"') {
                    i += if b[i] == b'\\' && i + 1 < b.len() {
                        2
                    } else {
                        1
                    };
                }
                // `i` may land inside a multi-byte char after a backslash; step to a boundary.
                while !line.is_char_boundary(i.min(b.len())) {
                    i += 1;
                }
                let i2 = i.min(b.len());
                out.push(&line[start..i2]);
                i = i2;
            }
        }
    }
    Ok(())
}

fn is_ttl(t: &str) -> bool {
    t.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && t.bytes().all(|c| {
            c.is_ascii_digit() || matches!(c.to_ascii_lowercase(), b's' | b'm' | b'h' | b'd' | b'w')
        })
}

fn is_class(t: &str) -> bool {
    ["IN", "CH", "HS", "CS", "NONE", "ANY"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(t))
}

/// The first `len` bytes of a `Cow`, borrowing when it borrows.
fn cow_prefix<'t>(c: &Cow<'t, str>, len: usize) -> Cow<'t, str> {
    match c {
        Cow::Borrowed(b) => Cow::Borrowed(&b[..len]),
        Cow::Owned(o) => Cow::Owned(o[..len].to_owned()),
    }
}

/// A resolved owner: `None` for the apex, else the lowercase name relative to the origin
/// (borrowed from the input when it is already lowercase).
fn resolve_owner<'t>(tok: &'t str, origin: Option<&str>) -> Result<Option<Cow<'t, str>>, String> {
    if tok == "@" {
        return Ok(None);
    }
    let lower: Cow<'t, str> = if tok.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        Cow::Owned(tok.to_lowercase())
    } else {
        Cow::Borrowed(tok)
    };
    let Some(abs) = lower.strip_suffix('.') else {
        return Ok(Some(lower));
    };
    match origin {
        None => Ok((!abs.is_empty()).then(|| cow_prefix(&lower, abs.len()))),
        Some(o) if abs == o => Ok(None),
        Some("") => Ok(Some(cow_prefix(&lower, abs.len()))),
        Some(o) => match abs.strip_suffix(o).and_then(|p| p.strip_suffix('.')) {
            Some(rel) if !rel.is_empty() => Ok(Some(cow_prefix(&lower, rel.len()))),
            _ => Err(format!(
                "owner {} is outside the zone origin \"{o}.\"",
                Shown(tok)
            )),
        },
    }
}

/// RPZ special triggers this resolver does not implement (IP, NS and client triggers).
fn is_special_trigger(rel: &str) -> bool {
    rel.split('.')
        .any(|l| matches!(l, "rpz-ip" | "rpz-nsip" | "rpz-nsdname" | "rpz-client-ip"))
}

struct Pending {
    name: String,
    scope: Scope,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    line: u32,
    raw: String,
}

struct State<'a> {
    origin: Option<String>,
    prev_owner: Option<&'a str>,
    local: HashMap<(String, Scope), usize>,
    pending: Vec<Pending>,
}

/// See the module docs.
pub(crate) fn parse_rpz(input: &[u8], r: &mut Sink<'_>) {
    let mut st = State {
        origin: None,
        prev_owner: None,
        local: HashMap::new(),
        pending: Vec::new(),
    };
    // One token buffer reused for every record; `open` while a record is being assembled.
    let mut rec = Record {
        line: 0,
        blank_owner: false,
        tokens: Vec::new(),
    };
    let mut open = false;
    let mut depth = 0u32;
    for (no, bytes) in lines(input) {
        let line = match std::str::from_utf8(bytes) {
            Ok(l) => l,
            Err(e) => {
                r.reject_utf8(no, e);
                open = false;
                depth = 0;
                continue;
            }
        };
        if !open {
            rec.line = no;
            rec.blank_owner = line.starts_with([' ', '\t']);
            rec.tokens.clear();
            open = true;
        }
        if let Err(e) = tokenize(line, &mut depth, &mut rec.tokens) {
            open = false;
            depth = 0;
            r.reject(no, format_args!("{e}"));
            continue;
        }
        if depth > 0 {
            if no.saturating_sub(rec.line) >= MAX_RECORD_LINES {
                r.reject(
                    rec.line,
                    format_args!(
                        "unterminated '(' (record spans more than {MAX_RECORD_LINES} lines)"
                    ),
                );
                open = false;
                depth = 0;
            }
            continue;
        }
        open = false;
        if rec.tokens.is_empty() {
            r.ignore();
        } else {
            record(&rec, &mut st, r);
        }
    }
    if open {
        r.reject(rec.line, format_args!("unterminated '(' at end of file"));
    }
    for p in st.pending {
        r.accept(Indicator {
            kind: IocKind::Domain,
            name: p.name,
            ip: None,
            scope: Some(p.scope),
            action: Some(EntryAction::Sinkhole { v4: p.v4, v6: p.v6 }),
            meta: IocMeta {
                raw_value: Some(p.raw),
                ..IocMeta::default()
            },
            line: p.line,
        });
    }
}

fn record<'a>(rec: &Record<'a>, st: &mut State<'a>, r: &mut Sink<'_>) {
    let no = rec.line;
    let toks = &rec.tokens;
    // Directives.
    if !rec.blank_owner && toks[0].starts_with('$') {
        let d = toks[0].to_ascii_uppercase();
        match d.as_str() {
            "$ORIGIN" => match toks.get(1) {
                Some(o) => {
                    let lower = o.to_lowercase();
                    let abs = match lower.strip_suffix('.') {
                        Some(a) => a.to_owned(),
                        None => match st.origin.as_deref() {
                            Some("") | None => lower,
                            Some(cur) => format!("{lower}.{cur}"),
                        },
                    };
                    st.origin = Some(abs);
                    r.ignore();
                }
                None => r.reject(no, format_args!("$ORIGIN without a name")),
            },
            "$TTL" => r.ignore(),
            "$INCLUDE" => r.reject(no, format_args!("$INCLUDE is not supported")),
            _ => r.reject(no, format_args!("unknown directive {}", Shown(toks[0]))),
        }
        return;
    }
    // Owner.
    let (owner, mut idx) = if rec.blank_owner {
        match st.prev_owner {
            Some(o) => (o, 0),
            None => {
                r.reject(no, format_args!("record without an owner name"));
                return;
            }
        }
    } else {
        (toks[0], 1)
    };
    st.prev_owner = Some(owner);
    // Optional TTL and class, in either order.
    for _ in 0..2 {
        if toks.get(idx).is_some_and(|t| is_ttl(t) || is_class(t)) {
            idx += 1;
        }
    }
    let Some(rtype) = toks.get(idx) else {
        r.reject(no, format_args!("missing record type"));
        return;
    };
    let rtype: &str = rtype;
    let is = |t: &str| rtype.eq_ignore_ascii_case(t);
    let rdata = &toks[idx + 1..];
    if is("SOA") {
        if st.origin.is_none() && owner.ends_with('.') {
            st.origin = Some(owner.to_lowercase().trim_end_matches('.').to_owned());
        }
        r.ignore();
        return;
    }
    if is("NS") {
        r.ignore();
        return;
    }
    let rel = match resolve_owner(owner, st.origin.as_deref()) {
        Ok(Some(rel)) => rel,
        Ok(None) => {
            // Apex data (TXT, etc.) is zone bookkeeping, not a trigger.
            r.ignore();
            return;
        }
        Err(e) => {
            r.reject(no, format_args!("{e}"));
            return;
        }
    };
    if is_special_trigger(&rel) {
        r.ignore();
        return;
    }
    let (name_part, scope) = match rel.strip_prefix("*.") {
        Some(rest) => (rest, Scope::BelowOnly),
        None if rel == "*" => {
            r.reject(
                no,
                format_args!(
                    "wildcard owner {} covering the whole zone is not supported",
                    Shown(owner)
                ),
            );
            return;
        }
        None => (&*rel, Scope::Exact),
    };
    if name_part.contains('\\') {
        r.reject(
            no,
            format_args!(
                "escaped characters in owner {} are not supported",
                Shown(owner)
            ),
        );
        return;
    }
    let name = match normalize_dns_name(name_part) {
        Ok(n) => n,
        Err(e) => {
            r.reject(
                no,
                format_args!("invalid domain name {}: {e}", Shown(owner)),
            );
            return;
        }
    };
    let meta = || IocMeta {
        raw_value: Some(owner.to_owned()),
        ..IocMeta::default()
    };
    if is("CNAME") {
        let [target] = rdata else {
            r.reject(no, format_args!("CNAME needs exactly one target"));
            return;
        };
        let t = |s: &str| target.eq_ignore_ascii_case(s);
        let action = match () {
            _ if t(".") => EntryAction::Nxdomain,
            _ if t("*.") => EntryAction::Nodata,
            _ if t("rpz-passthru.") => EntryAction::Allow,
            _ if t("rpz-drop.") => EntryAction::Drop,
            _ if t("rpz-tcp-only.") => {
                r.reject(no, format_args!("rpz-tcp-only policy is not supported"));
                return;
            }
            // Legacy PASSTHRU: CNAME to the trigger name itself.
            _ if scope == Scope::Exact
                && target
                    .strip_suffix('.')
                    .is_some_and(|x| x.to_lowercase() == *rel) =>
            {
                EntryAction::Allow
            }
            _ => {
                r.reject(
                        no,
                        format_args!(
                            "CNAME rewrite to {} is not supported (only ., *., rpz-passthru., rpz-drop.)",
                            Shown(target)
                        ),
                    );
                return;
            }
        };
        r.accept(Indicator {
            kind: IocKind::Domain,
            name,
            ip: None,
            scope: Some(scope),
            action: Some(action),
            meta: meta(),
            line: no,
        });
    } else if is("A") || is("AAAA") {
        let [addr] = rdata else {
            r.reject(no, format_args!("{rtype} needs exactly one address"));
            return;
        };
        let (v4, v6) = if is("A") {
            match addr.parse::<Ipv4Addr>() {
                Ok(a) => (Some(a), None),
                Err(_) => {
                    r.reject(no, format_args!("invalid A address {}", Shown(addr)));
                    return;
                }
            }
        } else {
            match addr.parse::<Ipv6Addr>() {
                Ok(a) => (None, Some(a)),
                Err(_) => {
                    r.reject(no, format_args!("invalid AAAA address {}", Shown(addr)));
                    return;
                }
            }
        };
        let key = (name, scope);
        match st.local.get(&key) {
            Some(&i) => {
                let p = &mut st.pending[i];
                let fresh = (v4.is_some() && p.v4.is_none()) || (v6.is_some() && p.v6.is_none());
                if fresh {
                    p.v4 = p.v4.or(v4);
                    p.v6 = p.v6.or(v6);
                }
                // A merged record adds no indicator of its own; a repeat family is ignored.
                r.ignore();
            }
            None => {
                st.local.insert(key.clone(), st.pending.len());
                st.pending.push(Pending {
                    name: key.0,
                    scope,
                    v4,
                    v6,
                    line: no,
                    raw: owner.to_owned(),
                });
            }
        }
    } else {
        r.reject(
            no,
            format_args!(
                "unsupported record type {} (only CNAME policies and A/AAAA local data)",
                Shown(rtype)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FeedFormat, ParseReport, parse_feed};
    use super::*;

    fn run(input: &[u8]) -> (Vec<Indicator>, ParseReport) {
        let mut v = Vec::new();
        let rep = parse_feed(input, FeedFormat::Rpz, &mut |i| v.push(i));
        (v, rep)
    }

    fn find<'a>(v: &'a [Indicator], name: &str, scope: Scope) -> &'a Indicator {
        v.iter()
            .find(|i| i.name == name && i.scope == Some(scope))
            .unwrap_or_else(|| panic!("{name} {scope:?} not in {v:#?}"))
    }

    const ZONE: &[u8] = b"$TTL 300\n\
$ORIGIN rpz.example.\n\
@   IN  SOA ns1.rpz.example. hostmaster.rpz.example. (\n\
\t2026011501 ; serial\n\
\t3600 600 86400 300 )\n\
\tIN  NS  ns1.rpz.example.\n\
; blocked names\n\
evil.example            CNAME .\n\
*.evil.example          CNAME .   ; subdomains too\n\
nodata.example  300 IN  CNAME *.\n\
good.example            CNAME rpz-passthru.\n\
drop.example  IN 60     CNAME rpz-drop.\n\
tcp.example             CNAME rpz-tcp-only.\n\
rewrite.example         CNAME walled-garden.example.\n\
sink.example            A     192.0.2.1\n\
\t\t\tAAAA  2001:db8::1\n\
abs.example.rpz.example. CNAME .\n\
other.zone.             CNAME .\n\
32.1.2.0.192.rpz-ip     CNAME .\n\
ns.evil.rpz-nsdname     CNAME .\n\
B\xc3\x9cCHER.example          CNAME .\n\
txt.example             TXT   \"hello; world\"\n\
@                       TXT   \"zone info\"\n\
sink.example            A     192.0.2.99\n\
Legacy.Example          CNAME legacy.example.\n";

    #[test]
    fn rpz_zone() {
        let (v, rep) = run(ZONE);
        assert_eq!(rep.rejects.len(), 4, "{:#?}", rep.rejects);
        let e = find(&v, "evil.example", Scope::Exact);
        assert_eq!(e.action, Some(EntryAction::Nxdomain));
        assert_eq!(e.line, 8);
        assert_eq!(e.kind, IocKind::Domain);
        assert_eq!(e.meta.raw_value.as_deref(), Some("evil.example"));
        let w = find(&v, "evil.example", Scope::BelowOnly);
        assert_eq!(w.action, Some(EntryAction::Nxdomain));
        assert_eq!(w.meta.raw_value.as_deref(), Some("*.evil.example"));
        assert_eq!(
            find(&v, "nodata.example", Scope::Exact).action,
            Some(EntryAction::Nodata)
        );
        assert_eq!(
            find(&v, "good.example", Scope::Exact).action,
            Some(EntryAction::Allow)
        );
        assert_eq!(
            find(&v, "drop.example", Scope::Exact).action,
            Some(EntryAction::Drop)
        );
        let s = find(&v, "sink.example", Scope::Exact);
        assert_eq!(
            s.action,
            Some(EntryAction::Sinkhole {
                v4: Some("192.0.2.1".parse().unwrap()),
                v6: Some("2001:db8::1".parse().unwrap()),
            })
        );
        assert_eq!(s.line, 15);
        assert_eq!(
            find(&v, "abs.example", Scope::Exact).action,
            Some(EntryAction::Nxdomain)
        );
        find(&v, "xn--bcher-kva.example", Scope::Exact);
        assert_eq!(
            find(&v, "legacy.example", Scope::Exact).action,
            Some(EntryAction::Allow)
        );
        assert_eq!(v.len(), 9);
        assert_eq!(rep.accepted, 9);
        let lines: Vec<u32> = rep.rejects.iter().map(|e| e.line).collect();
        assert_eq!(lines, [13, 14, 18, 22]);
        assert!(rep.rejects[0].reason.contains("rpz-tcp-only"));
        assert!(rep.rejects[1].reason.contains("rewrite"));
        assert_eq!(
            rep.rejects[2].reason,
            "owner \"other.zone.\" is outside the zone origin \"rpz.example.\""
        );
        assert!(rep.rejects[3].reason.contains("TXT"));
        // $TTL, $ORIGIN, SOA, NS, comment, rpz-ip, rpz-nsdname, @ TXT, merged AAAA, repeated A
        assert_eq!(rep.ignored, 10);
    }

    #[test]
    fn abusech_style_without_origin() {
        let input = b"$TTL 30\r\n@ SOA rpz.urlhaus.abuse.ch. hostmaster.urlhaus.abuse.ch. 2026011501 300 1800 604800 30\r\n\
\tNS localhost.\r\n;\r\n; comment\r\nc2-panel.example CNAME . ; Malware download (2026-01-15), see https://x\r\n\
*.c2-panel.example CNAME .\r\n";
        let (v, rep) = run(input);
        assert!(rep.rejects.is_empty(), "{:?}", rep.rejects);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "c2-panel.example");
        assert_eq!(v[0].scope, Some(Scope::Exact));
        assert_eq!(v[1].scope, Some(Scope::BelowOnly));
        assert_eq!(v[1].line, 7);
        assert_eq!(rep.ignored, 5);
    }

    #[test]
    fn soa_owner_sets_origin() {
        let input = b"rpz.local. 3600 IN SOA localhost. root.localhost. 1 2 3 4 5\n\
rpz.local. NS localhost.\n\
bad.example.rpz.local. CNAME .\n\
rel.example CNAME .\n\
foreign.example. CNAME .\n";
        let (v, rep) = run(input);
        let names: Vec<_> = v.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["bad.example", "rel.example"]);
        assert_eq!(rep.rejected, 1);
        assert_eq!(rep.rejects[0].line, 5);
    }

    #[test]
    fn broken_syntax_is_rejected_not_fatal() {
        let input = b"a.example CNAME .\nb.example ) CNAME .\nc.example CNAME\n\"open\n\
\tCNAME .\n*.rpz CNAME\n* CNAME .\nd.example CNAME .\nz.example SOA (\n";
        let (v, rep) = run(input);
        let names: Vec<_> = v.iter().map(|i| i.name.as_str()).collect();
        // The blank-owner line 5 continues the last owner (c.example), as in any zone file.
        assert_eq!(names, ["a.example", "c.example", "d.example"]);
        assert_eq!(rep.rejected, 6, "{:#?}", rep.rejects);
        assert_eq!(rep.rejects.last().unwrap().line, 9);
    }
}
