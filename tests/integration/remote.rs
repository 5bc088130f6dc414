//! Remote feed downloads against a hand-written HTTP/1.1 server on 127.0.0.1:0 (no internet):
//! 200 / 304 with the on-disk cache, retries on 5xx, timeouts, zip extraction, headers from the
//! environment, redirects, size limits and the background refresher. Every wait is bounded.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iocdns::remote::{self, FetchError, FetchOutcome, RemoteFeed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Upper bound for any single operation in these tests.
const BOUND: Duration = Duration::from_secs(20);

/// One request as the server saw it (header names lowercased).
#[derive(Clone, Debug)]
struct Req {
    path: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

enum Reply {
    /// A complete response; `Content-Length` is added unless given or the status is 304.
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Read the request, answer nothing, hold the connection open.
    Hang,
    /// Send this raw prefix (status line, headers, part of a body), then hold the connection.
    Stall(Vec<u8>),
}

fn ok(body: impl Into<Vec<u8>>, headers: Vec<(&'static str, String)>) -> Reply {
    Reply::Full {
        status: 200,
        headers,
        body: body.into(),
    }
}

fn status(code: u16) -> Reply {
    Reply::Full {
        status: code,
        headers: vec![],
        body: Vec::new(),
    }
}

type Handler = dyn Fn(&Req, usize) -> Reply + Send + Sync;

struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Req>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(handler: impl Fn(&Req, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = Arc::clone(&handler);
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(BOUND, serve_one(stream, &*handler, &seen)).await;
                });
            }
        });
        Server {
            addr,
            requests,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(mut stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Req>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let req = Req { path, headers };
    let index = {
        let mut seen = seen.lock().unwrap();
        seen.push(req.clone());
        seen.len() - 1
    };
    match handler(&req, index) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut out = format!("HTTP/1.1 {status} Test\r\nConnection: close\r\n").into_bytes();
            let has_length = headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
            for (n, v) in &headers {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            if !has_length && status != 304 {
                out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
        }
        Reply::Hang => tokio::time::sleep(BOUND).await,
        Reply::Stall(prefix) => {
            let _ = stream.write_all(&prefix).await;
            tokio::time::sleep(BOUND).await;
        }
    }
}

fn feed(name: &str, url: String, dir: &Path) -> RemoteFeed {
    RemoteFeed {
        name: name.into(),
        url,
        refresh: Duration::from_secs(3600),
        headers_from_env: vec![],
        timeout: Duration::from_secs(5),
        retries: 0,
        backoff: Duration::from_millis(10),
        cache_dir: dir.to_owned(),
    }
}

async fn fetch(feed: &RemoteFeed) -> Result<FetchOutcome, FetchError> {
    let client = remote::client().unwrap();
    tokio::time::timeout(BOUND, remote::fetch(&client, feed))
        .await
        .expect("fetch finished within the bound")
}

async fn fetch_env(
    feed: &RemoteFeed,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<FetchOutcome, FetchError> {
    let client = remote::client().unwrap();
    tokio::time::timeout(BOUND, remote::fetch_with_env(&client, feed, env))
        .await
        .expect("fetch finished within the bound")
}

fn meta(feed: &RemoteFeed) -> serde_json::Value {
    let path = feed.cache_dir.join(format!("{}.meta.json", feed.name));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Only the data and meta files: no temp file survives any outcome.
fn assert_no_temp_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            name.ends_with(".feed") || name.ends_with(".meta.json"),
            "unexpected file {name} in the cache dir"
        );
    }
}

const FEED_V1: &str = "bad1.example\nbad2.example\n";
const FEED_V2: &str = "bad1.example\nbad2.example\nbad3.example\n";

/// A feed server with ETags: answers 304 to a matching If-None-Match.
async fn etag_server(version: Arc<AtomicU32>) -> Server {
    Server::start(move |req, _| {
        let v = version.load(Ordering::SeqCst);
        let etag = format!("\"v{v}\"");
        if req.header("if-none-match") == Some(etag.as_str()) {
            return Reply::Full {
                status: 304,
                headers: vec![("ETag", etag)],
                body: Vec::new(),
            };
        }
        let body = if v == 1 { FEED_V1 } else { FEED_V2 };
        ok(
            body,
            vec![("ETag", etag), ("Content-Type", "text/plain".into())],
        )
    })
    .await
}

