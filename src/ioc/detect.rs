//! Feed format sniffing for `format = "auto"`.

use super::FeedFormat;
use super::parse::strip_bom;

/// How much of a feed [`detect_format`] looks at.
pub const DETECT_WINDOW: usize = 64 * 1024;

/// Guess a feed's format from its first [`DETECT_WINDOW`] bytes. Never returns `Auto`.
///
/// Rules, in order (BOM and leading whitespace skipped):
/// 1. First byte `{`, or `[` not followed on its line by `]`-closed text (an `[Adblock Plus 2.0]`
///    header is not JSON): JSON. It is [`FeedFormat::Stix`] if the window contains
///    `"type": "bundle"`, `"type": "indicator"`, `"spec_version"` or `"pattern_type"`, else
///    [`FeedFormat::ThreatfoxJson`].
/// 2. A `#` comment line containing `ioc_value` (the ThreatFox header), or a first data line that
///    starts with `"` and splits into 14 or 15 quoted fields: [`FeedFormat::ThreatfoxCsv`].
/// 3. A line starting with `$ORIGIN` or `$TTL`, or a record with an `SOA` token:
///    [`FeedFormat::Rpz`].
/// 4. A line with `|` directly followed by a markdown delimiter row (`|---|---|`):
///    [`FeedFormat::Markdown`].
/// 5. An `[Adblock...]`/`[uBlock...]` header, or at least one `||…`/`@@||…` rule line making up
///    at least a quarter of the data lines: [`FeedFormat::Adblock`].
/// 6. A record whose type is `CNAME` (`name CNAME .`, `rpz-passthru.`...): [`FeedFormat::Rpz`].
/// 7. At least half of the data lines are `IP name...`: [`FeedFormat::Hosts`].
/// 8. Otherwise [`FeedFormat::Domains`] (also for empty input).
///
/// "Data lines" are non-blank lines not starting with `#`, `!` or `;`.
pub fn detect_format(input: &[u8]) -> FeedFormat {
    let input = strip_bom(input);
    let window = &input[..input.len().min(DETECT_WINDOW)];
    let start = window
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(window.len());
    let body = &window[start..];
    match body.first() {
        Some(b'{') => return json_flavour(window),
        Some(b'[') if !is_bracket_header(body) => return json_flavour(window),
        _ => {}
    }

    // Only whole lines: drop a partial last line when the window cut the input.
    let text_bytes = if window.len() < input.len() {
        match window.iter().rposition(|&b| b == b'\n') {
            Some(i) => &window[..i],
            None => window,
        }
    } else {
        window
    };
    let text = String::from_utf8_lossy(text_bytes);
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();

    let mut data = 0usize;
    let mut adblock = 0usize;
    let mut hosts = 0usize;
    let mut adblock_header = false;
    let mut rpz_cname = false;
    let mut first_data: Option<&str> = None;
    for (i, raw) in lines.iter().enumerate() {
        let t = raw.trim();
        if t.starts_with('#') && t.contains("ioc_value") {
            return FeedFormat::ThreatfoxCsv;
        }
        if t.starts_with("$ORIGIN") || t.starts_with("$TTL") {
            return FeedFormat::Rpz;
        }
        if t.contains('|')
            && let Some(next) = lines.get(i + 1)
            && is_md_delimiter(next)
            && pipe_cells(t) == pipe_cells(next)
        {
            return FeedFormat::Markdown;
        }
        if t.is_empty() || t.starts_with(['#', '!', ';']) {
            continue;
        }
        if is_bracket_header(t.as_bytes()) {
            let l = t.to_ascii_lowercase();
            if l.starts_with("[adblock") || l.starts_with("[ublock") || l.starts_with("[adguard") {
                adblock_header = true;
            }
            continue;
        }
        let toks: Vec<&str> = t
            .split(';')
            .next()
            .unwrap_or("")
            .split_ascii_whitespace()
            .collect();
        if toks.iter().skip(1).any(|w| w.eq_ignore_ascii_case("SOA")) {
            return FeedFormat::Rpz;
        }
        data += 1;
        first_data.get_or_insert(t);
        if t.starts_with("||") || t.starts_with("@@||") {
            adblock += 1;
        }
        if toks.len() >= 2
            && toks[0]
                .split('%')
                .next()
                .unwrap_or("")
                .parse::<std::net::IpAddr>()
                .is_ok()
        {
            hosts += 1;
        }
        if let Some(pos) = toks.iter().position(|w| w.eq_ignore_ascii_case("CNAME"))
            && pos >= 1
            && toks.len() == pos + 2
        {
            rpz_cname = true;
        }
    }
    if let Some(first) = first_data
        && first.starts_with('"')
        && let Ok(fields) = super::threatfox::split_csv(first)
        && (fields.len() == 14 || fields.len() == 15)
    {
        return FeedFormat::ThreatfoxCsv;
    }
    if adblock_header || (adblock > 0 && adblock * 4 >= data) {
        return FeedFormat::Adblock;
    }
    if rpz_cname {
        return FeedFormat::Rpz;
    }
    if hosts > 0 && hosts * 2 >= data {
        return FeedFormat::Hosts;
    }
    FeedFormat::Domains
}

/// `[Adblock Plus 2.0]`-style first line: `[`, text, `]` with no JSON punctuation.
fn is_bracket_header(b: &[u8]) -> bool {
    let line = b.split(|&c| c == b'\n').next().unwrap_or(b);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.trim_ascii();
    line.len() > 2
        && line.starts_with(b"[")
        && line.ends_with(b"]")
        && line[1].is_ascii_alphabetic()
        && !line.iter().any(|c| matches!(c, b'{' | b'"' | b':' | b','))
}

