//! Reporting: the pod's status computed from what the worker knows, patched when it changed.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::{Ctx, PodState};

impl PodState {
    /// Computes the status and patches it when it changed.
    pub(super) async fn post_status(&mut self, ctx: &Ctx, pod: &Pod) {
        let status = self.status(ctx, pod);
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        let mut patch = json!({"status": status.clone()});
        patch["metadata"] = json!({"uid": pod.uid()});
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => self.last_status = Some(status),
            Err(e) => tracing::debug!(pod = %pod.name_any(), "posting the pod status: {e}"),
        }
    }

    /// The pod's status as this worker sees it.
    pub(super) fn status(&self, ctx: &Ctx, pod: &Pod) -> Value {
        crate::status::build(&crate::status::Input {
            pod,
            records: &self.records,
            waiting: &self
                .waiting
                .iter()
                .map(|(k, w)| (k.clone(), (w.reason.clone(), w.message.clone())))
                .collect(),
            ready: &self.probes.ready_map(),
            sandbox_ready: self.sandbox.is_some() && !self.finished,
            ips: self
                .sandbox
                .as_ref()
                .map(|s| s.ips.clone())
                .unwrap_or_default(),
            host_ip: ctx.config.node_ip.to_string(),
            start_time: self.start_time,
            runtime: ctx.host.runtime_name(),
            deleting: pod::is_terminating(pod) || self.finished,
            data: ctx.data(),
            failure: self.failure.clone(),
        })
    }
}
