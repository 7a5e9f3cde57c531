//! The service and namespace controllers inside `rudder server`, driven through kubectl:
//! Endpoints and EndpointSlices follow the pods a Service selects (on simulated nodes),
//! hand-written Endpoints are mirrored into slices, and every namespace gets its `default`
//! ServiceAccount and its `kube-root-ca.crt` ConfigMap.

mod support;

use base64::Engine;
use serde_json::Value;
use support::{Cluster, Simulator, eventually};

fn get(c: &Cluster, args: &[&str]) -> String {
    c.kubectl(args).stdout.trim().to_string()
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let run = c.kubectl(&args);
    serde_json::from_str(run.out()).unwrap_or(Value::Null)
}

/// A pod labelled app=`app` whose container serves port 8080 under the name `http`.
fn pod(name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\nspec:\n  \
         containers: [{{name: app, image: nginx, ports: [{{name: http, containerPort: 8080}}]}}]\n"
    )
}

/// The IP of a running pod, once it has one.
fn pod_ip(c: &Cluster, name: &str) -> String {
    let mut ip = String::new();
    eventually(&format!("pod {name} running with an IP"), || {
        ip = get(c, &["get", "pod", name, "-o", "jsonpath={.status.podIP}"]);
        !ip.is_empty()
    });
    ip
}

/// (ip, ready, serving, terminating, zone, pod) of each endpoint of the slices of `svc`.
fn slice_endpoints(c: &Cluster, svc: &str) -> Vec<(String, bool, bool, bool, String, String)> {
    let list = json(
        c,
        &[
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={svc}"),
        ],
    );
    let mut out = Vec::new();
    for slice in list["items"].as_array().into_iter().flatten() {
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            let flag = |k: &str| e["conditions"][k].as_bool().unwrap_or(false);
            out.push((
                e["addresses"][0].as_str().unwrap_or("").to_string(),
                flag("ready"),
                flag("serving"),
                flag("terminating"),
                e["zone"].as_str().unwrap_or("").to_string(),
                e["targetRef"]["name"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn endpoints_and_slices_follow_the_pods_a_service_selects() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "2", "--zones", "2"]);
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {tier: front}}\nspec:\n  \
         selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n",
    )
    .out();
    for name in ["web-1", "web-2"] {
        c.apply(&pod(name, "web")).out();
    }
    c.apply(&pod("other", "db")).out();
    let (ip1, ip2) = (pod_ip(&c, "web-1"), pod_ip(&c, "web-2"));
    // The named target port resolves to the containers' 8080.
    eventually("both pods in the Endpoints", || {
        let shown = get(&c, &["get", "endpoints", "web", "--no-headers"]);
        shown.contains(&format!("{ip1}:8080")) && shown.contains(&format!("{ip2}:8080"))
    });
    let ep = json(&c, &["get", "endpoints", "web"]);
    let subset = &ep["subsets"][0];
    assert_eq!(subset["ports"][0]["port"], 8080, "{ep}");
    assert_eq!(subset["ports"][0]["name"], "http", "{ep}");
    assert_eq!(subset["ports"][0]["protocol"], "TCP", "{ep}");
    assert_eq!(ep["metadata"]["labels"]["tier"], "front", "{ep}");
    let address = &subset["addresses"][0];
    assert_eq!(address["targetRef"]["kind"], "Pod", "{ep}");
    assert!(
        address["nodeName"].as_str().unwrap().starts_with("sim-"),
        "{ep}"
    );
    assert_eq!(subset["addresses"].as_array().unwrap().len(), 2, "{ep}");

    // The slices: ready endpoints with their zone.
    eventually("both pods in the slices", || {
        slice_endpoints(&c, "web").len() == 2
    });
    let endpoints = slice_endpoints(&c, "web");
    for (ip, ready, serving, terminating, zone, _) in &endpoints {
        assert!([&ip1, &ip2].contains(&ip), "{endpoints:?}");
        assert!(*ready && *serving && !*terminating, "{endpoints:?}");
        assert!(zone.starts_with("zone-"), "{endpoints:?}");
    }
    let slices = json(
        &c,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
    );
    let slice = &slices["items"][0];
    assert_eq!(slices["items"].as_array().unwrap().len(), 1, "{slices}");
    assert_eq!(slice["addressType"], "IPv4");
    assert!(
        slice["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("web-")
    );
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["labels"]["tier"], "front");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(slice["ports"][0]["port"], 8080);
    let table = get(
        &c,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
    );
    assert!(table.contains("IPv4") && table.contains("8080"), "{table}");
    assert!(table.contains(&ip1) && table.contains(&ip2), "{table}");

    // A pod whose Ready condition is False is listed as not ready (bound to a node nobody
    // runs, its status is only what we write).
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web-3, labels: {app: web}}\nspec:\n  \
         nodeName: ghost\n  containers: [{name: app, image: nginx, ports: [{name: http, containerPort: 8080}]}]\n",
    )
    .out();
    c.kubectl(&[
        "patch",
        "pod",
        "web-3",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","podIP":"10.99.0.3","podIPs":[{"ip":"10.99.0.3"}],"conditions":[{"type":"Ready","status":"False"}]}}"#,
    ])
    .out();
    eventually("the unready pod among the not-ready addresses", || {
        get(
            &c,
            &[
                "get",
                "endpoints",
                "web",
                "-o",
                "jsonpath={.subsets[*].notReadyAddresses[*].ip}",
            ],
        ) == "10.99.0.3"
    });
    c.kubectl(&["delete", "pod", "web-3", "--grace-period=0", "--force"]);

    // A deleted pod leaves both.
    c.kubectl(&["delete", "pod", "web-2", "--wait=false"]).out();
    eventually("the deleted pod gone from the Endpoints", || {
        let shown = get(&c, &["get", "endpoints", "web", "--no-headers"]);
        shown.contains(&format!("{ip1}:8080")) && !shown.contains(&ip2)
    });
    eventually("the deleted pod gone from the slices", || {
        let left = slice_endpoints(&c, "web");
        left.len() == 1 && left[0].0 == ip1
    });

    // No Service, no Endpoints.
    c.kubectl(&["delete", "service", "web"]).out();
    eventually("the Endpoints deleted with the Service", || {
        !c.kubectl(&["get", "endpoints", "web"]).ok
    });
}