fn json_flavour(window: &[u8]) -> FeedFormat {
    let compact: Vec<u8> = window
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let has = |needle: &[u8]| compact.windows(needle.len()).any(|w| w == needle);
    if has(b"\"type\":\"bundle\"")
        || has(b"\"type\":\"indicator\"")
        || has(b"\"spec_version\"")
        || has(b"\"pattern_type\"")
    {
        FeedFormat::Stix
    } else {
        FeedFormat::ThreatfoxJson
    }
}

fn pipe_cells(line: &str) -> usize {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    t.split('|').count()
}

fn is_md_delimiter(line: &str) -> bool {
    let t = line.trim();
    if !t.contains('-')
        || !t
            .bytes()
            .all(|b| matches!(b, b'|' | b'-' | b':' | b' ' | b'\t'))
    {
        return false;
    }
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    t.split('|').all(|c| c.trim().contains('-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use FeedFormat::*;

    #[test]
    fn detects_each_format() {
        let cases: &[(&[u8], FeedFormat)] = &[
            (b"", Domains),
            (b"# list\nevil.example\n*.wild.example\n", Domains),
            (b"! comment\nevil.example\n", Domains),
            (b"# hosts\n127.0.0.1 localhost\n0.0.0.0\tevil.example\n", Hosts),
            (b"::1 ip6-localhost\n0.0.0.0 a.example\n", Hosts),
            (b"[Adblock Plus 2.0]\n! Title\n||evil.example^\n", Adblock),
            (b"! Title: x\n||evil.example^\n@@||good.example^\nplain.example\n", Adblock),
            (b"$TTL 30\n@ SOA a. b. 1 2 3 4 5\nx CNAME .\n", Rpz),
            (b"; rpz\n@ IN SOA a. b. (1 2 3 4 5)\n", Rpz),
            (b"evil.example CNAME .\ngood.example CNAME rpz-passthru.\n", Rpz),
            (b"$ORIGIN rpz.example.\n", Rpz),
            (
                b"#\n# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\"\n\"a\", \"b\"\n",
                ThreatfoxCsv,
            ),
            (
                b"\"2024-03-01 10:00:00\", \"1\", \"x.example\", \"domain\", \"botnet_cc\", \"win.x\", \"None\", \"XRat\", \"\", \"90\", \"None\", \"t\", \"0\", \"me\"\n",
                ThreatfoxCsv,
            ),
            (br#"{"query_status":"ok","data":[]}"#, ThreatfoxJson),
            (br#"{"123":[{"ioc_value":"a.example"}]}"#, ThreatfoxJson),
            (b"\xEF\xBB\xBF  [ {\"ioc\": \"a.example\"} ]", ThreatfoxJson),
            (b"{\n  \"type\" : \"bundle\", \"objects\": []}", Stix),
            (br#"[{"type":"indicator","pattern":"[domain-name:value = 'a']"}]"#, Stix),
            (
                b"prose\n| Type | Value |\n|---|---|\n| domain | a.example |\n",
                Markdown,
            ),
            (b"Value | Type\n--- | ---\na.example | domain\n", Markdown),
        ];
        for (input, want) in cases {
            assert_eq!(
                detect_format(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn seed_is_markdown() {
        let seed = include_bytes!("../../tests/data/feeds/seed_smartapesg.md");
        assert_eq!(detect_format(seed), Markdown);
    }

    #[test]
    fn fixtures_detect_and_parse_cleanly() {
        macro_rules! fixture {
            ($f:literal) => {
                (
                    $f,
                    &include_bytes!(concat!("../../tests/data/feeds/", $f))[..],
                )
            };
        }
        let cases = [
            (fixture!("threatfox_recent.csv"), ThreatfoxCsv, 3),
            (fixture!("threatfox_api.json"), ThreatfoxJson, 2),
            (fixture!("threatfox_export.json"), ThreatfoxJson, 2),
            (fixture!("threatfox.rpz"), Rpz, 2),
            (fixture!("policy.rpz"), Rpz, 6),
            (fixture!("hosts.txt"), Hosts, 4),
            (fixture!("adblock.txt"), Adblock, 3),
            (fixture!("domains.txt"), Domains, 3),
            (fixture!("stix_bundle.json"), Stix, 3),
            (fixture!("seed_smartapesg.md"), Markdown, 3),
        ];
        for ((name, bytes), want, accepted) in cases {
            assert_eq!(detect_format(bytes), want, "{name}");
            let rep = super::super::parse_feed(bytes, Auto, &mut |_| {});
            assert_eq!(rep.format, Some(want), "{name}");
            assert!(rep.rejects.is_empty(), "{name}: {:?}", rep.rejects);
            assert_eq!(rep.accepted, accepted, "{name}");
        }
    }

    #[test]
    fn kql_pipes_are_not_a_table() {
        let input = b"DnsEvents\n| where Name has_any (x)\n| project A, B\nevil.example\n";
        assert_eq!(detect_format(input), Domains);
    }

    #[test]
    fn only_window_is_read() {
        let mut big = b"# list\n".to_vec();
        while big.len() < DETECT_WINDOW + 10 {
            big.extend_from_slice(b"evil.example\n");
        }
        big.extend_from_slice(b"$TTL 30\n");
        assert_eq!(detect_format(&big), Domains);
    }
}
