//! The pod worker's decisions against the recording fake host (`runtime::host::fake`), without
//! root: which containers start after an exit under each restart policy, init containers in
//! order, and the order of a deletion. The API is a stub on a loopback port that lists no
//! services and knows no object: status patches and events fail (and are logged), which the
//! worker survives as it does an API outage.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use runtime::host::fake::{Call, Fake};
use serde_json::json;

use super::{Ctx, PodState};

/// The image every test pod runs, imported into the test's image store.
const IMAGE: &str = "registry.test/library/app:1";

/// A context on the fake host, with a temporary data directory and an image store holding
/// [`IMAGE`].
struct Harness {
    ctx: Ctx,
    fake: Arc<Fake>,
    _dir: tempfile::TempDir,
}

/// Writes an OCI image layout of one empty layer named `name` into `dir`.
fn write_image(dir: &std::path::Path, name: &str) {
    use sha2::Digest as _;
    use std::io::Write as _;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> String {
        let hex: String = sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    // An empty tar archive: two zero blocks.
    let tar = vec![0u8; 1024];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let diff_id = {
        let hex: String = sha2::Sha256::digest(&tar)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256:{hex}")
    };
    let config = json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string();
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": put(config.as_bytes()), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": put(&gz), "size": gz.len()}],
    })
    .to_string();
    let index = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put(manifest.as_bytes()), "size": manifest.len(),
            "annotations": {"io.containerd.image.name": name}}],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A client of a stub API server: it lists no services and answers everything else with
/// 404 Not Found.
async fn stub_api() -> kube::Client {
    use axum::http::{Method, StatusCode, Uri};
    let app = axum::Router::new().fallback(|method: Method, uri: Uri| async move {
        if method == Method::GET && uri.path().ends_with("/services") {
            let list = json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {},
                "items": []});
            (StatusCode::OK, axum::Json(list))
        } else {
            let status = json!({"apiVersion": "v1", "kind": "Status", "metadata": {},
                "status": "Failure", "reason": "NotFound", "code": 404,
                "message": format!("{} not found", uri.path())});
            (StatusCode::NOT_FOUND, axum::Json(status))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{address}").parse().unwrap();
    kube::Client::try_from(kube::Config::new(url)).unwrap()
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let images = image::Store::open(&data_dir.join("images")).unwrap();
        let layout = dir.path().join("layout");
        write_image(&layout, IMAGE);
        images.import(&layout).unwrap();
        let client = stub_api().await;
        let config = crate::Config {
            node_name: "node-1".into(),
            data_dir,
            pod_log_dir: dir.path().join("logs"),
            runtime: None,
            node_ip: "192.0.2.10".parse().unwrap(),
            port: crate::DEFAULT_PORT,
            bridge: crate::DEFAULT_BRIDGE.into(),
            pod_cidr: None,
            control_plane: false,
            max_pods: 110,
            registries: image::Registries::default(),
            tls: None,
            image_gc: crate::ImageGc {
                high: 85,
                low: 80,
                period: std::time::Duration::from_secs(300),
                min_age: std::time::Duration::from_secs(120),
            },
            allowed_unsafe_sysctls: Vec::new(),
            cluster_dns: None,
        };
        let fake = Arc::new(Fake::new());
        let ctx = Ctx {
            client: client.clone(),
            config: Arc::new(config),
            host: fake.clone(),
            images,
            events: crate::events::Recorder::new(client, "node-1".into()),
            capacity: crate::env::Allocatable {
                cpus: 2,
                memory: 4 << 30,
                ephemeral_storage: 20 << 30,
            },
            running: Default::default(),
            gate: crate::gate::Gate::new(2),
            arrivals: Default::default(),
        };
        Harness {
            ctx,
            fake,
            _dir: dir,
        }
    }

    /// A worker for `pod` with nothing recovered.
    fn worker(&self, pod: &Pod) -> PodState {
        PodState::new(pod.metadata.uid.clone().unwrap(), Vec::new(), &self.ctx)
    }
}

/// A pod with `spec` (containers without an image run [`IMAGE`]).
fn pod(mut spec: serde_json::Value) -> Pod {
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            if c.get("image").is_none() {
                c["image"] = json!(IMAGE);
            }
        }
    }
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-1"},
        "spec": spec,
    }))
    .unwrap()
}

