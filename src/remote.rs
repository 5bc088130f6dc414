//! Remote feeds: download a feed over HTTP(S) into an on-disk cache that the policy loads like a
//! local file.
//!
//! Why a cache file and not an in-memory body: a restart with no network (or with the feed's
//! server down) must still block the last known IOCs, and the policy loader already knows how to
//! read files. So every download ends as `cache_dir/<name>.feed`, replaced atomically (a temp
//! file renamed over it) and only after the whole body arrived, so a reader never sees a partial feed and a
//! failed download keeps the previous generation in service.
//!
//! Politeness and cost: downloads are conditional (`If-None-Match` / `If-Modified-Since` from the
//! `<name>.meta.json` written beside the data), so an unchanged feed costs one 304. ThreatFox's
//! full export is a zip of one CSV: zip bodies are recognised and their (largest) file extracted.
//!
//! Secrets: API keys come from environment variables named in the config
//! ([`RemoteFeed::headers_from_env`]), never from the config file itself, are never logged, and
//! are not sent to another origin when the server redirects.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Largest body accepted from the server (after transfer decoding), so a broken or hostile server
/// cannot fill the disk. ThreatFox's full export is a few tens of MiB.
pub const MAX_DOWNLOAD_BYTES: u64 = 512 * 1024 * 1024;
/// Largest file accepted out of a zip, a guard against zip bombs (the declared size can lie, so
/// the extraction itself is also capped).
pub const MAX_EXTRACTED_BYTES: u64 = 1024 * 1024 * 1024;
/// Redirect hops followed per attempt; feeds hosted on CDNs redirect once or twice.
const MAX_REDIRECTS: usize = 5;
/// Cap on the exponential backoff between attempts, so a large `retries` cannot stall a refresh
/// for hours.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Floor of the refresh interval, so a `refresh = "0s"` that slipped through config validation
/// cannot turn the refresher into a busy loop against someone else's server.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Temp files older than this are leftovers of a crashed process and get removed.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// One remote feed's download settings (built by the config layer).
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteFeed {
    /// Feed name; also names the cache files (sanitised to `[A-Za-z0-9._-]`, other characters
    /// become `_`), so names must stay unique after sanitising.
    pub name: String,
    /// `http://` or `https://` URL of the feed.
    pub url: String,
    /// How often [`run_refresher`] downloads the feed again.
    pub refresh: Duration,
    /// `(HTTP header name, environment variable name)`: header values are read from the
    /// environment at each download so that keys never sit in the config file in clear.
    pub headers_from_env: Vec<(String, String)>,
    /// Deadline of one attempt, from connecting to the last body byte (so it must cover a full
    /// download of the feed).
    pub timeout: Duration,
    /// Extra attempts after the first one, for retryable failures only (see
    /// [`FetchError::is_retryable`]).
    pub retries: u32,
    /// Delay before the first retry; doubled before each next one (capped at 5 minutes).
    pub backoff: Duration,
    /// Directory holding the cached download and its metadata; created when missing.
    pub cache_dir: PathBuf,
}

impl RemoteFeed {
    /// Where the extracted feed content lives; the policy loads this file like a local feed.
    /// It exists only after a complete, successful download (possibly by an earlier process).
    pub fn data_path(&self) -> PathBuf {
        self.cache_dir
            .join(format!("{}.feed", sanitize_name(&self.name)))
    }

    /// Validators and bookkeeping of the cached download (see [`Meta`]).
    fn meta_path(&self) -> PathBuf {
        self.cache_dir
            .join(format!("{}.meta.json", sanitize_name(&self.name)))
    }
}

/// What a successful [`fetch`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// A new generation was written to [`RemoteFeed::data_path`]; the policy should reload.
    Updated {
        /// Size of the (extracted) feed file.
        bytes: u64,
    },
    /// The server answered 304: the cached file is current and was not touched.
    NotModified,
}

