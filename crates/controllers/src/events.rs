//! Events about what controllers do (`SuccessfulCreate`, `ScalingReplicaSet`, ...), as
//! core/v1 Events the way upstream's recorder writes them: an event repeated for the same
//! object, reason and message bumps the `count` and `lastTimestamp` of the one already
//! written instead of adding another, so a controller stuck in a loop does not flood the store.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::Resource;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

/// Events remembered for aggregation; beyond this the memory starts afresh.
const REMEMBERED: usize = 4096;

/// Writes events for one component (`deployment-controller`, ...).
pub struct Recorder {
    client: kube::Client,
    /// The Event's `source.component` and `reportingComponent`.
    component: String,
    /// `reportingInstance`.
    host: String,
    /// Events already written: by (namespace, object uid, kind, name, type, reason, message),
    /// the Event's name and count.
    written: Mutex<HashMap<String, (String, i32)>>,
}

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Something went as expected.
    Normal,
    /// Something went wrong.
    Warning,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Normal => "Normal",
            Type::Warning => "Warning",
        }
    }
}

/// A reference to `obj` for an event's `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    obj.object_ref(&())
}

impl Recorder {
    /// A recorder for `client`, writing as `component`.
    pub fn new(client: kube::Client, component: &str) -> Recorder {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "rudder".into());
        Recorder {
            client,
            component: component.into(),
            host,
            written: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event about `regarding`. Failures are logged, never returned: an event is
    /// not worth failing the work it reports.
    pub async fn publish(&self, regarding: &ObjectReference, ty: Type, reason: &str, note: &str) {
        let ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = format!(
            "{ns}\0{}\0{}\0{}\0{}\0{reason}\0{note}",
            regarding.uid.as_deref().unwrap_or(""),
            regarding.kind.as_deref().unwrap_or(""),
            regarding.name.as_deref().unwrap_or(""),
            ty.as_str()
        );
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = jiff::Timestamp::now();
        let seen = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some((name, count)) = seen {
            let patch = json!({"count": count + 1, "lastTimestamp": Time(now)});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {
                    self.remember(key, name, count + 1);
                    return;
                }
                // Gone (expired, deleted): write a new one.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    tracing::debug!("updating event {name}: {e}");
                    return;
                }
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or("object"),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: regarding.clone(),
            reason: Some(reason.into()),
            message: Some(note.into()),
            type_: Some(ty.as_str().into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => self.remember(key, name, 1),
            Err(e) => tracing::debug!("recording event {reason} in {ns}: {e}"),
        }
    }

    fn remember(&self, key: String, name: String, count: i32) {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if written.len() >= REMEMBERED && !written.contains_key(&key) {
            written.clear();
        }
        written.insert(key, (name, count));
    }
}