#[test]
fn headless_services_get_endpoints_and_empty_services_a_placeholder_slice() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "1"]);
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n  clusterIP: None\n  \
         selector: {app: db}\n  ports: [{port: 5432}]\n",
    )
    .out();
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: nobody}\nspec:\n  selector: {app: none}\n  \
         ports: [{port: 80}]\n",
    )
    .out();
    c.apply(&pod("db-0", "db")).out();
    let ip = pod_ip(&c, "db-0");
    eventually("the headless Service's Endpoints", || {
        get(&c, &["get", "endpoints", "db", "--no-headers"]).contains(&format!("{ip}:5432"))
    });
    let ep = json(&c, &["get", "endpoints", "db"]);
    assert_eq!(
        ep["metadata"]["labels"]["service.kubernetes.io/headless"], "",
        "{ep}"
    );
    eventually(
        "an empty Endpoints and one empty slice for the Service without pods",
        || {
            let slices = json(
                &c,
                &[
                    "get",
                    "endpointslices",
                    "-l",
                    "kubernetes.io/service-name=nobody",
                ],
            );
            let items = slices["items"].as_array().cloned().unwrap_or_default();
            c.kubectl(&["get", "endpoints", "nobody"]).ok
                && items.len() == 1
                && items[0]["endpoints"].as_array().is_none_or(Vec::is_empty)
        },
    );
}