/// Why a download failed. In every case the previously cached file (if any) is left in place.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A header's environment variable is unset or empty. Not retried: the environment does not
    /// change while we wait. The value is never part of any message.
    #[error("environment variable {var} (for header {header}) is not set")]
    MissingEnv {
        /// HTTP header name.
        header: String,
        /// Environment variable name.
        var: String,
    },
    /// A configured header name, or the value from its environment variable, is not valid HTTP.
    #[error("header {header}: {reason}")]
    InvalidHeader {
        /// HTTP header name.
        header: String,
        /// What is wrong (never the value itself).
        reason: String,
    },
    /// The feed URL does not parse or is not http(s).
    #[error("invalid feed url: {0}")]
    InvalidUrl(String),
    /// The server answered with an unexpected status (after following redirects).
    #[error("server answered HTTP {status}")]
    Http {
        /// The status code.
        status: u16,
    },
    /// Redirect refused: too many hops, no usable `Location`, or an https → http downgrade.
    #[error("redirect refused: {0}")]
    Redirect(String),
    /// An attempt did not finish within [`RemoteFeed::timeout`].
    #[error("download timed out")]
    Timeout,
    /// Connection, TLS or transfer error (the URL is left out of the message).
    #[error("network error: {0}")]
    Network(String),
    /// The body or the extracted file is larger than the limit.
    #[error("download exceeds the {limit}-byte limit")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The body looked like a zip but could not be read as one.
    #[error("zip: {0}")]
    Zip(String),
    /// The zip holds no regular file.
    #[error("zip archive contains no file")]
    EmptyZip,
    /// The server sent an empty body. Refused because an empty feed would silently unblock every
    /// IOC of the previous generation; a real feed is never empty.
    #[error("server sent an empty feed")]
    EmptyBody,
    /// Creating the HTTP client failed.
    #[error("http client: {0}")]
    Client(String),
    /// Reading or writing a cache file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    /// Whether another attempt may succeed: timeouts, connection errors, 5xx, 408 and 429.
    /// Other 4xx (bad key, wrong URL) and local problems would fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Timeout | FetchError::Network(_) => true,
            FetchError::Http { status } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }
}

/// `<name>.meta.json`: conditional-GET validators and bookkeeping of the cached download.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    etag: Option<String>,
    last_modified: Option<String>,
    /// Unix seconds of the last download, or of the last 304 that confirmed it.
    fetched_at: u64,
    /// The URL the validators belong to: they are not sent after the URL changed.
    url: String,
    /// Size of the data file.
    bytes: u64,
}

/// A client with rustls, gzip, a user agent `iocdns/<version>`, and no proxy surprises: proxy
/// environment variables are ignored (a resolver's feed downloads must not silently go through
/// whatever `HTTPS_PROXY` a service manager inherited) and redirects are followed by [`fetch`]
/// itself, so that secret headers never follow a redirect to another origin.
pub fn client() -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .user_agent(concat!("iocdns/", env!("CARGO_PKG_VERSION")))
        .gzip(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| FetchError::Client(error_chain(&e)))
}

/// Age of the cached download (from meta), if any — for metrics/health. `None` when there is no
/// cached data file or its metadata is missing or unreadable.
pub fn cached_at(feed: &RemoteFeed) -> Option<SystemTime> {
    if !feed.data_path().is_file() {
        return None;
    }
    let meta = read_meta(&feed.meta_path())?;
    Some(UNIX_EPOCH + Duration::from_secs(meta.fetched_at))
}

/// One download attempt loop (with retries/backoff), reading header values from the process
/// environment. See [`fetch_with_env`].
pub async fn fetch(
    client: &reqwest::Client,
    feed: &RemoteFeed,
) -> Result<FetchOutcome, FetchError> {
    fetch_with_env(client, feed, &|var| std::env::var(var).ok()).await
}

