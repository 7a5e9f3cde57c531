//! Answering one DNS query from [`Records`], as CoreDNS's `kubernetes` plugin does with the
//! default Corefile (`kubernetes cluster.local in-addr.arpa ip6.arpa { pods insecure;
//! fallthrough in-addr.arpa ip6.arpa }`, `ttl 5`).
//!
//! Names in the zone (`cluster.local`):
//! - `<svc>.<ns>.svc`: the cluster IPs (A, AAAA), a headless Service's published endpoint
//!   addresses, an ExternalName Service's CNAME; SRV for every port.
//! - `_<port>._<proto>.<svc>.<ns>.svc`: SRV for that named port, with the targets' addresses
//!   in the additional section.
//! - `<endpoint>.<svc>.<ns>.svc`: an endpoint by its `hostname` (a StatefulSet's pod, or any
//!   pod with `hostname` and `subdomain`) or its address with dashes (`10-1-2-3`).
//! - `<dashed-ip>.<ns>.pod`: the address itself (`pods insecure`).
//! - `dns-version`: TXT `1.1.0`, the schema version of the Kubernetes DNS specification.
//! - the apex: SOA and NS.
//!
//! A missing name is NXDOMAIN, an existing one without records of the asked type is NODATA;
//! both carry the zone's SOA in the authority section. PTR queries under `in-addr.arpa` and
//! `ip6.arpa` are answered for Service cluster IPs and endpoint addresses; the others, and every
//! name outside the zone, are [`Answer::Forward`]ed.

use std::collections::BTreeSet;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::records::{PodMode, Port, Records, ServiceKind, endpoint_label};

/// The TTL of every answer, CoreDNS's default (`ttl 5`).
pub const TTL: u32 = 5;

/// The schema version `dns-version.<zone>` answers (the Kubernetes DNS specification's).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// The TTL of `dns-version.<zone>`'s TXT record, CoreDNS's.
const VERSION_TTL: u32 = 28800;

/// The payload size announced in the responses' EDNS record (DNS flag day 2020's default).
const EDNS_PAYLOAD: u16 = 1232;

/// How many CNAMEs inside the zone are followed for one answer.
const MAX_CHAIN: usize = 8;

/// How the query came in: responses over UDP are truncated to what the client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: at most 512 bytes, or the client's EDNS payload size.
    Udp,
    /// TCP: no limit but the message's.
    Tcp,
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The response, complete.
    Local(Message),
    /// The name is not the cluster's (or is a reverse name the cluster has no record for):
    /// send the query to the upstream resolvers.
    Forward,
    /// The response starts with a CNAME to a name outside the zone (an ExternalName
    /// Service): resolve `target` for the same type upstream and append its answers.
    External {
        /// The response so far: the CNAME chain, NOERROR.
        message: Message,
        /// The name to resolve upstream.
        target: Name,
    },
}

/// What a name in the zone holds.
#[derive(Debug)]
enum Node {
    /// NXDOMAIN.
    Missing,
    /// Exists, with no records (`svc.<zone>`, `<ns>.svc.<zone>`).
    Empty,
    Apex,
    Version,
    /// Addresses, each with a port and the name SRV records point at.
    Entries(Vec<Entry>),
    Cname(Name),
}

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    port: Option<u16>,
    target: Name,
}

/// Answers `request`, a query message, from `records`.
pub fn answer(records: &Records, request: &Message, transport: Transport) -> Answer {
    let mut message = response(request);
    if request.metadata.message_type != MessageType::Query || request.queries.len() != 1 {
        message.metadata.response_code = ResponseCode::FormErr;
        return Answer::Local(message);
    }
    if request.metadata.op_code != OpCode::Query {
        message.metadata.response_code = ResponseCode::NotImp;
        return Answer::Local(message);
    }
    let query = &request.queries[0];
    let qname = query.name().to_lowercase();
    if !records.zone().zone_of(&qname) {
        return match reverse(records, request, message) {
            Some(message) => Answer::Local(limit(message, request, transport)),
            None => Answer::Forward,
        };
    }
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
        message.metadata.response_code = ResponseCode::Refused;
        return Answer::Local(message);
    }
    message.metadata.authoritative = true;
    let qtype = query.query_type();
    let mut owner = query.name().clone();
    for _ in 0..MAX_CHAIN {
        let name = owner.to_lowercase();
        if !records.zone().zone_of(&name) {
            return Answer::External {
                message,
                target: owner,
            };
        }
        match lookup(records, &name) {
            Node::Missing => {
                message.metadata.response_code = ResponseCode::NXDomain;
                message.add_authority(soa(records));
                break;
            }
            Node::Cname(target) if !matches!(qtype, RecordType::CNAME | RecordType::ANY) => {
                message.add_answer(record(&owner, TTL, RData::CNAME(CNAME(target.clone()))));
                owner = target;
            }
            node => {
                let (answers, additionals) = rrs(records, &node, &owner, qtype);
                if answers.is_empty() {
                    message.add_authority(soa(records));
                }
                message.add_answers(answers);
                message.add_additionals(additionals);
                break;
            }
        }
    }
    Answer::Local(limit(message, request, transport))
}

