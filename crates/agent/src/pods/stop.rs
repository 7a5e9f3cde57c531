//! Termination and deletion: stopping a pod's containers within the grace period (preStop
//! hooks, SIGTERM, then SIGKILL), releasing what ended, and removing everything of a pod from
//! the host once it is deleted or gone.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions};

use super::resources::pod_cgroup;
use super::{Ctx, PodState, field, spec_containers};
use crate::containers::{self, Record};

/// The pod's grace period for stopping its containers.
pub(super) fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0);
    Duration::from_secs(secs as u64)
}

impl PodState {
    /// Stops every running container: SIGTERM, then SIGKILL after `grace`.
    pub(super) async fn stop_all(&mut self, ctx: &Ctx, pod: &Pod, grace: Duration) {
        let running: Vec<(String, String)> = self
            .records
            .values()
            .filter_map(|l| l.last())
            .filter(|r| r.running())
            .map(|r| (r.meta.id.clone(), r.meta.name.clone()))
            .collect();
        if running.is_empty() {
            return;
        }
        let t0 = Instant::now();
        self.pre_stop(ctx, pod, &running, grace).await;
        let grace = grace.saturating_sub(t0.elapsed());
        for (id, name) in &running {
            ctx.events.pod(
                pod,
                Some(format!("spec.containers{{{name}}}")),
                false,
                "Killing",
                format!("Stopping container {name}"),
            );
            let signal = if grace.is_zero() { "KILL" } else { "TERM" };
            if let Err(e) = ctx.host.kill(id, signal).await {
                tracing::debug!("{e:#}");
            }
        }
        let deadline = Instant::now() + grace;
        let all_done = |ctx: &Ctx| {
            running.iter().all(|(id, _)| {
                ctx.host
                    .exit(&containers::exit_file(ctx.data(), id))
                    .is_some()
            })
        };
        while !all_done(ctx) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !all_done(ctx) {
            for (id, _) in &running {
                let _ = ctx.host.kill(id, "KILL").await;
            }
            let hard = Instant::now() + Duration::from_secs(5);
            while !all_done(ctx) && Instant::now() < hard {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.refresh(ctx).await;
        self.mark_running(ctx, pod);
    }

    /// Runs the preStop hooks of the running containers, all at once, within `grace`.
    async fn pre_stop(&self, ctx: &Ctx, pod: &Pod, running: &[(String, String)], grace: Duration) {
        let (inits, apps) = spec_containers(pod);
        let ip = self
            .sandbox
            .as_ref()
            .map(|s| s.ip().to_string())
            .unwrap_or_default();
        let hooks = running.iter().filter_map(|(id, name)| {
            let c = apps.iter().chain(inits.iter()).find(|c| &c.name == name)?;
            let h = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
            Some((id, c, h))
        });
        let runs = hooks.map(|(id, c, h)| {
            let ip = ip.clone();
            async move {
                let r = tokio::time::timeout(grace, crate::probe::hook(ctx, c, id, &ip, h)).await;
                let err = match r {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e,
                    Err(_) => format!(
                        "the hook did not finish within the grace period ({}s)",
                        grace.as_secs()
                    ),
                };
                ctx.events.pod(
                    pod,
                    Some(field(c, false)),
                    true,
                    "FailedPreStopHook",
                    format!("PreStopHook failed: {err}"),
                );
            }
        });
        futures::future::join_all(runs).await;
    }

    /// Removes everything of the pod from the host.
    pub(super) async fn cleanup(&mut self, ctx: &Ctx, pod: Option<&Pod>) {
        for list in std::mem::take(&mut self.records).into_values() {
            for r in list {
                let _ = ctx.host.delete(&r.meta.id).await;
                remove_record(ctx, &r).await;
            }
        }
        let dir = ctx.pod_dir(&self.uid);
        if let Some(pod) = pod {
            self.teardown_sandbox(ctx, pod).await;
            let cg = pod_cgroup(pod, &self.uid);
            ctx.host.remove_cgroup(&cg);
        } else {
            if let Some(sb) = self.sandbox.take()
                && !sb.host_network
            {
                let _ = ctx
                    .host
                    .network_del(
                        &self.uid,
                        &dir.join("ns/net"),
                        &sb.port_mappings(),
                        sb.cni_result.as_ref(),
                    )
                    .await;
            }
            let _ = ctx.host.remove_namespaces(&dir);
            for qos in ["", "/burstable", "/besteffort"] {
                ctx.host
                    .remove_cgroup(&format!("/rudder{qos}/pod{}", self.uid));
            }
        }
        crate::volumes::teardown(&*ctx.host, &dir);
        ctx.host.unmount_below(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        // The pod's log directory goes with it, as the kubelet's does.
        let suffix = format!("_{}", self.uid);
        for e in std::fs::read_dir(&ctx.config.pod_log_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().ends_with(&suffix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Graceful deletion: stop within the grace period, report, remove the object.
    pub(super) async fn terminate(&mut self, ctx: &Ctx, pod: &Pod) {
        self.stop_all(ctx, pod, grace_period(pod)).await;
        self.finished = true;
        self.post_status(ctx, pod).await;
        self.cleanup(ctx, Some(pod)).await;
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %pod.name_any(), "removing the pod: {e}"),
        }
    }
}

impl PodState {
    /// Kills what still runs, at once (the pod object is gone).
    pub(super) async fn stop_all_quick(&mut self, ctx: &Ctx) {
        for list in self.records.values() {
            if let Some(r) = list.last()
                && r.running()
            {
                let _ = ctx.host.kill(&r.meta.id, "KILL").await;
            }
        }
    }
}

/// Releases a container that ended: its runtime state, cgroup and root filesystem.
pub(super) async fn release(ctx: &Ctx, r: &mut Record) {
    if let Err(e) = ctx.host.delete(&r.meta.id).await {
        tracing::debug!("{e:#}");
    }
    ctx.host.remove_cgroup(&r.meta.cgroup);
    if let Err(e) = ctx
        .host
        .remove_rootfs(&containers::dir(ctx.data(), &r.meta.id))
    {
        tracing::warn!("{e:#}");
    }
    r.released = true;
}

/// Forgets a container: its directory and log file.
pub(super) async fn remove_record(ctx: &Ctx, r: &Record) {
    let dir = containers::dir(ctx.data(), &r.meta.id);
    let _ = ctx.host.remove_rootfs(&dir);
    ctx.host.remove_cgroup(&r.meta.cgroup);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&r.meta.log);
}