/// [`fetch`] with an injectable environment lookup, so tests need not mutate the process
/// environment (which is racy across test threads).
///
/// On 200: if the body is a zip (`PK` magic, or the URL / `Content-Type` says zip) the single
/// (largest) file is extracted; the result is written to a temp file in `cache_dir` and renamed
/// atomically over [`RemoteFeed::data_path`], then the meta file is written. On 304:
/// [`FetchOutcome::NotModified`], the data file is untouched. `If-None-Match` /
/// `If-Modified-Since` are sent only when the data file exists (and the meta is for the same
/// URL). Never leaves a partial data file, including when the future is dropped.
pub async fn fetch_with_env(
    client: &reqwest::Client,
    feed: &RemoteFeed,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<FetchOutcome, FetchError> {
    let url = parse_url(&feed.url)?;
    let secrets = secret_headers(feed, env)?;
    tokio::fs::create_dir_all(&feed.cache_dir)
        .await
        .map_err(io_err(&feed.cache_dir))?;
    remove_stale_temps(feed).await;

    let data_path = feed.data_path();
    let meta_path = feed.meta_path();
    let old_meta = if tokio::fs::try_exists(&data_path).await.unwrap_or(false) {
        read_meta(&meta_path).filter(|m| m.url == feed.url)
    } else {
        None
    };
    let conditional = conditional_headers(old_meta.as_ref());

    let attempts = feed.retries.saturating_add(1);
    let mut delay = feed.backoff;
    let mut n = 1;
    let response = loop {
        let result = match tokio::time::timeout(
            feed.timeout,
            attempt(client, feed, &url, &secrets, &conditional),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout),
        };
        match result {
            Ok(r) => break r,
            Err(e) if e.is_retryable() && n < attempts => {
                debug!(feed = %feed.name, attempt = n, error = %e, retry_in = ?delay, "feed download attempt failed");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2).min(MAX_BACKOFF);
                n += 1;
            }
            Err(e) => return Err(e),
        }
    };

    match response {
        Downloaded::NotModified {
            etag,
            last_modified,
        } => {
            let Some(mut meta) = old_meta else {
                // We sent no validators, so a 304 is a server bug; nothing to keep in service.
                return Err(FetchError::Http { status: 304 });
            };
            // A 304 may carry updated validators (RFC 9110 §15.4.5); fetched_at records that the
            // cache was confirmed current, which is what health checks want to know.
            meta.etag = etag.or(meta.etag);
            meta.last_modified = last_modified.or(meta.last_modified);
            meta.fetched_at = unix_now();
            if let Err(e) = write_meta(feed, &meta).await {
                warn!(feed = %feed.name, error = %e, "could not update feed metadata");
            }
            Ok(FetchOutcome::NotModified)
        }
        Downloaded::Body {
            file,
            zip,
            etag,
            last_modified,
        } => {
            let (data, bytes) = if zip {
                let src = file.path.clone();
                let dst = TempFile::new(feed);
                let dst_path = dst.path.clone();
                // `file` (the zip) is dropped, hence removed, by the blocking task when done.
                tokio::task::spawn_blocking(move || {
                    let r = extract_largest(&src, &dst_path, MAX_EXTRACTED_BYTES);
                    drop(file);
                    r.map(|bytes| (dst, bytes))
                })
                .await
                .map_err(|e| FetchError::Zip(format!("extraction task failed: {e}")))??
            } else {
                let bytes = file.len;
                (file, bytes)
            };
            if bytes == 0 {
                return Err(FetchError::EmptyBody);
            }
            // Drop the old validators first: a crash between the rename and the new meta then
            // leads to an unconditional GET, never to a 304 vouching for the wrong content.
            match tokio::fs::remove_file(&meta_path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(FetchError::Io {
                        path: meta_path,
                        source: e,
                    });
                }
            }
            data.persist(&data_path).await?;
            sync_dir(&feed.cache_dir).await;
            let meta = Meta {
                etag,
                last_modified,
                fetched_at: unix_now(),
                url: feed.url.clone(),
                bytes,
            };
            if let Err(e) = write_meta(feed, &meta).await {
                // The data is in place and valid; only the next download loses its validators.
                warn!(feed = %feed.name, error = %e, "could not write feed metadata");
            }
            Ok(FetchOutcome::Updated { bytes })
        }
    }
}