/// The id of the latest attempt of container `name`.
fn latest_id(st: &PodState, name: &str) -> String {
    st.latest(name).unwrap().meta.id.clone()
}

#[tokio::test]
async fn the_restart_policy_decides_whether_an_ended_container_runs_again() {
    for (policy, code, again) in [
        ("Always", 0, true),
        ("Always", 1, true),
        ("OnFailure", 0, false),
        ("OnFailure", 1, true),
        ("Never", 0, false),
        ("Never", 1, false),
    ] {
        let h = Harness::new().await;
        let pod = pod(json!({"restartPolicy": policy, "containers": [{"name": "app"}]}));
        let mut st = h.worker(&pod);
        st.sync(&h.ctx, &pod).await;
        let first = latest_id(&st, "app");
        assert_eq!(h.fake.created(), std::slice::from_ref(&first), "{policy}");
        // Created, then started: its root filesystem mounted first.
        let calls = h.fake.calls();
        let at = |want: &Call| calls.iter().position(|c| c == want).unwrap();
        let dir = h.ctx.data().join("containers").join(&first);
        assert!(at(&Call::MountRootfs(dir)) < at(&Call::Start(first.clone())));

        h.fake.exit_with(&first, code);
        st.sync(&h.ctx, &pod).await;
        let created = h.fake.created();
        if again {
            assert_eq!(created.len(), 2, "{policy} restarts after exit {code}");
            assert_eq!(st.latest("app").unwrap().meta.attempt, 1);
            assert!(st.latest("app").unwrap().running());
        } else {
            assert_eq!(
                created.len(),
                1,
                "{policy} keeps it ended after exit {code}"
            );
            assert_eq!(st.latest("app").unwrap().exit_code(), Some(code));
        }
        // What ended was released: its runtime state and root filesystem.
        assert!(h.fake.calls().contains(&Call::Delete(first.clone())));
    }
}

#[tokio::test]
async fn a_container_crashing_again_backs_off() {
    let h = Harness::new().await;
    let pod = pod(json!({"containers": [{"name": "app"}]}));
    let mut st = h.worker(&pod);
    st.sync(&h.ctx, &pod).await;
    h.fake.exit_with(&latest_id(&st, "app"), 1);
    // The first restart is at once ...
    st.sync(&h.ctx, &pod).await;
    assert_eq!(h.fake.created().len(), 2);
    h.fake.exit_with(&latest_id(&st, "app"), 1);
    // ... the next one waits 10s: CrashLoopBackOff, nothing created.
    st.sync(&h.ctx, &pod).await;
    st.sync(&h.ctx, &pod).await;
    assert_eq!(h.fake.created().len(), 2);
    assert_eq!(st.waiting["app"].reason, "CrashLoopBackOff");
    let status = st.status(&h.ctx, &pod);
    assert_eq!(
        status["containerStatuses"][0]["state"]["waiting"]["reason"], "CrashLoopBackOff",
        "{status}"
    );
}

#[tokio::test]
async fn init_containers_run_one_at_a_time_in_order_before_the_app() {
    let h = Harness::new().await;
    let pod = pod(json!({
        "initContainers": [{"name": "first"}, {"name": "second"}],
        "containers": [{"name": "app"}],
    }));
    let mut st = h.worker(&pod);
    st.sync(&h.ctx, &pod).await;
    // Syncing again while the first runs starts nothing more.
    st.sync(&h.ctx, &pod).await;
    assert_eq!(h.fake.created(), [latest_id(&st, "first")]);
    h.fake.exit_with(&latest_id(&st, "first"), 0);
    st.sync(&h.ctx, &pod).await;
    st.sync(&h.ctx, &pod).await;
    assert_eq!(
        h.fake.created(),
        [latest_id(&st, "first"), latest_id(&st, "second")]
    );
    assert!(st.latest("app").is_none());
    h.fake.exit_with(&latest_id(&st, "second"), 0);
    st.sync(&h.ctx, &pod).await;
    assert_eq!(
        h.fake.created(),
        [
            latest_id(&st, "first"),
            latest_id(&st, "second"),
            latest_id(&st, "app")
        ]
    );
    assert_eq!(st.status(&h.ctx, &pod)["phase"], "Running");
    // One sandbox for all of them, set up on the first pass.
    let sandboxes = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::NetworkAdd(_)));
    assert_eq!(sandboxes.count(), 1);
}

