//! Live operation: hot reload under load, last-good-version fallback, config reload, metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

/// Polls `f` every 50 ms until it is true or `limit` passes; returns the time it took.
async fn eventually(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn is_blocked(srv: &TestServer, name: &str) -> bool {
    let r = query(srv.udp, Proto::Udp, name, RecordType::A).await;
    addrs(&r) == ["0.0.0.0"]
}

/// A client loop that keeps querying a forwarded name and counts failures.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

fn start_load(addr: std::net::SocketAddr) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (s, n, f) = (stop.clone(), sent.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        // Bounded in count and time.
        for _ in 0..100_000 {
            if s.load(Ordering::Relaxed) || Instant::now() > deadline {
                break;
            }
            n.fetch_add(1, Ordering::Relaxed);
            let msg = request("www.example.test.", RecordType::A);
            let t = Instant::now();
            match exchange(addr, Proto::Udp, &msg, "127.0.0.1".parse().unwrap()).await {
                Some(r)
                    if r.metadata.response_code == ResponseCode::NoError
                        && t.elapsed() < Duration::from_millis(500) => {}
                _ => {
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    Load {
        stop,
        sent,
        failed,
        task,
    }
}

impl Load {
    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_rewrites_take_effect_within_two_seconds_without_failed_queries() {
    let up = start_upstream().await;
    let srv = start_server(up.addr, &[("list", "list.txt", "first.example.test\n")], "").await;
    let feed = srv.dir.path().join("list.txt");
    assert!(is_blocked(&srv, "first.example.test.").await);
    let load = start_load(srv.udp);

    // 1. Write in place.
    std::fs::write(&feed, "first.example.test\nsecond.example.test\n").unwrap();
    let took = eventually(Duration::from_secs(2), async || {
        is_blocked(&srv, "x.second.example.test.").await
    })
    .await;
    assert!(took.is_some(), "in-place write not in effect within 2 s");

    // 2. Replace by rename (editors, rsync, curl -o tmp && mv).
    let tmp = srv.dir.path().join(".list.txt.tmp");
    std::fs::write(
        &tmp,
        "first.example.test\nsecond.example.test\nthird.example.test\n",
    )
    .unwrap();
    std::fs::rename(&tmp, &feed).unwrap();
    let took = eventually(Duration::from_secs(2), async || {
        is_blocked(&srv, "third.example.test.").await
    })
    .await;
    assert!(took.is_some(), "rename not in effect within 2 s");

    // 3. Delete and re-create.
    std::fs::remove_file(&feed).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(&feed, "fourth.example.test\n").unwrap();
    let took = eventually(Duration::from_secs(2), async || {
        is_blocked(&srv, "fourth.example.test.").await
            && !is_blocked(&srv, "first.example.test.").await
    })
    .await;
    assert!(
        took.is_some(),
        "delete + re-create not in effect within 2 s"
    );

    let (sent, failed) = load.finish().await;
    assert!(sent > 50, "load loop ran ({sent})");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} queries failed or took over 500 ms during reloads"
    );
    assert!(srv.server.as_ref().unwrap().policy.current().generation >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_emptied_feed_keeps_the_last_good_version() {
    let up = start_upstream().await;
    let srv = start_server(
        up.addr,
        &[
            ("tf", "tf.csv", TEST_FEED),
            (
                "list",
                "list.txt",
                "first.example.test\nsecond.example.test\n",
            ),
        ],
        "",
    )
    .await;
    let feed = srv.dir.path().join("list.txt");
    let gen0 = srv.server.as_ref().unwrap().policy.current().generation;

    // Mostly garbage: more than max_rejected_percent (50) of lines rejected.
    std::fs::write(&feed, "new.example.test\nnot a domain\n!!!\nfoo..bar\n").unwrap();
    let reloaded = eventually(Duration::from_secs(3), async || {
        srv.server.as_ref().unwrap().policy.current().generation > gen0
    })
    .await;
    assert!(reloaded.is_some());
    assert!(
        is_blocked(&srv, "first.example.test.").await,
        "old entries stay"
    );
    assert!(
        !is_blocked(&srv, "new.example.test.").await,
        "refused version not used"
    );
    assert!(
        is_blocked(&srv, "evil.example.test.").await,
        "other feeds unaffected"
    );

    // Truncated to nothing.
    let gen1 = srv.server.as_ref().unwrap().policy.current().generation;
    std::fs::write(&feed, "").unwrap();
    eventually(Duration::from_secs(3), async || {
        srv.server.as_ref().unwrap().policy.current().generation > gen1
    })
    .await
    .unwrap();
    assert!(
        is_blocked(&srv, "second.example.test.").await,
        "emptied feed keeps the last good version"
    );

    // Deleted (unreadable).
    let gen2 = srv.server.as_ref().unwrap().policy.current().generation;
    std::fs::remove_file(&feed).unwrap();
    eventually(Duration::from_secs(3), async || {
        srv.server.as_ref().unwrap().policy.current().generation > gen2
    })
    .await
    .unwrap();
    assert!(
        is_blocked(&srv, "first.example.test.").await,
        "unreadable feed keeps the last good version"
    );

    // A good version is taken again.
    std::fs::write(&feed, "fresh.example.test\n").unwrap();
    eventually(Duration::from_secs(3), async || {
        is_blocked(&srv, "fresh.example.test.").await
    })
    .await
    .unwrap();
    assert!(!is_blocked(&srv, "first.example.test.").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_applies_policy_and_rejects_bad_config() {
    let up = start_upstream().await;
    let srv = start_server(up.addr, &[("tf", "tf.csv", TEST_FEED)], "").await;
    let cfg_path = srv.dir.path().join("iocdns.toml");
    let original = std::fs::read_to_string(&cfg_path).unwrap();
    assert!(is_blocked(&srv, "evil.example.test.").await);

    // Live change: action and allowlist.
    std::fs::write(&cfg_path, format!("{original}\n[policy]\naction = \"nxdomain\"\n[allow]\ndomains = [\"www.evil.example.test\"]\n")).unwrap();
    let took = eventually(Duration::from_secs(2), async || {
        query(srv.udp, Proto::Udp, "evil.example.test.", RecordType::A)
            .await
            .metadata
            .response_code
            == ResponseCode::NXDomain
    })
    .await;
    assert!(took.is_some(), "config change not applied within 2 s");
    let r = query(srv.udp, Proto::Udp, "www.evil.example.test.", RecordType::A).await;
    assert_eq!(addrs(&r), ["198.51.100.7"], "allowlisted after reload");

    // A bad config is rejected whole; the running one stays.
    let generation = srv.server.as_ref().unwrap().policy.current().generation;
    std::fs::write(
        &cfg_path,
        format!("{original}\n[policy]\naction = \"explode\"\n"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        srv.server.as_ref().unwrap().policy.current().generation,
        generation,
        "no new generation from a bad config"
    );
    let r = query(srv.udp, Proto::Udp, "evil.example.test.", RecordType::A).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NXDomain,
        "running config stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_reports_real_values() {
    let up = start_upstream().await;
    let srv = start_server(
        up.addr,
        &[("tf", "tf.csv", TEST_FEED)],
        "\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    for _ in 0..3 {
        query(srv.udp, Proto::Udp, "www.evil.example.test.", RecordType::A).await;
    }
    query(srv.udp, Proto::Udp, "www.example.test.", RecordType::AAAA).await;
    let addr = srv
        .server
        .as_ref()
        .unwrap()
        .metrics_addr
        .expect("metrics listening");
    // Events are counted by the writer thread; give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = http_get(addr, "/metrics").await;
    let value = |prefix: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} missing in:\n{body}"))
    };
    assert!(value("iocdns_queries_total{type=\"A\"}") >= 3.0);
    assert!(value("iocdns_queries_total{type=\"AAAA\"}") >= 1.0);
    assert!(value("iocdns_responses_total{action=\"sinkhole\"}") >= 3.0);
    assert!(value("iocdns_ioc_hits_total{feed=\"tf\",action=\"sinkhole\"}") >= 3.0);
    assert_eq!(value("iocdns_feed_entries{feed=\"tf\"}"), 3.0);
    assert_eq!(value("iocdns_feed_rejected_lines{feed=\"tf\"}"), 0.0);
    assert!(value("iocdns_feed_last_success_timestamp_seconds{feed=\"tf\"}") > 1.7e9);
    assert!(value("iocdns_feed_newest_ioc_age_seconds{feed=\"tf\"}") > 0.0);
    assert!(
        body.contains("iocdns_upstream_duration_seconds_bucket"),
        "{body}"
    );
    assert!(value("iocdns_events_written_total") >= 4.0);
    assert_eq!(
        value("iocdns_events_dropped_total{reason=\"queue_full\"}"),
        0.0
    );
    assert!(http_get(addr, "/health").await.ends_with("ok\n"));
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_age_and_never_outlive_a_new_block() {
    let up = start_upstream().await;
    let srv = start_server(up.addr, &[("list", "list.txt", "first.example.test\n")], "").await;
    let r1 = query(srv.udp, Proto::Udp, "WWW.example.test.", RecordType::A).await;
    assert_eq!(addrs(&r1), ["192.0.2.10"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r2 = query(srv.udp, Proto::Udp, "www.EXAMPLE.test.", RecordType::A).await;
    assert_eq!(addrs(&r2), ["192.0.2.10"]);
    assert_eq!(
        r2.queries[0].name().to_ascii(),
        "www.EXAMPLE.test.",
        "question echoed as asked"
    );
    assert!(
        r2.answers[0].ttl < r1.answers[0].ttl,
        "TTL decreases: {} then {}",
        r1.answers[0].ttl,
        r2.answers[0].ttl
    );
    // NXDOMAIN is cached with its SOA.
    for _ in 0..2 {
        let r = query(srv.udp, Proto::Udp, "missing.example.test.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(!r.authorities.is_empty());
    }
    std::fs::write(
        srv.dir.path().join("list.txt"),
        "first.example.test\nwww.example.test\n",
    )
    .unwrap();
    let took = eventually(Duration::from_secs(2), async || {
        is_blocked(&srv, "www.example.test.").await
    })
    .await;
    assert!(
        took.is_some(),
        "a cached name is blocked as soon as the policy says so"
    );
}
