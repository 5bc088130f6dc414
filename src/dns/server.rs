//! UDP and TCP listeners that feed a hickory [`RequestHandler`].
//!
//! iocdns runs its own small accept/receive loops instead of `hickory_server::Server` for one
//! reason: a clean stop. hickory's server aborts the tasks of queries in flight when it shuts
//! down; here every query task is tracked, the loops stop receiving first, and [`Listeners::stop`]
//! waits (bounded) for the tracked tasks, whose answers still go out on the open sockets, so
//! every accepted query is answered and logged.
//!
//! Malformed input never panics: a datagram shorter than a DNS header is dropped, a response
//! (QR=1) is dropped (no reflection), and a query that does not parse gets FORMERR.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::ProtoError;
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::CACHEABLE;
use super::batch::{RecvBatch, SendBatch};
use super::fast::{CacheKey, FastOutcome, FastPath, ResponseCache};

/// Largest DNS message over TCP.
const MAX_TCP: usize = 65_535;

/// Running listeners.
#[derive(Debug)]
pub struct Listeners {
    stop: CancellationToken,
    queries: TaskTracker,
    loops: TaskTracker,
}

impl Listeners {
    /// Starts serving `udp` and `tcp` sockets with `handler`.
    pub fn start<H: RequestHandler + Clone>(
        handler: H,
        fast: Option<Arc<FastPath>>,
        udp: Vec<UdpSocket>,
        tcp: Vec<TcpListener>,
        tcp_idle: Duration,
    ) -> Self {
        let stop = CancellationToken::new();
        let queries = TaskTracker::new();
        let loops = TaskTracker::new();
        for sock in udp {
            loops.spawn(udp_loop(
                Arc::new(sock),
                handler.clone(),
                fast.clone(),
                queries.clone(),
                stop.clone(),
            ));
        }
        for l in tcp {
            loops.spawn(tcp_loop(
                l,
                handler.clone(),
                queries.clone(),
                stop.clone(),
                tcp_idle,
            ));
        }
        Self {
            stop,
            queries,
            loops,
        }
    }

    /// Stops receiving, then waits up to `grace` for queries in flight to be answered.
    /// Returns the number of queries still unanswered at the deadline.
    pub async fn stop(self, grace: Duration) -> usize {
        self.stop.cancel();
        self.loops.close();
        self.loops.wait().await;
        self.queries.close();
        if tokio::time::timeout(grace, self.queries.wait())
            .await
            .is_err()
        {
            let left = self.queries.len();
            warn!(
                left,
                "queries still in flight after the shutdown grace period"
            );
            return left;
        }
        0
    }
}

/// Answers FORMERR to a query that does not parse, echoing its id and opcode.
fn formerr(raw: &[u8]) -> Option<[u8; 12]> {
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        return None;
    }
    let mut out = [0u8; 12];
    out[0] = raw[0];
    out[1] = raw[1];
    out[2] = 0x80 | (raw[2] & 0x78) | (raw[2] & 0x01); // QR, opcode, RD
    out[3] = 0x01; // FORMERR
    Some(out)
}

async fn udp_loop<H: RequestHandler + Clone>(
    sock: Arc<UdpSocket>,
    handler: H,
    fast: Option<Arc<FastPath>>,
    queries: TaskTracker,
    stop: CancellationToken,
) {
    // Queries are taken in batches (one recvmmsg) and the answers the receive loop produces
    // itself (blocked, cached, FORMERR) leave together (one sendmmsg); see `batch`.
    let mut rx = RecvBatch::new();
    let mut tx = SendBatch::new();
    loop {
        tokio::select! {
            r = sock.readable() => if let Err(e) = r {
                debug!(error = %e, "udp socket not readable");
                continue;
            },
            _ = stop.cancelled() => return,
        }
        match rx.try_recv(&sock) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                debug!(error = %e, "udp receive error");
                continue;
            }
        }
        for i in 0..rx.len() {
            let (raw, src) = rx.get(i);
            handle_datagram(raw, src, &sock, &handler, fast.as_ref(), &queries, &mut tx);
            if tx.is_full() {
                tx.flush(&sock).await;
            }
        }
        tx.flush(&sock).await;
    }
}