#[tokio::test]
async fn a_failed_init_container_fails_a_pod_that_never_restarts() {
    for (policy, retried) in [("Never", false), ("OnFailure", true), ("Always", true)] {
        let h = Harness::new().await;
        let pod = pod(json!({
            "restartPolicy": policy,
            "initContainers": [{"name": "first"}, {"name": "second"}],
            "containers": [{"name": "app"}],
        }));
        let mut st = h.worker(&pod);
        st.sync(&h.ctx, &pod).await;
        h.fake.exit_with(&latest_id(&st, "first"), 1);
        st.sync(&h.ctx, &pod).await;
        st.sync(&h.ctx, &pod).await;
        assert!(st.latest("second").is_none(), "{policy}");
        assert!(st.latest("app").is_none(), "{policy}");
        let created = h.fake.created();
        if retried {
            assert_eq!(created.len(), 2, "{policy}: the init container runs again");
            assert_eq!(st.latest("first").unwrap().meta.attempt, 1);
        } else {
            assert_eq!(created.len(), 1, "{policy}");
            let status = st.status(&h.ctx, &pod);
            assert_eq!(status["phase"], "Failed", "{status}");
        }
    }
}

#[tokio::test]
async fn deleting_a_pod_kills_its_containers_then_tears_down_the_sandbox() {
    let h = Harness::new().await;
    let pod = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
    let mut st = h.worker(&pod);
    st.sync(&h.ctx, &pod).await;
    let (a, b) = (latest_id(&st, "a"), latest_id(&st, "b"));
    assert!(st.latest("a").unwrap().running() && st.latest("b").unwrap().running());
    let before = h.fake.calls().len();

    let mut deleted = pod.clone();
    deleted.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
    );
    deleted.metadata.deletion_grace_period_seconds = Some(30);
    st.terminate(&h.ctx, &deleted).await;

    let calls = h.fake.calls()[before..].to_vec();
    let at = |want: Call| {
        calls
            .iter()
            .position(|c| *c == want)
            .unwrap_or_else(|| panic!("no {want:?} in {calls:?}"))
    };
    let pod_dir = h.ctx.pod_dir("uid-1");
    let network = at(Call::NetworkDel("uid-1".into()));
    let namespaces = at(Call::RemoveNamespaces(pod_dir.clone()));
    for id in [&a, &b] {
        // Within the grace period: SIGTERM, then the runtime's state goes.
        let kill = at(Call::Kill(id.clone(), "TERM".into()));
        let delete = at(Call::Delete(id.clone()));
        assert!(kill < delete, "{calls:?}");
        assert!(delete < network, "{calls:?}");
    }
    assert!(network < namespaces, "{calls:?}");
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::Kill(_, s) if s == "KILL"))
    );
    assert!(at(Call::UnmountBelow(pod_dir.clone())) > namespaces);
    assert!(!pod_dir.exists());
    assert!(st.records.is_empty());
}

#[tokio::test]
async fn a_pod_gone_from_the_api_is_killed_at_once_and_cleaned_up() {
    let h = Harness::new().await;
    let pod = pod(json!({"containers": [{"name": "app"}]}));
    let mut st = h.worker(&pod);
    st.sync(&h.ctx, &pod).await;
    let id = latest_id(&st, "app");
    let before = h.fake.calls().len();
    // What the worker does when its pod is deleted without it (a watch `Delete`).
    st.stop_all_quick(&h.ctx).await;
    st.cleanup(&h.ctx, None).await;
    let calls = h.fake.calls()[before..].to_vec();
    let pod_dir = h.ctx.pod_dir("uid-1");
    assert_eq!(calls[0], Call::Kill(id.clone(), "KILL".into()));
    for want in [
        Call::Delete(id),
        Call::NetworkDel("uid-1".into()),
        Call::RemoveNamespaces(pod_dir.clone()),
        Call::RemoveCgroup("/rudder/besteffort/poduid-1".into()),
        Call::UnmountBelow(pod_dir.clone()),
    ] {
        assert!(calls.contains(&want), "no {want:?} in {calls:?}");
    }
    assert!(!pod_dir.exists());
}
