//! Resolver behaviour over real sockets against the stub upstream.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::support::*;

const BOTH: [Proto; 2] = [Proto::Udp, Proto::Tcp];

fn feeds() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![("tf", "tf.csv", TEST_FEED)]
}

#[tokio::test]
async fn forwards_faithfully_over_udp_and_tcp() {
    let up = start_upstream().await;
    let mut srv = start_server(up.addr, &feeds(), "").await;
    for proto in BOTH {
        let r = query(
            srv.udp_for(proto),
            proto,
            "www.example.test.",
            RecordType::A,
        )
        .await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.recursion_available);
        assert_eq!(addrs(&r), ["192.0.2.10"]);
        assert!(
            r.answers[0].ttl <= 300 && r.answers[0].ttl > 200,
            "ttl {}",
            r.answers[0].ttl
        );

        let r = query(
            srv.udp_for(proto),
            proto,
            "www.example.test.",
            RecordType::AAAA,
        )
        .await;
        assert_eq!(addrs(&r), ["2001:db8::a"]);

        // CNAME chain kept.
        let r = query(
            srv.udp_for(proto),
            proto,
            "alias.example.test.",
            RecordType::A,
        )
        .await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(
            matches!(r.answers[0].data, RData::CNAME(_)),
            "{:?}",
            r.answers
        );
        assert_eq!(addrs(&r), ["192.0.2.10"]);

        // NXDOMAIN stays NXDOMAIN with the SOA in authority.
        let r = query(
            srv.udp_for(proto),
            proto,
            "nope.example.test.",
            RecordType::A,
        )
        .await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.answers.is_empty());
        assert!(
            r.authorities
                .iter()
                .any(|a| a.record_type() == RecordType::SOA),
            "{:?}",
            r.authorities
        );

        // NODATA stays NOERROR with no answers, SOA in authority.
        let r = query(
            srv.udp_for(proto),
            proto,
            "v4only.example.test.",
            RecordType::AAAA,
        )
        .await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert!(
            r.authorities
                .iter()
                .any(|a| a.record_type() == RecordType::SOA)
        );
    }
    let events = srv.stop_and_read_events().await;
    assert_eq!(events.len(), 10);
    assert!(events.iter().all(|e| e["PolicyAction"] == "forward"));
    let nx = events
        .iter()
        .find(|e| e["Name"] == "nope.example.test")
        .unwrap();
    assert_eq!(nx["ResultCode"], 3);
    assert_eq!(nx["EventId"], 258);
    assert_eq!(nx["Result"], "Failure");
}

