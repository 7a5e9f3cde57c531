//! Services end to end, as root: the service proxy's nftables rules carry ClusterIP and
//! NodePort traffic from the host and from pods to real containers, and cluster DNS answers
//! Debian's `dig` and the pods, driven by the real kubectl.

#[path = "support/pods.rs"]
mod pods;
mod support;
#[path = "../../image/tests/support/testimage.rs"]
mod testimage;

use std::collections::BTreeSet;
use std::process::Command;

use pods::{busybox, get, jsonpath, node_ready, patiently};
use support::{Cluster, eventually};

/// The proxy test's network number: pods in 10.213.0.0/16, Services in 10.243.0.0/16.
const NET: u8 = 213;
/// The DNS test's: pods in 10.214.0.0/16, Services in 10.244.0.0/16, DNS at 10.244.0.10.
const DNS_NET: u8 = 214;

fn web_manifest(image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {image}
        command: [sh, -c, 'hostname > /var/www/index.html && exec httpd -f -p 8080 -h /var/www']
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: {image}
    command: [sleep, '3600']
"
    )
}

/// One field (a JSONPath below the object) of every web pod.
fn web_pods(c: &Cluster, field: &str) -> BTreeSet<String> {
    let path = format!("jsonpath={{.items[*].{field}}}");
    get(c, &["get", "pods", "-l", "app=web", "-o", &path])
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// What `GET /` at `ip:port` answers (the serving pod's name), from the host.
fn from_host(ip: &str, port: u16) -> Option<String> {
    let body = pods::http_get_path(ip, port, "/")?;
    Some(body.split("\r\n\r\n").nth(1)?.trim().to_string())
}

/// Waits until every pod of `names` has answered at `ip:port`, from the host.
fn every_replica_answers(what: &str, ip: &str, port: u16, names: &BTreeSet<String>) {
    let mut seen = BTreeSet::new();
    eventually(what, || {
        seen.extend(from_host(ip, port));
        seen == *names
    });
}

/// An ExternalName Service turned NodePort gets an address and a node port, and both lead to
/// the pods.
fn external_name_turned_node_port_serves(c: &Cluster, node_ip: &str, names: &BTreeSet<String>) {
    c.apply(
        "apiVersion: v1
kind: Service
metadata: {name: turned}
spec:
  type: ExternalName
  externalName: example.org
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
",
    )
    .out();
    let to_node_port = r#"{"spec":{"type":"NodePort","externalName":null}}"#;
    c.kubectl(&["patch", "service", "turned", "-p", to_node_port])
        .out();
    let ip = jsonpath(c, &["service", "turned"], "{.spec.clusterIP}");
    let port: u16 = jsonpath(c, &["service", "turned"], "{.spec.ports[0].nodePort}")
        .parse()
        .unwrap();
    every_replica_answers("the turned Service's address", &ip, 80, names);
    every_replica_answers("the turned Service's node port", node_ip, port, names);
    c.kubectl(&["delete", "service", "turned"]).out();
}

/// Session affinity: under ClientIP one client gets one pod at every target, however often it
/// asks; back to None, every pod answers again; under ClientIP once more, one pod.
fn affinity_pins_clients(c: &Cluster, targets: &[(&str, u16)], names: &BTreeSet<String>) {
    for affinity in ["ClientIP", "None", "ClientIP"] {
        let patch = format!(r#"{{"spec":{{"sessionAffinity":"{affinity}"}}}}"#);
        c.kubectl(&["patch", "service", "web", "-p", &patch]).out();
        let pinned = affinity == "ClientIP";
        eventually("the affinity rules", || {
            ruleset().contains("update @affinity-") == pinned
        });
        for (ip, port) in targets {
            if pinned {
                let answers: BTreeSet<String> =
                    (0..10).filter_map(|_| from_host(ip, *port)).collect();
                assert_eq!(answers.len(), 1, "{ip}:{port}: {answers:?}");
            } else {
                every_replica_answers("every replica without affinity", ip, *port, names);
            }
        }
    }
}

/// What `GET /` answers inside pod `client`.
fn from_pod(c: &Cluster, url: &str) -> String {
    // (busybox's wget -T crashes: `timeout` bounds it instead.)
    let r = c.kubectl(&["exec", "client", "--", "timeout", "5", "wget", "-qO-", url]);
    if r.ok {
        r.stdout.trim().to_string()
    } else {
        r.stderr
    }
}

/// The rules of this cluster's proxy table.
fn ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "table", "ip", &format!("rudder-t{NET}")])
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// From pods: every replica through the ClusterIP, a pod through its own Service (hairpin),
/// and the API server through the `kubernetes` Service.
fn from_pods(c: &Cluster, ip: &str, names: &BTreeSet<String>) {
    // ... and from a pod, by address (a pod's traffic is routed through the node).
    let mut seen = BTreeSet::new();
    pods::patiently_see(
        "every replica through the ClusterIP from a pod",
        60,
        "all",
        || {
            seen.insert(from_pod(c, &format!("http://{ip}")));
            if names.is_subset(&seen) {
                "all".into()
            } else {
                format!("{seen:?}")
            }
        },
    );
    // By name, through cluster DNS: the short name and the FQDN.
    for url in ["http://web", "http://web.default.svc.cluster.local"] {
        pods::patiently_see(url, 60, "a web pod", || {
            let answer = from_pod(c, url);
            if names.contains(&answer) {
                "a web pod".into()
            } else {
                answer
            }
        });
    }
    // A pod reaching itself through its own Service (hairpin).
    let own = names.iter().next().unwrap();
    let url = format!("http://{ip}");
    let r = c.kubectl(&["exec", own, "--", "timeout", "5", "wget", "-qO-", &url]);
    assert!(r.ok, "{r:?}");

    // The kubernetes Service leads to this API server, from a pod too.
    let api = jsonpath(c, &["service", "kubernetes"], "{.spec.clusterIP}");
    assert_eq!(api, "10.243.0.1");
    let version = c.kubectl(&[
        "exec",
        "client",
        "--",
        "timeout",
        "5",
        "wget",
        "-qO-",
        "--no-check-certificate",
        "https://10.243.0.1/version",
    ]);
    // The test image's busybox speaks too old a TLS for rustls to agree with, so the
    // handshake's refusal is what shows that this API server answered (past it, a request
    // without credentials gets 401).
    assert!(
        version.stderr.contains("TLS error from peer") || version.stderr.contains("401"),
        "{version:?}"
    );
}

