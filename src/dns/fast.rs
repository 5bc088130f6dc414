//! The UDP fast path: answers the common cases straight from the receive loop, without a task,
//! without hickory's message model and without allocating.
//!
//! A query qualifies when it is a plain standard query: QR=0, opcode QUERY, one question of class
//! IN, no answer/authority records, at most one OPT record (EDNS version 0), no compression in
//! the question. For those:
//!
//! * an IOC match with a blocking action (sinkhole, nxdomain, nodata, refused, drop) is answered
//!   here, bytes written into a reused buffer (question copied verbatim, EDE 15 in the OPT);
//! * a forwarded name whose answer is in the [`ResponseCache`] is answered from the cached bytes
//!   with the id, flags and question patched and TTLs decreased by the time spent in cache.
//!
//! Everything else (cache misses, TCP, unusual queries, clients outside `server.allow`, the
//! not-yet-ready policy) goes to [`super::IocHandler`] through hickory. The policy is always
//! consulted before the cache, so a reload that blocks a name takes effect at once even for
//! names whose answers are cached.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::rr::RecordType;

use super::ClientAcl;
use crate::config::Action;
use crate::events::{AnswerAddrs, EventSink, NameBuf, PolicyAction, QueryRecord};
use crate::metrics::Metrics;
use crate::policy::{Match, PolicySnapshot, SharedPolicy, Verdict};

/// A parsed plain query. Borrowed from the packet; the name is copied lower-cased on the stack.
pub struct SimpleQuery<'a> {
    /// The whole packet.
    pub raw: &'a [u8],
    /// End of the question section (12 + qname + 4).
    pub question_end: usize,
    /// Query type.
    pub qtype: u16,
    /// EDNS UDP payload size, when the query had an OPT record.
    pub edns: Option<u16>,
    /// The DO bit of the OPT record.
    pub dnssec_ok: bool,
    name: [u8; 256],
    name_len: usize,
    /// Wire-format qname, lower-cased (cache key).
    wire: [u8; 256],
    wire_len: usize,
}

impl SimpleQuery<'_> {
    /// Dotted, lower-cased query name without trailing dot.
    pub fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }
}

/// Parses a plain query, or `None` when the packet needs the full path.
pub fn parse_simple(raw: &[u8]) -> Option<SimpleQuery<'_>> {
    if raw.len() < 17 {
        return None;
    }
    let flags = u16::from_be_bytes([raw[2], raw[3]]);
    // QR=0, opcode 0, TC=0.
    if flags & 0xfa00 != 0 {
        return None;
    }
    let qd = u16::from_be_bytes([raw[4], raw[5]]);
    let an = u16::from_be_bytes([raw[6], raw[7]]);
    let ns = u16::from_be_bytes([raw[8], raw[9]]);
    let ar = u16::from_be_bytes([raw[10], raw[11]]);
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let mut q = SimpleQuery {
        raw,
        question_end: 0,
        qtype: 0,
        edns: None,
        dnssec_ok: false,
        name: [0; 256],
        name_len: 0,
        wire: [0; 256],
        wire_len: 0,
    };
    let mut pos = 12;
    loop {
        let len = *raw.get(pos)? as usize;
        if len == 0 {
            q.wire[q.wire_len] = 0;
            q.wire_len += 1;
            pos += 1;
            break;
        }
        if len > 63 || q.wire_len + len + 2 > 255 {
            return None;
        }
        let label = raw.get(pos + 1..pos + 1 + len)?;
        q.wire[q.wire_len] = len as u8;
        q.wire_len += 1;
        if q.name_len != 0 {
            q.name[q.name_len] = b'.';
            q.name_len += 1;
        }
        for &b in label {
            // A dot inside a label would change the name's meaning as text: full path.
            if b == b'.' {
                return None;
            }
            let l = b.to_ascii_lowercase();
            q.wire[q.wire_len] = l;
            q.wire_len += 1;
            q.name[q.name_len] = l;
            q.name_len += 1;
        }
        pos += 1 + len;
    }
    let tail = raw.get(pos..pos + 4)?;
    q.qtype = u16::from_be_bytes([tail[0], tail[1]]);
    let qclass = u16::from_be_bytes([tail[2], tail[3]]);
    // IN only; AXFR/IXFR/ANY-class and meta types go the full path.
    if qclass != 1 || matches!(q.qtype, 0 | 251 | 252 | 253 | 254 | 41) {
        return None;
    }
    pos += 4;
    q.question_end = pos;
    if ar == 1 {
        // OPT: root name, type 41, class = payload size, ttl = ext-rcode/version/flags, rdata.
        let opt = raw.get(pos..pos + 11)?;
        if opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != 41 {
            return None;
        }
        let version = opt[6];
        if version != 0 {
            return None;
        }
        let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
        pos += 11 + rdlen;
        q.edns = Some(u16::from_be_bytes([opt[3], opt[4]]).max(512));
        q.dnssec_ok = opt[7] & 0x80 != 0;
    }
    if pos != raw.len() {
        return None;
    }
    Some(q)
}

