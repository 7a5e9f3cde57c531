//! Init containers: run one at a time, in order, each to success before the next; sidecars
//! (restartable init containers) started in order and kept running.

use k8s_openapi::api::core::v1::Pod;

use super::restart::restart_policy;
use super::{Ctx, PodState, is_sidecar, spec_containers};

impl PodState {
    /// Runs the pod's init containers in order: starts the first that has not succeeded
    /// (or, for a sidecar, has not started) and waits for it. Whether all are done, so the
    /// app containers may run; an init container that failed under `restartPolicy: Never`
    /// stays failed (and the pod with it).
    pub(super) async fn init_containers(&mut self, ctx: &Ctx, pod: &Pod) -> bool {
        let policy = restart_policy(pod).to_string();
        let (inits, _) = spec_containers(pod);
        for c in &inits {
            if is_sidecar(c) {
                // A restartable init container: the next one waits until it has started.
                match self.latest(&c.name).filter(|r| r.running()) {
                    Some(r) => {
                        let (id, started) = (r.meta.id.clone(), r.meta.started_at.clone());
                        self.run_probes(ctx, pod, c, &id, started.as_deref()).await;
                        if self.probes.ready_map().get(&c.name).is_none_or(|(_, s)| *s) {
                            continue;
                        }
                    }
                    None => self.start_if_due(ctx, pod, c, true).await,
                }
                return false;
            }
            match self.latest(&c.name).map(|r| (r.running(), r.exit_code())) {
                Some((_, Some(0))) => continue,
                Some((true, _)) => return false,
                Some((false, Some(_))) if policy == "Never" => {
                    // Failed for good: the pod fails.
                    return false;
                }
                _ => {
                    self.start_if_due(ctx, pod, c, true).await;
                    return false;
                }
            }
        }
        true
    }
}
