//! Test harness: an in-process authoritative upstream, a raw DNS client, and a server starter.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SOA, TXT};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use iocdns::app::RunningServer;
use iocdns::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Authoritative data for `example.test.` served by the stub upstream.
#[derive(Clone, Default)]
pub struct Zone {
    records: HashMap<(LowerName, RecordType), Vec<Record>>,
    names: std::collections::HashSet<LowerName>,
}

pub const ZONE: &str = "example.test.";

impl Zone {
    pub fn standard() -> Self {
        let mut z = Zone::default();
        z.add(
            "www.example.test.",
            300,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 10))),
        );
        z.add(
            "www.example.test.",
            300,
            RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10))),
        );
        z.add(
            "alias.example.test.",
            120,
            RData::CNAME(CNAME(n("www.example.test."))),
        );
        z.add(
            "v4only.example.test.",
            60,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 20))),
        );
        z.add(
            "mail.example.test.",
            300,
            RData::MX(MX::new(10, n("mx.example.test."))),
        );
        // Names that the test feeds list as IOCs: the upstream resolves them, so a forwarded
        // (log / allow) answer is distinguishable from a synthesized one.
        for name in [
            "evil.example.test.",
            "www.evil.example.test.",
            "good.evil.example.test.",
            "logged.example.test.",
            "allowed.example.test.",
            "ivorycourtyard.top.",
        ] {
            z.add(name, 300, RData::A(A(Ipv4Addr::new(198, 51, 100, 7))));
            z.add(name, 300, RData::TXT(TXT::new(vec!["upstream".into()])));
            z.add(name, 300, RData::MX(MX::new(5, n("mx.example.test."))));
        }
        z
    }

    fn add(&mut self, name: &str, ttl: u32, data: RData) {
        let name = n(name);
        let rt = data.record_type();
        let lower = LowerName::from(&name);
        self.names.insert(lower.clone());
        self.records
            .entry((lower, rt))
            .or_default()
            .push(Record::from_rdata(name, ttl, data));
    }

    fn soa() -> Record {
        Record::from_rdata(
            n(ZONE),
            3600,
            RData::SOA(SOA::new(
                n("ns.example.test."),
                n("hostmaster.example.test."),
                1,
                3600,
                600,
                86400,
                60,
            )),
        )
    }
}

pub fn n(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

struct StubUpstream {
    zone: Arc<Zone>,
}

#[async_trait::async_trait]
impl RequestHandler for StubUpstream {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut rh: R,
    ) -> ResponseInfo {
        let info = request.request_info().expect("one query");
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = true;
        let qname = info.query.name().clone();
        let qtype = info.query.query_type();
        let mut answers = Vec::new();
        let mut target = qname.clone();
        // Follow CNAMEs inside the zone.
        for _ in 0..8 {
            if qtype != RecordType::CNAME
                && let Some(c) = self.zone.records.get(&(target.clone(), RecordType::CNAME))
            {
                answers.extend(c.iter().cloned());
                if let RData::CNAME(CNAME(next)) = &c[0].data {
                    target = LowerName::from(next);
                    continue;
                }
            }
            if let Some(rs) = self.zone.records.get(&(target.clone(), qtype)) {
                answers.extend(rs.iter().cloned());
            }
            break;
        }
        let mut authorities = Vec::new();
        if answers.is_empty() {
            authorities.push(Zone::soa());
            if !self.zone.names.contains(&target) {
                meta.response_code = ResponseCode::NXDomain;
            }
        }
        // Like a cookie-aware server: answer EDNS with EDNS and echo the request's options.
        let echo = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            for (_, opt) in req.options().options.iter() {
                e.options_mut().insert(opt.clone());
            }
            e
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &echo {
            builder.edns(e);
        }
        let response = builder.build(meta, answers.iter(), authorities.iter(), [], []);
        rh.send_response(response).await.expect("send")
    }
}

/// A running stub upstream; dropped = stopped.
pub struct Upstream {
    pub addr: SocketAddr,
    _server: Server<StubUpstream>,
}

pub async fn start_upstream() -> Upstream {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let mut server = Server::new(StubUpstream {
        zone: Arc::new(Zone::standard()),
    });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 65535);
    Upstream {
        addr,
        _server: server,
    }
}

/// An address where nothing answers (bound and immediately released).
pub fn dead_upstream() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// A temporary directory with feeds and a config, and the server started from it.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub server: Option<RunningServer>,
}

impl TestServer {
    /// The listener address for `proto`.
    pub fn udp_for(&self, proto: Proto) -> SocketAddr {
        match proto {
            Proto::Udp => self.udp,
            Proto::Tcp => self.tcp,
        }
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.path().join("events.ndjson")
    }

    /// Stops the server (flushing events) and returns every event line parsed as JSON.
    pub async fn stop_and_read_events(&mut self) -> Vec<serde_json::Value> {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
        read_events(&self.events_path())
    }
}

pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
        .collect()
}