/// Answers that the fast path can produce, and what it needs to produce them.
#[derive(Debug)]
pub struct FastPath {
    /// The live policy.
    pub policy: SharedPolicy,
    /// Client ACL.
    pub clients: ClientAcl,
    /// Event sink.
    pub events: EventSink,
    /// Metric handles.
    pub metrics: Metrics,
    /// Cache of forwarded answers.
    pub cache: Arc<ResponseCache>,
    /// Relays cache misses upstream (`None`: misses take the full hickory path).
    pub forwarder: Option<Arc<super::forward::RawForwarder>>,
}

/// What the fast path did with a packet.
// `Forward` is large (an inline name); boxing it would allocate per cache miss for nothing.
#[allow(clippy::large_enum_variant)]
pub enum FastOutcome {
    /// `out` holds the answer to send.
    Answer,
    /// Nothing to send (`drop` action).
    Silent,
    /// Use the full path; for a simple query on a cache miss, with the key to cache its answer.
    Slow(Option<CacheKey>),
    /// A cache miss to relay upstream with the forwarder.
    Forward(super::forward::ForwardJob),
}

impl FastPath {
    /// Tries to answer `raw` from `src`, writing the answer into `out`.
    pub fn handle(&self, raw: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> FastOutcome {
        let Some(q) = parse_simple(raw) else {
            return FastOutcome::Slow(None);
        };
        if !self.clients.allows(src.ip()) {
            return FastOutcome::Slow(None);
        }
        let policy = self.policy.current();
        if !policy.ready {
            return FastOutcome::Slow(None);
        }
        let qtype = RecordType::from(q.qtype);
        let (action, hit) = match policy.decide(q.name()) {
            Verdict::Matched(m) => {
                let action = policy.action_of(&m);
                if action != Action::Log {
                    self.metrics.query(qtype);
                    self.metrics.ioc_hit(&policy, &m, action);
                    self.metrics.action(PolicyAction::Ioc(action));
                    let sent = action != Action::Drop;
                    let (rcode, addrs) = if sent {
                        write_blocked(&q, &policy, &m, action, out)
                    } else {
                        (0, AnswerAddrs::default())
                    };
                    self.emit(
                        &q,
                        src.ip(),
                        sent.then_some(rcode),
                        addrs,
                        PolicyAction::Ioc(action),
                        Some((policy, m)),
                    );
                    return if sent {
                        FastOutcome::Answer
                    } else {
                        FastOutcome::Silent
                    };
                }
                (PolicyAction::Ioc(Action::Log), Some(m))
            }
            Verdict::Allowlisted => (PolicyAction::Allow, None),
            Verdict::Forward => (PolicyAction::Forward, None),
        };
        match self.cache.answer(&q, out) {
            Some((rcode, addrs)) => {
                self.metrics.query(qtype);
                self.metrics.action(action);
                self.metrics.upstream_latency(Duration::ZERO);
                if let Some(m) = &hit {
                    self.metrics.ioc_hit(&policy, m, Action::Log);
                }
                self.emit(
                    &q,
                    src.ip(),
                    Some(rcode),
                    addrs,
                    action,
                    hit.map(|m| (policy, m)),
                );
                FastOutcome::Answer
            }
            None if self.forwarder.is_some() => {
                self.metrics.query(qtype);
                self.metrics.action(action);
                if let Some(m) = &hit {
                    self.metrics.ioc_hit(&policy, m, Action::Log);
                }
                FastOutcome::Forward(super::forward::ForwardJob {
                    key: CacheKey::new(&q),
                    name: NameBuf::new(q.name()),
                    qtype: q.qtype,
                    question_end: q.question_end,
                    edns: q.edns.is_some(),
                    action,
                    hit: hit.map(|m| (policy, m)),
                })
            }
            None => FastOutcome::Slow(Some(CacheKey::new(&q))),
        }
    }

    fn emit(
        &self,
        q: &SimpleQuery<'_>,
        client: IpAddr,
        rcode: Option<u16>,
        answers: AnswerAddrs,
        action: PolicyAction,
        hit: Option<(Arc<PolicySnapshot>, Match)>,
    ) {
        if !self.events.wants(action) {
            return;
        }
        self.events.emit(QueryRecord {
            time: SystemTime::now(),
            client,
            name: NameBuf::new(q.name()),
            qtype: q.qtype,
            rcode,
            answers,
            action,
            hit,
        });
    }
}

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes the answer for a blocking action. Returns the RCODE and the answer addresses.
fn write_blocked(
    q: &SimpleQuery<'_>,
    policy: &PolicySnapshot,
    m: &Match,
    action: Action,
    out: &mut Vec<u8>,
) -> (u16, AnswerAddrs) {
    let raw = q.raw;
    let rule = policy.rule(m.rule);
    let s = &policy.settings;
    let mut addrs = AnswerAddrs::default();
    let rcode: u16 = match action {
        Action::Nxdomain => 3,
        Action::Refused => 5,
        _ => 0,
    };
    let mut answer: Option<IpAddr> = None;
    if action == Action::Sinkhole {
        let (v4, v6) = policy.sinkhole_addrs(rule);
        answer = match q.qtype {
            1 => v4.map(IpAddr::V4),
            28 => v6.map(IpAddr::V6),
            _ => None,
        };
    }
    out.clear();
    out.extend_from_slice(&raw[..2]);
    // QR=1, opcode 0, AA=0, TC=0, RD copied; RA=1, CD copied, RCODE.
    out.push(0x80 | (raw[2] & 0x01));
    out.push(0x80 | (raw[3] & 0x10) | rcode as u8);
    push_u16(out, 1);
    push_u16(out, u16::from(answer.is_some()));
    push_u16(out, 0);
    push_u16(out, u16::from(q.edns.is_some()));
    out.extend_from_slice(&raw[12..q.question_end]);
    if let Some(ip) = answer {
        out.extend_from_slice(&[0xc0, 0x0c]);
        push_u16(out, q.qtype);
        push_u16(out, 1);
        out.extend_from_slice(&s.ttl.to_be_bytes());
        match ip {
            IpAddr::V4(a) => {
                push_u16(out, 4);
                out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                push_u16(out, 16);
                out.extend_from_slice(&a.octets());
            }
        }
        addrs.push(ip);
    }
    if q.edns.is_some() {
        // OPT with EDE 15 "Blocked": text names the feed and the entry, like the full path.
        out.push(0);
        push_u16(out, 41);
        push_u16(out, 1232);
        out.extend_from_slice(&[0, 0, 0, 0]);
        let rdlen_at = out.len();
        push_u16(out, 0);
        push_u16(out, 15);
        let optlen_at = out.len();
        push_u16(out, 0);
        push_u16(out, 15);
        let text_start = out.len();
        super::response::block_reason(out, policy, m, q.name());
        // Same cap as the full path, on a char boundary.
        let text_len = super::response::ede_text_len(&out[text_start..]);
        out.truncate(text_start + text_len);
        let optlen = (2 + text_len) as u16;
        out[optlen_at..optlen_at + 2].copy_from_slice(&optlen.to_be_bytes());
        out[rdlen_at..rdlen_at + 2].copy_from_slice(&(optlen + 4).to_be_bytes());
    }
    (rcode, addrs)
}

// === response cache ===

/// Key of a cached answer: lower-cased wire qname, qtype, and whether the query had EDNS (the
/// answer then carries an OPT record).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(Box<[u8]>);

impl CacheKey {
    fn new(q: &SimpleQuery<'_>) -> Self {
        let (k, n) = key_bytes(q);
        Self(k[..n].into())
    }
}

fn key_bytes(q: &SimpleQuery<'_>) -> ([u8; 259], usize) {
    let mut k = [0u8; 259];
    k[..q.wire_len].copy_from_slice(&q.wire[..q.wire_len]);
    k[q.wire_len..q.wire_len + 2].copy_from_slice(&q.qtype.to_be_bytes());
    k[q.wire_len + 2] = u8::from(q.edns.is_some()) + u8::from(q.dnssec_ok);
    (k, q.wire_len + 3)
}

/// One shard of the cache.
type Shard = HashMap<Box<[u8]>, Entry, ahash::RandomState>;

struct Entry {
    bytes: Box<[u8]>,
    /// Offsets of the TTL fields to decrement (OPT excluded).
    ttl_offsets: Box<[u16]>,
    inserted: Instant,
    expires: Instant,
    rcode: u16,
    addrs: AnswerAddrs,
}

/// Sharded cache of encoded forwarded answers. Bounded: a full shard first drops expired
/// entries, then arbitrary ones.
pub struct ResponseCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: ahash::RandomState,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

const SHARDS: usize = 16;
/// Longest time an answer is served from this cache, whatever its TTL.
const MAX_CACHE_TTL: u32 = 86_400;

impl ResponseCache {
    /// A cache holding about `capacity` answers (0 disables it).
    pub fn new(capacity: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(HashMap::with_hasher(ahash::RandomState::new())))
            .collect();
        Self {
            shards,
            per_shard: capacity.div_ceil(SHARDS),
            hasher: ahash::RandomState::new(),
        }
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h % SHARDS]
    }

    /// Writes the cached answer for `q` into `out`, patched for this query.
    fn answer(&self, q: &SimpleQuery<'_>, out: &mut Vec<u8>) -> Option<(u16, AnswerAddrs)> {
        if self.per_shard == 0 {
            return None;
        }
        let (k, n) = key_bytes(q);
        let key = &k[..n];
        let now = Instant::now();
        let shard = self.shard(key).lock().ok()?;
        let e = shard.get(key)?;
        if now >= e.expires || e.bytes.len() > usize::from(q.edns.unwrap_or(512)) {
            return None;
        }
        let elapsed = now.duration_since(e.inserted).as_secs() as u32;
        out.clear();
        out.extend_from_slice(&e.bytes);
        let (rcode, addrs) = (e.rcode, e.addrs);
        let mut offsets = [0u16; 32];
        let n_off = e.ttl_offsets.len().min(32);
        offsets[..n_off].copy_from_slice(&e.ttl_offsets[..n_off]);
        drop(shard);
        // id, RD and CD from this query; the question as the client wrote it (0x20 case).
        out[0] = q.raw[0];
        out[1] = q.raw[1];
        out[2] = (out[2] & !0x01) | (q.raw[2] & 0x01);
        out[3] = (out[3] & !0x10) | (q.raw[3] & 0x10);
        out[12..q.question_end].copy_from_slice(&q.raw[12..q.question_end]);
        for &off in &offsets[..n_off] {
            let off = off as usize;
            let ttl = u32::from_be_bytes([out[off], out[off + 1], out[off + 2], out[off + 3]]);
            out[off..off + 4].copy_from_slice(&ttl.saturating_sub(elapsed).to_be_bytes());
        }
        Some((rcode, addrs))
    }

    /// Stores an encoded answer (NOERROR or NXDOMAIN, not truncated) for `key`.
    pub fn insert(&self, key: CacheKey, bytes: &[u8]) {
        if self.per_shard == 0 {
            return;
        }
        let Some(scan) = scan_response(bytes) else {
            return;
        };
        // At most 32 records (TTL patching uses a fixed buffer); bigger answers are rare.
        if scan.min_ttl == 0 || scan.ttl_offsets.len() > 32 {
            return;
        }
        let now = Instant::now();
        let entry = Entry {
            bytes: bytes.into(),
            ttl_offsets: scan.ttl_offsets.into(),
            inserted: now,
            expires: now + Duration::from_secs(u64::from(scan.min_ttl.min(MAX_CACHE_TTL))),
            rcode: scan.rcode,
            addrs: scan.addrs,
        };
        let Ok(mut shard) = self.shard(&key.0).lock() else {
            return;
        };
        if shard.len() >= self.per_shard {
            shard.retain(|_, e| e.expires > now);
            if shard.len() >= self.per_shard {
                let drop_n = (self.per_shard / 8).max(1);
                let victims: Vec<Box<[u8]>> = shard.keys().take(drop_n).cloned().collect();
                for v in victims {
                    shard.remove(&v);
                }
            }
        }
        shard.insert(key.0, entry);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        for s in self.shards.iter() {
            if let Ok(mut s) = s.lock() {
                s.clear();
            }
        }
    }
}