#[tokio::test]
async fn ok_then_not_modified_then_updated() {
    let dir = tempfile::tempdir().unwrap();
    let version = Arc::new(AtomicU32::new(1));
    let server = etag_server(Arc::clone(&version)).await;
    let f = feed("tf", server.url("/feed.txt"), dir.path());
    assert!(remote::cached_at(&f).is_none());

    // 200: data + meta written, ETag stored.
    let out = fetch(&f).await.unwrap();
    assert_eq!(
        out,
        FetchOutcome::Updated {
            bytes: FEED_V1.len() as u64
        }
    );
    assert_eq!(f.data_path(), dir.path().join("tf.feed"));
    assert_eq!(std::fs::read_to_string(f.data_path()).unwrap(), FEED_V1);
    let m = meta(&f);
    assert_eq!(m["etag"], "\"v1\"");
    assert_eq!(m["url"], f.url.as_str());
    assert_eq!(m["bytes"], FEED_V1.len());
    let first = server.requests();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].header("if-none-match"), None);
    let ua = first[0].header("user-agent").unwrap();
    assert!(ua.starts_with("iocdns/"), "{ua}");
    assert!(
        first[0]
            .header("accept-encoding")
            .is_some_and(|v| v.contains("gzip"))
    );
    let cached = remote::cached_at(&f).expect("cached_at after a download");
    assert!(cached.elapsed().unwrap_or_default() < Duration::from_secs(60));

    // 304: conditional request, data untouched.
    let mtime = std::fs::metadata(f.data_path())
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(fetch(&f).await.unwrap(), FetchOutcome::NotModified);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("if-none-match"), Some("\"v1\""));
    assert_eq!(std::fs::read_to_string(f.data_path()).unwrap(), FEED_V1);
    assert_eq!(
        std::fs::metadata(f.data_path())
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );

    // New content upstream: replaced, new ETag stored.
    version.store(2, Ordering::SeqCst);
    assert_eq!(
        fetch(&f).await.unwrap(),
        FetchOutcome::Updated {
            bytes: FEED_V2.len() as u64
        }
    );
    assert_eq!(std::fs::read_to_string(f.data_path()).unwrap(), FEED_V2);
    assert_eq!(meta(&f)["etag"], "\"v2\"");
    assert_no_temp_files(dir.path());
}

#[tokio::test]
async fn last_modified_is_sent_back_as_if_modified_since() {
    let dir = tempfile::tempdir().unwrap();
    const LM: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
    let server = Server::start(|req, _| {
        if req.header("if-modified-since") == Some(LM) {
            status(304)
        } else {
            ok(FEED_V1, vec![("Last-Modified", LM.into())])
        }
    })
    .await;
    let f = feed("lm", server.url("/hosts"), dir.path());
    assert!(matches!(
        fetch(&f).await.unwrap(),
        FetchOutcome::Updated { .. }
    ));
    assert_eq!(meta(&f)["last_modified"], LM);
    assert_eq!(fetch(&f).await.unwrap(), FetchOutcome::NotModified);
    assert_eq!(server.requests()[1].header("if-modified-since"), Some(LM));
}

#[tokio::test]
async fn validators_are_not_sent_when_the_data_file_is_gone_or_the_url_changed() {
    let dir = tempfile::tempdir().unwrap();
    let server = etag_server(Arc::new(AtomicU32::new(1))).await;
    let mut f = feed("v", server.url("/a"), dir.path());
    fetch(&f).await.unwrap();

    f.url = server.url("/b");
    assert!(matches!(
        fetch(&f).await.unwrap(),
        FetchOutcome::Updated { .. }
    ));
    assert_eq!(server.requests()[1].header("if-none-match"), None);

    std::fs::remove_file(f.data_path()).unwrap();
    assert!(remote::cached_at(&f).is_none());
    assert!(matches!(
        fetch(&f).await.unwrap(),
        FetchOutcome::Updated { .. }
    ));
    assert_eq!(server.requests()[2].header("if-none-match"), None);
    assert!(f.data_path().is_file());
}

