//! [`IocHandler`]: hickory-server `RequestHandler` that applies the IOC policy to each query.
//!
//! Per query: one lock-free snapshot load of the policy, an allocation-free suffix lookup, then
//! either a synthesized answer or a forward upstream (bounded by a semaphore and the upstream
//! timeout). The answer is sent first, then a [`QueryRecord`] is queued for the event writer with
//! `try_send`: the DNS path never waits on the writer or on disk.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, LowerName, Name, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use ipnet::IpNet;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::response::{
    EDE_BLOCKED, EDE_NO_REACHABLE_AUTHORITY, EDE_OTHER, EDE_PROHIBITED, block_reason, ede,
    record_ip, sinkhole_record,
};
use super::upstream::{Upstream, UpstreamFailure};
use crate::config::{Action, UntilReady};
use crate::events::{AnswerAddrs, EventSink, NameBuf, PolicyAction, QueryRecord};
use crate::metrics::Metrics;
use crate::policy::{Match, PolicySnapshot, SharedPolicy, Verdict, suffix_of};

tokio::task_local! {
    /// Set by the handler when the answer it is about to send is upstream data that the
    /// UDP fast path may cache (forwarded, NOERROR/NXDOMAIN, no EDE). Scoped by the listener.
    pub static CACHEABLE: std::cell::Cell<bool>;
}

/// Client networks allowed to query (no open resolver). Swapped on config reload.
#[derive(Clone, Debug)]
pub struct ClientAcl(Arc<ArcSwap<Vec<IpNet>>>);

impl ClientAcl {
    /// An ACL allowing `nets`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(nets)))
    }

    /// True when `ip` is inside one of the networks (IPv4-mapped IPv6 counts as IPv4).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.load().iter().any(|n| n.contains(&ip))
    }

    /// Replaces the networks.
    pub fn set(&self, nets: Vec<IpNet>) {
        self.0.store(Arc::new(nets));
    }
}

/// The request handler. Clone is cheap (handles only).
#[derive(Clone, Debug)]
pub struct IocHandler {
    policy: SharedPolicy,
    upstream: Upstream,
    events: EventSink,
    clients: ClientAcl,
    in_flight: Arc<Semaphore>,
    metrics: Metrics,
    until_ready: UntilReady,
}

/// What we answer, before it is encoded.
struct Outcome {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    ede: Option<EdnsOption>,
    action: PolicyAction,
    hit: Option<(Arc<PolicySnapshot>, Match)>,
    /// `false` for `drop`: send nothing.
    send: bool,
}

impl Outcome {
    fn rcode(rcode: ResponseCode, action: PolicyAction) -> Self {
        Self {
            rcode,
            answers: Vec::new(),
            authorities: Vec::new(),
            ede: None,
            action,
            hit: None,
            send: true,
        }
    }
}

impl IocHandler {
    /// Wires a handler from its parts. `max_in_flight` bounds concurrent upstream forwards;
    /// beyond it queries get SERVFAIL instead of queueing without limit.
    pub fn new(
        policy: SharedPolicy,
        upstream: Upstream,
        events: EventSink,
        clients: ClientAcl,
        max_in_flight: usize,
        metrics: Metrics,
        until_ready: UntilReady,
    ) -> Self {
        Self {
            policy,
            upstream,
            events,
            clients,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            metrics,
            until_ready,
        }
    }

    async fn decide_and_answer(&self, name: &LowerName, qtype: RecordType) -> Outcome {
        let mut buf = [0u8; 256];
        let qname = dotted(name, &mut buf);
        let policy = self.policy.current();
        if !policy.ready {
            return match self.until_ready {
                UntilReady::Forward => self.forward(name, qtype, PolicyAction::Forward).await,
                UntilReady::Servfail => {
                    let mut out = Outcome::rcode(ResponseCode::ServFail, PolicyAction::Forward);
                    out.ede = Some(ede(EDE_OTHER, "iocdns: policy loading"));
                    out
                }
            };
        }
        match policy.decide(qname) {
            Verdict::Forward => self.forward(name, qtype, PolicyAction::Forward).await,
            Verdict::Allowlisted => self.forward(name, qtype, PolicyAction::Allow).await,
            Verdict::Matched(m) => {
                let action = policy.action_of(&m);
                self.metrics.ioc_hit(&policy, &m, action);
                if action == Action::Log {
                    let mut out = self
                        .forward(name, qtype, PolicyAction::Ioc(Action::Log))
                        .await;
                    out.hit = Some((policy, m));
                    return out;
                }
                blocked(policy, m, action, name, qtype, qname)
            }
        }
    }

    async fn forward(&self, name: &LowerName, qtype: RecordType, action: PolicyAction) -> Outcome {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            self.metrics.upstream_error("overload");
            let mut out = Outcome::rcode(ResponseCode::ServFail, action);
            out.ede = Some(ede(
                EDE_NO_REACHABLE_AUTHORITY,
                "iocdns: too many queries in flight",
            ));
            return out;
        };
        let started = tokio::time::Instant::now();
        let mut fqdn: Name = name.into();
        fqdn.set_fqdn(true);
        let result = self.upstream.resolve(fqdn, qtype).await;
        self.metrics.upstream_latency(started.elapsed());
        match result {
            Ok(ans) => Outcome {
                rcode: ans.rcode,
                answers: ans.answers,
                authorities: ans.authorities,
                ede: None,
                action,
                hit: None,
                send: true,
            },
            Err(failure) => {
                let reason = match failure {
                    UpstreamFailure::Timeout => "timeout",
                    UpstreamFailure::Error => "error",
                };
                self.metrics.upstream_error(reason);
                debug!(query = %name, %qtype, reason, "upstream failed");
                let mut out = Outcome::rcode(ResponseCode::ServFail, action);
                out.ede = Some(ede(
                    EDE_NO_REACHABLE_AUTHORITY,
                    &format!("iocdns: upstream {reason}"),
                ));
                out
            }
        }
    }
}

