//! Configuration: the TOML file as written ([`RawConfig`], `deny_unknown_fields`) and the
//! validated, typed [`Config`] the rest of the crate uses.
//!
//! Two stages, so that every value is checked once, up front, and every error names its key:
//! `toml` parse errors already carry the key path and line; semantic checks (addresses, CIDRs,
//! durations, duplicate feed names) are collected *all at once* into [`ConfigError::Invalid`] so
//! an operator sees every problem in one run.
//!
//! # Relative paths
//! Relative paths in the file (`feeds[].path`, `allow.files`, `events.path`, ...) resolve against
//! the **directory of the config file**, not the working directory, so `serve`, `check` and
//! `lint` agree wherever they are started from and a systemd unit needs no `WorkingDirectory`.
//! The shipped `config/iocdns.toml` therefore says `path = "../zones/..."`.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::ioc::FeedFormat;

#[cfg(test)]
mod tests;

/// Errors loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// toml's message, which names the key and line.
        message: String,
    },
    /// One or more values are well-typed but invalid; every problem is listed.
    #[error("{path}: invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Each problem, starting with the key it concerns.
        problems: Vec<KeyProblem>,
    },
}

/// One invalid value: the dotted key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// Dotted key path, e.g. `feeds[1].path` or `server.allow[0]`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

// === raw (serde) layer ===

/// The TOML file as written. Only [`Config::from_toml`] sees this.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    upstream: RawUpstream,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    feeds: Vec<RawFeed>,
    #[serde(default)]
    allow: RawAllow,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    remote: RawRemote,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    #[serde(default)]
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_listen")]
    listen: Vec<String>,
    #[serde(default = "default_client_allow")]
    allow: Vec<String>,
    #[serde(default)]
    computer: Option<String>,
    #[serde(default = "default_tcp_timeout_ms")]
    tcp_timeout_ms: u64,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    #[serde(default)]
    until_ready: UntilReady,
    #[serde(default = "default_shutdown_grace_ms")]
    shutdown_grace_ms: u64,
    #[serde(default)]
    udp_sockets: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            allow: default_client_allow(),
            computer: None,
            tcp_timeout_ms: default_tcp_timeout_ms(),
            max_in_flight: default_max_in_flight(),
            until_ready: UntilReady::default(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            udp_sockets: 0,
        }
    }
}

fn default_shutdown_grace_ms() -> u64 {
    5_000
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:5300".into()]
}
fn default_client_allow() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1/128".into()]
}
fn default_tcp_timeout_ms() -> u64 {
    5_000
}
fn default_max_in_flight() -> usize {
    4_096
}

fn default_max_rejected_percent() -> u8 {
    50
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    #[serde(default = "default_upstreams")]
    servers: Vec<String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_cache_size")]
    cache_size: u64,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            servers: default_upstreams(),
            timeout_ms: default_timeout_ms(),
            cache_size: default_cache_size(),
        }
    }
}

fn default_upstreams() -> Vec<String> {
    vec!["system".into()]
}
fn default_timeout_ms() -> u64 {
    2_000
}
fn default_cache_size() -> u64 {
    65_536
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    action: Action,
    #[serde(default = "default_sinkhole_v4")]
    sinkhole_ipv4: Ipv4Addr,
    #[serde(default = "default_sinkhole_v6")]
    sinkhole_ipv6: Ipv6Addr,
    #[serde(default = "default_ttl")]
    ttl: u32,
    #[serde(default = "default_true")]
    subdomains: bool,
    #[serde(default)]
    min_confidence: u8,
    #[serde(default)]
    block_confidence: u8,
    #[serde(default)]
    max_age_days: u32,
    #[serde(default = "default_max_rejected_percent")]
    max_rejected_percent: u8,
}

impl Default for RawPolicy {
    fn default() -> Self {
        Self {
            action: Action::default(),
            sinkhole_ipv4: default_sinkhole_v4(),
            sinkhole_ipv6: default_sinkhole_v6(),
            ttl: default_ttl(),
            subdomains: true,
            min_confidence: 0,
            block_confidence: 0,
            max_age_days: 0,
            max_rejected_percent: default_max_rejected_percent(),
        }
    }
}

