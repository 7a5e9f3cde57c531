//! The container's image: present locally or pulled per its pull policy, with the pull
//! back-off (`ImagePullBackOff`) and the pod's image pull secrets.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;

use super::restart::MAX_BACKOFF;
use super::{Ctx, PodState, Waiting, event};
use crate::env::Sources;

/// Image pulls that failed, by image, for ImagePullBackOff.
#[derive(Debug, Clone)]
pub(super) struct PullFailure {
    failures: u32,
    until: Instant,
    message: String,
}

impl PodState {
    /// Pulls the image if need be; the image or the waiting state to show.
    pub(super) async fn image(
        &mut self,
        ctx: &Ctx,
        pod: &Pod,
        c: &Container,
        init: bool,
    ) -> Result<image::Image, Waiting> {
        let name = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            if name.ends_with(":latest") || !name.rsplit('/').next().unwrap_or("").contains(':') {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let local = ctx.images.get(&name);
        if let Some(img) = &local
            && policy != "Always"
        {
            return Ok(img.clone());
        }
        if policy == "Never" {
            let msg = format!("Container image {name:?} is not present with pull policy of Never");
            event(ctx, pod, c, init, true, "ErrImageNeverPull", msg.clone());
            return Err(Waiting {
                reason: "ErrImageNeverPull".into(),
                message: Some(msg),
            });
        }
        if let Some(f) = self.pulls.get(&name)
            && Instant::now() < f.until
        {
            return Err(Waiting {
                reason: "ImagePullBackOff".into(),
                message: Some(format!("Back-off pulling image {name:?}: {}", f.message)),
            });
        }
        event(
            ctx,
            pod,
            c,
            init,
            false,
            "Pulling",
            format!("Pulling image {name:?}"),
        );
        let t0 = Instant::now();
        let auth = pull_auth(ctx, pod, &name).await;
        match ctx.images.pull(&name, &auth, &ctx.config.registries).await {
            Ok(img) => {
                self.pulls.remove(&name);
                let took = t0.elapsed().as_secs_f64();
                event(
                    ctx,
                    pod,
                    c,
                    init,
                    false,
                    "Pulled",
                    format!(
                        "Successfully pulled image {name:?} in {took:.3}s ({took:.3}s including waiting). Image size: {} bytes.",
                        img.size
                    ),
                );
                Ok(img)
            }
            Err(e) => {
                let message = e.to_string();
                let failures = self.pulls.get(&name).map(|f| f.failures + 1).unwrap_or(1);
                let delay =
                    Duration::from_secs(10 * (1u64 << (failures - 1).min(5))).min(MAX_BACKOFF);
                self.pulls.insert(
                    name.clone(),
                    PullFailure {
                        failures,
                        until: Instant::now() + delay,
                        message: message.clone(),
                    },
                );
                event(
                    ctx,
                    pod,
                    c,
                    init,
                    true,
                    "Failed",
                    format!("Failed to pull image {name:?}: {message}"),
                );
                event(
                    ctx,
                    pod,
                    c,
                    init,
                    true,
                    "Failed",
                    "Error: ErrImagePull".into(),
                );
                Err(Waiting {
                    reason: "ErrImagePull".into(),
                    message: Some(message),
                })
            }
        }
    }
}

async fn pull_auth(ctx: &Ctx, pod: &Pod, name: &str) -> image::Auth {
    let registry = image::Reference::parse(name)
        .map(|r| r.registry)
        .unwrap_or_default();
    let sources = Sources::new(ctx.client.clone(), pod.namespace().unwrap_or_default());
    for s in pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .into_iter()
        .flatten()
    {
        if let Ok(Some(data)) = sources.secret(&s.name).await
            && let Some(json) = data.get(".dockerconfigjson")
            && let Some(auth) = image::auth_from_docker_config(json, &registry)
        {
            return auth;
        }
    }
    image::Auth::Anonymous
}
