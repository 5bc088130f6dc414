//! Line-oriented list formats: plain domain lists, hosts files and the adblock DNS subset.

use std::net::IpAddr;

use super::normalize::{HostOrIp, normalize_plain, normalize_value};
use super::parse::{Shown, Sink, ip_indicator, lines};
use super::{EntryAction, Indicator, IocKind, IocMeta, Scope};

fn domain(name: String, scope: Option<Scope>, action: Option<EntryAction>, line: u32) -> Indicator {
    Indicator {
        kind: IocKind::Domain,
        name,
        ip: None,
        scope,
        action,
        meta: IocMeta::default(),
        line,
    }
}

/// Cut an inline comment that starts with whitespace followed by `marker`.
fn strip_inline_comment(s: &str, marker: u8) -> &str {
    let b = s.as_bytes();
    for i in memchr::memchr_iter(marker, b) {
        if i > 0 && (b[i - 1] == b' ' || b[i - 1] == b'\t') {
            return s[..i].trim_end();
        }
    }
    s
}

/// Plain domain list: one value per line; `#`/`!` comment lines; inline ` #` comments; `*.d`
/// means `d` and everything below it (`Scope::Subtree`); anything else gets `scope: None`.
/// Values go through [`normalize_value`], so defanged names and URLs are reduced to their host;
/// IP addresses become `Ip` indicators. Metadata is always empty.
pub(crate) fn parse_domains(input: &[u8], r: &mut Sink<'_>) {
    for (no, bytes) in lines(input) {
        // Fast path: the whole line is a plain lowercase name (no comment, no space, no `*.`).
        if let Some(res) = normalize_plain(bytes) {
            accept_domain_line(r, no, bytes, res, None);
            continue;
        }
        let line = match std::str::from_utf8(bytes) {
            Ok(l) => l,
            Err(e) => {
                r.reject_utf8(no, e);
                continue;
            }
        };
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('!') {
            r.ignore();
            continue;
        }
        let t = strip_inline_comment(t, b'#');
        let mut toks = t.split_ascii_whitespace();
        let Some(tok) = toks.next() else {
            r.ignore();
            continue;
        };
        if toks.next().is_some() {
            r.reject(
                no,
                format_args!("unexpected text after the domain name in {}", Shown(t)),
            );
            continue;
        }
        let (value, scope) = match tok.strip_prefix("*.") {
            Some(rest) => (rest, Some(Scope::Subtree)),
            None => (tok, None),
        };
        accept_domain_line(r, no, tok.as_bytes(), normalize_value(value), scope);
    }
}

fn accept_domain_line(
    r: &mut Sink<'_>,
    no: u32,
    tok: &[u8],
    res: Result<HostOrIp, super::NormalizeError>,
    scope: Option<Scope>,
) {
    match res {
        Ok(HostOrIp::Host(name)) => r.accept(domain(name, scope, None, no)),
        Ok(HostOrIp::Ip(_)) if scope.is_some() => r.reject(
            no,
            format_args!(
                "wildcard on an IP address {}",
                Shown(&String::from_utf8_lossy(tok))
            ),
        ),
        Ok(HostOrIp::Ip(ip)) => r.accept(ip_indicator(ip, None, IocMeta::default(), no)),
        Err(e) => r.reject(
            no,
            format_args!(
                "invalid domain name {}: {e}",
                Shown(&String::from_utf8_lossy(tok))
            ),
        ),
    }
}

/// Names in hosts files that are never IOCs (checked on the normalised, lowercase name).
fn is_hosts_boilerplate(name: &str) -> bool {
    const SKIP: [&str; 8] = [
        "localhost",
        "localhost.localdomain",
        "broadcasthost",
        "local",
        "localhost4",
        "localhost4.localdomain4",
        "localhost6",
        "localhost6.localdomain6",
    ];
    matches!(name.as_bytes().first(), Some(b'l' | b'b' | b'i'))
        && (SKIP.contains(&name) || name.starts_with("ip6-"))
}

