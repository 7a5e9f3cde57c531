//! The benchmarks run end to end (tiny sizes) and print the JSON keys docs/benchmarks.md
//! records. Numbers are not checked: tests never judge timing.

use std::process::Command;

use store::testing::EtcdServer;

const KEYS: [&str; 7] = [
    "seq_writes_per_s",
    "concurrent_writes_per_s",
    "point_reads_per_s",
    "range_10k_ms",
    "watch_p50_ms",
    "watch_p99_ms",
    "db_bytes_after_compaction",
];

fn bench(extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args([
            "bench",
            "store",
            "--json",
            "--seq-writes",
            "20",
            "--concurrent-writes",
            "200",
        ])
        .args([
            "--reads",
            "200",
            "--range-keys",
            "100",
            "--watch-events",
            "20",
        ])
        .args([
            "--updates",
            "400",
            "--update-keys",
            "20",
            "--compact-every",
            "100",
        ])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("some output");
    let v: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    for key in KEYS {
        assert!(
            v[key].as_f64().is_some_and(|n| n >= 0.0),
            "{key} missing in {v}"
        );
    }
    assert_eq!(v["range_keys"], 100);
    v
}

#[test]
fn bench_store_reports_every_key_on_sqlite() {
    let v = bench(&[]);
    assert!(v["db_bytes_after_compaction"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_store_reports_every_key_on_etcd() {
    let etcd = EtcdServer::start().await;
    let endpoint = format!("etcd://{}", etcd.endpoint());
    tokio::task::spawn_blocking(move || bench(&["--datastore-endpoint", &endpoint]))
        .await
        .unwrap();
}

#[test]
fn a_bad_endpoint_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(["bench", "store", "--datastore-endpoint", "mysql://db"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid datastore endpoint \"mysql://db\""),
        "{err}"
    );
}

#[test]
fn bench_api_reports_every_key() {
    bench_json(
        &[
            "api",
            "--pods",
            "50",
            "--configmaps",
            "20",
            "--clients",
            "4",
            "--watchers",
            "10",
            "--updates",
            "5",
        ],
        &[
            "create_per_s",
            "store_write_per_s",
            "create_p99_ms",
            "list_10k_ms",
            "watch_p99_ms",
            "rss_idle_mb",
            "rss_loaded_mb",
        ],
    );
}

#[test]
fn bench_authz_reports_every_key() {
    let v = bench_json(
        &[
            "authz",
            "--bindings",
            "200",
            "--requests",
            "50",
            "--token-seconds",
            "0.2",
        ],
        &[
            "allowed_p99_us_0",
            "denied_p99_us_0",
            "allowed_p99_us",
            "denied_p99_us",
            "signatures_per_s",
            "token_checks_per_s",
            "token_check_ratio",
        ],
    );
    assert!(v.get("added_p99_us").is_some(), "{v}");
}

#[test]
fn bench_scheduler_reports_every_key() {
    let v = bench_json(
        &["scheduler", "--nodes", "20", "--pods", "60"],
        &["plain_pods_per_s", "spread_pods_per_s", "attempt_p99_ms"],
    );
    assert_eq!(v["nodes"], 20);
}

#[test]
fn bench_controllers_reports_every_key() {
    bench_json(
        &[
            "controllers",
            "--nodes",
            "3",
            "--replicas",
            "20",
            "--deployments",
            "3",
        ],
        &[
            "available_s",
            "rollout_s",
            "many_available_s",
            "writes_per_pod",
        ],
    );
}

#[test]
fn bench_dns_reports_every_key() {
    let v = bench_json(
        &["dns", "--services", "50", "--seconds", "1"],
        &[
            "rudder_qps",
            "knot_qps",
            "rudder_over_knot",
            "rudder_avg_latency_ms",
        ],
    );
    assert_eq!(v["services"], 50);
}

/// Runs `rudder bench <args> --json` and returns its JSON object, every `keys` positive.
fn bench_json(args: &[&str], keys: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    for key in keys {
        assert!(
            v[key].as_f64().is_some_and(|n| n > 0.0),
            "{key} missing in {v}"
        );
    }
    v
}

#[test]
fn bench_services_reports_every_key_and_leaves_no_namespace() {
    let v = bench_json(
        &[
            "services",
            "--services",
            "200",
            "--updates",
            "3",
            "--connections",
            "20",
            "--seconds",
            "1",
        ],
        &[
            "direct_gbps",
            "cluster_ip_gbps",
            "cluster_ip_over_direct",
            "cluster_ip_connect_p99_us",
            "update_p99_ms",
            "full_load_ms",
        ],
    );
    assert_eq!(v["services"], 200);
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&namespaces.stdout);
    assert!(!listed.contains("rudder-bench-"), "{listed}");
}

#[test]
fn bench_ingress_reports_every_key() {
    bench_json(
        &["ingress", "--seconds", "1", "--connections", "4"],
        &[
            "rudder_rps",
            "nginx_rps",
            "rudder_over_nginx",
            "rudder_p99_ms",
        ],
    );
}