/// Default feed used by most tests (ThreatFox CSV with metadata) and an RPZ-free domains list.
pub const TEST_FEED: &str = r#"# "first_seen_utc","ioc_id","ioc_value","ioc_type","threat_type","fk_malware","malware_alias","malware_printable","last_seen_utc","confidence_level","is_compromised","reference","tags","anonymous","reporter"
"2026-06-19 00:00:00", "1500001", "evil.example.test", "domain", "botnet_cc", "win.examplerat", "None", "ExampleRAT", "", "90", "False", "None", "c2", "0", "tester"
"2026-06-19 00:00:00", "1500002", "ivorycourtyard.top", "domain", "payload_delivery", "js.smartapesg", "None", "SmartApeSG", "", "100", "False", "https://example.org/report", "SmartApeSG", "0", "tester"
"2026-06-19 00:00:00", "1500003", "allowed.example.test", "domain", "payload_delivery", "unknown", "None", "Unknown malware", "", "50", "False", "None", "None", "0", "tester"
"#;

/// Starts iocdns with `extra_toml` appended to a base config pointing at `upstream`.
pub async fn start_server(
    upstream: SocketAddr,
    feeds: &[(&str, &str, &str)],
    extra_toml: &str,
) -> TestServer {
    start_server_with(&[upstream], feeds, extra_toml).await
}

/// Like [`start_server`] with several upstream servers, in order.
pub async fn start_server_with(
    upstreams: &[SocketAddr],
    feeds: &[(&str, &str, &str)],
    extra_toml: &str,
) -> TestServer {
    let upstream = upstreams
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let dir = tempfile::tempdir().unwrap();
    let mut toml = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
allow = ["127.0.0.1/32", "::1/128"]
computer = "test-resolver"

[upstream]
servers = [{upstream}]
timeout_ms = 1000

[events]
path = "events.ndjson"
queries = "all"
"#
    );
    for (name, file, content) in feeds {
        std::fs::write(dir.path().join(file), content).unwrap();
        toml.push_str(&format!(
            "\n[[feeds]]\nname = \"{name}\"\npath = \"{file}\"\n"
        ));
    }
    toml.push_str(extra_toml);
    let cfg_path = dir.path().join("iocdns.toml");
    std::fs::write(&cfg_path, &toml).unwrap();
    let cfg = Config::load(&cfg_path).unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
    let server = iocdns::app::start(cfg).await.expect("server starts");
    TestServer {
        udp: server.udp_addrs[0],
        tcp: server.tcp_addrs[0],
        dir,
        server: Some(server),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

pub fn request(name: &str, qtype: RecordType) -> Message {
    let mut msg = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    let mut q = Query::query(n(name), qtype);
    q.set_query_class(DNSClass::IN);
    msg.add_query(q);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns);
    msg
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(4242);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Sends a query and waits (bounded) for the answer.
pub async fn query(server: SocketAddr, proto: Proto, name: &str, qtype: RecordType) -> Message {
    query_from(server, proto, name, qtype, IpAddr::V4(Ipv4Addr::LOCALHOST))
        .await
        .expect("an answer")
}

/// Sends `msg` from a chosen local address; `None` when no answer came within 3 s.
pub async fn exchange(
    server: SocketAddr,
    proto: Proto,
    msg: &Message,
    src: IpAddr,
) -> Option<Message> {
    let bytes = msg.to_vec().unwrap();
    let fut = async {
        match proto {
            Proto::Udp => {
                let sock = UdpSocket::bind(SocketAddr::new(src, 0)).await.unwrap();
                sock.send_to(&bytes, server).await.unwrap();
                let mut buf = vec![0u8; 65535];
                let (len, _) = sock.recv_from(&mut buf).await.unwrap();
                Message::from_vec(&buf[..len]).unwrap()
            }
            Proto::Tcp => {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.bind(SocketAddr::new(src, 0)).unwrap();
                let mut stream: TcpStream = sock.connect(server).await.unwrap();
                stream
                    .write_all(&(bytes.len() as u16).to_be_bytes())
                    .await
                    .unwrap();
                stream.write_all(&bytes).await.unwrap();
                let len = stream.read_u16().await.unwrap() as usize;
                let mut buf = vec![0u8; len];
                stream.read_exact(&mut buf).await.unwrap();
                Message::from_vec(&buf).unwrap()
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), fut).await.ok()
}

pub async fn query_from(
    server: SocketAddr,
    proto: Proto,
    name: &str,
    qtype: RecordType,
    src: IpAddr,
) -> Option<Message> {
    let msg = request(name, qtype);
    let resp = exchange(server, proto, &msg, src).await?;
    assert_eq!(resp.metadata.id, msg.metadata.id, "response id");
    Some(resp)
}

/// Answer addresses as strings.
pub fn addrs(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The Extended DNS Error (info-code, text) of a response, if any.
pub fn ede(m: &Message) -> Option<(u16, String)> {
    let edns = m.edns.as_ref()?;
    edns.options()
        .options
        .iter()
        .find_map(|(_, opt)| match opt {
            EdnsOption::Unknown(15, data) if data.len() >= 2 => Some((
                u16::from_be_bytes([data[0], data[1]]),
                String::from_utf8_lossy(&data[2..]).into_owned(),
            )),
            _ => None,
        })
}