fn default_sinkhole_v4() -> Ipv4Addr {
    Ipv4Addr::UNSPECIFIED
}
fn default_sinkhole_v6() -> Ipv6Addr {
    Ipv6Addr::UNSPECIFIED
}
fn default_ttl() -> u32 {
    300
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    name: String,
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    format: FeedFormat,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    subdomains: Option<bool>,
    #[serde(default)]
    url_hosts: UrlHosts,
    #[serde(default)]
    confidence: Option<u8>,
    #[serde(default)]
    min_confidence: Option<u8>,
    #[serde(default)]
    block_confidence: Option<u8>,
    #[serde(default)]
    max_age_days: Option<u32>,
    #[serde(default)]
    max_rejected_percent: Option<u8>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    refresh: Option<String>,
    #[serde(default)]
    headers_from_env: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    #[serde(default = "default_cache_dir")]
    cache_dir: PathBuf,
    #[serde(default = "default_remote_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_retries")]
    retries: u32,
}

impl Default for RawRemote {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            timeout_ms: default_remote_timeout_ms(),
            retries: default_retries(),
        }
    }
}

fn default_cache_dir() -> PathBuf {
    PathBuf::from("cache")
}
fn default_remote_timeout_ms() -> u64 {
    60_000
}
fn default_retries() -> u32 {
    3
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    #[serde(default = "default_events_path")]
    path: Option<PathBuf>,
    #[serde(default)]
    queries: EventQueries,
    #[serde(default = "default_queue")]
    queue: usize,
    #[serde(default = "default_source_system")]
    source_system: String,
}

impl Default for RawEvents {
    fn default() -> Self {
        Self {
            path: default_events_path(),
            queries: EventQueries::default(),
            queue: default_queue(),
            source_system: default_source_system(),
        }
    }
}

fn default_events_path() -> Option<PathBuf> {
    Some(PathBuf::from("events/dnsevents.ndjson"))
}
fn default_queue() -> usize {
    8_192
}
fn default_source_system() -> String {
    "Linux".into()
}

// === typed layer ===

/// What to do with a query that matches an IOC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Default, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Forward as usual; the event is still marked as an IOC hit (monitor mode).
    Log,
    /// NOERROR with `sinkhole_ipv4` for A and `sinkhole_ipv6` for AAAA; NODATA for other types.
    #[default]
    Sinkhole,
    /// NOERROR with an empty answer.
    Nodata,
    /// NXDOMAIN.
    Nxdomain,
    /// REFUSED.
    Refused,
    /// No answer at all (RPZ `rpz-drop.`); the client times out.
    Drop,
}

impl Action {
    /// The stable lower-case name used in events, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Sinkhole => "sinkhole",
            Action::Nodata => "nodata",
            Action::Nxdomain => "nxdomain",
            Action::Refused => "refused",
            Action::Drop => "drop",
        }
    }

    /// How blocking the action is, for choosing the winner when several entries match:
    /// `drop > refused > nxdomain > nodata > sinkhole > log`.
    pub fn severity(self) -> u8 {
        match self {
            Action::Log => 0,
            Action::Sinkhole => 1,
            Action::Nodata => 2,
            Action::Nxdomain => 3,
            Action::Refused => 4,
            Action::Drop => 5,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with the host of a URL IOC (a weaker signal: often a compromised shared site).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UrlHosts {
    /// Record hits, never block (default).
    #[default]
    Log,
    /// Enforce with the feed's action, like a domain IOC.
    Block,
    /// Do not load URL hosts at all.
    Ignore,
}

/// What the server answers before the first policy load has completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UntilReady {
    /// SERVFAIL (EDE 0 "policy loading") until the feeds are loaded: fail closed (default), like
    /// BIND's `servfail-until-ready`. Clients retry; nothing unfiltered leaks out.
    #[default]
    Servfail,
    /// Forward unfiltered until the feeds are loaded: fail open, like Blocky's `fast` start.
    Forward,
}

/// Which queries produce an event line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EventQueries {
    /// Every answered query.
    #[default]
    All,
    /// Only queries that matched an IOC (including log-only hits).
    Matches,
    /// No events.
    None,
}

