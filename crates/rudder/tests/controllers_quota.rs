//! Quotas and limit ranges inside `rudder server`, through kubectl: LimitRange defaults and
//! bounds on pod creation, ResourceQuota admission in upstream's words, and usage kept by
//! the quota controller.

mod support;

use support::{Cluster, eventually};

fn get(c: &Cluster, args: &[&str]) -> String {
    c.kubectl(args).stdout.trim().to_string()
}

fn pod(c: &Cluster, name: &str, resources: &str) -> support::Run {
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: team}}\nspec:\n  \
         containers: [{{name: app, image: nginx{resources}}}]\n"
    ))
}

#[test]
fn limit_ranges_default_and_bound_pods_and_quotas_cap_them() {
    let c = Cluster::start(&[]);
    c.kubectl(&["create", "namespace", "team"]).out();
    c.apply(
        "apiVersion: v1\nkind: LimitRange\nmetadata: {name: limits, namespace: team}\nspec:\n  \
         limits:\n  - type: Container\n    default: {cpu: 500m}\n    defaultRequest: {cpu: 200m}\n    \
         max: {cpu: '1'}\n---\napiVersion: v1\nkind: ResourceQuota\n\
         metadata: {name: q, namespace: team}\nspec:\n  hard: {pods: '2', requests.cpu: '1', configmaps: '10'}\n",
    )
    .out();
    eventually("the quota's status", || {
        get(
            &c,
            &[
                "get",
                "quota",
                "q",
                "-n",
                "team",
                "-o",
                "jsonpath={.status.hard.pods}",
            ],
        ) == "2"
    });

    // Defaults fill in what the container leaves out.
    pod(&c, "a", "").out();
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "pod",
                "a",
                "-n",
                "team",
                "-o",
                "jsonpath={.spec.containers[0].resources}"
            ]
        ),
        r#"{"limits":{"cpu":"500m"},"requests":{"cpu":"200m"}}"#
    );
    // Beyond the maximum: refused.
    let big = pod(&c, "big", ", resources: {limits: {cpu: '2'}}");
    assert!(
        big.stderr.contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{}",
        big.stderr
    );
    // The quota counts admitted pods at once.
    assert_eq!(
        get(
            &c,
            &[
                "get",
                "quota",
                "q",
                "-n",
                "team",
                "-o",
                "jsonpath={.status.used.pods} {.status.used.requests\\.cpu}"
            ]
        ),
        "1 200m"
    );
    pod(&c, "b", "").out();
    let over = pod(&c, "c", "");
    assert!(
        over.stderr.contains(
            "pods \"c\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        ),
        "{}",
        over.stderr
    );
    let described = get(&c, &["describe", "quota", "q", "-n", "team"]);
    assert!(described.contains("pods          2     2"), "{described}");

    // Deleting a pod gives its room back (the controller recounts).
    c.kubectl(&[
        "delete",
        "pod",
        "a",
        "-n",
        "team",
        "--grace-period=0",
        "--force",
    ])
    .out();
    eventually("the usage recounted", || {
        get(
            &c,
            &[
                "get",
                "quota",
                "q",
                "-n",
                "team",
                "-o",
                "jsonpath={.status.used.pods}",
            ],
        ) == "1"
    });
    pod(&c, "c", "").out();
    // Other kinds count too.
    c.kubectl(&["create", "configmap", "x", "-n", "team"]).out();
    eventually("configmaps counted", || {
        let listed = get(&c, &["get", "configmaps", "-n", "team", "-o", "name"]);
        get(
            &c,
            &[
                "get",
                "quota",
                "q",
                "-n",
                "team",
                "-o",
                "jsonpath={.status.used.configmaps}",
            ],
        ) == listed.lines().count().to_string()
    });
}