/// An empty response to `request`: its ID, question, RD and CD, recursion available, and an
/// EDNS record when the request had one.
pub fn response(request: &Message) -> Message {
    let mut message = Message::response(request.metadata.id, request.metadata.op_code);
    message.metadata.recursion_desired = request.metadata.recursion_desired;
    message.metadata.checking_disabled = request.metadata.checking_disabled;
    message.metadata.recursion_available = true;
    message.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        message.set_edns(edns);
    }
    message
}

/// The largest UDP response `request`'s client accepts: 512 bytes, or its EDNS payload size.
pub fn udp_limit(request: &Message) -> usize {
    usize::from(request.max_payload())
}

fn limit(message: Message, request: &Message, transport: Transport) -> Message {
    match transport {
        Transport::Udp => truncate(message, udp_limit(request)),
        Transport::Tcp => message,
    }
}

/// `message` cut to at most `limit` bytes encoded: the answer, authority and additional
/// records are kept in that order while they fit, and TC is set when any had to go, so the
/// client asks again over TCP (what CoreDNS does, after miekg/dns's `Truncate`).
pub fn truncate(message: Message, limit: usize) -> Message {
    if encoded_len(&message) <= limit {
        return message;
    }
    let mut out = message.clone();
    out.answers.clear();
    out.authorities.clear();
    out.additionals.clear();
    let sections = [message.answers, message.authorities, message.additionals];
    'sections: for (i, section) in sections.into_iter().enumerate() {
        for record in section {
            let target = match i {
                0 => &mut out.answers,
                1 => &mut out.authorities,
                _ => &mut out.additionals,
            };
            target.push(record);
            if encoded_len(&out) > limit {
                match i {
                    0 => out.answers.pop(),
                    1 => out.authorities.pop(),
                    _ => out.additionals.pop(),
                };
                break 'sections;
            }
        }
    }
    out.metadata.truncation = true;
    out
}

fn encoded_len(message: &Message) -> usize {
    message.to_vec().map_or(usize::MAX, |bytes| bytes.len())
}

/// The zone's SOA, as CoreDNS's: `ns.dns.<zone> hostmaster.<zone> <serial> 7200 1800 86400 5`.
pub fn soa(records: &Records) -> Record {
    let zone = records.zone();
    let soa = SOA::new(
        nameserver(zone).expect("Records::new checks the zone's SOA names"),
        hostmaster(zone).expect("Records::new checks the zone's SOA names"),
        records.serial(),
        7200,
        1800,
        86400,
        TTL,
    );
    record(zone, TTL, RData::SOA(soa))
}

/// `labels` (left to right) prepended to `zone`; `None` when a label is invalid or the name
/// too long.
fn child(zone: &Name, labels: &[&str]) -> Option<Name> {
    let mut name = zone.clone();
    for label in labels.iter().rev() {
        name = name.prepend_label(*label).ok()?;
    }
    Some(name)
}

/// The zone's name server, `ns.dns.<zone>` (checked by `Records::new`).
pub(crate) fn nameserver(zone: &Name) -> Option<Name> {
    child(zone, &["ns", "dns"])
}

/// The zone's contact, `hostmaster.<zone>` (checked by `Records::new`).
pub(crate) fn hostmaster(zone: &Name) -> Option<Name> {
    child(zone, &["hostmaster"])
}

fn record(owner: &Name, ttl: u32, data: RData) -> Record {
    Record::from_rdata(owner.clone(), ttl, data)
}

/// What the lowercase `name`, inside the zone, holds.
fn lookup(records: &Records, name: &Name) -> Node {
    // Counted with `iter`: `num_labels` leaves a leading `*` out.
    let below = name.iter().count() - records.zone().iter().count();
    let labels: Vec<String> = name
        .iter()
        .take(below)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    match labels.as_slice() {
        [] => Node::Apex,
        ["dns-version"] => Node::Version,
        [rest @ .., "svc"] => service_lookup(records, rest),
        [rest @ .., "pod"] => pod_lookup(records, rest),
        _ => Node::Missing,
    }
}