// conformance: 482, 483, 487, 488
#[test]
fn cluster_ips_and_node_ports_reach_every_ready_pod() {
    let image = busybox();
    // Bound to every address, not only loopback: pods reach the API server through the
    // node's address.
    let c = Cluster::start_with_agent("node-v", NET, &["--bind-address", "0.0.0.0"]);
    node_ready(&c, "node-v");
    c.apply(&web_manifest(&image.name)).out();
    patiently("three ready web pods", 90, || {
        jsonpath(&c, &["deployment", "web"], "{.status.readyReplicas}") == "3"
    });
    patiently("the client pod", 60, || {
        jsonpath(&c, &["pod", "client"], "{.status.phase}") == "Running"
    });
    let names = web_pods(&c, "metadata.name");
    let before = ruleset();

    // A named target port, resolved through the EndpointSlice.
    c.kubectl(&[
        "expose",
        "deployment",
        "web",
        "--port",
        "80",
        "--target-port",
        "http",
    ])
    .out();
    let ip = jsonpath(&c, &["service", "web"], "{.spec.clusterIP}");
    assert!(ip.starts_with("10.243."), "{ip}");

    // From the host, every replica answers in turn.
    every_replica_answers(
        "every replica through the ClusterIP from the host",
        &ip,
        80,
        &names,
    );
    from_pods(&c, &ip, &names);

    // NodePort: on the node's address.
    c.kubectl(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ])
    .out();
    let node_port: u16 = jsonpath(&c, &["service", "web"], "{.spec.ports[0].nodePort}")
        .parse()
        .unwrap();
    let node_ip = jsonpath(
        &c,
        &["node", "node-v"],
        "{.status.addresses[?(@.type==\"InternalIP\")].address}",
    );
    every_replica_answers(
        "every replica through the NodePort",
        &node_ip,
        node_port,
        &names,
    );
    every_replica_answers(
        "every replica through the NodePort on 127.0.0.1",
        "127.0.0.1",
        node_port,
        &names,
    );

    // LoadBalancer: the node's address in the status, shown by kubectl, answering on the
    // Service's port.
    c.kubectl(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"type":"LoadBalancer"}}"#,
    ])
    .out();
    eventually("the load balancer's address", || {
        get(&c, &["get", "service", "web", "--no-headers"])
            .split_whitespace()
            .nth(3)
            == Some(node_ip.as_str())
    });
    every_replica_answers(
        "every replica through the load balancer",
        &node_ip,
        80,
        &names,
    );

    // externalTrafficPolicy Local: outside traffic goes to this node's pods (all of them,
    // on the one node), by a path of its own that keeps the client's address.
    let local = r#"{"spec":{"externalTrafficPolicy":"Local"}}"#;
    c.kubectl(&["patch", "service", "web", "-p", local]).out();
    eventually("the outside path", || {
        ruleset().contains("chain external-default/web/")
    });
    every_replica_answers(
        "every replica through the load balancer, locally",
        &node_ip,
        80,
        &names,
    );
    every_replica_answers(
        "every replica through the NodePort on 127.0.0.1, locally",
        "127.0.0.1",
        node_port,
        &names,
    );
    let health: u16 = jsonpath(&c, &["service", "web"], "{.spec.healthCheckNodePort}")
        .parse()
        .unwrap();
    eventually(
        "the health check node port counting three endpoints",
        || {
            pods::http_get_path(&node_ip, health, "/").is_some_and(|h| {
                h.starts_with("HTTP/1.0 200 OK") && h.contains(r#""localEndpoints":3,"#)
            })
        },
    );

    external_name_turned_node_port_serves(&c, &node_ip, &names);

    // Session affinity, through the ClusterIP and the NodePort.
    affinity_pins_clients(&c, &[(&ip, 80), (&node_ip, node_port)], &names);

    // No endpoints: refused at once, as is an address of the range no Service holds.
    c.kubectl(&["scale", "deployment", "web", "--replicas", "0"])
        .out();
    eventually("the ClusterIP refusing connections", || refused(&ip, 80));
    eventually("the health check node port unavailable", || {
        pods::http_get_path(&node_ip, health, "/")
            .is_some_and(|h| h.starts_with("HTTP/1.0 503") && h.contains(r#""localEndpoints":0,"#))
    });
    assert!(refused("10.243.255.254", 80));
    assert!(
        ruleset().contains("ip daddr 10.243.0.0/16 reject"),
        "{}",
        ruleset()
    );

    udp_flows_follow_their_endpoint(&c, &node_ip);

    // Deleting the Service removes what it added.
    c.kubectl(&["delete", "service", "web"]).out();
    eventually("the health check node port closed", || {
        refused(&node_ip, health)
    });
    eventually("the Service's rules gone", || !ruleset().contains(&ip));
    // ... all of them: the table is as it was before the first Service of this test.
    eventually("the table as before", || ruleset() == before);
    // Every change went in as an update of the table: nft refused none of them.
    let log = std::fs::read_to_string(c.dir.path().join("server.log")).unwrap();
    assert!(!log.contains("nft refused"), "{log}");
}

/// A UDP echo on the host: answers every datagram with `name`, until the test ends.
fn udp_answering(ip: &str, name: &'static str) -> u16 {
    let socket = std::net::UdpSocket::bind((ip, 0)).unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0; 64];
        while let Ok((_, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(name.as_bytes(), from);
        }
    });
    port
}

