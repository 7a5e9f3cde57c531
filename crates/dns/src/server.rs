//! The DNS server: UDP and TCP (two-byte length framing, RFC 1035 4.2.2) on the sockets it is
//! given, answers from [`answer`], and what the cluster does not own forwarded to the
//! upstream resolvers with a small cache, as CoreDNS's `forward . /etc/resolv.conf` and
//! `cache 30` do.
//!
//! Upstreams come from a resolv.conf's `nameserver` lines ([`upstreams_from_resolv_conf`]).
//! Loopback nameservers (systemd-resolved's 127.0.0.53) are kept, as CoreDNS's `forward`
//! keeps them: they work when this server shares the host's network namespace, and a server
//! inside a pod should be given the host's real list (`/run/systemd/resolve/resolv.conf`, as
//! kubelet's `--resolv-conf` is told). Upstreams are tried in turn, starting from the one after
//! the last one used, each for at most [`UPSTREAM_TIMEOUT`]; a query that came over TCP is
//! forwarded over TCP.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use crate::answer::{self, Answer, Transport};
use crate::records::Records;

/// How long one upstream has to answer before the next is tried (CoreDNS's read timeout).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a TCP connection may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Queries being answered at once over UDP; more are dropped (the client retries).
const UDP_IN_FLIGHT: usize = 1024;

/// Entries the forwarding cache holds (about CoreDNS's `cache` capacity).
const CACHE_CAPACITY: usize = 10_000;

/// The longest a positive upstream answer is cached (CoreDNS's `cache` default).
const CACHE_MAX_TTL: u32 = 3600;

/// The longest a negative upstream answer is cached (CoreDNS's `cache` default).
const CACHE_MAX_NEGATIVE_TTL: u32 = 1800;

/// The upstream resolvers of a resolv.conf: its `nameserver` addresses on port 53, in order,
/// without duplicates; loopback ones are kept (see the module's documentation). An IPv6
/// address with a zone (`fe80::1%eth0`) is skipped.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut upstreams = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        let upstream = SocketAddr::new(ip, 53);
        if !upstreams.contains(&upstream) {
            upstreams.push(upstream);
        }
    }
    upstreams
}

/// The upstream resolvers of the resolv.conf file at `path`.
pub fn read_upstreams(path: &Path) -> io::Result<Vec<SocketAddr>> {
    Ok(upstreams_from_resolv_conf(&std::fs::read_to_string(path)?))
}

/// Serves DNS on `udp` and `tcp` until dropped: answers from `records` (read for each query,
/// so a watch may update it meanwhile), the rest forwarded to `upstreams` (SERVFAIL when there
/// are none or none answers).
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    records: Arc<RwLock<Records>>,
    upstreams: Vec<SocketAddr>,
) {
    let server = Arc::new(Server {
        records,
        forwarder: Forwarder::new(upstreams),
    });
    tokio::join!(
        serve_udp(Arc::new(udp), server.clone()),
        serve_tcp(tcp, server)
    );
}

struct Server {
    records: Arc<RwLock<Records>>,
    forwarder: Forwarder,
}