/// Background refresher: fetches every feed now, then each at its own `refresh` interval, until
/// `shutdown` is cancelled; after each `Updated` it calls `on_update(feed_name)` (the caller
/// triggers a policy reload). Failures are logged with tracing (warn!, feed name, error) and
/// retried at the next interval; the cached file stays in service. A download in progress at
/// shutdown is abandoned without touching the cache.
pub async fn run_refresher(
    feeds: Vec<RemoteFeed>,
    shutdown: CancellationToken,
    on_update: impl Fn(&str) + Send + Sync + 'static,
) {
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "remote feeds disabled: cannot create the HTTP client");
            return;
        }
    };
    let on_update = Arc::new(on_update);
    let mut tasks = tokio::task::JoinSet::new();
    for feed in feeds {
        let client = client.clone();
        let shutdown = shutdown.clone();
        let on_update = Arc::clone(&on_update);
        tasks.spawn(async move {
            let interval = feed.refresh.max(MIN_REFRESH);
            loop {
                let next = tokio::time::Instant::now() + interval;
                let result = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    r = fetch(&client, &feed) => r,
                };
                match result {
                    Ok(FetchOutcome::Updated { bytes }) => {
                        info!(feed = %feed.name, bytes, "remote feed updated");
                        on_update(&feed.name);
                    }
                    Ok(FetchOutcome::NotModified) => {
                        debug!(feed = %feed.name, "remote feed not modified");
                    }
                    Err(e) => {
                        warn!(feed = %feed.name, error = %e, "remote feed download failed; keeping the cached copy");
                    }
                }
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(next) => {}
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            error!(error = %e, "remote feed refresher task failed");
        }
    }
}

/// Result of one successful attempt.
enum Downloaded {
    NotModified {
        etag: Option<String>,
        last_modified: Option<String>,
    },
    Body {
        file: TempFile,
        zip: bool,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// One attempt: request (following redirects by hand) and stream a 200 body to a temp file.
async fn attempt(
    client: &reqwest::Client,
    feed: &RemoteFeed,
    url: &Url,
    secrets: &HeaderMap,
    conditional: &HeaderMap,
) -> Result<Downloaded, FetchError> {
    let mut current = url.clone();
    let mut hops = 0;
    let mut response = loop {
        let mut request = client.get(current.clone()).headers(conditional.clone());
        // Secrets only go to the configured origin: reqwest would forward custom headers such as
        // Auth-Key to whatever host a redirect names.
        if current.origin() == url.origin() {
            request = request.headers(secrets.clone());
        }
        let response = request.send().await.map_err(network_err)?;
        let status = response.status();
        if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
            break response;
        }
        if hops == MAX_REDIRECTS {
            return Err(FetchError::Redirect(format!(
                "more than {MAX_REDIRECTS} redirects"
            )));
        }
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                FetchError::Redirect(format!("HTTP {} without Location", status.as_u16()))
            })?;
        let next = current
            .join(location)
            .map_err(|e| FetchError::Redirect(format!("bad Location: {e}")))?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(FetchError::Redirect(format!("to a {} URL", next.scheme())));
        }
        if current.scheme() == "https" && next.scheme() == "http" {
            return Err(FetchError::Redirect("https to http downgrade".into()));
        }
        current = next;
        hops += 1;
    };

    let status = response.status();
    let etag = header_string(response.headers(), header::ETAG);
    let last_modified = header_string(response.headers(), header::LAST_MODIFIED);
    if status == StatusCode::NOT_MODIFIED {
        return Ok(Downloaded::NotModified {
            etag,
            last_modified,
        });
    }
    if status != StatusCode::OK && status != StatusCode::NON_AUTHORITATIVE_INFORMATION {
        return Err(FetchError::Http {
            status: status.as_u16(),
        });
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOWNLOAD_BYTES)
    {
        return Err(FetchError::TooLarge {
            limit: MAX_DOWNLOAD_BYTES,
        });
    }
    let content_type = header_string(response.headers(), header::CONTENT_TYPE);

    let mut file = TempFile::new(feed);
    let out = tokio::fs::File::create(&file.path)
        .await
        .map_err(io_err(&file.path))?;
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, out);
    let mut head = Vec::with_capacity(4);
    while let Some(chunk) = response.chunk().await.map_err(network_err)? {
        file.len += chunk.len() as u64;
        if file.len > MAX_DOWNLOAD_BYTES {
            return Err(FetchError::TooLarge {
                limit: MAX_DOWNLOAD_BYTES,
            });
        }
        if head.len() < 4 {
            let take = (4 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        out.write_all(&chunk).await.map_err(io_err(&file.path))?;
    }
    out.flush().await.map_err(io_err(&file.path))?;
    out.into_inner()
        .sync_all()
        .await
        .map_err(io_err(&file.path))?;
    Ok(Downloaded::Body {
        file,
        zip: looks_like_zip(&head, &current, content_type.as_deref()),
        etag,
        last_modified,
    })
}

/// Zip detection: the local-file or empty-archive signature, or a URL path / media type that
/// says zip (so a non-zip body at such a URL is reported as a zip error rather than loaded as a
/// feed of garbage).
fn looks_like_zip(head: &[u8], url: &Url, content_type: Option<&str>) -> bool {
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return true;
    }
    if url.path().to_ascii_lowercase().ends_with(".zip") {
        return true;
    }
    content_type.is_some_and(|ct| {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(
            essence.as_str(),
            "application/zip" | "application/x-zip" | "application/x-zip-compressed"
        )
    })
}