#[tokio::test]
async fn server_error_is_retried_with_backoff_and_keeps_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|_, i| {
        if i == 0 {
            ok(FEED_V1, vec![])
        } else {
            status(500)
        }
    })
    .await;
    let mut f = feed("e5", server.url("/f"), dir.path());
    fetch(&f).await.unwrap();
    let cached = remote::cached_at(&f).unwrap();

    f.retries = 2;
    f.backoff = Duration::from_millis(50);
    let start = Instant::now();
    let err = fetch(&f).await.unwrap_err();
    assert!(matches!(err, FetchError::Http { status: 500 }), "{err}");
    assert_eq!(server.count(), 1 + 3, "retries + 1 attempts");
    assert!(
        start.elapsed() >= Duration::from_millis(50 + 100),
        "backoff doubles"
    );
    assert_eq!(std::fs::read_to_string(f.data_path()).unwrap(), FEED_V1);
    assert_eq!(remote::cached_at(&f), Some(cached));
    assert_no_temp_files(dir.path());
}

#[tokio::test]
async fn client_errors_are_not_retried_but_429_is() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|_, _| status(404)).await;
    let mut f = feed("e4", server.url("/f"), dir.path());
    f.retries = 3;
    let err = fetch(&f).await.unwrap_err();
    assert!(matches!(err, FetchError::Http { status: 404 }), "{err}");
    assert_eq!(server.count(), 1);

    let server = Server::start(|_, i| {
        if i < 2 {
            status(429)
        } else {
            ok(FEED_V1, vec![])
        }
    })
    .await;
    f.url = server.url("/f");
    assert!(matches!(
        fetch(&f).await.unwrap(),
        FetchOutcome::Updated { .. }
    ));
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn silent_server_times_out_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|_, _| Reply::Hang).await;
    let mut f = feed("slow", server.url("/f"), dir.path());
    f.timeout = Duration::from_millis(300);
    f.retries = 1;
    let start = Instant::now();
    let err = fetch(&f).await.unwrap_err();
    let elapsed = start.elapsed();
    assert!(matches!(err, FetchError::Timeout), "{err}");
    assert_eq!(server.count(), 2);
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(!f.data_path().exists());
}

#[tokio::test]
async fn stalled_body_times_out_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|_, i| {
        if i == 0 {
            ok(FEED_V1, vec![])
        } else {
            Reply::Stall(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nhalf.example\n".to_vec(),
            )
        }
    })
    .await;
    let mut f = feed("stall", server.url("/f"), dir.path());
    fetch(&f).await.unwrap();
    f.timeout = Duration::from_millis(300);
    let err = fetch(&f).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout), "{err}");
    assert_eq!(std::fs::read_to_string(f.data_path()).unwrap(), FEED_V1);
    assert_no_temp_files(dir.path());
}

#[tokio::test]
async fn restart_without_network_keeps_the_last_download() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|_, _| ok(FEED_V1, vec![("ETag", "\"x\"".into())])).await;
    let f = feed("offline", server.url("/f"), dir.path());
    fetch(&f).await.unwrap();
    drop(server);

    // A "restarted" process: a fresh RemoteFeed on the same cache dir, server port now closed.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut f2 = feed("offline", format!("http://127.0.0.1:{port}/f"), dir.path());
    f2.retries = 1;
    assert_eq!(f2.data_path(), f.data_path());
    assert!(remote::cached_at(&f2).is_some());
    let err = fetch(&f2).await.unwrap_err();
    assert!(matches!(err, FetchError::Network(_)), "{err}");
    assert!(
        !err.to_string().contains(&port.to_string()),
        "no URL: {err}"
    );
    assert_eq!(std::fs::read_to_string(f2.data_path()).unwrap(), FEED_V1);
}

fn make_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

const THREATFOX_CSV: &str = "\
################################################################
# ThreatFox IOCs: full data dump (CSV)                          #
################################################################
#
# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\",\"threat_type\",\"fk_malware\",\"malware_alias\",\"malware_printable\",\"last_seen_utc\",\"confidence_level\",\"reference\",\"tags\",\"anonymous\",\"reporter\"
\"2024-01-01 00:00:00\", \"1\", \"evil.example\", \"domain\", \"botnet_cc\", \"win.x\", \"\", \"X\", \"\", \"100\", \"\", \"\", \"0\", \"r\"
";

