//! Resources served in two versions over one storage: events (core `v1` and
//! `events.k8s.io/v1`) and HorizontalPodAutoscalers (`autoscaling/v2` and `autoscaling/v1`),
//! each written in one version and read, listed, watched and patched in the other.

mod support;

use support::Cluster;

#[test]
fn events_read_the_same_in_both_groups() {
    let c = Cluster::start(&[]);
    c.apply(
        "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: pulled}\n\
         eventTime: '2026-01-01T00:00:00.000000Z'\n\
         regarding: {kind: Pod, name: web, namespace: default}\n\
         note: Pulled the image\nreason: Pulled\ntype: Normal\naction: Pull\n\
         reportingController: kubelet\nreportingInstance: node-1\n",
    )
    .out();
    c.apply(
        "apiVersion: v1\nkind: Event\nmetadata: {name: killed}\n\
         involvedObject: {kind: Pod, name: db, namespace: default}\n\
         message: Stopping container\nreason: Killing\ntype: Warning\n",
    )
    .out();
    let core = |name: &str| {
        c.kubectl(&[
            "get",
            "events.v1.",
            name,
            "-o",
            "jsonpath={.apiVersion} {.involvedObject.name} {.message} {.reportingComponent}",
        ])
        .out()
        .to_string()
    };
    assert_eq!(core("pulled"), "v1 web Pulled the image kubelet");
    let new = c
        .kubectl(&[
            "get",
            "events.v1.events.k8s.io",
            "killed",
            "-o",
            "jsonpath={.apiVersion} {.regarding.name} {.note}",
        ])
        .out()
        .to_string();
    assert_eq!(new, "events.k8s.io/v1 db Stopping container");

    // Field selectors use each version's names.
    let selected = c
        .kubectl(&[
            "get",
            "events.events.k8s.io",
            "--field-selector",
            "regarding.name=db",
            "-o",
            "name",
        ])
        .out()
        .to_string();
    assert_eq!(selected, "event.events.k8s.io/killed\n");
    let refused = c.kubectl(&[
        "get",
        "events.events.k8s.io",
        "--field-selector",
        "involvedObject.name=db",
    ]);
    assert!(
        refused
            .err()
            .contains("field label not supported: involvedObject.name"),
        "{}",
        refused.stderr
    );
    let table = c
        .kubectl(&["get", "events.events.k8s.io"])
        .out()
        .to_string();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(table.contains("pod/db"), "{table}");

    // A watch in the new group sees changes written through the old one.
    let raw = "/apis/events.k8s.io/v1/namespaces/default/events?watch=1&timeoutSeconds=1";
    let watched = c.kubectl(&["get", "--raw", raw]).out().to_string();
    assert!(
        watched.contains(r#""apiVersion":"events.k8s.io/v1""#)
            && watched.contains(r#""note":"Stopping container""#),
        "{watched}"
    );
}

#[test]
fn autoscalers_convert_between_v1_and_v2() {
    let c = Cluster::start(&[]);
    c.apply(
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\n\
         spec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  \
         maxReplicas: 4\n  targetCPUUtilizationPercentage: 60\n",
    )
    .out();
    let v2 = |name: &str| {
        c.kubectl(&[
            "get",
            "horizontalpodautoscalers.v2.autoscaling",
            name,
            "-o",
            "jsonpath={.spec.minReplicas} {.spec.metrics[*].resource.name} {.spec.metrics[*].resource.target.averageUtilization}",
        ])
        .out()
        .to_string()
    };
    assert_eq!(v2("web"), "1 cpu 60");
    let table = c.kubectl(&["get", "hpa", "web"]).out().to_string();
    assert!(table.contains("cpu: <unknown>/60%"), "{table}");

    c.kubectl(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":75}}"#,
    ])
    .out();
    assert_eq!(v2("web"), "1 cpu 75");

    // A v2 object with two metrics: v1 shows the CPU target and carries the other.
    c.apply(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: api}\n\
         spec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}\n  \
         minReplicas: 2\n  maxReplicas: 8\n  metrics:\n  \
         - type: Resource\n    resource: {name: memory, target: {type: AverageValue, averageValue: 1Gi}}\n  \
         - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}\n",
    )
    .out();
    let v1 = c
        .kubectl(&[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "api",
            "-o",
            r#"jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage} {.metadata.annotations.autoscaling\.alpha\.kubernetes\.io/metrics}"#,
        ])
        .out()
        .to_string();
    assert_eq!(
        v1,
        r#"autoscaling/v1 50 [{"resource":{"name":"memory","targetAverageValue":"1Gi"},"type":"Resource"}]"#
    );
    // Writing the v1 form back keeps both metrics.
    let mut obj = c
        .kubectl(&[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "api",
            "-o",
            "json",
        ])
        .out()
        .to_string();
    obj = obj.replace(r#""maxReplicas": 8"#, r#""maxReplicas": 9"#);
    c.kubectl_in(&["replace", "-f", "-"], Some(&obj)).out();
    assert_eq!(
        c.kubectl(&[
            "get",
            "hpa",
            "api",
            "-o",
            "jsonpath={.spec.maxReplicas} {.spec.metrics[*].resource.name}"
        ])
        .out(),
        "9 memory cpu"
    );
}
