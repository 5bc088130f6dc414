//! Forwarding to the configured upstream servers through hickory-resolver (with its answer
//! cache), keeping the upstream's answer faithful: RCODE, CNAME chain, TTLs (as decremented by the
//! cache) and, for negative answers, the SOA in the authority section.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig, ResolverOpts,
    ServerOrderingStrategy,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};

use crate::config::{UpstreamConfig, UpstreamServer};

/// Errors setting up the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// `system` was configured but the machine's resolv.conf could not be read.
    #[error("cannot read the system resolver configuration: {0}")]
    SystemConf(String),
    /// No usable server.
    #[error("no upstream servers configured")]
    NoServers,
    /// hickory-resolver refused the configuration.
    #[error("cannot build the upstream resolver: {0}")]
    Build(String),
}

/// The upstream's answer, ready to be copied into our response.
#[derive(Debug, Clone)]
pub struct UpstreamAnswer {
    /// RCODE to send.
    pub rcode: ResponseCode,
    /// Answer section (CNAME chain and final records).
    pub answers: Vec<Record>,
    /// Authority section (the SOA of negative answers).
    pub authorities: Vec<Record>,
}

impl UpstreamAnswer {
    fn failure(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            answers: Vec::new(),
            authorities: Vec::new(),
        }
    }
}

/// Why forwarding failed (the client gets SERVFAIL unless the upstream sent another RCODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No answer within `upstream.timeout_ms`.
    Timeout,
    /// Network or protocol error.
    Error,
}

/// The forwarding client. Clone is cheap.
#[derive(Clone)]
pub struct Upstream {
    resolver: TokioResolver,
    timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The configured servers as socket addresses, in order (`system` expands to the name servers
/// of resolv.conf, port 53 unless it says otherwise).
pub fn server_addrs(cfg: &UpstreamConfig) -> Result<Vec<SocketAddr>, UpstreamError> {
    let mut out = Vec::new();
    for s in &cfg.servers {
        match s {
            UpstreamServer::Addr(a) => out.push(*a),
            UpstreamServer::System => {
                let (sys, _) = hickory_resolver::system_conf::read_system_conf()
                    .map_err(|e| UpstreamError::SystemConf(e.to_string()))?;
                for ns in sys.name_servers() {
                    let port = ns.connections.first().map_or(53, |c| c.port);
                    let addr = SocketAddr::new(ns.ip, port);
                    if !out.contains(&addr) {
                        out.push(addr);
                    }
                }
            }
        }
    }
    Ok(out)
}

impl Upstream {
    /// Builds the resolver. Needs a tokio runtime.
    pub fn from_config(cfg: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let mut servers = Vec::new();
        for s in &cfg.servers {
            match s {
                UpstreamServer::System => {
                    let (sys, _) = hickory_resolver::system_conf::read_system_conf()
                        .map_err(|e| UpstreamError::SystemConf(e.to_string()))?;
                    servers.extend(sys.name_servers().iter().cloned());
                }
                UpstreamServer::Addr(addr) => servers.push(name_server(*addr)),
            }
        }
        if servers.is_empty() {
            return Err(UpstreamError::NoServers);
        }
        let mut opts = ResolverOpts::default();
        opts.ndots = 0;
        // hickory retries per server; split the whole-query budget across attempts so that the
        // outer deadline below is what the client sees.
        opts.attempts = 2;
        opts.timeout = (cfg.timeout / 2).max(Duration::from_millis(100));
        // The UDP fast path caches encoded answers itself (`upstream.cache_size` entries); the
        // resolver's own cache only serves TCP and unusual queries, so it is kept smaller.
        opts.cache_size = (cfg.cache_size / 8).max(1024);
        opts.use_hosts_file = ResolveHosts::Never;
        opts.preserve_intermediates = true;
        opts.try_tcp_on_error = true;
        opts.server_ordering_strategy = ServerOrderingStrategy::UserProvidedOrder;
        opts.recursion_desired = true;
        let config = ResolverConfig::from_name_servers(servers);
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| UpstreamError::Build(e.to_string()))?;
        Ok(Self {
            resolver,
            timeout: cfg.timeout,
        })
    }

    /// Resolves `name`/`qtype` upstream within the configured timeout.
    pub async fn resolve(
        &self,
        name: Name,
        qtype: RecordType,
    ) -> Result<UpstreamAnswer, UpstreamFailure> {
        let lookup = tokio::time::timeout(self.timeout, self.resolver.lookup(name, qtype)).await;
        match lookup {
            Err(_) => Err(UpstreamFailure::Timeout),
            Ok(Ok(lookup)) => {
                let msg = lookup.message();
                let rcode = msg.response_code;
                Ok(UpstreamAnswer {
                    rcode,
                    answers: lookup.answers().to_vec(),
                    authorities: lookup.authorities().to_vec(),
                })
            }
            Ok(Err(NetError::Dns(DnsError::NoRecordsFound(nr)))) => {
                let mut authorities = Vec::new();
                if let Some(auth) = nr.authorities.as_deref() {
                    authorities.extend(auth.iter().cloned());
                } else if let Some(soa) = nr.soa {
                    let soa = *soa;
                    authorities.push(Record::from_rdata(soa.name, soa.ttl, RData::SOA(soa.data)));
                }
                Ok(UpstreamAnswer {
                    rcode: nr.response_code,
                    answers: Vec::new(),
                    authorities,
                })
            }
            Ok(Err(NetError::Dns(DnsError::ResponseCode(code)))) => {
                Ok(UpstreamAnswer::failure(code))
            }
            Ok(Err(_)) => Err(UpstreamFailure::Error),
        }
    }
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::new(ProtocolConfig::Udp);
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::new(ProtocolConfig::Tcp);
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}