/// Names under `svc.<zone>`; `labels` are those left of `svc`.
fn service_lookup(records: &Records, labels: &[&str]) -> Node {
    match labels {
        [] => Node::Empty,
        [ns] if records.namespace_known(ns) => Node::Empty,
        [svc, ns] => service_node(records, ns, svc, None, None),
        [endpoint, svc, ns] => service_node(records, ns, svc, Some(endpoint), None),
        [port, proto, svc, ns] => match (port.strip_prefix('_'), proto.strip_prefix('_')) {
            (Some(port), Some(proto)) => service_node(records, ns, svc, None, Some((port, proto))),
            _ => Node::Missing,
        },
        _ => Node::Missing,
    }
}

/// A Service's name, one of its endpoints' (`endpoint`), or one of its SRV names (`port`:
/// name and protocol), as CoreDNS's `findServices`: one entry per address and matching port,
/// so a ClusterIP Service without ports, or a headless one without published endpoints, is
/// NXDOMAIN there as here. Endpoint names resolve under any Service with endpoints.
fn service_node(
    records: &Records,
    ns: &str,
    svc: &str,
    endpoint: Option<&str>,
    port: Option<(&str, &str)>,
) -> Node {
    let Some(service) = records.service(ns, svc) else {
        return Node::Missing;
    };
    let zone = records.zone();
    let Some(service_name) = child(zone, &[svc, ns, "svc"]) else {
        return Node::Missing;
    };
    let matches = |p: &Port| {
        port.is_none_or(|(name, proto)| p.name == name && p.protocol.eq_ignore_ascii_case(proto))
    };
    let mut entries = Vec::new();
    match &service.kind {
        ServiceKind::ExternalName(target) => {
            return if endpoint.is_some() {
                Node::Missing
            } else {
                Node::Cname(target.clone())
            };
        }
        ServiceKind::ClusterIp(ips) if endpoint.is_none() => {
            for p in service.ports.iter().filter(|p| matches(p)) {
                for ip in ips {
                    let target = service_name.clone();
                    entries.push(Entry {
                        ip: *ip,
                        port: Some(p.port),
                        target,
                    });
                }
            }
        }
        _ => {
            for (ep, ports) in records.endpoints(ns, svc) {
                for ip in &ep.addresses {
                    let label = endpoint_label(ep, *ip);
                    if endpoint.is_some_and(|wanted| wanted != label) {
                        continue;
                    }
                    let target = service_name.prepend_label(label.as_str());
                    let Ok(target) = target else { continue };
                    if ports.is_empty() && port.is_none() {
                        entries.push(Entry {
                            ip: *ip,
                            port: None,
                            target: target.clone(),
                        });
                    }
                    for p in ports.iter().filter(|p| matches(p)) {
                        entries.push(Entry {
                            ip: *ip,
                            port: Some(p.port),
                            target: target.clone(),
                        });
                    }
                }
            }
        }
    }
    if entries.is_empty() {
        Node::Missing
    } else {
        Node::Entries(entries)
    }
}

/// Names under `pod.<zone>`; `labels` are those left of `pod`.
fn pod_lookup(records: &Records, labels: &[&str]) -> Node {
    let mode = records.pod_mode();
    match labels {
        [] => Node::Empty,
        _ if mode == PodMode::Disabled => Node::Missing,
        [ns] if records.namespace_known(ns) => Node::Empty,
        [pod, ns] => {
            let Some(ip) = undashed(pod) else {
                return Node::Missing;
            };
            let found = match mode {
                PodMode::Insecure => records.namespace_known(ns),
                _ => records.pod_has_ip(ns, ip),
            };
            if !found {
                return Node::Missing;
            }
            let Some(target) = child(records.zone(), &[pod, ns, "pod"]) else {
                return Node::Missing;
            };
            Node::Entries(vec![Entry {
                ip,
                port: None,
                target,
            }])
        }
        _ => Node::Missing,
    }
}

/// The address a pod name stands for: `10-1-2-3` for 10.1.2.3, `fd00--1` for fd00::1.
fn undashed(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".").parse().ok()
    } else {
        label.replace('-', ":").parse().ok()
    }
}

