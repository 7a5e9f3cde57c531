//! Carrying out a sync's steps against the API: creating pods after their claims, fixing
//! labels and claim owners, deleting pods, with upstream's events and error messages.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod, PodTemplateSpec};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};

use crate::events::Type;
use crate::pod_control::{Deleted, delete_same};
use crate::pods;
use crate::runtime::{Error, Result};

use super::claims::{claim_owners, claims_for};
use super::identity::{identity_matches, new_pod, ordinal_of};
use super::plan::Step;
use super::{Ctx, POD_INDEX_LABEL, POD_NAME_LABEL};

/// An API error as upstream prints it: the server's message.
pub(super) fn api_error(e: kube::Error) -> Error {
    match e {
        kube::Error::Api(s) => Error::Failed(s.message),
        other => Error::Api(other),
    }
}

pub(super) fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Capitalised: `create` → `Create`.
fn title(verb: &str) -> String {
    let mut c = verb.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// One sync's actions on one set.
pub(super) struct Sync<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) set: &'a StatefulSet,
    pub(super) key: String,
    pub(super) regarding: ObjectReference,
    pub(super) pods: Api<Pod>,
    pub(super) claims: Api<PersistentVolumeClaim>,
    /// Claims created or changed in this sync, newer than the cache.
    pub(super) fresh: HashMap<String, Arc<PersistentVolumeClaim>>,
    /// The template and name of the current revision.
    pub(super) current: (PodTemplateSpec, String),
    /// The template and name of the update revision.
    pub(super) update: (PodTemplateSpec, String),
}