struct Scan {
    ttl_offsets: Vec<u16>,
    min_ttl: u32,
    rcode: u16,
    addrs: AnswerAddrs,
}

/// Walks an encoded response: TTL positions, the smallest TTL, the answer addresses. `None`
/// for anything not worth caching (truncated, not NOERROR/NXDOMAIN, malformed, no records).
fn scan_response(b: &[u8]) -> Option<Scan> {
    if b.len() < 12 {
        return None;
    }
    let rcode = u16::from(b[3] & 0x0f);
    if b[2] & 0x02 != 0 || !(rcode == 0 || rcode == 3) {
        return None;
    }
    let qd = u16::from_be_bytes([b[4], b[5]]);
    let an = u16::from_be_bytes([b[6], b[7]]) as usize;
    let ns = u16::from_be_bytes([b[8], b[9]]) as usize;
    let ar = u16::from_be_bytes([b[10], b[11]]) as usize;
    if qd != 1 {
        return None;
    }
    let mut pos = skip_name(b, 12)? + 4;
    let mut scan = Scan {
        ttl_offsets: Vec::new(),
        min_ttl: u32::MAX,
        rcode,
        addrs: AnswerAddrs::default(),
    };
    for i in 0..an + ns + ar {
        pos = skip_name(b, pos)?;
        let hdr = b.get(pos..pos + 10)?;
        let rtype = u16::from_be_bytes([hdr[0], hdr[1]]);
        let ttl = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        let rdlen = u16::from_be_bytes([hdr[8], hdr[9]]) as usize;
        let rdata = b.get(pos + 10..pos + 10 + rdlen)?;
        if rtype != 41 {
            scan.ttl_offsets.push(u16::try_from(pos + 4).ok()?);
            scan.min_ttl = scan.min_ttl.min(ttl);
        }
        if i < an {
            match (rtype, rdlen) {
                (1, 4) => scan
                    .addrs
                    .push(IpAddr::from(<[u8; 4]>::try_from(rdata).ok()?)),
                (28, 16) => scan
                    .addrs
                    .push(IpAddr::from(<[u8; 16]>::try_from(rdata).ok()?)),
                _ => {}
            }
        }
        pos += 10 + rdlen;
    }
    if pos != b.len() || scan.ttl_offsets.is_empty() {
        return None;
    }
    Some(scan)
}

