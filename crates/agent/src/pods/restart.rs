//! Restart policy and crash-loop back-off: whether a container that ended runs again, and
//! when its next attempt may start.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;

use super::{
    Ctx, PodState, Waiting, ephemeral_containers, event, is_sidecar, parse_time, spec_containers,
};

/// The longest crash-loop back-off, and how long a container must run to reset it.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);

pub(super) fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// The crash-loop delay before attempt `attempt` (0 = the first run).
fn backoff(attempt: u32) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let secs = 10u64.saturating_mul(1 << (attempt - 2).min(10));
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// Whether a container that ended with `code` runs again under `policy`.
fn restarts(policy: &str, code: i32) -> bool {
    match policy {
        "Always" => true,
        "OnFailure" => code != 0,
        _ => false,
    }
}

impl PodState {
    /// Once the pod is initialized: restarts sidecars that ended, starts the app containers
    /// that have not run and restarts those that ended as the restart policy says (probing
    /// the running ones), and starts ephemeral containers once.
    pub(super) async fn app_containers(&mut self, ctx: &Ctx, pod: &Pod) {
        let policy = restart_policy(pod).to_string();
        let (inits, apps) = spec_containers(pod);
        // Sidecars restart whenever they end, for as long as the pod runs.
        for c in inits.iter().filter(|c| is_sidecar(c)) {
            match self.latest(&c.name) {
                Some(r) if r.running() => {}
                _ => self.start_if_due(ctx, pod, c, true).await,
            }
        }
        for c in &apps {
            match self.latest(&c.name) {
                None => self.start_if_due(ctx, pod, c, false).await,
                Some(r) if r.running() => {
                    let (id, started) = (r.meta.id.clone(), r.meta.started_at.clone());
                    self.run_probes(ctx, pod, c, &id, started.as_deref()).await;
                }
                Some(r) => {
                    let code = r.exit_code().unwrap_or(0);
                    if restarts(&policy, code) {
                        self.start_if_due(ctx, pod, c, false).await;
                    }
                }
            }
        }
        // Ephemeral containers run once, never restarted.
        for (c, _) in ephemeral_containers(pod) {
            if self.latest(&c.name).is_none() {
                self.start_if_due(ctx, pod, &c, false).await;
            }
        }
    }

    /// Starts container `c` (a new attempt) unless it is backing off.
    pub(super) async fn start_if_due(&mut self, ctx: &Ctx, pod: &Pod, c: &Container, init: bool) {
        let previous = self.latest(&c.name).cloned();
        let attempt = previous.as_ref().map(|r| r.meta.attempt + 1).unwrap_or(0);
        if let Some(prev) = &previous {
            let finished = prev
                .exit
                .as_ref()
                .and_then(|e| parse_time(&e.finished_at))
                .unwrap_or_else(Timestamp::now);
            let ran = prev
                .meta
                .started_at
                .as_deref()
                .and_then(parse_time)
                .map(|s| finished.duration_since(s).unsigned_abs())
                .unwrap_or_default();
            let delay = if ran > BACKOFF_RESET {
                Duration::ZERO
            } else {
                backoff(attempt)
            };
            let waited = Timestamp::now().duration_since(finished).unsigned_abs();
            if waited < delay {
                let msg = format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})",
                    delay.as_secs(),
                    c.name,
                    pod.name_any(),
                    pod.namespace().unwrap_or_default(),
                    self.uid
                );
                let w = Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(msg),
                };
                if self.waiting.get(&c.name) != Some(&w) {
                    event(
                        ctx,
                        pod,
                        c,
                        init,
                        true,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}_{}({})",
                            c.name,
                            pod.name_any(),
                            pod.namespace().unwrap_or_default(),
                            self.uid
                        ),
                    );
                }
                self.waiting.insert(c.name.clone(), w);
                return;
            }
        }
        match self.start(ctx, pod, c, init, attempt).await {
            Ok(record) => {
                self.waiting.remove(&c.name);
                self.probes.reset(&c.name);
                self.records.entry(c.name.clone()).or_default().push(record);
            }
            Err(w) => {
                self.waiting.insert(c.name.clone(), w);
            }
        }
    }
}
