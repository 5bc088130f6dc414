//! End to end: the built binary on the shipped config, queried with `dig`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn dig_available() -> bool {
    Command::new("dig").arg("-v").output().is_ok()
}

struct Daemon(Child);

impl Daemon {
    /// Waits (at most 10 s) for the process to exit after a signal; it must exit with success.
    fn wait_clean_exit(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                return;
            }
            assert!(Instant::now() < deadline, "did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with the UDP address from its "listening" log line.
#[allow(clippy::zombie_processes)] // the Daemon guard kills and waits on every path
fn spawn(args: &[&str]) -> (Daemon, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iocdns"))
        .args(args)
        .env("RUST_LOG", "info")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn iocdns");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if let Some(rest) = line.split("udp=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
            return (Daemon(child), addr, rx);
        }
        seen.push(line);
    }
    panic!("iocdns did not report a listener: {seen:#?}");
}

fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .arg("-p")
        .arg(addr.port().to_string())
        .args(["+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn dig_against_the_shipped_config() {
    if !dig_available() {
        eprintln!(
            "SKIPPED: `dig` not installed (apt-get install bind9-dnsutils); .ci/run installs it"
        );
        return;
    }
    let up = start_upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.ndjson");
    let upstream = up.addr.to_string();
    let (mut daemon, addr, rx) = spawn(&[
        "-c",
        "config/iocdns.toml",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--events",
        events.to_str().unwrap(),
    ]);
    let started_lines: Vec<String> = rx.try_iter().collect();
    let _ = started_lines;

    let blocked = tokio::task::spawn_blocking(move || dig(addr, &["ivorycourtyard.top", "A"]))
        .await
        .unwrap();
    assert!(blocked.contains("status: NOERROR"), "{blocked}");
    assert!(
        blocked.contains("ivorycourtyard.top.\t300\tIN\tA\t0.0.0.0"),
        "{blocked}"
    );
    assert!(blocked.contains("EDE: 15 (Blocked)"), "{blocked}");
    assert!(blocked.contains("threatfox-smartapesg"), "{blocked}");

    let mx = tokio::task::spawn_blocking(move || dig(addr, &["www.ivorycourtyard.top", "MX"]))
        .await
        .unwrap();
    assert!(
        mx.contains("status: NOERROR") && mx.contains("ANSWER: 0"),
        "{mx}"
    );

    let fwd = tokio::task::spawn_blocking(move || dig(addr, &["www.example.test", "A"]))
        .await
        .unwrap();
    assert!(
        fwd.contains("status: NOERROR") && fwd.contains("192.0.2.10"),
        "{fwd}"
    );
    let tcp = tokio::task::spawn_blocking(move || dig(addr, &["+tcp", "www.example.test", "AAAA"]))
        .await
        .unwrap();
    assert!(tcp.contains("2001:db8::a"), "{tcp}");

    // SIGTERM: clean stop, events flushed.
    let pid = daemon.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    daemon.wait_clean_exit();
    let evs = read_events(Path::new(&events));
    assert_eq!(evs.len(), 4, "{evs:#?}");
    let hit = &evs[0];
    assert_eq!(hit["Name"], "ivorycourtyard.top");
    assert_eq!(hit["Computer"], "resolver-01");
    assert_eq!(hit["IocFeed"], "threatfox-smartapesg");
    assert_eq!(hit["IocValue"], "ivorycourtyard.top");
    assert_eq!(hit["IocMalware"], "SmartApeSG");
    assert_eq!(hit["PolicyAction"], "sinkhole");
    assert_eq!(hit["IndicatorThreatType"], "payload_delivery");
    assert_eq!(evs[2]["PolicyAction"], "forward");
}

#[test]
fn lint_and_check_on_the_shipped_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_iocdns"))
        .args(["-c", "config/iocdns.toml", "lint"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("feed threatfox-smartapesg") && text.contains("3 loaded"),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_iocdns"))
        .args([
            "-c",
            "config/iocdns.toml",
            "check",
            "www.ivorycourtyard.top",
            "--type",
            "AAAA",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("decision: SINKHOLE (AAAA :: ttl 300) by feed threatfox-smartapesg, entry ivorycourtyard.top"), "{text}");
    assert!(text.contains("malware=SmartApeSG"), "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_iocdns"))
        .args(["-c", "does/not/exist.toml", "lint"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does/not/exist.toml"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_and_sigterm_loses_no_answered_query() {
    let up = start_upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.ndjson");
    let upstream = up.addr.to_string();
    let (mut daemon, addr, rx) = spawn(&[
        "-c",
        "config/iocdns.toml",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--events",
        events.to_str().unwrap(),
    ]);
    let pid = daemon.0.id().to_string();

    // SIGHUP: config and feeds are reloaded.
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut reloaded = false;
    while Instant::now() < deadline && !reloaded {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            reloaded = line.contains("policy reloaded");
        }
    }
    assert!(reloaded, "no reload after SIGHUP");

    // A client keeps querying; SIGTERM arrives in the middle.
    let client = tokio::spawn(async move {
        let mut answered = 0u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in 0..20_000u32 {
            if Instant::now() > deadline {
                break;
            }
            let name = if i % 5 == 0 {
                "www.ivorycourtyard.top."
            } else {
                "www.example.test."
            };
            let msg = request(name, hickory_proto::rr::RecordType::A);
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            sock.send_to(&msg.to_vec().unwrap(), addr).await.unwrap();
            let mut buf = [0u8; 2048];
            match tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
                Ok(Ok(_)) => answered += 1,
                _ => break,
            }
        }
        answered
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let answered = client.await.unwrap();
    daemon.wait_clean_exit();
    let evs = read_events(Path::new(&events));
    assert!(
        answered > 20,
        "client got {answered} answers before the stop"
    );
    assert!(
        evs.len() as u64 >= answered && evs.len() as u64 <= answered + 1,
        "{answered} answered queries but {} event lines",
        evs.len()
    );
}