/// An IP address, IPv6 zone id (`fe80::1%lo0`) allowed and dropped.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.split('%').next().unwrap_or(s);
    s.parse().ok()
}

/// hosts file: `ADDRESS name [name...]`, any whitespace, `#` starts a comment anywhere.
/// Any address is accepted (0.0.0.0, 127.0.0.1, ::1, ::, a real IP: the address is not used,
/// every name gets the feed's action, `scope: None`). Boilerplate names (`localhost`,
/// `localhost.localdomain`, `broadcasthost`, `local`, `ip6-*`, `localhost4/6...`) and names that
/// are IP addresses are skipped; a line with nothing but skipped names counts as ignored.
/// A bad name is rejected on its own; the other names of its line still load.
pub(crate) fn parse_hosts(input: &[u8], r: &mut Sink<'_>) {
    for (no, bytes) in lines(input) {
        // Work on bytes: only the tokens are checked for UTF-8, never the comment.
        let content = memchr::memchr(b'#', bytes).map_or(bytes, |i| &bytes[..i]);
        let mut toks = content
            .split(u8::is_ascii_whitespace)
            .filter(|t| !t.is_empty());
        let Some(addr) = toks.next() else {
            r.ignore();
            continue;
        };
        let shown_line = || String::from_utf8_lossy(content).trim().to_owned();
        if std::str::from_utf8(addr).ok().and_then(parse_ip).is_none() {
            r.reject(
                no,
                format_args!(
                    "hosts line does not start with an IP address: {}",
                    Shown(&shown_line())
                ),
            );
            continue;
        }
        let mut produced = false;
        let mut any_name = false;
        for tok in toks {
            any_name = true;
            let res = match normalize_plain(tok) {
                Some(res) => res,
                None => match std::str::from_utf8(tok) {
                    Ok(name) if name.contains(':') && parse_ip(name).is_some() => {
                        continue; // an IPv6 address (maybe with a zone) used as a name
                    }
                    Ok(name) => normalize_value(name),
                    Err(e) => {
                        produced = true;
                        r.reject_utf8(no, e);
                        continue;
                    }
                },
            };
            match res {
                Ok(HostOrIp::Host(n)) if is_hosts_boilerplate(&n) => {}
                Ok(HostOrIp::Host(n)) => {
                    produced = true;
                    r.accept(domain(n, None, None, no));
                }
                Ok(HostOrIp::Ip(_)) => {} // a name that is an IP address
                Err(e) => {
                    produced = true;
                    r.reject(
                        no,
                        format_args!(
                            "invalid domain name {}: {e}",
                            Shown(&String::from_utf8_lossy(tok))
                        ),
                    );
                }
            }
        }
        if !any_name {
            r.reject(
                no,
                format_args!(
                    "hosts line has an address but no name: {}",
                    Shown(&shown_line())
                ),
            );
        } else if !produced {
            r.ignore();
        }
    }
}

/// Is this an adblock cosmetic / scriptlet / HTML rule (`##`, `#@#`, `#?#`, `#$#`, `#%#`...)?
fn is_cosmetic(t: &str) -> bool {
    [
        "##", "#@#", "#?#", "#$#", "#%#", "#@?#", "#@$#", "#@%#", "$$", "$@$",
    ]
    .iter()
    .any(|m| t.contains(m))
}