/// UDP through a ClusterIP to endpoints on the host (a Service without selector, its
/// EndpointSlice made by hand): a client keeps its source port while the endpoint changes,
/// and its next datagram reaches the new endpoint, because the proxy forgot the old flow
/// (else the kernel would keep translating it to the old endpoint, still answering).
fn udp_flows_follow_their_endpoint(c: &Cluster, node_ip: &str) {
    let bridge = format!("10.{NET}.0.1");
    let (one, two) = (udp_answering(node_ip, "one"), udp_answering(&bridge, "two"));
    let manifest = |address: &str, port: u16| {
        format!(
            "apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  ports: [{{name: echo, port: 53, protocol: UDP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  labels: {{kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{{name: echo, port: {port}, protocol: UDP}}]
endpoints: [{{addresses: ['{address}']}}]
"
        )
    };
    c.apply(&manifest(node_ip, one)).out();
    let ip = jsonpath(c, &["service", "echo"], "{.spec.clusterIP}");
    let client = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let ask = || {
        client.send_to(b"?", (ip.as_str(), 53)).ok()?;
        let mut buf = [0; 64];
        let n = client.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    eventually("UDP through the ClusterIP", || {
        ask().as_deref() == Some("one")
    });
    c.apply(&manifest(&bridge, two)).out();
    eventually(
        "the same client's next datagram at the new endpoint",
        || ask().as_deref() == Some("two"),
    );
    c.kubectl(&["delete", "service", "echo"]).out();
    c.kubectl(&["delete", "endpointslice", "echo-1"]).out();
}

/// Whether a TCP connection to `ip:port` from the host is refused (not timed out).
fn refused(ip: &str, port: u16) -> bool {
    let addr = format!("{ip}:{port}").parse().unwrap();
    matches!(
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// `dig @10.244.0.10 <args> +short`, one answer per line.
fn dig(args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg("@10.244.0.10")
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (Debian: dnsutils)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn short(args: &[&str]) -> Vec<String> {
    let mut args = args.to_vec();
    args.push("+short");
    let mut lines: Vec<String> = dig(&args).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

// conformance: 427, 430
#[test]
fn cluster_dns_answers_services_endpoints_and_pods() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-w", DNS_NET, &[]);
    node_ready(&c, "node-w");
    let svc = jsonpath(
        &c,
        &["service", "kube-dns", "-n", "kube-system"],
        "{.spec.clusterIP}",
    );
    assert_eq!(svc, "10.244.0.10");
    c.apply(&web_manifest(&image.name).replace("replicas: 3", "replicas: 2"))
        .out();
    c.apply(
        "apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: peers}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere}
spec:
  type: ExternalName
  externalName: example.org
",
    )
    .out();
    patiently("two ready web pods", 90, || {
        jsonpath(&c, &["deployment", "web"], "{.status.readyReplicas}") == "2"
    });
    let ip = jsonpath(&c, &["service", "web"], "{.spec.clusterIP}");
    let pod_ips: Vec<String> = web_pods(&c, "status.podIP").into_iter().collect();

    // A Service, its named port, its address backwards.
    eventually("the web Service in DNS", || {
        short(&["web.default.svc.cluster.local"]) == [ip.clone()]
    });
    assert_eq!(
        short(&["_http._tcp.web.default.svc.cluster.local", "SRV"]),
        ["0 100 80 web.default.svc.cluster.local."]
    );
    assert_eq!(short(&["-x", &ip]), ["web.default.svc.cluster.local."]);
    // A headless Service: every ready pod.
    eventually("both pods under the headless Service", || {
        short(&["peers.default.svc.cluster.local"]) == pod_ips
    });
    // ExternalName: a CNAME; pod names: the dashed address.
    assert_eq!(
        short(&["elsewhere.default.svc.cluster.local", "CNAME"]),
        ["example.org."]
    );
    assert_eq!(short(&["1-2-3-4.default.pod.cluster.local"]), ["1.2.3.4"]);
    // The ExternalName changed, then the Service turned ClusterIP: DNS follows.
    let name = "elsewhere.default.svc.cluster.local";
    c.kubectl(&[
        "patch",
        "service",
        "elsewhere",
        "-p",
        r#"{"spec":{"externalName":"example.net"}}"#,
    ])
    .out();
    eventually("the new CNAME", || {
        short(&[name, "CNAME"]) == ["example.net."]
    });
    let to_cluster_ip =
        r#"{"spec":{"type":"ClusterIP","externalName":null,"ports":[{"port":80}]}}"#;
    c.kubectl(&["patch", "service", "elsewhere", "-p", to_cluster_ip])
        .out();
    let address = jsonpath(&c, &["service", "elsewhere"], "{.spec.clusterIP}");
    eventually("an A record for the ClusterIP", || {
        short(&[name]) == [address.clone()]
    });
    // A name that is not there: NXDOMAIN with the zone's SOA, over TCP too.
    let missing = dig(&["nothere.default.svc.cluster.local", "+tcp"]);
    assert!(missing.contains("status: NXDOMAIN"), "{missing}");
    assert!(
        missing.contains("SOA\tns.dns.cluster.local. hostmaster.cluster.local."),
        "{missing}"
    );

    // A ClusterFirst pod resolves through cluster DNS.
    patiently("the client pod", 60, || {
        jsonpath(&c, &["pod", "client"], "{.status.phase}") == "Running"
    });
    let resolv = get(&c, &["exec", "client", "--", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.starts_with("nameserver 10.244.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.ends_with("options ndots:5"), "{resolv}");
    // dnsPolicy None: only the pod's own dnsConfig.
    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: own-dns}}
spec:
  terminationGracePeriodSeconds: 0
  dnsPolicy: None
  dnsConfig:
    nameservers: [192.0.2.53]
    searches: [corp.example]
    options: [{{name: ndots, value: '2'}}]
  containers:
  - {{name: c, image: {}, command: [sleep, '3600']}}
",
        image.name
    ))
    .out();
    patiently("the own-dns pod", 60, || {
        jsonpath(&c, &["pod", "own-dns"], "{.status.phase}") == "Running"
    });
    let own = get(&c, &["exec", "own-dns", "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        own, "nameserver 192.0.2.53\nsearch corp.example\noptions ndots:2",
        "{own}"
    );
    let looked_up = get(
        &c,
        &[
            "exec",
            "client",
            "--",
            "nslookup",
            "web.default.svc.cluster.local",
        ],
    );
    assert!(looked_up.contains(&ip), "{looked_up}");
}

/// The rules of nftables table `table`, or None when it does not exist.
fn table_rules(table: &str) -> Option<String> {
    let out = Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .expect("nft");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A child process stopped with SIGTERM when dropped, a failed test's too.
struct Stopped(Option<std::process::Child>);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            support::terminate(child);
        }
    }
}

/// `rudder proxy` alone (kube-proxy's place): it programs a Service and its hand-made
/// EndpointSlice, removes them with the Service, and its table when stopped.
#[test]
fn the_standalone_proxy_programs_services_until_stopped() {
    const TABLE: &str = "rudder-t217";
    let c = Cluster::start(&["--service-cidr", "10.247.0.0/16"]);
    let proxy = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(["proxy", "--kubeconfig"])
        .arg(c.kubeconfig())
        .args(["--hostname-override", "n217", "--proxy-table", TABLE])
        .args([
            "--service-cidr",
            "10.247.0.0/16",
            "--cluster-cidr",
            "10.217.0.0/16",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut proxy = Stopped(Some(proxy));
    c.apply(
        "apiVersion: v1
kind: Service
metadata: {name: alone}
spec:
  ports: [{port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: alone-1
  labels: {kubernetes.io/service-name: alone}
addressType: IPv4
ports: [{port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.217.0.5], conditions: {ready: true}}]
",
    )
    .out();
    let ip = jsonpath(&c, &["service", "alone"], "{.spec.clusterIP}");
    assert!(ip.starts_with("10.247."), "{ip}");
    eventually("the Service's rules", || {
        table_rules(TABLE).is_some_and(|r| r.contains(&ip) && r.contains("10.217.0.5"))
    });
    c.kubectl(&["delete", "service", "alone"]).out();
    eventually("the Service's rules to go", || {
        table_rules(TABLE).is_some_and(|r| !r.contains(&ip) && !r.contains("10.217.0.5"))
    });
    if let Some(child) = proxy.0.take() {
        support::terminate(child);
    }
    eventually("the table to go", || table_rules(TABLE).is_none());
}
