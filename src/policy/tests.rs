//! Policy semantics over real files: confidence bands, expiry, URL hosts, allowlist,
//! exceptions, multi-feed winners and the last-good fallback.

use std::path::Path;

use time::OffsetDateTime;
use time::macros::datetime;

use super::*;
use crate::config::{Config, UrlHosts};

const NOW: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

fn setup(files: &[(&str, &str)], toml: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let cfg = Config::from_toml(toml, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, cfg)
}

fn verdict_action(s: &PolicySnapshot, name: &str) -> Option<Action> {
    match s.decide(name.as_bytes()) {
        Verdict::Matched(m) => Some(s.action_of(&m)),
        _ => None,
    }
}

const CSV_HEADER: &str = "# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\",\"threat_type\",\"fk_malware\",\"malware_alias\",\"malware_printable\",\"last_seen_utc\",\"confidence_level\",\"is_compromised\",\"reference\",\"tags\",\"anonymous\",\"reporter\"\n";

fn csv_row(id: u32, value: &str, kind: &str, conf: u8, first: &str, last: &str) -> String {
    format!(
        "\"{first}\", \"{id}\", \"{value}\", \"{kind}\", \"botnet_cc\", \"win.x\", \"None\", \"X\", \"{last}\", \"{conf}\", \"False\", \"None\", \"None\", \"0\", \"r\"\n"
    )
}

#[test]
fn confidence_bands_ignore_log_and_block() {
    let csv = format!(
        "{CSV_HEADER}{}{}{}",
        csv_row(1, "low.example", "domain", 20, "2026-12-01 00:00:00", ""),
        csv_row(2, "mid.example", "domain", 60, "2026-12-01 00:00:00", ""),
        csv_row(3, "high.example", "domain", 90, "2026-12-01 00:00:00", "")
    );
    let (_d, cfg) = setup(
        &[("tf.csv", &csv)],
        "[policy]\nmin_confidence = 50\nblock_confidence = 75\n[[feeds]]\nname = \"tf\"\npath = \"tf.csv\"\n",
    );
    let (s, r) = build(&cfg.policy, NOW, None);
    assert_eq!(verdict_action(&s, "low.example"), None);
    assert_eq!(verdict_action(&s, "mid.example"), Some(Action::Log));
    assert_eq!(
        verdict_action(&s, "www.high.example"),
        Some(Action::Sinkhole)
    );
    let f = &r.feeds[0];
    assert_eq!(
        (f.loaded, f.below_min, f.log_only, f.enforced),
        (2, 1, 1, 1)
    );
}

#[test]
fn entries_without_score_take_the_feed_confidence() {
    let (_d, cfg) = setup(
        &[("l.txt", "a.example\n")],
        "[policy]\nblock_confidence = 75\n[[feeds]]\nname = \"l\"\npath = \"l.txt\"\nconfidence = 60\n[[feeds]]\nname = \"m\"\npath = \"l.txt\"\n",
    );
    let (s, _) = build(&cfg.policy, NOW, None);
    // Feed m (default confidence 100) enforces; feed l (60) alone would only log.
    let Verdict::Matched(m) = s.decide(b"a.example") else {
        panic!()
    };
    assert_eq!(s.action_of(&m), Action::Sinkhole);
    assert_eq!(&*s.feeds[s.rule(m.rule).feed as usize].name, "m");
    assert_eq!(s.feed_names(m.feeds).collect::<Vec<_>>(), ["l", "m"]);
}

#[test]
fn expiry_by_age_and_valid_until() {
    let csv = format!(
        "{CSV_HEADER}{}{}{}",
        csv_row(
            1,
            "old.example",
            "domain",
            100,
            "2026-01-01 00:00:00",
            "2026-02-01 00:00:00"
        ),
        csv_row(
            2,
            "oldfirst.example",
            "domain",
            100,
            "2026-01-01 00:00:00",
            "2026-11-30 00:00:00"
        ),
        csv_row(3, "new.example", "domain", 100, "2026-11-20 00:00:00", "")
    );
    let (_d, cfg) = setup(
        &[("tf.csv", &csv)],
        "[policy]\nmax_age_days = 30\n[[feeds]]\nname = \"tf\"\npath = \"tf.csv\"\n",
    );
    let (s, r) = build(&cfg.policy, NOW, None);
    assert_eq!(
        verdict_action(&s, "old.example"),
        None,
        "last seen 10 months ago"
    );
    assert!(
        verdict_action(&s, "oldfirst.example").is_some(),
        "last seen is what counts"
    );
    assert!(verdict_action(&s, "new.example").is_some());
    assert_eq!(r.feeds[0].expired, 1);

    let stix = r#"{"type":"bundle","id":"bundle--1","objects":[
      {"type":"indicator","spec_version":"2.1","id":"indicator--a","pattern":"[domain-name:value = 'gone.example']","pattern_type":"stix","valid_from":"2026-01-01T00:00:00Z","valid_until":"2026-06-01T00:00:00Z"},
      {"type":"indicator","spec_version":"2.1","id":"indicator--b","pattern":"[domain-name:value = 'live.example']","pattern_type":"stix","valid_from":"2026-01-01T00:00:00Z","confidence":80}]}"#;
    let (_d, cfg) = setup(
        &[("s.json", stix)],
        "[[feeds]]\nname = \"s\"\npath = \"s.json\"\n",
    );
    let (s, r) = build(&cfg.policy, NOW, None);
    assert_eq!(verdict_action(&s, "gone.example"), None);
    assert!(verdict_action(&s, "live.example").is_some());
    assert_eq!(r.feeds[0].expired, 1);
}