impl Sync<'_> {
    /// The newest copy of claim `name` known.
    pub(super) fn claim(&self, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.fresh.get(name).cloned().or_else(|| {
            let ns = self.set.namespace().unwrap_or_default();
            self.ctx.claims.get(&ObjectRef::new(name).within(&ns))
        })
    }

    /// Takes `steps` until one fails; returns how many pods were deleted for the update,
    /// and the failure.
    pub(super) async fn run(&mut self, steps: Vec<Step>) -> (i32, Result<()>) {
        let mut updated = 0;
        for step in steps {
            let result = match step {
                Step::Recreate(pod) => {
                    let (ty, reason, what) = if pod::phase(&pod) == "Failed" {
                        (Type::Warning, "RecreatingFailedPod", "failed")
                    } else {
                        (Type::Normal, "RecreatingTerminatedPod", "terminated")
                    };
                    let message = format!(
                        "StatefulSet {} is recreating {what} Pod {}",
                        self.key,
                        pod.name_any()
                    );
                    self.ctx
                        .events
                        .publish(&self.regarding, ty, reason, &message)
                        .await;
                    self.delete(&pod).await
                }
                Step::Create { ordinal, at_update } => self.create(ordinal, at_update).await,
                Step::CreateClaims(pod) => {
                    let ordinal = ordinal_of(&self.set.name_any(), &pod.name_any()).unwrap_or(0);
                    self.create_claims(&pod.name_any(), ordinal).await
                }
                Step::Fix(pod, scaled_down) => self.fix(&pod, scaled_down).await,
                Step::Condemn(pod) => self.delete(&pod).await,
                Step::Update(pod) => {
                    let r = self.delete(&pod).await;
                    updated += i32::from(r.is_ok());
                    r
                }
            };
            if let Err(e) = result {
                return (updated, Err(e));
            }
        }
        (updated, Ok(()))
    }

    /// Records `verb` (create, update, delete) of pod `pod` as upstream's `recordPodEvent`.
    async fn pod_event(&self, verb: &str, pod: &str, error: Option<&Error>) {
        let set = self.set.name_any();
        let (ty, reason, message) = match error {
            None => (
                Type::Normal,
                format!("Successful{}", title(verb)),
                format!("{verb} Pod {pod} in StatefulSet {set} successful"),
            ),
            Some(e) => (
                Type::Warning,
                format!("Failed{}", title(verb)),
                format!("{verb} Pod {pod} in StatefulSet {set} failed error: {e}"),
            ),
        };
        self.ctx
            .events
            .publish(&self.regarding, ty, &reason, &message)
            .await;
    }

    /// Records `verb` of claim `claim` for pod `pod` as upstream's `recordClaimEvent`.
    async fn claim_event(&self, verb: &str, claim: &str, pod: &str, error: Option<&Error>) {
        let set = self.set.name_any();
        let (ty, reason, message) = match error {
            None => (
                Type::Normal,
                format!("Successful{}", title(verb)),
                format!("{verb} Claim {claim} Pod {pod} in StatefulSet {set} success"),
            ),
            Some(e) => (
                Type::Warning,
                format!("Failed{}", title(verb)),
                format!(
                    "{verb} Claim {claim} for Pod {pod} in StatefulSet {set} failed error: {e}"
                ),
            ),
        };
        self.ctx
            .events
            .publish(&self.regarding, ty, &reason, &message)
            .await;
    }

    /// Creates the pod with `ordinal` after its claims, then sets its claims' owners.
    async fn create(&mut self, ordinal: i32, at_update: bool) -> Result<()> {
        let (template, revision) = if at_update {
            &self.update
        } else {
            &self.current
        };
        let pod = new_pod(self.set, template, revision, ordinal);
        let name = pod.name_any();
        if let Err(e) = self.create_claims(&name, ordinal).await {
            self.pod_event("create", &name, Some(&e)).await;
            return Err(e);
        }
        match self.pods.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                self.ctx
                    .expectations
                    .created(&self.key, pods::key(&created.metadata));
                if let Err(e) = self.fix_claims(&created, false).await {
                    self.pod_event("update", &name, Some(&e)).await;
                    return Err(e);
                }
                self.pod_event("create", &name, None).await;
                Ok(())
            }
            // Not yet in the cache, or someone else's: tried again later.
            Err(e) if is_code(&e, 409) => Err(api_error(e)),
            Err(e) => {
                let e = api_error(e);
                self.pod_event("create", &name, Some(&e)).await;
                Err(e)
            }
        }
    }

    /// Creates the claims of the pod `pod` with `ordinal` that do not exist; a claim being
    /// deleted is an error (the pod waits for it to go).
    async fn create_claims(&mut self, pod: &str, ordinal: i32) -> Result<()> {
        for (_, claim) in claims_for(self.set, ordinal) {
            let name = claim.name_any();
            let existing = match self.claim(&name) {
                Some(c) => Some(c),
                None => match self.claims.create(&PostParams::default(), &claim).await {
                    Ok(created) => {
                        self.fresh.insert(name.clone(), Arc::new(created));
                        self.claim_event("create", &name, pod, None).await;
                        None
                    }
                    Err(e) if is_code(&e, 409) => {
                        let c = Arc::new(self.claims.get(&name).await.map_err(api_error)?);
                        self.fresh.insert(name.clone(), c.clone());
                        Some(c)
                    }
                    Err(e) => {
                        let e = api_error(e);
                        self.claim_event("create", &name, pod, Some(&e)).await;
                        return Err(Error::Failed(format!("failed to create PVC {name}: {e}")));
                    }
                },
            };
            if existing.is_some_and(|c| c.metadata.deletion_timestamp.is_some()) {
                return Err(Error::Failed(format!("pvc {name} is being deleted")));
            }
        }
        Ok(())
    }

    /// Gives `pod` its identity labels and its claims the owners the retention policy
    /// wants.
    async fn fix(&mut self, pod: &Pod, scaled_down: bool) -> Result<()> {
        let name = pod.name_any();
        let mut result = Ok(());
        if !identity_matches(self.set, pod)
            && let Some(ordinal) = ordinal_of(&self.set.name_any(), &name)
        {
            let patch = json!({"metadata": {"labels": {
                POD_NAME_LABEL: name,
                POD_INDEX_LABEL: ordinal.to_string(),
            }}});
            result = self
                .pods
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(|_| ())
                .map_err(api_error);
        }
        if result.is_ok() {
            result = self.fix_claims(pod, scaled_down).await;
        }
        self.pod_event("update", &name, result.as_ref().err()).await;
        result
    }

    /// Sets the owners of `pod`'s claims as the retention policy wants. Claims not yet in
    /// the cache are done by a later sync.
    async fn fix_claims(&mut self, pod: &Pod, scaled_down: bool) -> Result<()> {
        let Some(ordinal) = ordinal_of(&self.set.name_any(), &pod.name_any()) else {
            return Ok(());
        };
        for (_, claim) in claims_for(self.set, ordinal) {
            let name = claim.name_any();
            let Some(existing) = self.claim(&name) else {
                continue;
            };
            let Some(refs) = claim_owners(&existing.metadata, self.set, pod, scaled_down) else {
                continue;
            };
            let mut ops = vec![json!({"op": "test", "path": "/metadata/uid",
                "value": existing.metadata.uid})];
            ops.push(if refs.is_empty() {
                json!({"op": "remove", "path": "/metadata/ownerReferences"})
            } else {
                json!({"op": "add", "path": "/metadata/ownerReferences", "value": refs})
            });
            let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))?;
            let updated = self
                .claims
                .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
                .await
                .map_err(api_error)?;
            self.fresh.insert(name, Arc::new(updated));
        }
        Ok(())
    }

    /// Deletes `pod` (if it is still the same pod).
    async fn delete(&self, pod: &Pod) -> Result<()> {
        let name = pod.name_any();
        match delete_same(&self.pods, pod).await {
            Ok(Deleted::Now) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                self.ctx.expectations.deleted(&self.key, uid);
                self.pod_event("delete", &name, None).await;
                Ok(())
            }
            // Gone, or replaced: the next sync sees what is there.
            Ok(Deleted::Already) => Ok(()),
            Err(e) => {
                let e = api_error(e);
                self.pod_event("delete", &name, Some(&e)).await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_titled_like_upstream() {
        assert_eq!(title("create"), "Create");
        assert_eq!(title(""), "");
    }
}