/// Where to forward allowed queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamServer {
    /// The name servers of the machine's resolv.conf.
    System,
    /// One server, queried over UDP with TCP fallback.
    Addr(SocketAddr),
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this was loaded from (relative paths resolved against its directory).
    pub source: Option<PathBuf>,
    /// `[server]`
    pub server: ServerConfig,
    /// `[upstream]`
    pub upstream: UpstreamConfig,
    /// `[policy]` plus `[[feeds]]` and `[allow]`: everything a hot reload may change.
    pub policy: PolicyConfig,
    /// `[events]`
    pub events: EventsConfig,
    /// `[metrics] listen`: Prometheus endpoint; `None` = off.
    pub metrics_listen: Option<SocketAddr>,
}

/// `[server]`
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Addresses served on both UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// Client networks answered; everyone else gets REFUSED with EDE 18 (no open resolver).
    pub allow: Vec<IpNet>,
    /// `DnsEvents.Computer`.
    pub computer: String,
    /// Idle timeout of a TCP client connection.
    pub tcp_timeout: Duration,
    /// Upper bound on queries being forwarded at once; beyond it, SERVFAIL (load shedding).
    pub max_in_flight: usize,
    /// Behaviour before the first policy load completes.
    pub until_ready: UntilReady,
    /// How long a stop waits for in-flight queries.
    pub shutdown_grace: Duration,
    /// UDP sockets (SO_REUSEPORT) per listen address; 0 = one per available core.
    pub udp_sockets: usize,
}

/// `[upstream]`
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Servers, in order.
    pub servers: Vec<UpstreamServer>,
    /// Whole-query deadline; past it the client gets SERVFAIL.
    pub timeout: Duration,
    /// Entries in the answer cache.
    pub cache_size: u64,
}

/// `[policy]`, `[[feeds]]`, `[allow]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// Default action on a match.
    pub action: Action,
    /// A answer of the sinkhole action.
    pub sinkhole_ipv4: Ipv4Addr,
    /// AAAA answer of the sinkhole action.
    pub sinkhole_ipv6: Ipv6Addr,
    /// TTL of synthesized answers.
    pub ttl: u32,
    /// Whether a listed domain also matches every name below it (unless the format says otherwise).
    pub subdomains: bool,
    /// Entries with a lower confidence are ignored.
    pub min_confidence: u8,
    /// Entries at or above are enforced; between `min_confidence` and this they are log-only.
    pub block_confidence: u8,
    /// Entries whose last-seen (or first-seen) date is older are ignored; 0 = off.
    pub max_age_days: u32,
    /// The feeds, in config order.
    pub feeds: Vec<FeedConfig>,
    /// Names never matched.
    pub allow_domains: Vec<String>,
    /// Allowlist files, in any feed format.
    pub allow_files: Vec<PathBuf>,
}

/// One `[[feeds]]` entry with per-feed settings resolved against `[policy]`.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedConfig {
    /// Unique name; appears in events as `IocFeed`.
    pub name: String,
    /// Absolute (resolved) path of the list file.
    pub path: PathBuf,
    /// Declared format.
    pub format: FeedFormat,
    /// Action on a match.
    pub action: Action,
    /// Subdomain matching for entries whose format does not say.
    pub subdomains: bool,
    /// Handling of URL IOC hosts.
    pub url_hosts: UrlHosts,
    /// Confidence of entries that carry none.
    pub confidence: u8,
    /// Per-feed `min_confidence`.
    pub min_confidence: u8,
    /// Per-feed `block_confidence`.
    pub block_confidence: u8,
    /// Per-feed `max_age_days`.
    pub max_age_days: u32,
    /// On reload, a new version with a larger share of rejected lines is refused and the last
    /// good version stays in service.
    pub max_rejected_percent: u8,
    /// Download settings when the feed has a `url`; `path` is then its on-disk cache file.
    pub remote: Option<crate::remote::RemoteFeed>,
}

