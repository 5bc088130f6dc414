use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/etc/iocdns"))
}

#[test]
fn shipped_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/iocdns.toml");
    let cfg = Config::load(&path).expect("shipped config must load");
    assert_eq!(cfg.server.listen, vec!["127.0.0.1:5300".parse().unwrap()]);
    assert_eq!(cfg.policy.feeds.len(), 1);
    assert!(
        cfg.policy.feeds[0]
            .path
            .ends_with("config/../zones/threatfox-smartapesg.csv")
    );
    assert!(cfg.policy.feeds[0].path.exists());
}

#[test]
fn every_shipped_config_rejects_unknown_keys() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for table in [
            "[server]",
            "[upstream]",
            "[policy]",
            "[[feeds]]",
            "[allow]",
            "[events]",
        ] {
            if !text.contains(table) {
                continue;
            }
            let bad = text.replacen(table, &format!("{table}\nbogus_key = 1"), 1);
            let err = parse(&bad)
                .expect_err("unknown key must be rejected")
                .to_string();
            assert!(err.contains("bogus_key"), "{path:?} {table}: {err}");
        }
    }
}

#[test]
fn empty_config_uses_defaults() {
    let cfg = parse("").unwrap();
    assert_eq!(cfg.policy.action, Action::Sinkhole);
    assert_eq!(cfg.policy.ttl, 300);
    assert!(cfg.policy.subdomains);
    assert_eq!(cfg.upstream.servers, vec![UpstreamServer::System]);
    assert_eq!(cfg.upstream.timeout, Duration::from_millis(2000));
    assert_eq!(
        cfg.events.path.as_deref(),
        Some(Path::new("/etc/iocdns/events/dnsevents.ndjson"))
    );
}

#[test]
fn relative_paths_resolve_against_config_dir() {
    let cfg = parse("[[feeds]]\nname = \"a\"\npath = \"zones/a.txt\"\n[[feeds]]\nname = \"b\"\npath = \"/abs/b.txt\"").unwrap();
    assert_eq!(
        cfg.policy.feeds[0].path,
        Path::new("/etc/iocdns/zones/a.txt")
    );
    assert_eq!(cfg.policy.feeds[1].path, Path::new("/abs/b.txt"));
}

#[test]
fn all_invalid_values_reported_at_once_with_keys() {
    let err = parse(
        r#"
[server]
listen = ["127.0.0.1:5300", "not-an-address"]
allow = ["10.0.0.0/33"]
[upstream]
servers = ["nope"]
timeout_ms = 0
[[feeds]]
name = "x"
path = "a"
[[feeds]]
name = "x"
path = "b"
confidence = 120
"#,
    )
    .unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("expected Invalid, got {err}")
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "server.listen[1]",
            "server.allow[0]",
            "upstream.servers[0]",
            "upstream.timeout_ms",
            "feeds[1].name",
            "feeds[1].confidence"
        ]
    );
}

#[test]
fn wrong_type_names_the_key() {
    let err = parse("[policy]\nttl = \"five\"").unwrap_err().to_string();
    assert!(err.contains("ttl"), "{err}");
    let err = parse("[policy]\naction = \"block\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("action") || err.contains("block"), "{err}");
}

#[test]
fn per_feed_overrides_fall_back_to_policy() {
    let cfg = parse(
        r#"
[policy]
action = "nxdomain"
min_confidence = 50
block_confidence = 75
subdomains = false
[[feeds]]
name = "a"
path = "a"
[[feeds]]
name = "b"
path = "b"
action = "log"
subdomains = true
min_confidence = 10
"#,
    )
    .unwrap();
    let (a, b) = (&cfg.policy.feeds[0], &cfg.policy.feeds[1]);
    assert_eq!(
        (a.action, a.subdomains, a.min_confidence, a.block_confidence),
        (Action::Nxdomain, false, 50, 75)
    );
    assert_eq!(
        (b.action, b.subdomains, b.min_confidence, b.block_confidence),
        (Action::Log, true, 10, 75)
    );
    assert_eq!(a.confidence, 100);
}

#[test]
fn upstream_forms() {
    let cfg =
        parse("[upstream]\nservers = [\"127.0.0.1:5353\", \"192.0.2.1\", \"system\"]").unwrap();
    assert_eq!(
        cfg.upstream.servers,
        vec![
            UpstreamServer::Addr("127.0.0.1:5353".parse().unwrap()),
            UpstreamServer::Addr("192.0.2.1:53".parse().unwrap()),
            UpstreamServer::System
        ]
    );
}