#[tokio::test]
async fn sinkholes_ioc_and_subdomains_for_every_type() {
    let up = start_upstream().await;
    let mut srv = start_server(up.addr, &feeds(), "").await;
    for proto in BOTH {
        for name in [
            "evil.example.test.",
            "www.evil.example.test.",
            "a.b.EVIL.example.test.",
        ] {
            let r = query(srv.udp_for(proto), proto, name, RecordType::A).await;
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
            assert_eq!(addrs(&r), ["0.0.0.0"], "{name}");
            assert_eq!(r.answers[0].ttl, 300);
            let (code, text) = ede(&r).expect("EDE on blocked answer");
            assert_eq!(code, 15);
            assert!(
                text.contains("feed=tf")
                    && text.contains("ioc=evil.example.test")
                    && text.contains("id=1500001"),
                "{text}"
            );

            let r = query(srv.udp_for(proto), proto, name, RecordType::AAAA).await;
            assert_eq!(addrs(&r), ["::"], "{name}");

            for t in [RecordType::MX, RecordType::TXT] {
                let r = query(srv.udp_for(proto), proto, name, t).await;
                assert_eq!(
                    r.metadata.response_code,
                    ResponseCode::NoError,
                    "{name} {t}"
                );
                assert!(r.answers.is_empty(), "{name} {t}: {:?}", r.answers);
                assert_eq!(ede(&r).map(|e| e.0), Some(15));
            }
        }
    }
    // A name that merely ends with the IOC text is not a subdomain.
    let r = query(srv.udp, Proto::Udp, "notevil.example.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let events = srv.stop_and_read_events().await;
    let hits: Vec<_> = events
        .iter()
        .filter(|e| e["PolicyAction"] == "sinkhole")
        .collect();
    assert_eq!(hits.len(), 24);
    let h = hits
        .iter()
        .find(|e| e["Name"] == "a.b.evil.example.test" && e["QueryType"] == "A")
        .unwrap();
    assert_eq!(h["IocValue"], "evil.example.test");
    assert_eq!(h["IocFeed"], "tf");
    assert_eq!(h["IocId"], "1500001");
    assert_eq!(h["IPAddresses"], "0.0.0.0");
    assert_eq!(h["MaliciousIP"], "0.0.0.0");
    let mx = hits.iter().find(|e| e["QueryType"] == "MX").unwrap();
    assert_eq!(mx["IPAddresses"], "");
}

#[tokio::test]
async fn each_action() {
    let up = start_upstream().await;
    for (action, rcode) in [
        ("nxdomain", ResponseCode::NXDomain),
        ("nodata", ResponseCode::NoError),
        ("refused", ResponseCode::Refused),
    ] {
        let mut srv = start_server(
            up.addr,
            &feeds(),
            &format!("\n[policy]\naction = \"{action}\"\n"),
        )
        .await;
        for proto in BOTH {
            let r = query(
                srv.udp_for(proto),
                proto,
                "www.evil.example.test.",
                RecordType::A,
            )
            .await;
            assert_eq!(r.metadata.response_code, rcode, "{action}");
            assert!(r.answers.is_empty(), "{action}");
            assert_eq!(ede(&r).map(|e| e.0), Some(15), "{action}");
        }
        let events = srv.stop_and_read_events().await;
        assert_eq!(events.len(), 2);
        assert!(
            events.iter().all(|e| e["PolicyAction"] == action),
            "{events:?}"
        );
    }

    // log: forwarded as usual, recorded as a hit.
    let mut srv = start_server(up.addr, &feeds(), "\n[policy]\naction = \"log\"\n").await;
    let r = query(srv.udp, Proto::Udp, "evil.example.test.", RecordType::A).await;
    assert_eq!(addrs(&r), ["198.51.100.7"]);
    assert!(ede(&r).is_none());
    let events = srv.stop_and_read_events().await;
    assert_eq!(events[0]["PolicyAction"], "log");
    assert_eq!(events[0]["IocValue"], "evil.example.test");
    assert_eq!(events[0]["MaliciousIP"], "198.51.100.7");
    assert_eq!(events[0]["IndicatorThreatType"], "botnet_cc");

    // drop: no answer at all.
    let mut srv = start_server(up.addr, &feeds(), "\n[policy]\naction = \"drop\"\n").await;
    let none = query_from(
        srv.udp,
        Proto::Udp,
        "evil.example.test.",
        RecordType::A,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    )
    .await;
    assert!(none.is_none(), "drop must not answer");
    let events = srv.stop_and_read_events().await;
    assert_eq!(events[0]["PolicyAction"], "drop");
    assert_eq!(events[0]["ResultCode"], -1);
}

#[tokio::test]
async fn per_feed_action_and_multi_feed_provenance() {
    let up = start_upstream().await;
    let side = tempfile::tempdir().unwrap();
    let nx = side.path().join("nx.txt");
    std::fs::write(&nx, "# local list\nother.example.test\nevil.example.test\n").unwrap();
    let extra = format!(
        "\n[[feeds]]\nname = \"nx\"\npath = \"{}\"\naction = \"nxdomain\"\n",
        nx.display()
    );
    let mut srv = start_server(up.addr, &feeds(), &extra).await;
    let r = query(srv.udp, Proto::Udp, "x.other.example.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    // Listed by both feeds: the most severe action (nxdomain) wins, both feeds are recorded.
    let r = query(srv.udp, Proto::Udp, "evil.example.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let events = srv.stop_and_read_events().await;
    assert_eq!(events[0]["PolicyAction"], "nxdomain");
    assert_eq!(events[0]["IocFeed"], "nx");
    assert_eq!(events[1]["IocFeed"], "nx,tf");
    assert_eq!(events[1]["IocValue"], "evil.example.test");
}

#[tokio::test]
async fn allowlist_wins_over_feeds() {
    let up = start_upstream().await;
    let mut srv = start_server(
        up.addr,
        &feeds(),
        "\n[allow]\ndomains = [\"allowed.example.test\", \"good.evil.example.test\"]\n",
    )
    .await;
    for proto in BOTH {
        let r = query(
            srv.udp_for(proto),
            proto,
            "allowed.example.test.",
            RecordType::A,
        )
        .await;
        assert_eq!(addrs(&r), ["198.51.100.7"], "allowlisted name forwarded");
        let r = query(
            srv.udp_for(proto),
            proto,
            "good.evil.example.test.",
            RecordType::A,
        )
        .await;
        assert_eq!(
            addrs(&r),
            ["198.51.100.7"],
            "allowlisted subdomain of an IOC forwarded"
        );
        let r = query(
            srv.udp_for(proto),
            proto,
            "www.evil.example.test.",
            RecordType::A,
        )
        .await;
        assert_eq!(addrs(&r), ["0.0.0.0"], "siblings still blocked");
    }
    let events = srv.stop_and_read_events().await;
    let allowed: Vec<_> = events
        .iter()
        .filter(|e| e["PolicyAction"] == "allow")
        .collect();
    assert_eq!(allowed.len(), 4);
    assert!(
        allowed
            .iter()
            .all(|e| e["IocFeed"] == "" && e["Severity"].is_null())
    );
}

#[tokio::test]
async fn refuses_clients_outside_allow() {
    let up = start_upstream().await;
    let mut srv = start_server(up.addr, &feeds(), "").await;
    let outsider = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    for proto in BOTH {
        let r = query_from(
            srv.udp_for(proto),
            proto,
            "www.example.test.",
            RecordType::A,
            outsider,
        )
        .await
        .expect("answer");
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        assert!(r.answers.is_empty());
        assert_eq!(ede(&r).map(|e| e.0), Some(18));
    }
    let events = srv.stop_and_read_events().await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["PolicyAction"] == "denied"
        && e["ClientIP"] == "127.0.0.2"
        && e["ResultCode"] == 5));
}

#[tokio::test]
async fn servfail_when_upstream_is_down() {
    let dead = dead_upstream();
    let mut srv = start_server(dead, &feeds(), "").await;
    for proto in BOTH {
        let started = std::time::Instant::now();
        let r = query(
            srv.udp_for(proto),
            proto,
            "www.example.test.",
            RecordType::A,
        )
        .await;
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        assert!(
            started.elapsed() < std::time::Duration::from_millis(2500),
            "answered within the timeout"
        );
        assert_eq!(ede(&r).map(|e| e.0), Some(22));
        // Blocking does not depend on the upstream.
        let r = query(
            srv.udp_for(proto),
            proto,
            "evil.example.test.",
            RecordType::A,
        )
        .await;
        assert_eq!(addrs(&r), ["0.0.0.0"]);
    }
    let events = srv.stop_and_read_events().await;
    assert_eq!(events.iter().filter(|e| e["ResultCode"] == 2).count(), 2);
}

#[tokio::test]
async fn malformed_packets_get_formerr_or_nothing() {
    let up = start_upstream().await;
    let srv = start_server(up.addr, &feeds(), "").await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Short garbage: dropped. Header claiming a question that is missing: FORMERR.
    sock.send_to(b"\x01\x02\x03", srv.udp).await.unwrap();
    let mut bad = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    bad.extend_from_slice(b"\x05abc");
    sock.send_to(&bad, srv.udp).await.unwrap();
    let mut buf = [0u8; 512];
    let (len, _) =
        tokio::time::timeout(std::time::Duration::from_secs(2), sock.recv_from(&mut buf))
            .await
            .expect("FORMERR answer")
            .unwrap();
    assert!(len >= 12);
    assert_eq!(&buf[..2], &[0x12, 0x34]);
    assert_eq!(buf[3] & 0x0f, 1, "FORMERR");
    // Still serving.
    let r = query(srv.udp, Proto::Udp, "www.example.test.", RecordType::A).await;
    assert_eq!(addrs(&r), ["192.0.2.10"]);
}

#[tokio::test]
async fn fails_over_to_the_next_upstream_within_the_timeout() {
    let up = start_upstream().await;
    let dead = dead_upstream();
    let mut srv = start_server_with(&[dead, up.addr], &feeds(), "").await;
    for proto in BOTH {
        let started = std::time::Instant::now();
        let r = query(
            srv.udp_for(proto),
            proto,
            "www.example.test.",
            RecordType::A,
        )
        .await;
        assert_eq!(addrs(&r), ["192.0.2.10"], "{proto:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_millis(1500),
            "{proto:?}"
        );
    }
    let events = srv.stop_and_read_events().await;
    assert!(events.iter().all(|e| e["ResultCode"] == 0));
}

#[tokio::test]
async fn edns_options_are_not_forwarded_or_cached() {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    let up = start_upstream().await;
    let srv = start_server(up.addr, &feeds(), "").await;
    // A query with a client cookie, twice (the second from the cache): both plain answers.
    for _ in 0..2 {
        let mut msg = request("www.example.test.", RecordType::A);
        if let Some(edns) = msg.edns.as_mut() {
            edns.options_mut().insert(EdnsOption::Unknown(
                u16::from(EdnsCode::Cookie),
                vec![1, 2, 3, 4, 5, 6, 7, 8],
            ));
        }
        let r = exchange(srv.udp, Proto::Udp, &msg, "127.0.0.1".parse().unwrap())
            .await
            .expect("answer");
        assert_eq!(addrs(&r), ["192.0.2.10"]);
        let opts = r
            .edns
            .as_ref()
            .map(|e| e.options().options.len())
            .unwrap_or(0);
        assert_eq!(
            opts, 0,
            "no client-specific option in a shared answer: {:?}",
            r.edns
        );
    }
}