#[tokio::test]
async fn zip_body_is_extracted() {
    let dir = tempfile::tempdir().unwrap();
    let body = make_zip(&[
        ("README.txt", b"see the csv"),
        ("full.csv", THREATFOX_CSV.as_bytes()),
    ]);
    let server = Server::start(move |_, _| {
        ok(
            body.clone(),
            vec![("Content-Type", "application/zip".into())],
        )
    })
    .await;
    let f = feed("threatfox", server.url("/export/csv/full/"), dir.path());
    assert_eq!(
        fetch(&f).await.unwrap(),
        FetchOutcome::Updated {
            bytes: THREATFOX_CSV.len() as u64
        }
    );
    assert_eq!(
        std::fs::read_to_string(f.data_path()).unwrap(),
        THREATFOX_CSV
    );
    assert_eq!(meta(&f)["bytes"], THREATFOX_CSV.len());
    assert_no_temp_files(dir.path());
}

#[tokio::test]
async fn bad_or_empty_zip_keeps_the_previous_generation() {
    let dir = tempfile::tempdir().unwrap();
    let empty_zip = make_zip(&[]);
    let server = Server::start(move |req, _| match req.path.as_str() {
        // Detected by the magic alone (no zip media type, no .zip path).
        "/good" => ok(make_zip(&[("feed.txt", FEED_V1.as_bytes())]), vec![]),
        "/empty.zip" => ok(empty_zip.clone(), vec![]),
        // The URL says zip but the body is an HTML error page.
        _ => ok(
            "<html>maintenance</html>",
            vec![("Content-Type", "text/html".into())],
        ),
    })
    .await;
    let mut f = feed("z", server.url("/good"), dir.path());
    fetch(&f).await.unwrap();
    assert_eq!(std::fs::read_to_string(f.data_path()).unwrap(), FEED_V1);

    f.url = server.url("/empty.zip");
    let err = fetch(&f).await.unwrap_err();
    assert!(matches!(err, FetchError::EmptyZip), "{err}");
    f.url = server.url("/broken.zip");
    let err = fetch(&f).await.unwrap_err();
    assert!(matches!(err, FetchError::Zip(_)), "{err}");
    assert_eq!(std::fs::read_to_string(f.data_path()).unwrap(), FEED_V1);
    assert_no_temp_files(dir.path());
}

#[tokio::test]
async fn empty_body_and_oversized_content_length_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|req, i| match (req.path.as_str(), i) {
        (_, 0) => ok(FEED_V1, vec![]),
        ("/empty", _) => ok("", vec![]),
        _ => Reply::Full {
            status: 200,
            headers: vec![("Content-Length", (600u64 << 20).to_string())],
            body: b"x".to_vec(),
        },
    })
    .await;
    let mut f = feed("lim", server.url("/f"), dir.path());
    fetch(&f).await.unwrap();
    f.url = server.url("/empty");
    let err = fetch(&f).await.unwrap_err();
    assert!(matches!(err, FetchError::EmptyBody), "{err}");
    f.url = server.url("/huge");
    let err = fetch(&f).await.unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit } if limit == remote::MAX_DOWNLOAD_BYTES),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(f.data_path()).unwrap(), FEED_V1);
    assert_no_temp_files(dir.path());
}

#[tokio::test]
async fn header_value_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|_, _| ok(FEED_V1, vec![])).await;
    let mut f = feed("auth", server.url("/f"), dir.path());
    f.headers_from_env = vec![("Auth-Key".into(), "IOCDNS_TEST_THREATFOX_KEY".into())];

    let env = |var: &str| (var == "IOCDNS_TEST_THREATFOX_KEY").then(|| "s3cret-key".to_owned());
    fetch_env(&f, &env).await.unwrap();
    assert_eq!(server.requests()[0].header("auth-key"), Some("s3cret-key"));

    let err = fetch_env(&f, &|_| None).await.unwrap_err();
    match &err {
        FetchError::MissingEnv { header, var } => {
            assert_eq!(header, "Auth-Key");
            assert_eq!(var, "IOCDNS_TEST_THREATFOX_KEY");
        }
        other => panic!("expected MissingEnv, got {other}"),
    }
    assert_eq!(server.count(), 1, "no request without the key");
}

