//! One pass of a pod's worker over its pod (`PodState::sync`): read what ended, fail the pod
//! for its deadline or a forbidden sysctl, ensure the sandbox, then start or probe its
//! containers; plus the bookkeeping around a pass (volumes refreshed, running containers
//! published for the agent's endpoint).

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;

use super::sandbox::own_namespaces;
use super::stop::{grace_period, release, remove_record};
use super::sysctl::forbidden_sysctl;
use super::{Ctx, PodState, Running, field, parse_time};
use crate::containers;
use crate::env::Sources;

/// How often projected volumes are refreshed from their sources.
const VOLUME_RESYNC: Duration = Duration::from_secs(10);

impl PodState {
    /// Reads exit files of running containers and releases what ended.
    pub(super) async fn refresh(&mut self, ctx: &Ctx) {
        for list in self.records.values_mut() {
            for r in list.iter_mut() {
                if r.exit.is_none() && r.meta.start_error.is_none() {
                    r.exit = ctx
                        .host
                        .exit(&containers::exit_file(ctx.data(), &r.meta.id));
                    if r.exit.is_some() {
                        r.oom = ctx.host.oom_killed(&r.meta.cgroup);
                    }
                }
                if (r.exit.is_some() || r.meta.start_error.is_some()) && !r.released {
                    release(ctx, r).await;
                }
            }
            // Keep the current and the previous attempt.
            while list.len() > 2 {
                let old = list.remove(0);
                remove_record(ctx, &old).await;
            }
        }
    }

    /// One pass over the pod.
    pub(super) async fn sync(&mut self, ctx: &Ctx, pod: &Pod) {
        self.refresh(ctx).await;
        if self.start_time.is_none() {
            self.start_time = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
                .or_else(|| Some(Timestamp::now()));
        }
        let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        if let (Some(secs), Some(start), false) = (deadline, self.start_time, self.finished)
            && Timestamp::now().duration_since(start).as_secs() >= secs
        {
            let msg = "Pod was active on the node longer than the specified deadline";
            ctx.events
                .pod(pod, None, true, "DeadlineExceeded", msg.into());
            self.failure = Some(("DeadlineExceeded".into(), msg.into()));
            self.stop_all(ctx, pod, grace_period(pod)).await;
            self.finished = true;
            self.teardown_sandbox(ctx, pod).await;
            self.post_status(ctx, pod).await;
            return;
        }
        if self.finished || pod::is_terminal(pod) {
            if !self.finished {
                self.finished = true;
                self.stop_all(ctx, pod, Duration::from_secs(0)).await;
                self.teardown_sandbox(ctx, pod).await;
            }
            self.post_status(ctx, pod).await;
            return;
        }
        if self.sandbox.is_none()
            && let Some(bad) = forbidden_sysctl(pod, &ctx.config.allowed_unsafe_sysctls)
        {
            // Refused before anything runs, as the kubelet's admission refuses it.
            let msg = format!("forbidden sysctl: {bad:?} not allowlisted");
            ctx.events
                .pod(pod, None, true, "SysctlForbidden", msg.clone());
            self.failure = Some(("SysctlForbidden".into(), format!("Pod was rejected: {msg}")));
            self.finished = true;
            self.post_status(ctx, pod).await;
            return;
        }
        if let Err(msg) = self.ensure_sandbox(ctx, pod).await {
            tracing::warn!(pod = %pod.name_any(), "{msg}");
            ctx.events
                .pod(pod, None, true, "FailedCreatePodSandBox", msg);
            self.post_status(ctx, pod).await;
            return;
        }
        if self.init_containers(ctx, pod).await {
            self.app_containers(ctx, pod).await;
        }
        self.refresh_volumes(ctx, pod).await;
        self.mark_running(ctx, pod);
        self.post_status(ctx, pod).await;
    }

    /// Brings configMap, secret and downwardAPI volumes up to date every [`VOLUME_RESYNC`],
    /// as the kubelet's periodic sync does.
    async fn refresh_volumes(&mut self, ctx: &Ctx, pod: &Pod) {
        if self
            .volumes_synced
            .is_some_and(|t| t.elapsed() < VOLUME_RESYNC)
        {
            return;
        }
        let Some(sb) = &self.sandbox else { return };
        self.volumes_synced = Some(Instant::now());
        let sources = Sources::new(ctx.client.clone(), pod.namespace().unwrap_or_default());
        let host_ip = ctx.config.node_ip.to_string();
        let at = crate::volumes::Downward {
            pod_ip: sb.ip(),
            host_ip: &host_ip,
            node: ctx.capacity,
        };
        if let Err(msg) =
            crate::volumes::ensure(&*ctx.host, pod, &ctx.pod_dir(&self.uid), &sources, at).await
        {
            self.mount_failed(ctx, pod, msg);
        }
    }

    /// Reports a volume that cannot be provided with a `FailedMount` event, once per distinct
    /// message (the sync loop retries every second).
    pub(super) fn mount_failed(&mut self, ctx: &Ctx, pod: &Pod, msg: String) {
        if self.mount_error.as_ref() != Some(&msg) {
            tracing::warn!(pod = %pod.name_any(), "{msg}");
            ctx.events.pod(pod, None, true, "FailedMount", msg.clone());
            self.mount_error = Some(msg);
        }
    }

    pub(super) fn mark_running(&self, ctx: &Ctx, pod: &Pod) {
        let ns = pod.namespace().unwrap_or_default();
        let netns =
            runtime::namespaces::Paths::under(&ctx.pod_dir(&self.uid), own_namespaces(pod)).net;
        let mut running = ctx.running.lock().unwrap_or_else(|e| e.into_inner());
        for (name, list) in &self.records {
            let key = (ns.clone(), pod.name_any(), name.clone());
            if let Some(r) = list.last().filter(|r| r.running()) {
                running.insert(
                    key,
                    Running {
                        uid: self.uid.clone(),
                        cgroup: r.meta.cgroup.clone(),
                        id: r.meta.id.clone(),
                        netns: netns.clone(),
                    },
                );
            } else {
                running.remove(&key);
            }
        }
    }

    pub(super) async fn run_probes(
        &mut self,
        ctx: &Ctx,
        pod: &Pod,
        c: &Container,
        id: &str,
        started: Option<&str>,
    ) {
        let ip = self
            .sandbox
            .as_ref()
            .map(|s| s.ip().to_string())
            .unwrap_or_default();
        let started = started.and_then(parse_time).unwrap_or_else(Timestamp::now);
        let outcome = self.probes.run(ctx, pod, c, id, &ip, started).await;
        if let Some(why) = outcome.kill {
            ctx.events
                .pod(pod, Some(field(c, false)), false, "Killing", why);
            let _ = ctx.host.kill(id, "KILL").await;
        }
    }
}