/// The records of `node` of type `qtype` owned by `owner`, and the additional records.
fn rrs(
    records: &Records,
    node: &Node,
    owner: &Name,
    qtype: RecordType,
) -> (Vec<Record>, Vec<Record>) {
    let any = qtype == RecordType::ANY;
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    match node {
        Node::Missing | Node::Empty => {}
        Node::Apex => {
            if qtype == RecordType::SOA || any {
                let mut soa = soa(records);
                soa.name = owner.clone();
                answers.push(soa);
            }
            if qtype == RecordType::NS || any {
                let ns = nameserver(records.zone()).expect("Records::new checks it");
                answers.push(record(owner, TTL, RData::NS(NS(ns))));
            }
        }
        Node::Version => {
            if qtype == RecordType::TXT || any {
                let txt = TXT::new(vec![SCHEMA_VERSION.to_owned()]);
                answers.push(record(owner, VERSION_TTL, RData::TXT(txt)));
            }
        }
        Node::Cname(target) => {
            answers.push(record(owner, TTL, RData::CNAME(CNAME(target.clone()))));
        }
        Node::Entries(entries) => {
            if matches!(qtype, RecordType::A | RecordType::AAAA) || any {
                let ips = entries.iter().map(|e| e.ip).collect::<Vec<_>>();
                answers.extend(addresses(owner, &ips, qtype));
            }
            if qtype == RecordType::SRV {
                (answers, additionals) = srv(owner, entries);
            }
        }
    }
    (answers, additionals)
}

/// A or AAAA records (both for ANY) of the distinct `ips`, in their order.
fn addresses(owner: &Name, ips: &[IpAddr], qtype: RecordType) -> Vec<Record> {
    let mut seen = BTreeSet::new();
    ips.iter()
        .filter(|ip| seen.insert(**ip))
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => {
                Some(record(owner, TTL, RData::A(A(*v4))))
            }
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => {
                Some(record(owner, TTL, RData::AAAA(AAAA(*v6))))
            }
            _ => None,
        })
        .collect()
}

/// SRV records for the entries with a port, priority 0 and CoreDNS's weight (100 shared out
/// evenly, at least 1), and the targets' addresses as additional records.
fn srv(owner: &Name, entries: &[Entry]) -> (Vec<Record>, Vec<Record>) {
    let with_port: Vec<(&Entry, u16)> = entries
        .iter()
        .filter_map(|e| e.port.map(|p| (e, p)))
        .collect();
    let count = u16::try_from(with_port.len()).unwrap_or(u16::MAX).max(1);
    let weight = (100 / count).max(1);
    let mut answers: Vec<Record> = Vec::new();
    let mut additionals: Vec<Record> = Vec::new();
    for (entry, port) in with_port {
        let srv = RData::SRV(SRV::new(0, weight, port, entry.target.clone()));
        if !answers.iter().any(|r| r.data == srv) {
            answers.push(record(owner, TTL, srv));
        }
        for address in addresses(&entry.target, &[entry.ip], RecordType::ANY) {
            if !additionals
                .iter()
                .any(|r| r.name == address.name && r.data == address.data)
            {
                additionals.push(address);
            }
        }
    }
    (answers, additionals)
}

/// A PTR answer for a reverse name of a Service cluster IP (its Service's name) or of
/// endpoint addresses (the endpoints' names); `None` when the cluster has no such address or
/// the query is not for PTR, for the upstream resolvers to answer.
fn reverse(records: &Records, request: &Message, mut message: Message) -> Option<Message> {
    let query = &request.queries[0];
    if !matches!(query.query_type(), RecordType::PTR | RecordType::ANY) {
        return None;
    }
    let net = query.name().parse_arpa_name().ok()?;
    let ip = net.addr();
    let full = if ip.is_ipv4() { 32 } else { 128 };
    if net.prefix_len() != full {
        return None;
    }
    let zone = records.zone();
    let mut targets = Vec::new();
    if let Some((ns, svc)) = records.service_with_ip(ip) {
        targets.extend(child(zone, &[svc, ns, "svc"]));
    } else {
        for (ns, svc, label) in records.endpoints_with_ip(ip) {
            let Some(name) = child(zone, &[label.as_str(), svc, ns, "svc"]) else {
                continue;
            };
            if !targets.contains(&name) {
                targets.push(name);
            }
        }
    }
    if targets.is_empty() {
        return None;
    }
    message.metadata.authoritative = true;
    for target in targets {
        message.add_answer(record(query.name(), TTL, RData::PTR(PTR(target))));
    }
    Some(message)
}