/// Adblock DNS subset.
///
/// * `||d^` → `Domain`, `Scope::Subtree`; `@@||d^` → same with `action: Some(Allow)`. `||d` and
///   `||d^|` are read as `||d^`. `||1.2.3.4^` → an `Ip` indicator.
/// * Modifiers: none or only `$important` accepted; any other (`$dnstype=`, `$client=`,
///   `$third-party`, ...) rejects the rule, since honouring it partially would block too much.
/// * Ignored: blank lines, `!` and `#` comments, `[Adblock Plus 2.0]`-style headers, cosmetic
///   rules (`##`, `#@#`, `#?#`, `#$#`...): valid browser rules with no DNS meaning.
/// * Rejected: `/regex/` rules, `||` rules with a path or `*` wildcard, and anything else
///   (bare domains, `|http://` anchors...), so unsupported blocking intent is visible.
pub(crate) fn parse_adblock(input: &[u8], r: &mut Sink<'_>) {
    for (no, bytes) in lines(input) {
        let line = match std::str::from_utf8(bytes) {
            Ok(l) => l,
            Err(e) => {
                r.reject_utf8(no, e);
                continue;
            }
        };
        let t = line.trim();
        if t.is_empty()
            || t.starts_with('!')
            || t.starts_with('#')
            || (t.starts_with('[') && t.ends_with(']'))
            || is_cosmetic(t)
        {
            r.ignore();
            continue;
        }
        let (allow, rule) = match t.strip_prefix("@@") {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        if rule.len() >= 2 && rule.starts_with('/') && rule.ends_with('/') {
            r.reject(
                no,
                format_args!("regular-expression rules are not supported: {}", Shown(t)),
            );
            continue;
        }
        let Some(rule) = rule.strip_prefix("||") else {
            r.reject(
                no,
                format_args!(
                    "unsupported adblock rule (only ||domain^ and @@||domain^ are supported): {}",
                    Shown(t)
                ),
            );
            continue;
        };
        let (pattern, mods) = match rule.split_once('$') {
            Some((p, m)) => (p, Some(m)),
            None => (rule, None),
        };
        if let Some(m) = mods
            && let Some(bad) = m
                .split(',')
                .map(str::trim)
                .find(|m| !m.eq_ignore_ascii_case("important"))
        {
            r.reject(
                no,
                format_args!("unsupported modifier ${bad} in {}", Shown(t)),
            );
            continue;
        }
        let pattern = pattern.strip_suffix('|').unwrap_or(pattern);
        let pattern = pattern.strip_suffix('^').unwrap_or(pattern);
        if pattern.contains(['*', '/', '^', '|', '?', '=']) {
            r.reject(
                no,
                format_args!(
                    "wildcard or path rules are not supported (only ||domain^): {}",
                    Shown(t)
                ),
            );
            continue;
        }
        let action = allow.then_some(EntryAction::Allow);
        match normalize_value(pattern) {
            Ok(HostOrIp::Host(name)) => r.accept(domain(name, Some(Scope::Subtree), action, no)),
            Ok(HostOrIp::Ip(ip)) => r.accept(ip_indicator(ip, action, IocMeta::default(), no)),
            Err(e) => r.reject(
                no,
                format_args!("invalid domain name {}: {e}", Shown(pattern)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FeedFormat, ParseReport, parse_feed};
    use super::*;

    fn run(input: &[u8], f: FeedFormat) -> (Vec<Indicator>, ParseReport) {
        let mut v = Vec::new();
        let rep = parse_feed(input, f, &mut |i| v.push(i));
        assert_eq!(rep.accepted as usize, v.len());
        (v, rep)
    }

    fn names(v: &[Indicator]) -> Vec<&str> {
        v.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn domains_list() {
        let input =
            b"# comment\r\n! also comment\r\n\r\nEvil.Example\r\n*.wild.example # inline\r\n\
            bad[.]example\r\nb\xc3\xbccher.example\r\nfoo..bar\r\n198.51.100.7\r\ntwo words\r\n\
            \xff\xfe.example\r\nhxxp://url.example/path\r\n";
        let (v, rep) = run(input, FeedFormat::Domains);
        assert_eq!(
            names(&v),
            [
                "evil.example",
                "wild.example",
                "bad.example",
                "xn--bcher-kva.example",
                "198.51.100.7",
                "url.example"
            ]
        );
        assert_eq!(v[0].scope, None);
        assert_eq!(v[0].line, 4);
        assert_eq!(v[1].scope, Some(Scope::Subtree));
        assert!(v[0].meta.is_empty());
        assert_eq!(v[4].kind, IocKind::Ip);
        assert_eq!(rep.ignored, 3);
        assert_eq!(rep.rejected, 3);
        assert_eq!(rep.rejects[0].line, 8);
        assert_eq!(
            rep.rejects[0].reason,
            "invalid domain name \"foo..bar\": empty label"
        );
        assert_eq!(rep.rejects[1].line, 10);
        assert!(rep.rejects[2].reason.contains("UTF-8"), "{:?}", rep.rejects);
        assert_eq!(rep.format, Some(FeedFormat::Domains));
    }

    #[test]
    fn hosts_file() {
        let input = b"# hosts\n127.0.0.1\tlocalhost localhost.localdomain\n::1 ip6-localhost ip6-loopback\n\
            255.255.255.255 broadcasthost\n0.0.0.0\tevil.example\tEVIL2.example # c\n\
            127.0.0.1  c2.example\n:: v6.example\n0.0.0.0 0.0.0.0\n10.0.0.1 bad..name good.example\n\
            notanip evil.example\n0.0.0.0\n0.0.0.0 ok.example # caf\xe9 comment\n0.0.0.0 bad\xff.example\n";
        let (v, rep) = run(input, FeedFormat::Hosts);
        assert_eq!(
            names(&v),
            [
                "evil.example",
                "evil2.example",
                "c2.example",
                "v6.example",
                "good.example",
                "ok.example"
            ]
        );
        assert!(v.iter().all(|i| i.scope.is_none() && i.action.is_none()));
        assert_eq!(v[1].line, 5);
        // comment, localhost line, ip6 line, broadcasthost, 0.0.0.0 0.0.0.0
        assert_eq!(rep.ignored, 5);
        assert_eq!(rep.rejected, 4);
        assert_eq!(rep.rejects[0].line, 9);
        assert_eq!(rep.rejects[3].line, 13);
        assert!(rep.rejects[3].reason.contains("UTF-8"));
        assert!(rep.rejects[1].reason.contains("does not start with an IP"));
        assert!(rep.rejects[2].reason.contains("no name"));
    }

    #[test]
    fn adblock_rules() {
        let input = b"[Adblock Plus 2.0]\n! Title: test\n||evil.example^\n@@||good.example^\n\
            ||imp.example^$important\n||dns.example^$dnstype=AAAA\nexample.org##.banner\n\
            /ads[0-9]+\\.example/\n||path.example/ads^\n||noanchor.example\n||1.2.3.4^\n\
            plain.example\n# hash comment\n||*.wild.example^\n";
        let (v, rep) = run(input, FeedFormat::Adblock);
        assert_eq!(
            names(&v),
            [
                "evil.example",
                "good.example",
                "imp.example",
                "noanchor.example",
                "1.2.3.4"
            ]
        );
        assert_eq!(v[0].scope, Some(Scope::Subtree));
        assert_eq!(v[0].action, None);
        assert_eq!(v[1].action, Some(EntryAction::Allow));
        assert_eq!(v[1].scope, Some(Scope::Subtree));
        assert_eq!(v[4].kind, IocKind::Ip);
        assert_eq!(rep.ignored, 4);
        assert_eq!(rep.rejected, 5);
        let reasons: Vec<_> = rep
            .rejects
            .iter()
            .map(|e| (e.line, e.reason.as_str()))
            .collect();
        assert!(reasons[0].1.contains("$dnstype=AAAA"), "{reasons:?}");
        assert_eq!(reasons[0].0, 6);
        assert!(reasons[1].1.contains("regular-expression"));
        assert!(reasons[2].1.contains("path"));
        assert!(reasons[3].1.contains("unsupported adblock rule"));
        assert!(reasons[4].1.contains("wildcard"));
    }
}
