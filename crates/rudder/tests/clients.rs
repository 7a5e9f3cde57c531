//! Client libraries other than kubectl against the real server: the official Python client
//! (`kubernetes` from PyPI, installed by scripts/test.sh): pagination, watch resume, and
//! concurrent conflicting updates; and kube-rs (the client Rudder's own components use).

mod support;

use std::process::Command;

use support::Cluster;

/// The Python with the `kubernetes` package: `RUDDER_TEST_PYTHON`, set by scripts/test.sh,
/// or `python3`.
fn python() -> String {
    std::env::var("RUDDER_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs one script of tests/python against `c`; returns its stdout.
fn run_python(c: &Cluster, script: &str) -> String {
    let path = format!("{}/../../tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python())
        .arg(path)
        .arg(c.kubeconfig())
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'kubernetes'"),
        "the Python client is missing: run scripts/test.sh, which installs it, or pip install kubernetes"
    );
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The server for tests that count the ConfigMaps of `default`: without the publisher that
/// adds `kube-root-ca.crt` to every namespace.
fn without_root_ca() -> Cluster {
    Cluster::start(&["--disable-controller", "root-ca-certificate-publisher"])
}

// conformance: 170, 171
#[test]
fn python_client_paginates_and_resumes_watches() {
    let c = without_root_ca();
    assert!(run_python(&c, "client_test.py").contains("python client: ok"));
}

#[test]
fn a_thousand_concurrent_conflicting_updates_have_exactly_one_winner() {
    let c = Cluster::start(&[]);
    assert!(run_python(&c, "conflicts_test.py").contains("conflicts: ok"));
}

// conformance: 171
#[test]
fn kube_rs_lists_in_pages_and_resumes_watches() {
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
    use kube::runtime::WatchStreamExt;

    let c = without_root_ca();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = c.kube_client().await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let cm = |name: &str| {
            serde_json::from_value::<ConfigMap>(serde_json::json!({"metadata": {"name": name}}))
                .unwrap()
        };
        let names: Vec<String> = (0..25).map(|i| format!("kube-{i:02}")).collect();
        for n in &names {
            cms.create(&PostParams::default(), &cm(n)).await.unwrap();
        }

        // Pages of 10 at one snapshot.
        let (mut seen, mut token) = (Vec::new(), None::<String>);
        loop {
            let mut lp = ListParams::default().limit(10);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = cms.list(&lp).await.unwrap();
            seen.extend(page.items.iter().map(|o| o.metadata.name.clone().unwrap()));
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen, names);

        // Watch from the list's resourceVersion, then resume from the second event's.
        let rv = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        for n in ["w-1", "w-2", "w-3"] {
            cms.create(&PostParams::default(), &cm(n)).await.unwrap();
        }
        let events: Vec<WatchEvent<ConfigMap>> = cms
            .watch(&WatchParams::default().timeout(10), &rv)
            .await
            .unwrap()
            .take(3)
            .try_collect()
            .await
            .unwrap();
        let added: Vec<(String, String)> = events
            .iter()
            .map(|e| match e {
                WatchEvent::Added(o) => (
                    o.metadata.name.clone().unwrap(),
                    o.metadata.resource_version.clone().unwrap(),
                ),
                other => panic!("expected ADDED, got {other:?}"),
            })
            .collect();
        assert_eq!(
            added.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
            ["w-1", "w-2", "w-3"]
        );
        let resumed: Vec<WatchEvent<ConfigMap>> = cms
            .watch(&WatchParams::default().timeout(10), &added[1].1)
            .await
            .unwrap()
            .take(1)
            .try_collect()
            .await
            .unwrap();
        assert!(
            matches!(&resumed[0], WatchEvent::Added(o) if o.metadata.name.as_deref() == Some("w-3"))
        );

        // kube-runtime's watcher (list, then watch) sees the whole set.
        let objects: Vec<ConfigMap> = kube::runtime::watcher(cms.clone(), Default::default())
            .applied_objects()
            .take(28)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(objects.len(), 28);
    });
}