async fn serve_udp(socket: Arc<UdpSocket>, server: Arc<Server>) {
    let in_flight = Arc::new(Semaphore::new(UDP_IN_FLIGHT));
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!("dns: receiving over UDP: {e}");
                continue;
            }
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            tracing::debug!("dns: too many queries in flight, dropping one from {peer}");
            continue;
        };
        let query = buf[..len].to_vec();
        let (socket, server) = (socket.clone(), server.clone());
        tokio::spawn(async move {
            if let Some(reply) = server.handle(&query, Transport::Udp).await
                && let Err(e) = socket.send_to(&reply, peer).await
            {
                tracing::debug!("dns: answering {peer} over UDP: {e}");
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, server: Arc<Server>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let server = server.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, &server).await {
                        tracing::debug!("dns: TCP connection from {peer}: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("dns: accepting a TCP connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers the queries of one TCP connection in turn until the client closes it or idles.
async fn serve_connection(mut stream: TcpStream, server: &Server) -> io::Result<()> {
    loop {
        let query = match tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await {
            Ok(Ok(query)) => query,
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        if let Some(reply) = server.handle(&query, Transport::Tcp).await {
            write_framed(&mut stream, &reply).await?;
        }
    }
}

async fn read_framed(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut message = vec![0u8; usize::from(len)];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "DNS message over 64 KiB"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

impl Server {
    /// The encoded reply to the encoded `query`, or `None` for what deserves no reply (a
    /// response, or bytes too short to hold a header).
    async fn handle(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let request = match Message::from_vec(query) {
            Ok(request) if request.metadata.message_type == MessageType::Query => request,
            Ok(_) => return None,
            Err(_) => {
                let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
                let reply = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return reply.to_vec().ok();
            }
        };
        let decided = {
            let records = self
                .records
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            answer::answer(&records, &request, transport)
        };
        let reply = match decided {
            Answer::Local(message) => message,
            Answer::Forward => self.forwarder.resolve(&request, transport).await,
            Answer::External { message, target } => {
                self.external(&request, message, target, transport).await
            }
        };
        let reply = match transport {
            Transport::Udp => answer::truncate(reply, answer::udp_limit(&request)),
            Transport::Tcp => reply,
        };
        match reply.to_vec() {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!("dns: encoding a reply: {e}");
                let id = request.metadata.id;
                Message::error_msg(id, OpCode::Query, ResponseCode::ServFail)
                    .to_vec()
                    .ok()
            }
        }
    }

    /// Completes a CNAME to outside the zone with the upstreams' answer for its target, as
    /// CoreDNS's `kubernetes` plugin does for ExternalName Services.
    async fn external(
        &self,
        request: &Message,
        mut message: Message,
        target: Name,
        transport: Transport,
    ) -> Message {
        let qtype = request.queries[0].query_type();
        let mut lookup = Message::new(request.metadata.id, MessageType::Query, OpCode::Query);
        lookup.metadata.recursion_desired = true;
        lookup.add_query(Query::query(target, qtype));
        lookup.edns = request.edns.clone();
        let upstream = self.forwarder.resolve(&lookup, transport).await;
        match upstream.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => {
                message.metadata.response_code = upstream.metadata.response_code;
                message.metadata.truncation |= upstream.metadata.truncation;
                message.add_answers(upstream.answers);
                message.add_authorities(upstream.authorities);
            }
            // The CNAME alone: the client may resolve the target itself.
            _ => {}
        }
        message
    }
}

/// Sends queries to the upstream resolvers and caches their answers.
struct Forwarder {
    upstreams: Vec<SocketAddr>,
    next: AtomicUsize,
    cache: Mutex<Cache>,
}

impl Forwarder {
    fn new(upstreams: Vec<SocketAddr>) -> Forwarder {
        Forwarder {
            upstreams,
            next: AtomicUsize::new(0),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The upstreams' response to `request` (from the cache when it holds one), with the
    /// request's ID and question; SERVFAIL when no upstream answers.
    async fn resolve(&self, request: &Message, transport: Transport) -> Message {
        let key = CacheKey::of(request);
        if let Some(key) = &key
            && let Some(cached) = self.lock_cache().get(key, Instant::now())
        {
            return adapt(cached, request);
        }
        let count = self.upstreams.len();
        let first = self.next.load(Ordering::Relaxed);
        for i in 0..count {
            let upstream = self.upstreams[(first + i) % count];
            match exchange(upstream, request, transport).await {
                Ok(response) => {
                    self.next.store((first + i) % count, Ordering::Relaxed);
                    if let Some(key) = key {
                        self.lock_cache().insert(key, &response, Instant::now());
                    }
                    return adapt(response, request);
                }
                Err(e) => tracing::debug!("dns: upstream {upstream}: {e}"),
            }
        }
        let mut failure = answer::response(request);
        failure.metadata.response_code = ResponseCode::ServFail;
        failure
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `response` given `request`'s ID and question (the upstream saw another ID, the cache
/// another spelling of the name).
fn adapt(mut response: Message, request: &Message) -> Message {
    response.metadata.id = request.metadata.id;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.queries = request.queries.clone();
    response
}

/// One query and its response with one upstream, under [`UPSTREAM_TIMEOUT`].
async fn exchange(
    upstream: SocketAddr,
    request: &Message,
    transport: Transport,
) -> io::Result<Message> {
    let mut query = request.clone();
    query.metadata.id = random_id();
    let bytes = query
        .to_vec()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let attempt = async {
        match transport {
            Transport::Udp => exchange_udp(upstream, &query, &bytes).await,
            Transport::Tcp => {
                let mut stream = TcpStream::connect(upstream).await?;
                write_framed(&mut stream, &bytes).await?;
                let reply = decode(&read_framed(&mut stream).await?)?;
                if answers(&reply, &query) {
                    Ok(reply)
                } else {
                    Err(mismatch())
                }
            }
        }
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, attempt)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))?
}

async fn exchange_udp(upstream: SocketAddr, query: &Message, bytes: &[u8]) -> io::Result<Message> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let len = socket.recv(&mut buf).await?;
        // Anything but the answer to this query (a late or forged datagram) is ignored.
        if let Ok(reply) = decode(&buf[..len])
            && answers(&reply, query)
        {
            return Ok(reply);
        }
    }
}

fn decode(bytes: &[u8]) -> io::Result<Message> {
    Message::from_vec(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// Whether `reply` is the response to `query`: same ID, same question.
fn answers(reply: &Message, query: &Message) -> bool {
    reply.metadata.message_type == MessageType::Response
        && reply.metadata.id == query.metadata.id
        && reply.queries.len() == query.queries.len()
        && reply
            .queries
            .iter()
            .zip(&query.queries)
            .all(|(a, b)| a.query_type() == b.query_type() && a.name().eq_ignore_root(b.name()))
}

fn mismatch() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "a reply to another query")
}

/// A query ID hard to guess (RFC 5452), from the standard library's random hasher keys.
fn random_id() -> u16 {
    let mut hasher = RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    hasher.write_u128(now.map_or(0, |d| d.as_nanos()));
    hasher.write_u64(std::process::id().into());
    u16::try_from(hasher.finish() & 0xffff).unwrap_or_default()
}

/// What a cached response answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    name: String,
    qtype: RecordType,
    class: DNSClass,
    dnssec_ok: bool,
    checking_disabled: bool,
}

impl CacheKey {
    fn of(request: &Message) -> Option<CacheKey> {
        let [query] = request.queries.as_slice() else {
            return None;
        };
        Some(CacheKey {
            name: query.name().to_lowercase().to_ascii(),
            qtype: query.query_type(),
            class: query.query_class(),
            dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            checking_disabled: request.metadata.checking_disabled,
        })
    }
}

struct Cached {
    message: Message,
    stored: Instant,
    ttl: u32,
}

/// Upstream responses for as long as their records live: the smallest TTL of the answer and
/// authority sections, capped at an hour (half an hour for NXDOMAIN and NODATA). Truncated
/// responses, errors and responses without records are not kept.
#[derive(Default)]
struct Cache {
    entries: HashMap<CacheKey, Cached>,
}

impl Cache {
    /// The cached response, its TTLs lowered by the time it has been kept.
    fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Message> {
        let cached = self.entries.get(key)?;
        let age = u32::try_from(now.saturating_duration_since(cached.stored).as_secs())
            .unwrap_or(u32::MAX);
        if age >= cached.ttl {
            self.entries.remove(key);
            return None;
        }
        let mut message = cached.message.clone();
        for record in message
            .answers
            .iter_mut()
            .chain(message.authorities.iter_mut())
            .chain(message.additionals.iter_mut())
        {
            record.ttl = record.ttl.saturating_sub(age);
        }
        Some(message)
    }

    fn insert(&mut self, key: CacheKey, message: &Message, now: Instant) {
        let code = message.metadata.response_code;
        if message.metadata.truncation
            || !matches!(code, ResponseCode::NoError | ResponseCode::NXDomain)
        {
            return;
        }
        let negative = code == ResponseCode::NXDomain || message.answers.is_empty();
        let cap = if negative {
            CACHE_MAX_NEGATIVE_TTL
        } else {
            CACHE_MAX_TTL
        };
        let Some(ttl) = message
            .answers
            .iter()
            .chain(&message.authorities)
            .map(|r| r.ttl)
            .min()
        else {
            return;
        };
        let ttl = ttl.min(cap);
        if ttl == 0 {
            return;
        }
        if self.entries.len() >= CACHE_CAPACITY {
            self.entries.retain(|_, c| {
                now.saturating_duration_since(c.stored).as_secs() < u64::from(c.ttl)
            });
        }
        if self.entries.len() >= CACHE_CAPACITY
            && let Some(victim) = self.entries.keys().next().cloned()
        {
            self.entries.remove(&victim);
        }
        self.entries.insert(
            key,
            Cached {
                message: message.clone(),
                stored: now,
                ttl,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::{service, slice};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver  fd00::53 # v6\n\
                    nameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n\
                    ; nameserver 10.9.9.9\nnameserver\noptions edns0 trust-ad\n";
        let upstreams: Vec<String> = upstreams_from_resolv_conf(text)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(upstreams, ["10.0.0.2:53", "[fd00::53]:53", "127.0.0.53:53"]);
        assert!(upstreams_from_resolv_conf("").is_empty());
    }

    fn response_with(name: &str, ttl: u32, code: ResponseCode) -> Message {
        let mut message = Message::response(1, OpCode::Query);
        let name = Name::from_ascii(name).unwrap();
        message.add_query(Query::query(name.clone(), RecordType::A));
        message.metadata.response_code = code;
        if code == ResponseCode::NoError {
            message.add_answer(Record::from_rdata(
                name,
                ttl,
                RData::A(A::new(192, 0, 2, 1)),
            ));
        }
        message
    }

    #[test]
    fn cache_keeps_answers_for_their_ttl() {
        let mut cache = Cache::default();
        let start = Instant::now();
        let response = response_with("example.com.", 60, ResponseCode::NoError);
        let key = CacheKey::of(&response).unwrap();
        cache.insert(key.clone(), &response, start);
        let hit = cache.get(&key, start + Duration::from_secs(20)).unwrap();
        assert_eq!(hit.answers[0].ttl, 40);
        assert!(cache.get(&key, start + Duration::from_secs(60)).is_none());
        assert!(cache.entries.is_empty());

        // Errors, and NXDOMAIN without an SOA to say for how long, are not kept.
        for code in [ResponseCode::ServFail, ResponseCode::NXDomain] {
            let response = response_with("example.org.", 60, code);
            cache.insert(CacheKey::of(&response).unwrap(), &response, start);
        }
        assert!(cache.entries.is_empty());
    }

    /// A resolver on 127.0.0.1 answering every A query with 192.0.2.1 (TTL 60), counting
    /// the queries it gets.
    async fn fake_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (len, peer) = socket.recv_from(&mut buf).await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let query = Message::from_vec(&buf[..len]).unwrap();
                let mut reply = answer::response(&query);
                let name = query.queries[0].name().clone();
                reply.add_answer(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, 1))));
                socket
                    .send_to(&reply.to_vec().unwrap(), peer)
                    .await
                    .unwrap();
            }
        });
        (addr, count)
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut message = Message::new(4242, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        message.to_vec().unwrap()
    }

    async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&query(name, qtype), server).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let len = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
            .await
            .expect("an answer over UDP")
            .unwrap();
        let reply = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(reply.metadata.id, 4242);
        reply
    }

    async fn ask_tcp(stream: &mut TcpStream, name: &str, qtype: RecordType) -> Message {
        write_framed(stream, &query(name, qtype)).await.unwrap();
        let bytes = tokio::time::timeout(Duration::from_secs(10), read_framed(stream))
            .await
            .expect("an answer over TCP")
            .unwrap();
        Message::from_vec(&bytes).unwrap()
    }

    fn addresses(message: &Message) -> Vec<String> {
        message.answers.iter().map(|r| r.data.to_string()).collect()
    }

    async fn start(records: Records, upstreams: Vec<SocketAddr>) -> (SocketAddr, SocketAddr) {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        tokio::spawn(serve(udp, tcp, Arc::new(RwLock::new(records)), upstreams));
        addrs
    }

    #[tokio::test]
    async fn serves_udp_and_tcp_and_forwards() {
        let mut records = Records::default();
        records.apply_service(&service(
            "ns",
            "web",
            json!({"clusterIPs": ["10.0.0.1"], "ports": [{"name": "http", "port": 80}]}),
        ));
        records.apply_service(&service(
            "ns",
            "ext",
            json!({"type": "ExternalName", "externalName": "example.org"}),
        ));
        records.apply_service(&service("ns", "big", json!({"clusterIP": "None"})));
        let endpoints: Vec<_> = (0..100)
            .map(|i| json!({"addresses": [format!("10.3.0.{i}")]}))
            .collect();
        records.apply_slice(&slice("ns", "big-1", "big", json!(endpoints), json!([])));
        let (upstream, upstream_queries) = fake_upstream().await;
        let (udp, tcp) = start(records, vec![upstream]).await;

        let reply = ask_udp(udp, "web.ns.svc.cluster.local.", RecordType::A).await;
        assert_eq!(addresses(&reply), ["10.0.0.1"]);
        assert!(reply.metadata.authoritative);

        // Too big for UDP: truncated, then whole over TCP (two queries on one connection).
        let reply = ask_udp(udp, "big.ns.svc.cluster.local.", RecordType::A).await;
        assert!(reply.metadata.truncation);
        let mut stream = TcpStream::connect(tcp).await.unwrap();
        let reply = ask_tcp(&mut stream, "big.ns.svc.cluster.local.", RecordType::A).await;
        assert!(!reply.metadata.truncation);
        assert_eq!(reply.answers.len(), 100);
        let reply = ask_tcp(&mut stream, "nope.ns.svc.cluster.local.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);

        // Outside the zone: forwarded once, then from the cache.
        for _ in 0..2 {
            let reply = ask_udp(udp, "Example.COM.", RecordType::A).await;
            assert_eq!(addresses(&reply), ["192.0.2.1"]);
            assert_eq!(reply.queries[0].name().to_ascii(), "Example.COM.");
        }
        assert_eq!(upstream_queries.load(Ordering::SeqCst), 1);

        // An ExternalName: the CNAME, then the target's addresses from upstream.
        let reply = ask_udp(udp, "ext.ns.svc.cluster.local.", RecordType::A).await;
        assert_eq!(addresses(&reply), ["example.org.", "192.0.2.1"]);
        assert_eq!(upstream_queries.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn servfail_without_upstreams() {
        let (udp, _) = start(Records::default(), Vec::new()).await;
        let reply = ask_udp(udp, "example.com.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        let reply = ask_udp(udp, "x.cluster.local.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    }
}
