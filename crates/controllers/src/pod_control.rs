//! Creating and deleting an owner's pods, as upstream's `RealPodControl` does for the
//! ReplicaSet, ReplicationController, DaemonSet and Job controllers: each change is recorded
//! as an expectation of the owner ([`crate::expectations`]) and reported on the owner as an
//! event with upstream's reasons and messages (`SuccessfulCreate` "Created pod: <name>",
//! `FailedCreate` "Error creating: <error>", `SuccessfulDelete` "Deleted pod: <name>",
//! `FailedDelete` "Error deleting: <error>"). A deletion names the pod's uid as a
//! precondition, so a pod replaced under the same name is never deleted in its place.
//!
//! The StatefulSet controller reports its pods with events of its own (upstream's
//! `StatefulPodControl`) and only shares [`delete_same`].

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};

use crate::events::{Recorder, Type, reference};
use crate::expectations::Expectations;
use crate::pods;

/// Creates and deletes the pods of one owner, recording expectations and events.
pub struct PodControl<'a> {
    api: Api<Pod>,
    events: &'a Recorder,
    expectations: &'a Expectations,
    /// The owner, as the events' `involvedObject`.
    regarding: ObjectReference,
    /// The owner's `namespace/name`, under which its expectations are kept.
    key: String,
}

/// What deleting a pod came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The pod was deleted (or marked for deletion) now.
    Now,
    /// The pod was already gone, or replaced by another of the same name (left alone).
    Already,
}

impl<'a> PodControl<'a> {
    /// The pod control of `owner`, creating and deleting through `api` (the owner's
    /// namespace), reporting to `events` and expecting in `expectations`.
    pub fn new<K: Resource<DynamicType = ()>>(
        api: Api<Pod>,
        owner: &K,
        events: &'a Recorder,
        expectations: &'a Expectations,
    ) -> PodControl<'a> {
        PodControl {
            api,
            events,
            expectations,
            regarding: reference(owner),
            key: pods::key(owner.meta()),
        }
    }

    /// Creates `pod` (upstream's `CreatePods`): expects it and reports `SuccessfulCreate`,
    /// or reports `FailedCreate` unless the namespace is being terminated.
    pub async fn create(&self, pod: &Pod) -> kube::Result<Pod> {
        match self.api.create(&PostParams::default(), pod).await {
            Ok(created) => {
                self.expectations
                    .created(&self.key, pods::key(&created.metadata));
                let note = format!("Created pod: {}", created.name_any());
                self.event(Type::Normal, "SuccessfulCreate", &note).await;
                Ok(created)
            }
            Err(e) => {
                if !namespace_terminating(&e) {
                    let note = format!("Error creating: {}", error_message(&e));
                    self.event(Type::Warning, "FailedCreate", &note).await;
                }
                Err(e)
            }
        }
    }

    /// Deletes `pod` if it is still the same pod (upstream's `DeletePod`): expects its
    /// deletion and reports `SuccessfulDelete`, or reports `FailedDelete`. A pod already
    /// gone or replaced is [`Deleted::Already`], with neither expectation nor event.
    pub async fn delete(&self, pod: &Pod) -> kube::Result<Deleted> {
        self.remove(pod, true).await
    }

    /// [`PodControl::delete`] without the expectation, for an owner that will not wait to
    /// see the deletion (a Job deleting the pods still running when it finishes).
    pub async fn delete_unexpected(&self, pod: &Pod) -> kube::Result<Deleted> {
        self.remove(pod, false).await
    }

    async fn remove(&self, pod: &Pod, expect: bool) -> kube::Result<Deleted> {
        match delete_same(&self.api, pod).await {
            Ok(Deleted::Now) => {
                if expect {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    self.expectations.deleted(&self.key, uid);
                }
                let note = format!("Deleted pod: {}", pod.name_any());
                self.event(Type::Normal, "SuccessfulDelete", &note).await;
                Ok(Deleted::Now)
            }
            Ok(Deleted::Already) => Ok(Deleted::Already),
            Err(e) => {
                let note = format!("Error deleting: {}", error_message(&e));
                self.event(Type::Warning, "FailedDelete", &note).await;
                Err(e)
            }
        }
    }

    async fn event(&self, ty: Type, reason: &str, note: &str) {
        self.events.publish(&self.regarding, ty, reason, note).await;
    }
}

/// Deletes `pod` through `api` with its uid as a precondition: [`Deleted::Already`] when it
/// is gone (404) or another pod now has its name (409).
pub async fn delete_same(api: &Api<Pod>, pod: &Pod) -> kube::Result<Deleted> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(pod.metadata.uid.clone().unwrap_or_default()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(Deleted::Now),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Deleted::Already),
        Err(e) => Err(e),
    }
}

/// What an error says: the API's message for a `Status`, else the error itself.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Whether `e` refuses a creation because the namespace is being terminated (nothing a
/// controller can do about, nor worth an event).
pub fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.message.contains("being terminated"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "Forbidden")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn errors_read_as_their_message() {
        let forbidden = status(
            403,
            "unable to create new content in namespace d because it is being terminated",
        );
        assert!(namespace_terminating(&forbidden));
        assert!(!namespace_terminating(&status(403, "exceeded quota")));
        assert_eq!(
            error_message(&status(403, "exceeded quota")),
            "exceeded quota"
        );
    }
}
