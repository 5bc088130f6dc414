//! Packet forwarder for plain UDP queries that miss the response cache.
//!
//! hickory-resolver parses every answer into records, caches them and re-encodes them; for the
//! common case (a plain query whose answer the [`ResponseCache`] does not hold) iocdns instead
//! relays the client's packet itself, with a fresh random id, to the upstream, and relays the
//! upstream's answer back with the client's id, byte for byte: the most faithful forwarding
//! there is (RCODE, CNAME chain, TTLs, SOA in authority, EDNS as the client asked). The answer
//! is then cached for the fast path and its event written.
//!
//! Failover: attempt *k* goes to server *k mod n* (n configured servers, at most 3 attempts),
//! each with an equal share of `upstream.timeout_ms`; when every attempt has timed out the
//! client gets SERVFAIL with EDE 22, inside the timeout. Answers are only accepted from the
//! server the query went to (connected sockets), with the pending id and the same question.
//! Several sockets with random source ports and random ids make off-path spoofing costly; keep
//! upstreams on a trusted network all the same. TCP, unusual queries and clients outside
//! `server.allow` keep going through hickory.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::fast::{CacheKey, ResponseCache, scan_answer};
use crate::events::{AnswerAddrs, EventSink, NameBuf, PolicyAction, QueryRecord};
use crate::metrics::Metrics;
use crate::policy::{Match, PolicySnapshot};

/// What the fast path decided about a query it hands to the forwarder.
pub struct ForwardJob {
    /// Cache key of the answer.
    pub key: CacheKey,
    /// Query name (for the event).
    pub name: NameBuf,
    /// Query type.
    pub qtype: u16,
    /// End of the question section in the packet.
    pub question_end: usize,
    /// Whether the query carried EDNS (the SERVFAIL then carries EDE 22).
    pub edns: bool,
    /// `forward`, `allow` or `log`.
    pub action: PolicyAction,
    /// The IOC hit of a `log` action.
    pub hit: Option<(Arc<PolicySnapshot>, Match)>,
}

struct Pending {
    job: ForwardJob,
    client: SocketAddr,
    client_id: [u8; 2],
    client_rd: bool,
    listener: Arc<UdpSocket>,
    /// The query as sent (our id), for resends and question checks.
    packet: Box<[u8]>,
    started: Instant,
    deadline: Instant,
    attempt: usize,
}

/// Sockets to one upstream server.
struct Server {
    socks: Vec<Arc<UdpSocket>>,
}

/// The forwarder. Shared by every UDP receive loop.
pub struct RawForwarder {
    servers: Vec<Server>,
    /// Pending queries by id; ids are unique across all sockets.
    pending: Mutex<HashMap<u16, Pending>>,
    rng: AtomicU64,
    next: AtomicUsize,
    attempt_timeout: Duration,
    attempts: usize,
    cache: Arc<ResponseCache>,
    events: EventSink,
    metrics: Metrics,
}

impl std::fmt::Debug for RawForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawForwarder")
            .field("servers", &self.servers.len())
            .finish_non_exhaustive()
    }
}

/// Sockets per upstream server (random source ports).
const SOCKETS_PER_SERVER: usize = 4;
/// Upper bound on queries waiting for the upstream; beyond it the full path takes them.
const MAX_PENDING: usize = 16_384;