/// RCODE and A/AAAA answer addresses of any response (for events), `None` if malformed.
pub fn scan_answer(b: &[u8]) -> Option<(u16, AnswerAddrs)> {
    if b.len() < 12 {
        return None;
    }
    let rcode = u16::from(b[3] & 0x0f);
    let qd = u16::from_be_bytes([b[4], b[5]]) as usize;
    let an = u16::from_be_bytes([b[6], b[7]]) as usize;
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(b, pos)? + 4;
    }
    let mut addrs = AnswerAddrs::default();
    for _ in 0..an {
        pos = skip_name(b, pos)?;
        let hdr = b.get(pos..pos + 10)?;
        let rtype = u16::from_be_bytes([hdr[0], hdr[1]]);
        let rdlen = u16::from_be_bytes([hdr[8], hdr[9]]) as usize;
        let rdata = b.get(pos + 10..pos + 10 + rdlen)?;
        match (rtype, rdlen) {
            (1, 4) => addrs.push(IpAddr::from(<[u8; 4]>::try_from(rdata).ok()?)),
            (28, 16) => addrs.push(IpAddr::from(<[u8; 16]>::try_from(rdata).ok()?)),
            _ => {}
        }
        pos += 10 + rdlen;
    }
    Some((rcode, addrs))
}