/// Extracts the largest regular file of the zip at `src` into `dst`; returns its size.
/// Feeds are one file per archive; "largest" skips a README that some publishers add.
fn extract_largest(src: &Path, dst: &Path, limit: u64) -> Result<u64, FetchError> {
    use std::io::{Read, Write};

    let zip_err = |e: zip::result::ZipError| FetchError::Zip(e.to_string());
    let input = std::fs::File::open(src).map_err(io_err(src))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(input)).map_err(zip_err)?;
    let mut best: Option<(usize, u64)> = None;
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(zip_err)?;
        if !entry.is_file() {
            continue;
        }
        let size = entry.size();
        if best.is_none_or(|(_, s)| size > s) {
            best = Some((i, size));
        }
    }
    let (index, declared) = best.ok_or(FetchError::EmptyZip)?;
    if declared > limit {
        return Err(FetchError::TooLarge { limit });
    }
    let mut entry = archive.by_index(index).map_err(zip_err)?;
    let output = std::fs::File::create(dst).map_err(io_err(dst))?;
    let mut output = std::io::BufWriter::with_capacity(256 * 1024, output);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        // Read errors are archive corruption (bad deflate stream, CRC mismatch); write errors
        // are the cache directory's problem, so they map to different variants.
        let n = entry
            .read(&mut buf)
            .map_err(|e| FetchError::Zip(e.to_string()))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(FetchError::TooLarge { limit });
        }
        output.write_all(&buf[..n]).map_err(io_err(dst))?;
    }
    let output = output.into_inner().map_err(|e| FetchError::Io {
        path: dst.to_owned(),
        source: e.into_error(),
    })?;
    output.sync_all().map_err(io_err(dst))?;
    Ok(total)
}

/// Resolves the configured headers from the environment, before any network traffic.
fn secret_headers(
    feed: &RemoteFeed,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<HeaderMap, FetchError> {
    let mut map = HeaderMap::new();
    for (name, var) in &feed.headers_from_env {
        let header_name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| FetchError::InvalidHeader {
                header: name.clone(),
                reason: "not a valid HTTP header name".into(),
            })?;
        let value = env(var)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| FetchError::MissingEnv {
                header: name.clone(),
                var: var.clone(),
            })?;
        let mut value = HeaderValue::from_str(&value).map_err(|_| FetchError::InvalidHeader {
            header: name.clone(),
            reason: format!("the value of {var} is not a valid HTTP header value"),
        })?;
        // Keeps the value out of Debug output (and out of HTTP/2 header compression tables).
        value.set_sensitive(true);
        map.append(header_name, value);
    }
    Ok(map)
}