/// The reverse name of `ip` (`4.3.2.1.in-addr.arpa.`), for tests and callers building PTR
/// queries.
pub fn reverse_name(ip: IpAddr) -> Name {
    let text = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut text = String::new();
            for byte in v6.octets().iter().rev() {
                text.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            text + "ip6.arpa."
        }
    };
    Name::from_ascii(text).expect("reverse names are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::{pod, service, slice};
    use hickory_proto::op::Query;
    use serde_json::json;

    fn fixture() -> Records {
        let mut records = Records::default();
        let services = [
            (
                "web",
                json!({"clusterIPs": ["10.0.0.1"], "ports": [{"name": "http", "port": 80}]}),
            ),
            (
                "dual",
                json!({"clusterIPs": ["10.0.0.3", "fd00::3"],
                       "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
            ),
            (
                "db",
                json!({"clusterIP": "None", "ports": [{"name": "sql", "port": 5432}]}),
            ),
            ("plain", json!({"clusterIP": "None"})),
            ("empty", json!({"clusterIP": "None"})),
            (
                "ext",
                json!({"type": "ExternalName", "externalName": "example.com"}),
            ),
            (
                "alias",
                json!({"type": "ExternalName", "externalName": "web.ns.svc.cluster.local."}),
            ),
        ];
        for (name, spec) in services {
            records.apply_service(&service("ns", name, spec));
        }
        records.apply_slice(&slice(
            "ns",
            "db-abc",
            "db",
            json!([
                {"addresses": ["10.1.0.1"], "hostname": "db-0"},
                {"addresses": ["10.1.0.2"], "hostname": "db-1", "conditions": {"ready": true}},
                {"addresses": ["10.1.0.3"], "hostname": "db-2", "conditions": {"ready": false}},
            ]),
            json!([{"name": "sql", "port": 5432, "protocol": "TCP"}]),
        ));
        records.apply_slice(&slice(
            "ns",
            "plain-abc",
            "plain",
            json!([{"addresses": ["10.1.1.1"]}]),
            json!([]),
        ));
        records.apply_pod(&pod("ns", "p", &["10.2.0.1"]));
        records
    }

    fn query(name: &str, qtype: RecordType) -> Message {
        let mut message = Message::new(7, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        message
    }

    fn ask(records: &Records, name: &str, qtype: RecordType) -> Message {
        match answer(records, &query(name, qtype), Transport::Tcp) {
            Answer::Local(message) => message,
            other => panic!("{name} {qtype}: {other:?}"),
        }
    }

    /// The answer section as `name type data` lines.
    fn lines(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
            .collect()
    }

    fn assert_no_data(message: &Message) {
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        assert!(message.answers.is_empty(), "{:?}", message.answers);
        assert_eq!(message.authorities.len(), 1);
        assert_eq!(message.authorities[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn cluster_ip_service() {
        let records = fixture();
        let reply = ask(&records, "web.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(reply.metadata.id, 7);
        assert!(reply.metadata.authoritative);
        assert!(reply.metadata.recursion_desired);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            lines(&reply.answers),
            ["web.ns.svc.cluster.local. 5 A 10.0.0.1"]
        );
        assert!(reply.authorities.is_empty());

        let reply = ask(&records, "dual.ns.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(
            lines(&reply.answers),
            ["dual.ns.svc.cluster.local. 5 AAAA fd00::3"]
        );
        let reply = ask(&records, "dual.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(
            lines(&reply.answers),
            ["dual.ns.svc.cluster.local. 5 A 10.0.0.3"]
        );
    }

    #[test]
    fn names_are_case_insensitive_and_answered_as_asked() {
        let records = fixture();
        let reply = ask(&records, "Web.NS.svc.Cluster.Local.", RecordType::A);
        assert_eq!(
            lines(&reply.answers),
            ["Web.NS.svc.Cluster.Local. 5 A 10.0.0.1"]
        );
        assert_eq!(
            reply.queries[0].name().to_ascii(),
            "Web.NS.svc.Cluster.Local."
        );
    }

    #[test]
    fn headless_service_answers_its_ready_endpoints() {
        let mut records = fixture();
        let reply = ask(&records, "db.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(
            lines(&reply.answers),
            [
                "db.ns.svc.cluster.local. 5 A 10.1.0.1",
                "db.ns.svc.cluster.local. 5 A 10.1.0.2"
            ]
        );
        records.apply_service(&service(
            "ns",
            "db",
            json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
        ));
        let reply = ask(&records, "db.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(reply.answers.len(), 3);

        // A portless headless service still has addresses.
        let reply = ask(&records, "plain.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(
            lines(&reply.answers),
            ["plain.ns.svc.cluster.local. 5 A 10.1.1.1"]
        );
        // Without endpoints, CoreDNS says NXDOMAIN.
        let reply = ask(&records, "empty.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn external_name_is_a_cname() {
        let records = fixture();
        let reply = ask(&records, "ext.ns.svc.cluster.local.", RecordType::CNAME);
        assert_eq!(
            lines(&reply.answers),
            ["ext.ns.svc.cluster.local. 5 CNAME example.com."]
        );

        let request = query("ext.ns.svc.cluster.local.", RecordType::A);
        let Answer::External { message, target } = answer(&records, &request, Transport::Udp)
        else {
            panic!("an ExternalName outside the zone is resolved upstream");
        };
        assert_eq!(target.to_ascii(), "example.com.");
        assert_eq!(
            lines(&message.answers),
            ["ext.ns.svc.cluster.local. 5 CNAME example.com."]
        );

        // A target inside the zone is followed here.
        let reply = ask(&records, "alias.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(
            lines(&reply.answers),
            [
                "alias.ns.svc.cluster.local. 5 CNAME web.ns.svc.cluster.local.",
                "web.ns.svc.cluster.local. 5 A 10.0.0.1",
            ]
        );
        // An ExternalName has no endpoints.
        let reply = ask(&records, "x.ext.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn srv_of_a_cluster_ip_service() {
        let records = fixture();
        let reply = ask(
            &records,
            "_http._tcp.web.ns.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(
            lines(&reply.answers),
            ["_http._tcp.web.ns.svc.cluster.local. 5 SRV 0 100 80 web.ns.svc.cluster.local."]
        );
        assert_eq!(
            lines(&reply.additionals),
            ["web.ns.svc.cluster.local. 5 A 10.0.0.1"]
        );

        // Two addresses share the weight, as CoreDNS does; the duplicate SRV goes.
        let reply = ask(
            &records,
            "_http._tcp.dual.ns.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(
            lines(&reply.answers),
            ["_http._tcp.dual.ns.svc.cluster.local. 5 SRV 0 50 80 dual.ns.svc.cluster.local."]
        );
        assert_eq!(reply.additionals.len(), 2);

        // The service name's SRV lists every port.
        let reply = ask(&records, "dual.ns.svc.cluster.local.", RecordType::SRV);
        assert_eq!(reply.answers.len(), 2);

        for missing in ["_http._udp.web", "_https._tcp.web", "http.tcp.web"] {
            let name = format!("{missing}.ns.svc.cluster.local.");
            let reply = ask(&records, &name, RecordType::SRV);
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NXDomain,
                "{name}"
            );
        }
        let reply = ask(
            &records,
            "_dns._UDP.dual.ns.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(reply.answers.len(), 1);
    }

    #[test]
    fn srv_of_a_headless_service() {
        let records = fixture();
        let reply = ask(
            &records,
            "_sql._tcp.db.ns.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(
            lines(&reply.answers),
            [
                "_sql._tcp.db.ns.svc.cluster.local. 5 SRV 0 50 5432 db-0.db.ns.svc.cluster.local.",
                "_sql._tcp.db.ns.svc.cluster.local. 5 SRV 0 50 5432 db-1.db.ns.svc.cluster.local.",
            ]
        );
        assert_eq!(
            lines(&reply.additionals),
            [
                "db-0.db.ns.svc.cluster.local. 5 A 10.1.0.1",
                "db-1.db.ns.svc.cluster.local. 5 A 10.1.0.2"
            ]
        );
    }

    #[test]
    fn endpoints_by_hostname_and_dashed_address() {
        let records = fixture();
        // A StatefulSet's pod: hostname db-0, subdomain db.
        let reply = ask(&records, "db-0.db.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(
            lines(&reply.answers),
            ["db-0.db.ns.svc.cluster.local. 5 A 10.1.0.1"]
        );
        let reply = ask(
            &records,
            "10-1-1-1.plain.ns.svc.cluster.local.",
            RecordType::A,
        );
        assert_eq!(
            lines(&reply.answers),
            ["10-1-1-1.plain.ns.svc.cluster.local. 5 A 10.1.1.1"]
        );
        // Not ready, not published.
        let reply = ask(&records, "db-2.db.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        let reply = ask(&records, "bogus.db.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        // An endpoint that exists, asked for AAAA: NODATA.
        assert_no_data(&ask(
            &records,
            "db-0.db.ns.svc.cluster.local.",
            RecordType::AAAA,
        ));
    }

    #[test]
    fn pod_names() {
        let records = fixture();
        let reply = ask(&records, "10-2-0-9.ns.pod.cluster.local.", RecordType::A);
        assert_eq!(
            lines(&reply.answers),
            ["10-2-0-9.ns.pod.cluster.local. 5 A 10.2.0.9"]
        );
        let reply = ask(&records, "fd00--9.ns.pod.cluster.local.", RecordType::AAAA);
        assert_eq!(
            lines(&reply.answers),
            ["fd00--9.ns.pod.cluster.local. 5 AAAA fd00::9"]
        );
        assert_no_data(&ask(
            &records,
            "10-2-0-9.ns.pod.cluster.local.",
            RecordType::AAAA,
        ));
        for missing in ["not-an-ip.ns", "10-2-0-9.unknown", "a.10-2-0-9.ns"] {
            let name = format!("{missing}.pod.cluster.local.");
            let reply = ask(&records, &name, RecordType::A);
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NXDomain,
                "{name}"
            );
        }

        let verified = fixture().with_pod_mode(PodMode::Verified);
        let reply = ask(&verified, "10-2-0-1.ns.pod.cluster.local.", RecordType::A);
        assert_eq!(
            lines(&reply.answers),
            ["10-2-0-1.ns.pod.cluster.local. 5 A 10.2.0.1"]
        );
        let reply = ask(&verified, "10-2-0-9.ns.pod.cluster.local.", RecordType::A);
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);

        let disabled = fixture().with_pod_mode(PodMode::Disabled);
        let reply = ask(&disabled, "10-2-0-1.ns.pod.cluster.local.", RecordType::A);
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn reverse_names() {
        let records = fixture();
        let ptr = |ip: &str| {
            let name = reverse_name(ip.parse().unwrap()).to_ascii();
            answer(&records, &query(&name, RecordType::PTR), Transport::Udp)
        };
        let Answer::Local(reply) = ptr("10.0.0.1") else {
            panic!("a cluster IP")
        };
        assert_eq!(
            lines(&reply.answers),
            ["1.0.0.10.in-addr.arpa. 5 PTR web.ns.svc.cluster.local."]
        );
        let Answer::Local(reply) = ptr("fd00::3") else {
            panic!("a cluster IP")
        };
        assert_eq!(reply.answers.len(), 1);
        let Answer::Local(reply) = ptr("10.1.0.1") else {
            panic!("an endpoint")
        };
        assert_eq!(
            lines(&reply.answers),
            ["1.0.1.10.in-addr.arpa. 5 PTR db-0.db.ns.svc.cluster.local."]
        );
        let Answer::Local(reply) = ptr("10.1.1.1") else {
            panic!("an endpoint")
        };
        assert_eq!(
            lines(&reply.answers),
            ["1.1.1.10.in-addr.arpa. 5 PTR 10-1-1-1.plain.ns.svc.cluster.local."]
        );
        // Addresses the cluster does not know, partial names and other types go upstream
        // (the default Corefile's `fallthrough in-addr.arpa ip6.arpa`).
        assert_eq!(ptr("192.0.2.1"), Answer::Forward);
        assert_eq!(ptr("10.1.0.3"), Answer::Forward);
        let partial = query("0.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(answer(&records, &partial, Transport::Udp), Answer::Forward);
        let a = query("1.0.0.10.in-addr.arpa.", RecordType::A);
        assert_eq!(answer(&records, &a, Transport::Udp), Answer::Forward);
    }

    #[test]
    fn missing_names_are_nxdomain_with_the_soa() {
        let records = fixture();
        for name in [
            "nope.ns.svc.cluster.local.",
            "web.other.svc.cluster.local.",
            "foo.cluster.local.",
            "a.b.c.d.e.svc.cluster.local.",
        ] {
            let reply = ask(&records, name, RecordType::A);
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NXDomain,
                "{name}"
            );
            assert!(reply.metadata.authoritative);
            assert!(reply.answers.is_empty());
            let soa = &reply.authorities[0];
            assert_eq!(soa.name.to_ascii(), "cluster.local.");
            assert_eq!(soa.ttl, 5);
            let RData::SOA(data) = &soa.data else {
                panic!("an SOA")
            };
            assert_eq!(data.mname.to_ascii(), "ns.dns.cluster.local.");
            assert_eq!(data.rname.to_ascii(), "hostmaster.cluster.local.");
            assert_eq!(
                (data.refresh, data.retry, data.expire, data.minimum),
                (7200, 1800, 86400, 5)
            );
            assert_eq!(data.serial, records.serial());
        }
    }

    #[test]
    fn existing_names_without_the_type_are_nodata() {
        let records = fixture();
        for (name, qtype) in [
            ("web.ns.svc.cluster.local.", RecordType::AAAA),
            ("web.ns.svc.cluster.local.", RecordType::TXT),
            ("web.ns.svc.cluster.local.", RecordType::SOA),
            ("svc.cluster.local.", RecordType::A),
            ("ns.svc.cluster.local.", RecordType::A),
            ("pod.cluster.local.", RecordType::A),
            ("ns.pod.cluster.local.", RecordType::A),
            ("svc.cluster.local.", RecordType::NS),
            ("cluster.local.", RecordType::A),
        ] {
            let reply = ask(&records, name, qtype);
            assert_no_data(&reply);
        }
    }

    #[test]
    fn apex_and_schema_version() {
        let records = fixture();
        let reply = ask(&records, "cluster.local.", RecordType::SOA);
        assert_eq!(reply.answers[0].record_type(), RecordType::SOA);
        let reply = ask(&records, "cluster.local.", RecordType::NS);
        assert_eq!(
            lines(&reply.answers),
            ["cluster.local. 5 NS ns.dns.cluster.local."]
        );
        let reply = ask(&records, "dns-version.cluster.local.", RecordType::TXT);
        assert_eq!(
            lines(&reply.answers),
            ["dns-version.cluster.local. 28800 TXT 1.1.0"]
        );
    }

    #[test]
    fn names_outside_the_zone_are_forwarded() {
        let records = fixture();
        for name in ["example.com.", "local.", "cluster.local.example.com.", "."] {
            let request = query(name, RecordType::A);
            assert_eq!(
                answer(&records, &request, Transport::Udp),
                Answer::Forward,
                "{name}"
            );
        }
    }

    #[test]
    fn another_cluster_domain() {
        let mut records = Records::new("corp.internal").unwrap();
        records.apply_service(&service(
            "ns",
            "web",
            json!({"clusterIPs": ["10.0.0.1"], "ports": [{"name": "http", "port": 80}]}),
        ));
        let reply = ask(&records, "web.ns.svc.corp.internal.", RecordType::A);
        assert_eq!(reply.answers.len(), 1);
        let request = query("web.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(answer(&records, &request, Transport::Udp), Answer::Forward);
    }

    #[test]
    fn malformed_requests() {
        let records = fixture();
        let mut two = query("web.ns.svc.cluster.local.", RecordType::A);
        two.add_query(Query::query(
            Name::from_ascii("db.ns.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        let Answer::Local(reply) = answer(&records, &two, Transport::Udp) else {
            panic!()
        };
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

        let mut update = query("web.ns.svc.cluster.local.", RecordType::A);
        update.metadata.op_code = OpCode::Update;
        let Answer::Local(reply) = answer(&records, &update, Transport::Udp) else {
            panic!()
        };
        assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    }

    fn big_headless(count: u8) -> Records {
        let mut records = Records::default();
        records.apply_service(&service("ns", "big", json!({"clusterIP": "None"})));
        let endpoints: Vec<_> = (0..count)
            .map(|i| json!({"addresses": [format!("10.3.0.{i}")]}))
            .collect();
        records.apply_slice(&slice("ns", "big-1", "big", json!(endpoints), json!([])));
        records
    }

    #[test]
    fn udp_answers_over_512_bytes_are_truncated() {
        let records = big_headless(100);
        let request = query("big.ns.svc.cluster.local.", RecordType::A);
        let Answer::Local(reply) = answer(&records, &request, Transport::Udp) else {
            panic!()
        };
        assert!(reply.metadata.truncation);
        assert!(!reply.answers.is_empty() && reply.answers.len() < 100);
        assert!(reply.to_vec().unwrap().len() <= 512);

        // Over TCP, everything.
        let Answer::Local(reply) = answer(&records, &request, Transport::Tcp) else {
            panic!()
        };
        assert!(!reply.metadata.truncation);
        assert_eq!(reply.answers.len(), 100);

        // A client announcing a larger EDNS payload gets everything over UDP, and an OPT back.
        let mut edns_request = request.clone();
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        edns_request.set_edns(edns);
        let Answer::Local(reply) = answer(&records, &edns_request, Transport::Udp) else {
            panic!()
        };
        assert!(!reply.metadata.truncation);
        assert_eq!(reply.answers.len(), 100);
        assert!(reply.edns.is_some());

        // Small answers are left alone.
        let small = big_headless(3);
        let Answer::Local(reply) = answer(&small, &request, Transport::Udp) else {
            panic!()
        };
        assert!(!reply.metadata.truncation);
        assert_eq!(reply.answers.len(), 3);
    }
}