#[test]
fn url_hosts_log_block_ignore_and_domain_wins() {
    let csv = format!(
        "{CSV_HEADER}{}{}{}",
        csv_row(
            1,
            "hxxps://shared[.]example/x.js",
            "url",
            100,
            "2026-12-01 00:00:00",
            ""
        ),
        csv_row(
            2,
            "https://both.example/p",
            "url",
            100,
            "2026-12-01 00:00:00",
            ""
        ),
        csv_row(3, "both.example", "domain", 100, "2026-12-01 00:00:00", "")
    );
    for (mode, expect) in [
        (UrlHosts::Log, Some(Action::Log)),
        (UrlHosts::Block, Some(Action::Sinkhole)),
        (UrlHosts::Ignore, None),
    ] {
        let m = match mode {
            UrlHosts::Log => "log",
            UrlHosts::Block => "block",
            UrlHosts::Ignore => "ignore",
        };
        let (_d, cfg) = setup(
            &[("tf.csv", &csv)],
            &format!("[[feeds]]\nname = \"tf\"\npath = \"tf.csv\"\nurl_hosts = \"{m}\"\n"),
        );
        let (s, _) = build(&cfg.policy, NOW, None);
        assert_eq!(verdict_action(&s, "shared.example"), expect, "{m}");
        assert_eq!(
            verdict_action(&s, "www.shared.example"),
            None,
            "URL hosts match exactly ({m})"
        );
        assert_eq!(
            verdict_action(&s, "both.example"),
            Some(Action::Sinkhole),
            "domain IOC wins ({m})"
        );
    }
}

#[test]
fn subdomain_semantics_per_format() {
    let rpz = "$TTL 300\n@ SOA ns. host. 1 3600 600 86400 60\n  NS localhost.\nexact.example CNAME .\n*.below.example CNAME *.\ngood.evil.example CNAME rpz-passthru.\nevil.example CNAME .\n*.evil.example CNAME .\n";
    let (_d, cfg) = setup(
        &[("p.rpz", rpz), ("d.txt", "plain.example\n*.wild.example\n")],
        "[policy]\nsubdomains = false\n[[feeds]]\nname = \"rpz\"\npath = \"p.rpz\"\n[[feeds]]\nname = \"d\"\npath = \"d.txt\"\n",
    );
    let (s, _) = build(&cfg.policy, NOW, None);
    assert_eq!(verdict_action(&s, "exact.example"), Some(Action::Nxdomain));
    assert_eq!(verdict_action(&s, "www.exact.example"), None);
    assert_eq!(verdict_action(&s, "below.example"), None);
    assert_eq!(verdict_action(&s, "a.below.example"), Some(Action::Nodata));
    assert_eq!(verdict_action(&s, "x.evil.example"), Some(Action::Nxdomain));
    assert_eq!(
        s.decide(b"good.evil.example"),
        Verdict::Allowlisted,
        "passthru"
    );
    // The passthru owner is exact: below it the `*.evil.example` trigger applies again.
    assert_eq!(
        verdict_action(&s, "www.good.evil.example"),
        Some(Action::Nxdomain)
    );
    assert_eq!(verdict_action(&s, "plain.example"), Some(Action::Sinkhole));
    assert_eq!(
        verdict_action(&s, "www.plain.example"),
        None,
        "subdomains = false"
    );
    assert_eq!(
        verdict_action(&s, "wild.example"),
        Some(Action::Sinkhole),
        "*.d covers d"
    );
    assert_eq!(
        verdict_action(&s, "a.b.wild.example"),
        Some(Action::Sinkhole)
    );
}

