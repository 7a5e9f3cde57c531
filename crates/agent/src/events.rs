//! Events the agent records about pods, as the kubelet does (source component `kubelet`,
//! the node as host): Pulling, Pulled, Created, Started, Killing, BackOff, Unhealthy, Failed.
//!
//! Like client-go's event correlator, an event that repeats one recorded before (same object,
//! field, type, reason and message) is not created again: the first one's `count` goes up and
//! its `lastTimestamp` moves, so `kubectl describe` shows `(x5 over 2m)`. Events are written in
//! order by one task, from a bounded queue; when the queue is full, events are dropped (and
//! logged), never the agent's work held up.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Events waiting to be written, at most.
const QUEUE: usize = 1000;
/// Recorded events remembered for counting repeats, at most (client-go's cache size).
const REMEMBERED: usize = 4096;

/// Records events; failures are logged, never fatal.
#[derive(Clone)]
pub(crate) struct Recorder {
    node: String,
    queue: mpsc::Sender<Value>,
}

impl Recorder {
    /// Starts the task that writes the events.
    pub(crate) fn new(client: kube::Client, node: String) -> Recorder {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(client, rx));
        Recorder { node, queue }
    }

    /// An event about `pod` (`field` names a container: `spec.containers{name}`).
    pub(crate) fn pod(
        &self,
        pod: &Pod,
        field: Option<String>,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let ns = pod.namespace().unwrap_or_default();
        let now = jiff::Timestamp::now();
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            // Named as the kubelet names them, `<pod>.<nanoseconds in hex>`: in creation order.
            "metadata": {"name": format!("{}.{:x}", pod.name_any(), now.as_nanosecond()), "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": ns,
                "name": pod.name_any(), "uid": pod.uid(), "fieldPath": field,
                "resourceVersion": pod.resource_version()},
            "reason": reason, "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": "kubelet", "host": self.node},
            "firstTimestamp": now.to_string(), "lastTimestamp": now.to_string(), "count": 1,
            "reportingComponent": "kubelet", "reportingInstance": self.node,
        });
        if self.queue.try_send(event).is_err() {
            tracing::warn!(reason, "dropping an event: the event queue is full");
        }
    }
}

/// What makes two events the same, for counting.
fn key(event: &Value) -> String {
    let o = &event["involvedObject"];
    [
        &o["namespace"],
        &o["uid"],
        &o["fieldPath"],
        &event["type"],
        &event["reason"],
        &event["message"],
    ]
    .iter()
    .map(|v| v.to_string())
    .collect::<Vec<_>>()
    .join("\u{0}")
}

/// The name and count of an event written before.
struct Written {
    name: String,
    count: u64,
}

/// Writes the queued events in order: a repeat raises the count of the one written before.
async fn write(client: kube::Client, mut rx: mpsc::Receiver<Value>) {
    let mut written: HashMap<String, Written> = HashMap::new();
    while let Some(mut event) = rx.recv().await {
        let ns = event["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        let key = key(&event);
        if let Some(w) = written.get_mut(&key) {
            w.count += 1;
            let patch = json!({"count": w.count, "lastTimestamp": event["lastTimestamp"]});
            match api
                .patch(&w.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                // Gone (expired or deleted): recorded afresh below, with the count so far.
                Err(kube::Error::Api(s)) if s.code == 404 => event["count"] = json!(w.count),
                Err(e) => {
                    tracing::debug!("recording an event: {e}");
                    continue;
                }
            }
        }
        let Ok(typed) = serde_json::from_value::<Event>(event.clone()) else {
            continue;
        };
        match api.create(&PostParams::default(), &typed).await {
            Ok(_) => {
                if written.len() >= REMEMBERED {
                    written.clear();
                }
                let name = event["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let count = event["count"].as_u64().unwrap_or(1);
                written.insert(key, Written { name, count });
            }
            Err(e) => tracing::debug!("recording an event: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_share_a_key_and_other_messages_do_not() {
        let event = |message: &str| {
            json!({"involvedObject": {"namespace": "d", "uid": "u1", "fieldPath": "spec.containers{c}"},
                "type": "Warning", "reason": "Unhealthy", "message": message, "count": 1})
        };
        assert_eq!(key(&event("probe failed")), key(&event("probe failed")));
        assert_ne!(
            key(&event("probe failed")),
            key(&event("probe failed again"))
        );
        let mut other_pod = event("probe failed");
        other_pod["involvedObject"]["uid"] = json!("u2");
        assert_ne!(key(&event("probe failed")), key(&other_pod));
    }
}