fn conditional_headers(meta: Option<&Meta>) -> HeaderMap {
    let mut map = HeaderMap::new();
    let Some(meta) = meta else { return map };
    if let Some(v) = meta
        .etag
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        map.insert(header::IF_NONE_MATCH, v);
    }
    if let Some(v) = meta
        .last_modified
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        map.insert(header::IF_MODIFIED_SINCE, v);
    }
    map
}

fn parse_url(raw: &str) -> Result<Url, FetchError> {
    let url = Url::parse(raw).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::InvalidUrl(format!(
            "scheme {} is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none() {
        return Err(FetchError::InvalidUrl("no host".into()));
    }
    Ok(url)
}

fn header_string(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Cache file stem: `[A-Za-z0-9._-]` kept, anything else `_`, so a feed name can never escape
/// `cache_dir` or produce an unportable file name.
fn sanitize_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "_".into() } else { s }
}

fn read_meta(path: &Path) -> Option<Meta> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

async fn write_meta(feed: &RemoteFeed, meta: &Meta) -> Result<(), FetchError> {
    let json = serde_json::to_vec_pretty(meta).expect("Meta serialises");
    let tmp = TempFile::new(feed);
    tokio::fs::write(&tmp.path, json)
        .await
        .map_err(io_err(&tmp.path))?;
    tmp.persist(&feed.meta_path()).await
}