/// The answer for a blocking action.
fn blocked(
    policy: Arc<PolicySnapshot>,
    m: Match,
    action: Action,
    name: &LowerName,
    qtype: RecordType,
    qname: &[u8],
) -> Outcome {
    let rule = *policy.rule(m.rule);
    let mut text = Vec::with_capacity(128);
    block_reason(&mut text, &policy, &m, qname);
    let text = String::from_utf8_lossy(&text);
    let mut out = Outcome::rcode(ResponseCode::NoError, PolicyAction::Ioc(action));
    out.ede = Some(ede(EDE_BLOCKED, &text));
    match action {
        Action::Sinkhole => {
            let (v4, v6) = policy.sinkhole_addrs(&rule);
            let owner: Name = name.into();
            if let Some(r) = sinkhole_record(&owner, qtype, v4, v6, policy.settings.ttl) {
                out.answers.push(r);
            }
        }
        Action::Nodata | Action::Log => {}
        Action::Nxdomain => out.rcode = ResponseCode::NXDomain,
        Action::Refused => out.rcode = ResponseCode::Refused,
        Action::Drop => out.send = false,
    }
    debug!(
        query = %name,
        %qtype,
        action = action.as_str(),
        ioc.feed = %policy.feeds[rule.feed as usize].name,
        ioc.value = %String::from_utf8_lossy(suffix_of(qname, m.suffix_labels)),
        "ioc matched"
    );
    out.hit = Some((policy, m));
    out
}

/// Writes the name as dotted lower-case ASCII (no trailing dot) into `buf`.
fn dotted<'b>(name: &LowerName, buf: &'b mut [u8; 256]) -> &'b [u8] {
    let mut len = 0usize;
    for label in name.iter() {
        if len != 0 {
            if len >= buf.len() {
                break;
            }
            buf[len] = b'.';
            len += 1;
        }
        let take = label.len().min(buf.len() - len);
        for (d, s) in buf[len..len + take].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        len += take;
    }
    &buf[..len]
}

#[async_trait::async_trait]
impl RequestHandler for IocHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;

        // EDNS: answer with EDNS when asked with it (RFC 6891), and only then carry EDE.
        let mut resp_edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e.set_version(0);
            e
        });
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            meta.response_code = ResponseCode::BADVERS;
            return send(request, meta, resp_edns.as_ref(), &[], &[], response_handle).await;
        }

        if request.metadata.op_code != OpCode::Query {
            meta.response_code = ResponseCode::NotImp;
            return send(request, meta, resp_edns.as_ref(), &[], &[], response_handle).await;
        }
        let info = match request.request_info() {
            Ok(info) => info,
            Err(_) => {
                meta.response_code = ResponseCode::FormErr;
                return send(request, meta, resp_edns.as_ref(), &[], &[], response_handle).await;
            }
        };
        let src = info.src;
        let name = info.query.name();
        let qtype = info.query.query_type();
        self.metrics.query(qtype);

        let outcome = if !self.clients.allows(src.ip()) {
            let mut out = Outcome::rcode(ResponseCode::Refused, PolicyAction::Denied);
            out.ede = Some(ede(EDE_PROHIBITED, "iocdns: client not in server.allow"));
            out
        } else if info.query.query_class() != DNSClass::IN {
            Outcome::rcode(ResponseCode::NotImp, PolicyAction::Forward)
        } else {
            self.decide_and_answer(name, qtype).await
        };
        self.metrics.action(outcome.action);

        if let (Some(opt), Some(edns)) = (outcome.ede.clone(), resp_edns.as_mut()) {
            edns.options_mut().insert(opt);
        }
        meta.response_code = outcome.rcode;
        let cacheable = matches!(
            outcome.action,
            PolicyAction::Forward | PolicyAction::Allow | PolicyAction::Ioc(Action::Log)
        ) && matches!(
            outcome.rcode,
            ResponseCode::NoError | ResponseCode::NXDomain
        ) && outcome.ede.is_none();
        let _ = CACHEABLE.try_with(|c| c.set(cacheable));
        let info_out = if outcome.send {
            send(
                request,
                meta,
                resp_edns.as_ref(),
                &outcome.answers,
                &outcome.authorities,
                response_handle,
            )
            .await
        } else {
            // `drop`: no answer at all.
            let _ = &mut response_handle;
            ResponseInfo::from(Header {
                metadata: meta,
                counts: HeaderCounts::default(),
            })
        };

        if self.events.wants(outcome.action) {
            let mut answers = AnswerAddrs::default();
            for ip in outcome.answers.iter().filter_map(record_ip) {
                answers.push(ip);
            }
            let mut buf = [0u8; 256];
            self.events.emit(QueryRecord {
                time: SystemTime::now(),
                client: src.ip(),
                name: NameBuf::new(dotted(name, &mut buf)),
                qtype: u16::from(qtype),
                rcode: outcome.send.then_some(u16::from(outcome.rcode)),
                answers,
                action: outcome.action,
                hit: outcome.hit,
            });
        }
        info_out
    }
}

async fn send<R: ResponseHandler>(
    request: &Request,
    meta: Metadata,
    edns: Option<&Edns>,
    answers: &[Record],
    authorities: &[Record],
    mut response_handle: R,
) -> ResponseInfo {
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(e) = edns {
        builder.edns(e);
    }
    let response = builder.build(meta, answers.iter(), authorities.iter(), [], []);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            warn!(error = %e, "failed to send response");
            ResponseInfo::from(Header {
                metadata: meta,
                counts: HeaderCounts::default(),
            })
        }
    }
}
