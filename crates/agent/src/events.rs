//! Events the agent records about pods, as the kubelet does (source component `kubelet`,
//! the node as host): Pulling, Pulled, Created, Started, Killing, BackOff, Unhealthy, Failed.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::json;

/// Records events; failures are logged, never fatal.
#[derive(Clone)]
pub(crate) struct Recorder {
    client: kube::Client,
    node: String,
}

impl Recorder {
    pub(crate) fn new(client: kube::Client, node: String) -> Recorder {
        Recorder { client, node }
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
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        tokio::spawn(async move {
            let Ok(event) = serde_json::from_value::<Event>(event) else {
                return;
            };
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!("recording an event: {e}");
            }
        });
    }
}
