//! The watch on the node's pods and the worker loop: one task per pod (in a `pod` span naming
//! it), fed the pod's latest version, that syncs it every second until it is deleted or gone; pods this node ran before
//! an agent restart are picked up again, or cleaned up when they no longer exist.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::watch;
use tracing::Instrument as _;

use super::{Ctx, PodState};
use crate::containers::{self, Record};

/// How often a worker looks at its pod when nothing happens.
const RESYNC: Duration = Duration::from_secs(1);

/// A worker: follows its pod until it is gone from the node.
async fn worker(
    ctx: Arc<Ctx>,
    uid: String,
    mut rx: watch::Receiver<Option<Arc<Pod>>>,
    recovered: Vec<Record>,
) {
    let mut st = PodState::new(uid, recovered, &ctx);
    loop {
        let pod = rx.borrow_and_update().clone();
        match pod {
            None => {
                st.stop_all_quick(&ctx).await;
                st.cleanup(&ctx, None).await;
                return;
            }
            Some(pod) if pod::is_terminating(&pod) => {
                st.terminate(&ctx, &pod).await;
                return;
            }
            Some(pod) => st.sync(&ctx, &pod).await,
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return; },
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// Watches the node's pods and runs a worker for each.
pub(crate) async fn run(ctx: Arc<Ctx>) {
    let mut recovered: HashMap<String, Vec<Record>> = HashMap::new();
    for r in containers::load_all(&*ctx.host, ctx.data()) {
        recovered.entry(r.meta.pod_uid.clone()).or_default().push(r);
    }
    // Pod directories without containers are recovered too (a sandbox may exist).
    for e in std::fs::read_dir(ctx.data().join("pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
        recovered
            .entry(e.file_name().to_string_lossy().into_owned())
            .or_default();
    }
    if !recovered.is_empty() {
        tracing::info!(
            pods = recovered.len(),
            "picking up the pods this node ran before"
        );
    }
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    let mut stream = watcher::watcher(api, cfg).boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut seen_in_init: HashSet<String> = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Some(event) = event else { break };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("watching the node's pods: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        workers.retain(|_, tx| !tx.is_closed());
        let mut apply =
            |pod: Pod, workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>| {
                let uid = pod.uid().unwrap_or_default();
                let span = tracing::info_span!(
                    "pod",
                    pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()),
                    uid = %uid,
                );
                let pod = Arc::new(pod);
                if let Some(tx) = workers.get(&uid) {
                    let _ = tx.send(Some(pod));
                    return;
                }
                let (tx, rx) = watch::channel(Some(pod));
                workers.insert(uid.clone(), tx);
                let rec = recovered.remove(&uid).unwrap_or_default();
                // What the worker logs says which pod.
                tasks.spawn(worker(ctx.clone(), uid, rx, rec).instrument(span));
            };
        match event {
            watcher::Event::Init => seen_in_init.clear(),
            watcher::Event::InitApply(pod) => {
                seen_in_init.insert(pod.uid().unwrap_or_default());
                apply(pod, &mut workers);
            }
            watcher::Event::Apply(pod) => apply(pod, &mut workers),
            watcher::Event::Delete(pod) => {
                if let Some(tx) = workers.get(&pod.uid().unwrap_or_default()) {
                    let _ = tx.send(None);
                }
            }
            watcher::Event::InitDone => {
                for (uid, tx) in &workers {
                    if !seen_in_init.contains(uid) {
                        let _ = tx.send(None);
                    }
                }
                // What ran here before for pods that no longer exist goes.
                for (uid, rec) in recovered.drain() {
                    let ctx = ctx.clone();
                    tasks.spawn(async move {
                        let mut st = PodState::new(uid, rec, &ctx);
                        st.stop_all_quick(&ctx).await;
                        st.cleanup(&ctx, None).await;
                    });
                }
            }
        }
    }
}