/// Makes the renames durable; best effort (not every filesystem supports it).
async fn sync_dir(dir: &Path) {
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

/// Removes this feed's temp files left by a crashed process. Only old ones, so a download
/// running in another process that shares the cache directory is not disturbed.
async fn remove_stale_temps(feed: &RemoteFeed) {
    let prefix = format!(".{}.", sanitize_name(&feed.name));
    let Ok(mut dir) = tokio::fs::read_dir(&feed.cache_dir).await else {
        return;
    };
    while let Ok(Some(entry)) = dir.next_entry().await {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(&prefix) && name.ends_with(".tmp")) {
            continue;
        }
        let old = entry
            .metadata()
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP);
        if old {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

/// A temp file in the cache directory, removed on drop unless persisted: this is what makes
/// "never a partial data file" hold on errors, timeouts and cancellation alike.
struct TempFile {
    path: PathBuf,
    len: u64,
    keep: bool,
}

impl TempFile {
    fn new(feed: &RemoteFeed) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = feed.cache_dir.join(format!(
            ".{}.{}.{n}.tmp",
            sanitize_name(&feed.name),
            std::process::id()
        ));
        TempFile {
            path,
            len: 0,
            keep: false,
        }
    }

    /// Atomically renames over `target` (same directory, so same filesystem).
    async fn persist(mut self, target: &Path) -> Result<(), FetchError> {
        tokio::fs::rename(&self.path, target)
            .await
            .map_err(io_err(target))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

fn network_err(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Network(error_chain(&e.without_url()))
    }
}

/// reqwest's Display stops at "error sending request"; the cause (refused, TLS, reset) is in
/// the source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_safe_characters_and_replaces_the_rest() {
        assert_eq!(sanitize_name("ThreatFox_full-1.0"), "ThreatFox_full-1.0");
        assert_eq!(sanitize_name("../etc/passwd"), ".._etc_passwd");
        assert_eq!(sanitize_name("a b/c\\d:é"), "a_b_c_d__");
        assert_eq!(sanitize_name(""), "_");
    }

    #[test]
    fn data_and_meta_paths_stay_in_the_cache_dir() {
        let feed = RemoteFeed {
            name: "../x y".into(),
            url: "https://example.test/f".into(),
            refresh: Duration::from_secs(3600),
            headers_from_env: vec![],
            timeout: Duration::from_secs(30),
            retries: 0,
            backoff: Duration::from_secs(1),
            cache_dir: PathBuf::from("/cache"),
        };
        assert_eq!(feed.data_path(), PathBuf::from("/cache/.._x_y.feed"));
        assert_eq!(feed.meta_path(), PathBuf::from("/cache/.._x_y.meta.json"));
        assert_eq!(feed.data_path().parent(), Some(Path::new("/cache")));
    }

    #[test]
    fn zip_detection() {
        let plain = Url::parse("https://example.test/export/csv/full/").unwrap();
        let zipurl = Url::parse("https://example.test/full.ZIP?x=1").unwrap();
        let query_only = Url::parse("https://example.test/get?f=a.zip").unwrap();
        assert!(looks_like_zip(b"PK\x03\x04", &plain, None));
        assert!(looks_like_zip(b"PK\x05\x06", &plain, None));
        assert!(!looks_like_zip(b"# Th", &plain, Some("text/csv")));
        assert!(!looks_like_zip(b"PK", &plain, None));
        assert!(looks_like_zip(b"", &zipurl, None));
        assert!(!looks_like_zip(b"abc", &query_only, None));
        assert!(looks_like_zip(b"abc", &plain, Some("application/zip")));
        assert!(looks_like_zip(
            b"abc",
            &plain,
            Some("Application/X-Zip-Compressed; charset=binary")
        ));
        // gzip is not zip, although the media type contains "zip".
        assert!(!looks_like_zip(
            b"\x1f\x8b\x08\x00",
            &plain,
            Some("application/gzip")
        ));
        assert!(!looks_like_zip(b"abc", &plain, Some("application/x-gzip")));
    }

    #[test]
    fn retryable_errors() {
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(FetchError::Http { status }.is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 410] {
            assert!(!FetchError::Http { status }.is_retryable(), "{status}");
        }
        assert!(FetchError::Timeout.is_retryable());
        assert!(FetchError::Network("reset".into()).is_retryable());
        assert!(!FetchError::EmptyZip.is_retryable());
        assert!(
            !FetchError::MissingEnv {
                header: "Auth-Key".into(),
                var: "K".into()
            }
            .is_retryable()
        );
    }

    #[test]
    fn urls_must_be_http() {
        assert!(parse_url("https://threatfox.abuse.ch/export/csv/full/").is_ok());
        assert!(parse_url("http://127.0.0.1:8080/f").is_ok());
        assert!(matches!(
            parse_url("ftp://x/f"),
            Err(FetchError::InvalidUrl(_))
        ));
        assert!(matches!(
            parse_url("file:///etc/hosts"),
            Err(FetchError::InvalidUrl(_))
        ));
        assert!(matches!(
            parse_url("not a url"),
            Err(FetchError::InvalidUrl(_))
        ));
    }

    #[test]
    fn missing_or_empty_env_is_reported_without_value() {
        let mut feed = RemoteFeed {
            name: "f".into(),
            url: "https://example.test/f".into(),
            refresh: Duration::from_secs(3600),
            headers_from_env: vec![("Auth-Key".into(), "IOCDNS_KEY".into())],
            timeout: Duration::from_secs(30),
            retries: 0,
            backoff: Duration::from_secs(1),
            cache_dir: PathBuf::from("/cache"),
        };
        let err = secret_headers(&feed, &|_| None).unwrap_err();
        assert!(
            matches!(err, FetchError::MissingEnv { ref header, ref var } if header == "Auth-Key" && var == "IOCDNS_KEY")
        );
        assert!(matches!(
            secret_headers(&feed, &|_| Some(String::new())),
            Err(FetchError::MissingEnv { .. })
        ));
        let err = secret_headers(&feed, &|_| Some("bad\nvalue-s3cret".into())).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let map = secret_headers(&feed, &|_| Some("s3cret".into())).unwrap();
        assert!(map["auth-key"].is_sensitive());
        feed.headers_from_env = vec![("Bad Header".into(), "IOCDNS_KEY".into())];
        assert!(matches!(
            secret_headers(&feed, &|_| Some("v".into())),
            Err(FetchError::InvalidHeader { .. })
        ));
    }
}