#[test]
fn allowlist_wins_and_lint_warns() {
    let (d, cfg) = setup(
        &[
            ("l.txt", "evil.example\ngood.example\n"),
            ("allow.txt", "# ours\ngood.example\n"),
        ],
        "[[feeds]]\nname = \"l\"\npath = \"l.txt\"\n[allow]\ndomains = [\"com\", \"co.uk\", \"*.corp.example\"]\nfiles = [\"allow.txt\"]\n",
    );
    let (s, r) = build(&cfg.policy, NOW, None);
    assert_eq!(s.decide(b"www.good.example"), Verdict::Allowlisted);
    assert_eq!(s.decide(b"x.corp.example"), Verdict::Allowlisted);
    assert!(matches!(s.decide(b"evil.example"), Verdict::Matched(_)));
    let w = r.warnings.join("\n");
    assert!(w.contains("\"com\" is a top-level domain"), "{w}");
    assert!(w.contains("\"co.uk\" is a public suffix"), "{w}");
    assert!(
        w.contains("feed(s) l list allowlisted name \"good.example\""),
        "{w}"
    );
    assert_eq!(r.allow_files[0].loaded, 1);
    drop(d);
}

#[test]
fn idn_in_feed_matches_punycode_on_the_wire() {
    let (_d, cfg) = setup(
        &[("l.txt", "bücher.example\n")],
        "[[feeds]]\nname = \"l\"\npath = \"l.txt\"\n",
    );
    let (s, _) = build(&cfg.policy, NOW, None);
    assert!(matches!(
        s.decide(b"www.xn--bcher-kva.example"),
        Verdict::Matched(_)
    ));
}

#[test]
fn failing_feed_keeps_last_good_version_on_rebuild() {
    let (d, cfg) = setup(
        &[
            ("a.txt", "a1.example\na2.example\n"),
            ("b.txt", "b1.example\n"),
        ],
        "[[feeds]]\nname = \"a\"\npath = \"a.txt\"\n[[feeds]]\nname = \"b\"\npath = \"b.txt\"\n",
    );
    let (s0, _) = build(&cfg.policy, NOW, None);
    std::fs::write(
        d.path().join("a.txt"),
        "ok.example\nfoo..bar\nbad domain here\n",
    )
    .unwrap();
    std::fs::write(d.path().join("b.txt"), "b2.example\n").unwrap();
    let (s1, r) = build(&cfg.policy, NOW, Some(&s0));
    assert!(r.feeds[0].kept_previous, "{:?}", r.feeds[0].failure);
    assert!(matches!(s1.decide(b"a2.example"), Verdict::Matched(_)));
    assert_eq!(s1.decide(b"ok.example"), Verdict::Forward);
    assert_eq!(
        s1.decide(b"b1.example"),
        Verdict::Forward,
        "feed b updated normally"
    );
    assert!(matches!(s1.decide(b"b2.example"), Verdict::Matched(_)));
    assert_eq!(s1.feeds[0].entries, 2);

    std::fs::remove_file(d.path().join("a.txt")).unwrap();
    let (s2, r) = build(&cfg.policy, NOW, Some(&s1));
    assert!(r.feeds[0].kept_previous && r.feeds[0].error.is_some());
    assert!(
        matches!(s2.decide(b"a1.example"), Verdict::Matched(_)),
        "kept across two failures"
    );
    assert!(Path::new(&s2.feeds[0].path).ends_with("a.txt"));
}

#[test]
fn rpz_local_data_and_drop() {
    let rpz = "$ORIGIN rpz.local.\n@ SOA ns. host. 1 3600 600 86400 60\nsink.example A 192.0.2.66\nsink.example AAAA 2001:db8::66\nquiet.example CNAME rpz-drop.\n";
    let (_d, cfg) = setup(
        &[("p.rpz", rpz)],
        "[[feeds]]\nname = \"p\"\npath = \"p.rpz\"\n",
    );
    let (s, _) = build(&cfg.policy, NOW, None);
    let Verdict::Matched(m) = s.decide(b"sink.example") else {
        panic!()
    };
    let e = s.extra(s.rule(m.rule)).unwrap();
    assert!(e.local_data);
    assert_eq!(e.local_v4, Some("192.0.2.66".parse().unwrap()));
    assert_eq!(e.local_v6, Some("2001:db8::66".parse().unwrap()));
    assert_eq!(verdict_action(&s, "quiet.example"), Some(Action::Drop));
}