#[tokio::test]
async fn secret_headers_do_not_follow_a_redirect_to_another_origin() {
    let dir = tempfile::tempdir().unwrap();
    let other = Server::start(|_, _| ok(FEED_V2, vec![])).await;
    let other_url = other.url("/mirror");
    let origin = Server::start(move |req, _| match req.path.as_str() {
        "/moved" => Reply::Full {
            status: 302,
            headers: vec![("Location", "/real".into())],
            body: Vec::new(),
        },
        "/real" => ok(FEED_V1, vec![]),
        _ => Reply::Full {
            status: 301,
            headers: vec![("Location", other_url.clone())],
            body: Vec::new(),
        },
    })
    .await;
    let env = |_: &str| Some("s3cret-key".to_owned());

    let mut f = feed("redir", origin.url("/moved"), dir.path());
    f.headers_from_env = vec![("Auth-Key".into(), "K".into())];
    fetch_env(&f, &env).await.unwrap();
    assert_eq!(std::fs::read_to_string(f.data_path()).unwrap(), FEED_V1);
    let reqs = origin.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].path, "/real");
    assert_eq!(
        reqs[1].header("auth-key"),
        Some("s3cret-key"),
        "same origin"
    );

    f.url = origin.url("/elsewhere");
    fetch_env(&f, &env).await.unwrap();
    assert_eq!(std::fs::read_to_string(f.data_path()).unwrap(), FEED_V2);
    let reqs = other.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header("auth-key"),
        None,
        "not sent to another origin"
    );
}

#[tokio::test]
async fn refresher_downloads_reports_updates_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let version = Arc::new(AtomicU32::new(1));
    let server = etag_server(Arc::clone(&version)).await;
    let mut f = feed("bg", server.url("/f"), dir.path());
    f.refresh = Duration::from_secs(1);
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/f", closed.local_addr().unwrap());
    drop(closed);
    let dead = feed("dead", dead_url, dir.path());

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let shutdown = CancellationToken::new();
    let refresher = tokio::spawn(remote::run_refresher(
        vec![f.clone(), dead],
        shutdown.clone(),
        move |name| {
            let _ = tx.send(name.to_owned());
        },
    ));

    let name = tokio::time::timeout(BOUND, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(name, "bg");
    assert_eq!(std::fs::read_to_string(f.data_path()).unwrap(), FEED_V1);

    // The next interval brings the new version; a 304 in between would report nothing.
    version.store(2, Ordering::SeqCst);
    let name = tokio::time::timeout(BOUND, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(name, "bg");
    assert_eq!(std::fs::read_to_string(f.data_path()).unwrap(), FEED_V2);

    shutdown.cancel();
    tokio::time::timeout(BOUND, refresher)
        .await
        .expect("refresher stops on shutdown")
        .unwrap();
    assert!(server.count() >= 2);
}

/// The whole path: a `url` feed in the config is downloaded, loaded, refreshed, and a failing
/// server keeps the last download in service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_feed_in_config_is_downloaded_refreshed_and_survives_failures() {
    use crate::support::{Proto, addrs, query, start_server, start_upstream};
    use hickory_proto::rr::RecordType;
    use std::sync::atomic::AtomicUsize;

    let up = start_upstream().await;
    let mode = Arc::new(AtomicUsize::new(0));
    let m = mode.clone();
    let http = Server::start(move |_req, _n| match m.load(Ordering::SeqCst) {
        0 => ok("first.example.test\n", vec![]),
        1 => ok("first.example.test\nsecond.example.test\n", vec![]),
        _ => status(500),
    })
    .await;
    let extra = format!(
        "\n[remote]\ncache_dir = \"cache\"\ntimeout_ms = 2000\nretries = 0\n\n[[feeds]]\nname = \"remote list\"\nurl = \"{}\"\nrefresh = \"1s\"\nformat = \"domains\"\n",
        http.url("/list.txt")
    );
    let srv = start_server(up.addr, &[], &extra).await;
    let blocked = |name: &'static str| {
        let addr = srv.udp;
        async move { addrs(&query(addr, Proto::Udp, name, RecordType::A).await) == ["0.0.0.0"] }
    };
    let wait = async |f: &dyn Fn() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = bool> + Send>,
    >| {
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if f().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(
        wait(&|| Box::pin(blocked("www.first.example.test."))).await,
        "first download in service"
    );
    assert!(
        srv.dir.path().join("cache/remote_list.feed").exists(),
        "cached on disk"
    );

    mode.store(1, Ordering::SeqCst);
    assert!(
        wait(&|| Box::pin(blocked("second.example.test."))).await,
        "refresh picked up"
    );

    mode.store(2, Ordering::SeqCst);
    let before = http.count();
    let start = std::time::Instant::now();
    while http.count() < before + 2 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(http.count() >= before + 2, "refresher kept trying");
    assert!(
        blocked("second.example.test.").await,
        "failed downloads keep the last good version"
    );
}