/// Position after a (possibly compressed) name at `pos`.
fn skip_name(b: &[u8], mut pos: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *b.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return Some(pos + 2),
            l if l < 64 => pos += 1 + l as usize,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record};

    fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn parses_plain_queries_and_refuses_others() {
        let raw = query("WwW.Example.COM.", RecordType::AAAA, true);
        let q = parse_simple(&raw).unwrap();
        assert_eq!(q.name(), b"www.example.com");
        assert_eq!(q.qtype, 28);
        assert!(q.edns.is_some());
        assert!(
            parse_simple(&query("a.example.", RecordType::A, false))
                .unwrap()
                .edns
                .is_none()
        );
        assert!(parse_simple(&query("a.example.", RecordType::AXFR, false)).is_none());
        let mut resp = raw.clone();
        resp[2] |= 0x80;
        assert!(parse_simple(&resp).is_none(), "responses are not queries");
        let mut trailing = raw.clone();
        trailing.push(0);
        assert!(parse_simple(&trailing).is_none(), "trailing bytes");
        for cut in 0..raw.len() {
            let _ = parse_simple(&raw[..cut]);
        }
    }

    #[test]
    fn parser_is_total() {
        let mut x: u32 = 12345;
        for _ in 0..20_000 {
            let len = (x % 64) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                v.push((x >> 16) as u8);
            }
            let _ = parse_simple(&v);
            let _ = scan_response(&v);
        }
    }

    #[test]
    fn cache_patches_id_question_and_ttls() {
        let mut resp = Message::new(1, MessageType::Response, OpCode::Query);
        resp.add_query(Query::query(
            Name::from_ascii("www.example.com.").unwrap(),
            RecordType::A,
        ));
        resp.add_answer(Record::from_rdata(
            Name::from_ascii("www.example.com.").unwrap(),
            300,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let bytes = resp.to_vec().unwrap();
        let cache = ResponseCache::new(100);
        let raw = query("www.example.com.", RecordType::A, false);
        let q = parse_simple(&raw).unwrap();
        cache.insert(CacheKey::new(&q), &bytes);

        let raw2 = query("WWW.example.com.", RecordType::A, false);
        let q2 = parse_simple(&raw2).unwrap();
        let mut out = Vec::new();
        let (rcode, addrs) = cache.answer(&q2, &mut out).expect("hit");
        assert_eq!(rcode, 0);
        assert_eq!(
            addrs.iter().collect::<Vec<_>>(),
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.queries[0].name().to_ascii(), "WWW.example.com.");
        assert_eq!(m.answers[0].ttl, 300);
        // EDNS queries use their own entry.
        let raw3 = query("www.example.com.", RecordType::A, true);
        let q3 = parse_simple(&raw3).unwrap();
        assert!(cache.answer(&q3, &mut out).is_none());
    }
}