/// `[events]`
#[derive(Clone, Debug)]
pub struct EventsConfig {
    /// NDJSON file; `None` disables the file.
    pub path: Option<PathBuf>,
    /// Which queries produce a line.
    pub queries: EventQueries,
    /// Bounded queue length between the DNS path and the writer.
    pub queue: usize,
    /// `DnsEvents.SourceSystem`.
    pub source_system: String,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let mut cfg = Config::from_toml(&text, &base).map_err(|e| e.with_path(path))?;
        cfg.source = Some(path.to_owned());
        Ok(cfg)
    }

    /// Parses and validates TOML text; relative paths resolve against `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
            path: PathBuf::new(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        Config::from_raw(raw, base_dir)
    }

    fn from_raw(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
        let RawConfig {
            server,
            upstream,
            policy,
            feeds,
            allow,
            events,
            metrics,
            remote,
        } = raw;
        let RawRemote {
            cache_dir,
            timeout_ms: remote_timeout_ms,
            retries,
        } = remote;
        let cache_dir = resolve(base, &cache_dir);
        let mut problems = Vec::new();
        let mut problem = |key: String, p: String| problems.push(KeyProblem { key, problem: p });

        // [server]
        let RawServer {
            listen,
            allow: client_allow,
            computer,
            tcp_timeout_ms,
            max_in_flight,
            until_ready,
            shutdown_grace_ms,
            udp_sockets,
        } = server;
        let mut listen_addrs = Vec::new();
        if listen.is_empty() {
            problem(
                "server.listen".into(),
                "must list at least one address".into(),
            );
        }
        for (i, l) in listen.iter().enumerate() {
            match l.parse::<SocketAddr>() {
                Ok(a) => listen_addrs.push(a),
                Err(_) => problem(
                    format!("server.listen[{i}]"),
                    format!("{l:?} is not an IP:PORT socket address (IPv6 as [::1]:53)"),
                ),
            }
        }
        let mut nets = Vec::new();
        for (i, n) in client_allow.iter().enumerate() {
            match parse_net(n) {
                Some(net) => nets.push(net),
                None => problem(
                    format!("server.allow[{i}]"),
                    format!("{n:?} is not an IP network (e.g. 10.0.0.0/8) or address"),
                ),
            }
        }
        let computer = match computer {
            Some(c) if c.trim().is_empty() => {
                problem("server.computer".into(), "must not be empty".into());
                String::new()
            }
            Some(c) => c,
            None => hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "iocdns".into()),
        };
        if max_in_flight == 0 {
            problem("server.max_in_flight".into(), "must be at least 1".into());
        }

        // [upstream]
        let RawUpstream {
            servers,
            timeout_ms,
            cache_size,
        } = upstream;
        let mut ups = Vec::new();
        if servers.is_empty() {
            problem(
                "upstream.servers".into(),
                "must list at least one server or \"system\"".into(),
            );
        }
        for (i, s) in servers.iter().enumerate() {
            if s == "system" {
                ups.push(UpstreamServer::System);
            } else if let Ok(a) = s.parse::<SocketAddr>() {
                ups.push(UpstreamServer::Addr(a));
            } else if let Ok(ip) = s.parse::<IpAddr>() {
                ups.push(UpstreamServer::Addr(SocketAddr::new(ip, 53)));
            } else {
                problem(
                    format!("upstream.servers[{i}]"),
                    format!("{s:?} is neither \"system\" nor IP[:PORT]"),
                );
            }
        }
        if timeout_ms == 0 || timeout_ms > 60_000 {
            problem(
                "upstream.timeout_ms".into(),
                format!("{timeout_ms} is outside 1..=60000"),
            );
        }

        // [policy]
        let RawPolicy {
            action,
            sinkhole_ipv4,
            sinkhole_ipv6,
            ttl,
            subdomains,
            min_confidence,
            block_confidence,
            max_age_days,
            max_rejected_percent,
        } = policy;
        if max_rejected_percent > 100 {
            problem(
                "policy.max_rejected_percent".into(),
                format!("{max_rejected_percent} is above 100"),
            );
        }
        for (key, v) in [
            ("policy.min_confidence", min_confidence),
            ("policy.block_confidence", block_confidence),
        ] {
            if v > 100 {
                problem(key.into(), format!("{v} is above 100"));
            }
        }

        // [[feeds]]
        let mut names = HashSet::new();
        let mut sanitized_names = HashSet::new();
        let mut feed_cfgs = Vec::new();
        for (i, f) in feeds.into_iter().enumerate() {
            let RawFeed {
                name,
                path,
                format,
                action: feed_action,
                subdomains: feed_subdomains,
                url_hosts,
                confidence,
                min_confidence: f_min,
                block_confidence: f_block,
                max_age_days: f_age,
                max_rejected_percent: f_rej,
                enabled,
                url,
                refresh,
                headers_from_env,
            } = f;
            if name.trim().is_empty() {
                problem(format!("feeds[{i}].name"), "must not be empty".into());
            } else if !names.insert(name.clone()) {
                problem(
                    format!("feeds[{i}].name"),
                    format!("duplicate feed name {name:?}"),
                );
            }
            for (key, v) in [
                ("confidence", confidence),
                ("min_confidence", f_min),
                ("block_confidence", f_block),
            ] {
                if let Some(v) = v.filter(|v| *v > 100) {
                    problem(format!("feeds[{i}].{key}"), format!("{v} is above 100"));
                }
            }
            let sanitized: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if !sanitized_names.insert(sanitized) && url.is_some() {
                problem(
                    format!("feeds[{i}].name"),
                    format!("{name:?} maps to the same cache file as another feed name"),
                );
            }
            let remote_feed = match (&path, &url) {
                (Some(_), Some(_)) => {
                    problem(
                        format!("feeds[{i}]"),
                        "set either `path` or `url`, not both".into(),
                    );
                    None
                }
                (None, None) => {
                    problem(
                        format!("feeds[{i}]"),
                        "needs `path` (a file) or `url` (a download)".into(),
                    );
                    None
                }
                (Some(_), None) => {
                    if refresh.is_some() || !headers_from_env.is_empty() {
                        problem(
                            format!("feeds[{i}].refresh"),
                            "`refresh` and `headers_from_env` need `url`".into(),
                        );
                    }
                    None
                }
                (None, Some(u)) => {
                    if !(u.starts_with("https://") || u.starts_with("http://")) {
                        problem(
                            format!("feeds[{i}].url"),
                            format!("{u:?} is not an http(s) URL"),
                        );
                    }
                    let refresh = match refresh.as_deref().map(humantime::parse_duration) {
                        None => Duration::from_secs(3600),
                        Some(Ok(d)) if d >= Duration::from_secs(1) => d,
                        Some(Ok(_)) => {
                            problem(format!("feeds[{i}].refresh"), "must be at least 1s".into());
                            Duration::from_secs(3600)
                        }
                        Some(Err(e)) => {
                            problem(
                                format!("feeds[{i}].refresh"),
                                format!(
                                    "{:?} is not a duration like \"1h\" or \"30m\": {e}",
                                    refresh.as_deref().unwrap_or("")
                                ),
                            );
                            Duration::from_secs(3600)
                        }
                    };
                    for (header, var) in &headers_from_env {
                        if var.trim().is_empty() || var.contains('=') {
                            problem(
                                format!("feeds[{i}].headers_from_env.{header}"),
                                format!(
                                    "{var:?} must be the NAME of an environment variable (the value never goes in the config)"
                                ),
                            );
                        }
                    }
                    Some(crate::remote::RemoteFeed {
                        name: name.clone(),
                        url: u.clone(),
                        refresh,
                        headers_from_env: headers_from_env
                            .iter()
                            .map(|(h, v)| (h.clone(), v.clone()))
                            .collect(),
                        timeout: Duration::from_millis(remote_timeout_ms.max(1)),
                        retries,
                        backoff: Duration::from_secs(2),
                        cache_dir: cache_dir.clone(),
                    })
                }
            };
            if enabled == Some(false) {
                continue;
            }
            let path = match (&remote_feed, path) {
                (Some(r), _) => r.data_path(),
                (None, Some(p)) => resolve(base, &p),
                (None, None) => continue,
            };
            feed_cfgs.push(FeedConfig {
                name,
                path,
                format,
                action: feed_action.unwrap_or(action),
                subdomains: feed_subdomains.unwrap_or(subdomains),
                url_hosts,
                confidence: confidence.unwrap_or(100),
                min_confidence: f_min.unwrap_or(min_confidence),
                block_confidence: f_block.unwrap_or(block_confidence),
                max_age_days: f_age.unwrap_or(max_age_days),
                max_rejected_percent: f_rej.unwrap_or(max_rejected_percent).min(100),
                remote: remote_feed,
            });
        }
        if feed_cfgs.len() > crate::policy::MAX_FEEDS {
            problem(
                "feeds".into(),
                format!("at most {} feeds are supported", crate::policy::MAX_FEEDS),
            );
        }

        // [allow]
        let RawAllow { domains, files } = allow;
        let mut allow_domains = Vec::new();
        for (i, d) in domains.iter().enumerate() {
            let d = d.trim().trim_start_matches("*.");
            match crate::ioc::normalize_host(d) {
                Ok(n) => allow_domains.push(n),
                Err(e) => problem(format!("allow.domains[{i}]"), format!("{d:?}: {e}")),
            }
        }
        let allow_files = files.iter().map(|p| resolve(base, p)).collect();

        // [events]
        let RawEvents {
            path: events_path,
            queries,
            queue,
            source_system,
        } = events;
        if queue == 0 {
            problem("events.queue".into(), "must be at least 1".into());
        }

        // [metrics]
        let RawMetrics {
            listen: metrics_listen,
        } = metrics;
        let metrics_listen = match metrics_listen.as_deref() {
            None | Some("") => None,
            Some(l) => match l.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    problem(
                        "metrics.listen".into(),
                        format!("{l:?} is not an IP:PORT socket address"),
                    );
                    None
                }
            },
        };

        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: PathBuf::new(),
                problems,
            });
        }
        Ok(Config {
            source: None,
            server: ServerConfig {
                listen: listen_addrs,
                allow: nets,
                computer,
                tcp_timeout: Duration::from_millis(tcp_timeout_ms.max(1)),
                max_in_flight,
                until_ready,
                shutdown_grace: Duration::from_millis(shutdown_grace_ms),
                udp_sockets,
            },
            upstream: UpstreamConfig {
                servers: ups,
                timeout: Duration::from_millis(timeout_ms),
                cache_size,
            },
            policy: PolicyConfig {
                action,
                sinkhole_ipv4,
                sinkhole_ipv6,
                ttl,
                subdomains,
                min_confidence,
                block_confidence,
                max_age_days,
                feeds: feed_cfgs,
                allow_domains,
                allow_files,
            },
            events: EventsConfig {
                path: events_path
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(|p| resolve(base, &p)),
                queries,
                queue,
                source_system,
            },
            metrics_listen,
        })
    }
}