impl RawForwarder {
    /// Binds the upstream sockets and starts their receive loops and the timeout sweeper on
    /// `tasks`, until `stop`.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        upstreams: &[SocketAddr],
        timeout: Duration,
        cache: Arc<ResponseCache>,
        events: EventSink,
        metrics: Metrics,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> std::io::Result<Arc<Self>> {
        let mut servers = Vec::new();
        for &up in upstreams.iter().take(3) {
            let local: SocketAddr = match up.ip() {
                IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let mut socks = Vec::new();
            for _ in 0..SOCKETS_PER_SERVER {
                let s = UdpSocket::bind(local).await?;
                s.connect(up).await?;
                socks.push(Arc::new(s));
            }
            servers.push(Server { socks });
        }
        let attempts = servers.len().max(1);
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
            ^ (std::process::id() as u64) << 32;
        let fwd = Arc::new(Self {
            servers,
            pending: Mutex::new(HashMap::new()),
            rng: AtomicU64::new(seed | 1),
            next: AtomicUsize::new(0),
            attempt_timeout: (timeout / attempts as u32).max(Duration::from_millis(50)),
            attempts,
            cache,
            events,
            metrics,
        });
        for (si, server) in fwd.servers.iter().enumerate() {
            for (k, sock) in server.socks.iter().enumerate() {
                tasks.spawn(recv_loop(fwd.clone(), sock.clone(), si, k, stop.clone()));
            }
        }
        tasks.spawn(sweep_loop(fwd.clone(), stop));
        Ok(fwd)
    }

    fn random(&self) -> u64 {
        // xorshift64*: ids and socket choice need to be unpredictable to an off-path sender,
        // not cryptographically strong.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    // The job comes back by value on failure; boxing it would allocate on every miss.
    #[allow(clippy::result_large_err)]
    /// Sends `raw` upstream on behalf of `client`. Gives the job back (nothing sent, the caller
    /// takes the full path) when the forwarder is saturated or the send fails.
    pub fn dispatch(
        &self,
        job: ForwardJob,
        raw: &[u8],
        client: SocketAddr,
        listener: &Arc<UdpSocket>,
    ) -> Result<(), ForwardJob> {
        if self.servers.is_empty() {
            return Err(job);
        }
        // Forward the OPT record without its options (cookies, padding, client subnet...): the
        // answer must not carry anything tied to this client, since it is cached and served to
        // others (a cached client cookie makes `dig` warn about a cookie mismatch).
        let end = if job.edns && raw.len() > job.question_end + 11 {
            job.question_end + 11
        } else {
            raw.len()
        };
        let mut packet: Box<[u8]> = raw[..end].into();
        // Always ask for recursion (we are the client's recursive service, and the answer is
        // shared through the cache); the client's own RD bit is restored in the answer.
        packet[2] |= 0x01;
        if end != raw.len() {
            packet[end - 2] = 0;
            packet[end - 1] = 0;
        }
        let now = Instant::now();
        let id = {
            let Ok(mut pending) = self.pending.lock() else {
                return Err(job);
            };
            if pending.len() >= MAX_PENDING {
                return Err(job);
            }
            let mut id = self.random() as u16;
            while pending.contains_key(&id) {
                id = self.random() as u16;
            }
            packet[0..2].copy_from_slice(&id.to_be_bytes());
            pending.insert(
                id,
                Pending {
                    job,
                    client,
                    client_id: [raw[0], raw[1]],
                    client_rd: raw[2] & 0x01 != 0,
                    listener: listener.clone(),
                    packet: packet.clone(),
                    started: now,
                    deadline: now + self.attempt_timeout,
                    attempt: 0,
                },
            );
            id
        };
        if !self.send(0, &packet) {
            let back = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
            return match back {
                Some(p) => Err(p.job),
                // Already answered by a concurrent receive: nothing to give back.
                None => Ok(()),
            };
        }
        Ok(())
    }

    fn send(&self, attempt: usize, packet: &[u8]) -> bool {
        let server = &self.servers[attempt % self.servers.len()];
        let k = self.next.fetch_add(1, Ordering::Relaxed) % server.socks.len();
        server.socks[k].try_send(packet).is_ok()
    }

    /// Waits until no query is waiting for the upstream, at most `grace`.
    pub async fn wait_idle(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.pending.lock().map(|p| p.is_empty()).unwrap_or(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn finish(&self, p: Pending, answer: &mut [u8], from_upstream: bool) {
        answer[0..2].copy_from_slice(&p.client_id);
        // We are a recursive service, not the authority: RA set, AA cleared (as the full path);
        // RD as the client sent it.
        answer[2] &= !0x04;
        answer[2] = (answer[2] & !0x01) | u8::from(p.client_rd);
        answer[3] |= 0x80;
        let sent = match p.listener.try_send_to(answer, p.client) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let (l, c, bytes) = (p.listener.clone(), p.client, answer.to_vec());
                tokio::spawn(async move {
                    let _ = l.send_to(&bytes, c).await;
                });
                true
            }
            Err(e) => {
                debug!(error = %e, "udp send error");
                false
            }
        };
        let (rcode, addrs) = scan_answer(answer).unwrap_or((2, AnswerAddrs::default()));
        if from_upstream {
            self.metrics.upstream_latency(p.started.elapsed());
            if rcode == 0 || rcode == 3 {
                self.cache.insert(p.job.key, answer);
            }
        } else {
            self.metrics.upstream_error("timeout");
        }
        if sent && self.events.wants(p.job.action) {
            self.events.emit(QueryRecord {
                time: SystemTime::now(),
                client: p.client.ip(),
                name: p.job.name,
                qtype: p.job.qtype,
                rcode: Some(rcode),
                answers: addrs,
                action: p.job.action,
                hit: p.job.hit,
            });
        }
    }
}

async fn recv_loop(
    fwd: Arc<RawForwarder>,
    sock: Arc<UdpSocket>,
    server: usize,
    _k: usize,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let len = tokio::select! {
            r = sock.recv(&mut buf) => match r {
                Ok(n) => n,
                Err(e) => {
                    debug!(error = %e, "upstream receive error");
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let answer = &mut buf[..len];
        if len < 12 || answer[2] & 0x80 == 0 {
            continue;
        }
        let id = u16::from_be_bytes([answer[0], answer[1]]);
        let pending = {
            let Ok(mut map) = fwd.pending.lock() else {
                return;
            };
            match map.get(&id) {
                // Only from the server this attempt went to, for the question we asked.
                Some(p)
                    if p.attempt % fwd.servers.len() == server
                        && answer.len() >= p.job.question_end
                        && answer[4..6] == p.packet[4..6]
                        && answer[12..p.job.question_end]
                            .eq_ignore_ascii_case(&p.packet[12..p.job.question_end]) =>
                {
                    map.remove(&id)
                }
                _ => None,
            }
        };
        if let Some(p) = pending {
            fwd.finish(p, answer, true);
        }
    }
}

async fn sweep_loop(fwd: Arc<RawForwarder>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut resend = Vec::new();
        if let Ok(mut map) = fwd.pending.lock() {
            let ids: Vec<u16> = map
                .iter()
                .filter(|(_, p)| p.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let Some(p) = map.get_mut(&id) else { continue };
                if p.attempt + 1 < fwd.attempts {
                    p.attempt += 1;
                    p.deadline = now + fwd.attempt_timeout;
                    resend.push((p.attempt, p.packet.clone()));
                } else if let Some(p) = map.remove(&id) {
                    expired.push(p);
                }
            }
        }
        for (attempt, packet) in resend {
            fwd.send(attempt, &packet);
        }
        for p in expired {
            let mut answer = servfail(&p);
            fwd.finish(p, &mut answer, false);
        }
    }
}

/// SERVFAIL for a query whose every upstream attempt timed out (EDE 22 with EDNS).
fn servfail(p: &Pending) -> Vec<u8> {
    let q = &p.packet;
    let mut out = Vec::with_capacity(p.job.question_end + 40);
    out.extend_from_slice(&q[..2]);
    out.push(0x80 | (q[2] & 0x01));
    out.push(0x80 | (q[3] & 0x10) | 2);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(p.job.edns)]);
    out.extend_from_slice(&q[12..p.job.question_end]);
    if p.job.edns {
        let text = b"iocdns: upstream timeout";
        out.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        out.extend_from_slice(&((text.len() + 6) as u16).to_be_bytes());
        out.extend_from_slice(&15u16.to_be_bytes());
        out.extend_from_slice(&((text.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&22u16.to_be_bytes());
        out.extend_from_slice(text);
    }
    out
}