/// Handles one query datagram: answers it into `tx` (fast path, FORMERR), hands it to the
/// packet relay, or spawns the full hickory path for it.
fn handle_datagram<H: RequestHandler + Clone>(
    raw: &[u8],
    src: SocketAddr,
    sock: &Arc<UdpSocket>,
    handler: &H,
    fast: Option<&Arc<FastPath>>,
    queries: &TaskTracker,
    tx: &mut SendBatch,
) {
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        return;
    }
    let mut cache_key = None;
    if let Some(fast) = fast {
        match fast.handle(raw, src, tx.next_buf()) {
            FastOutcome::Answer => {
                tx.push(src);
                return;
            }
            FastOutcome::Silent => return,
            FastOutcome::Slow(key) => cache_key = key.map(|k| (fast.cache.clone(), k)),
            FastOutcome::Forward(job) => match &fast.forwarder {
                Some(fwd) => match fwd.dispatch(job, raw, src, sock) {
                    Ok(()) => return,
                    Err(job) => cache_key = Some((fast.cache.clone(), job.key)),
                },
                None => cache_key = Some((fast.cache.clone(), job.key)),
            },
        }
    }
    match Request::from_bytes(raw.to_vec(), src, Protocol::Udp) {
        Ok(req) => {
            let responder = UdpResponder {
                sock: sock.clone(),
                dst: src,
                max: req.edns.as_ref().map_or(512, |e| e.max_payload().max(512)),
                cache: cache_key,
            };
            let handler = handler.clone();
            queries.spawn(CACHEABLE.scope(std::cell::Cell::new(false), async move {
                handler
                    .handle_request::<_, TokioTime>(&req, responder)
                    .await;
            }));
        }
        Err(_) => {
            if let Some(resp) = formerr(raw) {
                tx.next_buf().extend_from_slice(&resp);
                tx.push(src);
            }
        }
    }
}

async fn tcp_loop<H: RequestHandler + Clone>(
    listener: TcpListener,
    handler: H,
    queries: TaskTracker,
    stop: CancellationToken,
    idle: Duration,
) {
    loop {
        let (stream, src) = tokio::select! {
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    debug!(error = %e, "tcp accept error");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let handler = handler.clone();
        let stop = stop.clone();
        let tracker = queries.clone();
        queries.spawn(async move {
            let (mut rd, wr) = stream.into_split();
            let wr = Arc::new(Mutex::new(wr));
            loop {
                let len = tokio::select! {
                    r = tokio::time::timeout(idle, rd.read_u16()) => match r {
                        Ok(Ok(l)) => l as usize,
                        _ => return,
                    },
                    _ = stop.cancelled() => return,
                };
                let mut msg = vec![0u8; len];
                if tokio::time::timeout(idle, rd.read_exact(&mut msg))
                    .await
                    .is_err()
                {
                    return;
                }
                if len < 12 || msg[2] & 0x80 != 0 {
                    return;
                }
                match Request::from_bytes(msg.clone(), src, Protocol::Tcp) {
                    Ok(req) => {
                        let responder = TcpResponder { wr: wr.clone() };
                        let handler = handler.clone();
                        // Queries on one connection are answered concurrently (RFC 7766 allows
                        // out-of-order answers); each is tracked for a clean stop.
                        tracker.spawn(async move {
                            handler
                                .handle_request::<_, TokioTime>(&req, responder)
                                .await;
                        });
                    }
                    Err(_) => {
                        if let Some(resp) = formerr(&msg) {
                            let mut w = wr.lock().await;
                            let _ = w.write_all(&12u16.to_be_bytes()).await;
                            let _ = w.write_all(&resp).await;
                        }
                    }
                }
            }
        });
    }
}

fn encode<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    max: u16,
) -> Result<(ResponseInfo, Vec<u8>), ProtoError> {
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(max);
    let info = response.destructive_emit(&mut encoder)?;
    Ok((info, bytes))
}

/// Sends the answer of one UDP query.
#[derive(Clone)]
struct UdpResponder {
    sock: Arc<UdpSocket>,
    dst: SocketAddr,
    max: u16,
    /// Where to cache the answer, if the handler marks it cacheable.
    cache: Option<(Arc<ResponseCache>, CacheKey)>,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpResponder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let (info, bytes) =
            encode(response, self.max).map_err(|e| NetError::from(e.to_string()))?;
        self.sock
            .send_to(&bytes, self.dst)
            .await
            .map_err(NetError::from)?;
        if let Some((cache, key)) = self.cache.take()
            && CACHEABLE.try_with(|c| c.get()).unwrap_or(false)
        {
            cache.insert(key, &bytes);
        }
        Ok(info)
    }
}

/// Sends the answer of one TCP query (length-prefixed) on its connection.
#[derive(Clone)]
struct TcpResponder {
    wr: Arc<Mutex<tokio::net::tcp::OwnedWriteHalf>>,
}

#[async_trait::async_trait]
impl ResponseHandler for TcpResponder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let (info, bytes) =
            encode(response, MAX_TCP as u16).map_err(|e| NetError::from(e.to_string()))?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        let mut w = self.wr.lock().await;
        w.write_all(&framed).await.map_err(NetError::from)?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::formerr;

    #[test]
    fn formerr_echoes_id_and_opcode() {
        let q = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a'];
        let r = formerr(&q).unwrap();
        assert_eq!(&r[..2], &[0xab, 0xcd]);
        assert_eq!(r[2], 0x81);
        assert_eq!(r[3] & 0x0f, 1);
        assert!(formerr(&q[..5]).is_none());
        let mut resp = q;
        resp[2] |= 0x80;
        assert!(formerr(&resp).is_none());
    }
}
