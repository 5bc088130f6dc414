//! Pins the DnsEvents wire format from the outside: real output parsed into independent structs
//! with `deny_unknown_fields` and the column types of the DnsEvents table.

use hickory_proto::rr::RecordType;
use serde::Deserialize;

use crate::support::*;

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent {
    #[serde(rename = "TimeGenerated")]
    time_generated: String,
    #[serde(rename = "Computer")]
    computer: String,
    #[serde(rename = "SourceSystem")]
    source_system: String,
    #[serde(rename = "EventId")]
    event_id: i32,
    #[serde(rename = "SubType")]
    sub_type: String,
    #[serde(rename = "ClientIP")]
    client_ip: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "QueryType")]
    query_type: String,
    #[serde(rename = "ResultCode")]
    result_code: i32,
    #[serde(rename = "Result")]
    result: String,
    #[serde(rename = "IPAddresses")]
    ip_addresses: String,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "MaliciousIP")]
    malicious_ip: String,
    #[serde(rename = "IndicatorThreatType")]
    indicator_threat_type: String,
    #[serde(rename = "Confidence")]
    confidence: String,
    #[serde(rename = "Severity")]
    severity: Option<i32>,
    #[serde(rename = "Description")]
    description: String,
    #[serde(rename = "ReportReferenceLink")]
    report_reference_link: String,
    #[serde(rename = "IocFeed")]
    ioc_feed: String,
    #[serde(rename = "IocValue")]
    ioc_value: String,
    #[serde(rename = "IocId")]
    ioc_id: String,
    #[serde(rename = "IocMalware")]
    ioc_malware: String,
    #[serde(rename = "PolicyAction")]
    policy_action: String,
}

#[tokio::test]
async fn wire_format_is_dnsevents_shaped() {
    let up = start_upstream().await;
    let mut srv = start_server(up.addr, &[("threatfox", "tf.csv", TEST_FEED)], "").await;
    query(srv.udp, Proto::Udp, "IvoryCourtyard.top.", RecordType::A).await;
    query(srv.udp, Proto::Udp, "www.example.test.", RecordType::AAAA).await;
    query(
        srv.udp,
        Proto::Udp,
        "www.example.test.",
        RecordType::Unknown(65280),
    )
    .await;
    let path = srv.events_path();
    srv.stop_and_read_events().await;
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let evs: Vec<WireEvent> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();

    // Column order is part of the contract.
    assert!(lines[0].starts_with("{\"TimeGenerated\":\""));
    assert!(lines[0].ends_with("\"PolicyAction\":\"sinkhole\"}"));

    let hit = &evs[0];
    assert_eq!(
        hit.name, "ivorycourtyard.top",
        "lower-cased, no trailing dot"
    );
    assert_eq!(hit.query_type, "A");
    assert_eq!(hit.sub_type, "LookupQuery");
    assert_eq!(hit.event_id, 257);
    assert_eq!(hit.result_code, 0);
    assert_eq!(hit.result, "Success");
    assert_eq!(hit.computer, "test-resolver");
    assert_eq!(hit.source_system, "Linux");
    assert_eq!(hit.client_ip, "127.0.0.1");
    assert_eq!(hit.ip_addresses, "0.0.0.0");
    assert_eq!(hit.malicious_ip, "0.0.0.0");
    assert_eq!(hit.indicator_threat_type, "payload_delivery");
    assert_eq!(hit.confidence, "100");
    assert_eq!(hit.severity, Some(3));
    assert_eq!(hit.report_reference_link, "https://example.org/report");
    assert_eq!(hit.ioc_feed, "threatfox");
    assert_eq!(hit.ioc_value, "ivorycourtyard.top");
    assert_eq!(hit.ioc_id, "1500002");
    assert_eq!(hit.ioc_malware, "SmartApeSG");
    assert!(
        hit.description.contains("ivorycourtyard.top") && hit.description.contains("SmartApeSG"),
        "{}",
        hit.description
    );
    assert!(
        hit.message
            .starts_with("SINKHOLE ivorycourtyard.top A -> 0.0.0.0"),
        "{}",
        hit.message
    );
    // RFC 3339 UTC with milliseconds and Z.
    let t = &hit.time_generated;
    assert_eq!(t.len(), 24, "{t}");
    assert!(
        t.ends_with('Z') && &t[10..11] == "T" && &t[19..20] == ".",
        "{t}"
    );
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");

    let plain = &evs[1];
    assert_eq!(plain.query_type, "AAAA");
    assert_eq!(plain.ip_addresses, "2001:db8::a");
    assert_eq!(plain.policy_action, "forward");
    assert_eq!(plain.severity, None);
    assert_eq!(plain.malicious_ip, "");
    assert_eq!(plain.confidence, "");

    assert_eq!(evs[2].query_type, "65280", "unnamed types as decimal");
}

#[tokio::test]
async fn matches_only_mode_writes_only_hits() {
    let up = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tf.csv"), TEST_FEED).unwrap();
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"{}\"]\n[[feeds]]\nname = \"tf\"\npath = \"tf.csv\"\n[events]\npath = \"ev.ndjson\"\nqueries = \"matches\"\n",
        up.addr
    );
    std::fs::write(dir.path().join("c.toml"), toml).unwrap();
    let cfg = iocdns::config::Config::load(&dir.path().join("c.toml")).unwrap();
    let s = iocdns::app::start(cfg).await.unwrap();
    let addr = s.udp_addrs[0];
    query(addr, Proto::Udp, "www.example.test.", RecordType::A).await;
    query(addr, Proto::Udp, "evil.example.test.", RecordType::A).await;
    s.stop().await;
    let evs = read_events(&dir.path().join("ev.ndjson"));
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["Name"], "evil.example.test");
}