impl Config {
    /// Applies command-line overrides (`iocdns serve --listen/--upstream/--events/--feed`).
    /// Extra feeds use the `[policy]` defaults, `format = "auto"` and the file stem as name.
    pub fn apply_overrides(
        &mut self,
        listen: &[SocketAddr],
        upstream: &[SocketAddr],
        events: Option<PathBuf>,
        feeds: &[PathBuf],
    ) -> Result<(), ConfigError> {
        if !listen.is_empty() {
            self.server.listen = listen.to_vec();
        }
        if !upstream.is_empty() {
            self.upstream.servers = upstream.iter().map(|a| UpstreamServer::Addr(*a)).collect();
        }
        if let Some(e) = events {
            self.events.path = (!e.as_os_str().is_empty()).then_some(e);
        }
        for path in feeds {
            let p = &self.policy;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "feed".into());
            let mut name = stem.clone();
            let mut n = 2;
            while p.feeds.iter().any(|f| f.name == name) {
                name = format!("{stem}-{n}");
                n += 1;
            }
            let feed = FeedConfig {
                name,
                path: path.clone(),
                format: FeedFormat::Auto,
                action: p.action,
                subdomains: p.subdomains,
                url_hosts: UrlHosts::default(),
                confidence: 100,
                min_confidence: p.min_confidence,
                block_confidence: p.block_confidence,
                max_age_days: p.max_age_days,
                max_rejected_percent: default_max_rejected_percent(),
                remote: None,
            };
            self.policy.feeds.push(feed);
        }
        if self.policy.feeds.len() > crate::policy::MAX_FEEDS {
            return Err(ConfigError::Invalid {
                path: self.source.clone().unwrap_or_default(),
                problems: vec![KeyProblem {
                    key: "feeds".into(),
                    problem: format!("at most {} feeds are supported", crate::policy::MAX_FEEDS),
                }],
            });
        }
        Ok(())
    }
}

impl ConfigError {
    fn with_path(self, p: &Path) -> Self {
        match self {
            ConfigError::Toml { message, .. } => ConfigError::Toml {
                path: p.to_owned(),
                message,
            },
            ConfigError::Invalid { problems, .. } => ConfigError::Invalid {
                path: p.to_owned(),
                problems,
            },
            e => e,
        }
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}