// conformance: 444
#[test]
fn hand_written_endpoints_of_a_selectorless_service_are_mirrored() {
    let c = Cluster::start(&[]);
    c.apply("apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec:\n  ports: [{port: 80}]\n")
        .out();
    let endpoints = |ips: &str| {
        format!(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: ext, labels: {{team: a}}}}\n\
             subsets: [{{addresses: [{ips}], ports: [{{port: 80, protocol: TCP}}]}}]\n"
        )
    };
    c.apply(&endpoints("{ip: 10.1.2.3}")).out();
    let mirrored = |c: &Cluster| {
        let slices = json(
            c,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=ext",
            ],
        );
        slices["items"].as_array().cloned().unwrap_or_default()
    };
    eventually("a mirrored slice", || mirrored(&c).len() == 1);
    let slice = &mirrored(&c)[0];
    let labels = &slice["metadata"]["labels"];
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io",
        "{slice}"
    );
    assert_eq!(labels["team"], "a", "{slice}");
    assert_eq!(slice["endpoints"][0]["addresses"][0], "10.1.2.3", "{slice}");
    assert_eq!(
        slice["endpoints"][0]["conditions"]["ready"], true,
        "{slice}"
    );
    assert_eq!(slice["ports"][0]["port"], 80, "{slice}");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Endpoints");
    // The endpoints controller leaves the hand-written Endpoints alone.
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "endpoints",
                "ext",
                "-o",
                "jsonpath={.subsets[0].addresses[0].ip}"
            ]
        ),
        "10.1.2.3"
    );
    // Changes are mirrored into the same slice.
    let name = slice["metadata"]["name"].as_str().unwrap().to_string();
    c.apply(&endpoints("{ip: 10.1.2.3}, {ip: 10.1.2.4}")).out();
    eventually("the new address mirrored", || {
        let items = mirrored(&c);
        items.len() == 1
            && items[0]["metadata"]["name"] == name.as_str()
            && items[0]["endpoints"].as_array().map(Vec::len) == Some(2)
    });
    // Endpoints marked to skip mirroring lose their slices.
    c.kubectl(&[
        "label",
        "endpoints",
        "ext",
        "endpointslice.kubernetes.io/skip-mirror=true",
    ])
    .out();
    eventually("the slice gone when mirroring is skipped", || {
        mirrored(&c).is_empty()
    });
    c.kubectl(&[
        "label",
        "endpoints",
        "ext",
        "endpointslice.kubernetes.io/skip-mirror-",
    ])
    .out();
    eventually("mirrored again", || mirrored(&c).len() == 1);
    c.kubectl(&["delete", "endpoints", "ext"]).out();
    eventually("the slice gone with the Endpoints", || {
        mirrored(&c).is_empty()
    });
}

// conformance: 667
#[test]
fn every_namespace_gets_a_default_service_account_and_the_root_ca() {
    let c = Cluster::start(&[]);
    c.kubectl(&["create", "namespace", "team-a"]).out();
    eventually("the default ServiceAccount", || {
        c.kubectl(&["get", "sa", "default", "-n", "team-a"]).ok
    });
    let ca_data = get(
        &c,
        &[
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ],
    );
    let ca = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(ca_data)
            .unwrap(),
    )
    .unwrap();
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");
    let published = |ns: &str| {
        get(
            &c,
            &[
                "get",
                "cm",
                "kube-root-ca.crt",
                "-n",
                ns,
                "-o",
                r"jsonpath={.data.ca\.crt}",
            ],
        )
    };
    eventually("the root CA published", || published("team-a") == ca.trim());
    for ns in ["default", "kube-system"] {
        eventually("the root CA in the system namespaces", || {
            published(ns) == ca.trim()
        });
        eventually("a default ServiceAccount in the system namespaces", || {
            c.kubectl(&["get", "sa", "default", "-n", ns]).ok
        });
    }
    let description = get(
        &c,
        &[
            "get",
            "cm",
            "kube-root-ca.crt",
            "-n",
            "team-a",
            "-o",
            r"jsonpath={.metadata.annotations.kubernetes\.io/description}",
        ],
    );
    assert!(description.contains("kube-apiserver"), "{description}");

    // Deleted, they come back; edited, the CA is put back.
    let uid = |kind: &str, name: &str| {
        get(
            &c,
            &[
                "get",
                kind,
                name,
                "-n",
                "team-a",
                "-o",
                "jsonpath={.metadata.uid}",
            ],
        )
    };
    let sa_uid = uid("sa", "default");
    c.kubectl(&["delete", "sa", "default", "-n", "team-a"])
        .out();
    eventually("the default ServiceAccount recreated", || {
        let now = uid("sa", "default");
        !now.is_empty() && now != sa_uid
    });
    c.kubectl(&[
        "patch",
        "cm",
        "kube-root-ca.crt",
        "-n",
        "team-a",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"forged"}}"#,
    ])
    .out();
    eventually("the CA restored", || published("team-a") == ca.trim());
    c.kubectl(&["delete", "cm", "kube-root-ca.crt", "-n", "team-a"])
        .out();
    eventually("the ConfigMap recreated", || {
        published("team-a") == ca.trim()
    });
}
