//! Serving custom resources: what a CustomResourceDefinition adds to the served
//! [`Catalog`](api::resources::Catalog), and the loop that keeps the catalog and the
//! definitions' status in step with the stored definitions (upstream's apiextensions
//! naming, establishing and finalizing controllers, in one place).
//!
//! A definition's served versions are served as soon as the loop sees it; only then is it
//! marked `Established`, so a client that waits for that condition finds its resource. A
//! deleted definition stays, `Terminating`, until every custom resource it defined is
//! gone; then the loop removes the cleanup finalizer, the definition goes, and so does its
//! resource. The strategy (`strategy::crd`) holds the definition's own rules.
//!
//! Each served version carries its schema, which the custom resource strategy
//! (`strategy::custom`) prunes, defaults and validates objects by, and its printer columns.
//! Not here yet: conversion between versions, and name conflicts between definitions.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use api::resources::{PrinterColumn, ScalePaths, Schema};
use api::{Resource, Status};
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};

use crate::registry::{Caller, DeleteOptions, ListOptions, Registry, WatchRequest};
use crate::strategy::crd::{CLEANUP_FINALIZER, has_cleanup_finalizer, set_condition};

/// How often definitions are looked at again without a change to them: how soon a deleted
/// definition whose resources were held by finalizers is looked at again.
const RESYNC: Duration = Duration::from_secs(2);

/// The resource of the definitions themselves.
fn definitions() -> &'static Resource {
    api::resources::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("definitions are built in")
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// The resource one version of a definition serves.
fn version_resource(crd: &Value, version: &Value) -> Resource {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let (group, plural, kind) = (
        text(&spec["group"]),
        text(&names["plural"]),
        text(&names["kind"]),
    );
    let mut subresources = Vec::new();
    let subs = &version["subresources"];
    if subs.get("status").is_some() {
        subresources.push("status".to_string());
    }
    let scale = subs.get("scale").map(|s| ScalePaths {
        spec_replicas: text(&s["specReplicasPath"]),
        status_replicas: text(&s["statusReplicasPath"]),
        label_selector: s["labelSelectorPath"].as_str().map(str::to_string),
    });
    if scale.is_some() {
        subresources.push("scale".to_string());
    }
    let fields = version["selectableFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["jsonPath"].as_str())
        .map(|p| p.trim_start_matches('.').to_string())
        .collect();
    Resource {
        version: text(&version["name"]),
        singular: match text(&names["singular"]) {
            s if s.is_empty() => kind.to_lowercase(),
            s => s,
        },
        namespaced: spec["scope"] == "Namespaced",
        short_names: str_list(&names["shortNames"]),
        categories: str_list(&names["categories"]),
        subresources,
        storage: format!("{group}/{plural}"),
        stored_version: storage_version(crd),
        fields,
        scale,
        schema: version
            .pointer("/schema/openAPIV3Schema")
            .map(|s| Schema(Arc::new(s.clone()))),
        columns: printer_columns(version),
        create_only: false,
        group,
        kind,
        plural,
    }
}

/// The name of the version a definition stores its objects as.
fn storage_version(crd: &Value) -> String {
    let versions = crd["spec"]["versions"].as_array().into_iter().flatten();
    versions
        .filter(|v| v["storage"] == true)
        .find_map(|v| v["name"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// A version's `additionalPrinterColumns`.
fn printer_columns(version: &Value) -> Vec<PrinterColumn> {
    let columns = version["additionalPrinterColumns"].as_array();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    columns
        .into_iter()
        .flatten()
        .map(|c| PrinterColumn {
            name: text(&c["name"]),
            kind: text(&c["type"]),
            format: text(&c["format"]),
            description: text(&c["description"]),
            priority: c["priority"]
                .as_u64()
                .map_or(0, |p| u8::try_from(p).unwrap_or(u8::MAX)),
            json_path: text(&c["jsonPath"]),
        })
        .collect()
}

/// The resources a definition serves: one per served version.
pub fn served(crd: &Value) -> Vec<Resource> {
    let versions = crd["spec"]["versions"].as_array().into_iter().flatten();
    versions
        .filter(|v| v["served"] == true)
        .map(|v| version_resource(crd, v))
        .collect()
}

/// The resource of the version a definition stores its objects as.
fn stored(crd: &Value) -> Option<Resource> {
    let versions = crd["spec"]["versions"].as_array()?;
    let v = versions.iter().find(|v| v["storage"] == true)?;
    Some(version_resource(crd, v))
}

/// Serves the stored definitions' resources, then keeps doing so as definitions come and
/// go, in a task of its own.
pub async fn start(reg: Registry) -> tokio::task::JoinHandle<()> {
    let mut loop_state = Loop {
        reg,
        ours: HashSet::new(),
    };
    loop_state.sync_all().await;
    tokio::spawn(async move { loop_state.run().await })
}

/// The loop's state: the registry and which catalog entries definitions added.
struct Loop {
    reg: Registry,
    ours: HashSet<(String, String, String)>,
}

impl Loop {
    async fn run(&mut self) {
        let resource = Arc::new(definitions().clone());
        loop {
            let watch = self
                .reg
                .watch(resource.clone(), None, WatchRequest::default())
                .await;
            let Ok(mut events) = watch else {
                tokio::time::sleep(RESYNC).await;
                continue;
            };
            // Events that come while a sync runs are answered by the next one, so a burst
            // (the watch's replay of every definition at start) costs one sync, not one each.
            // Without events the loop waits, polling only while a definition waits for its
            // objects to go.
            loop {
                let pending = self.sync_all().await;
                let next = if pending {
                    tokio::time::timeout(RESYNC, events.next()).await.ok()
                } else {
                    Some(events.next().await)
                };
                if matches!(next, Some(None)) || !drain(&mut events) {
                    break;
                }
            }
        }
    }

    /// Brings the catalog and every definition's status in step with the stored
    /// definitions. Whether to look again without an event: a deleted definition still waits
    /// for its objects, or a step failed.
    async fn sync_all(&mut self) -> bool {
        let list = self
            .reg
            .list(definitions(), None, &ListOptions::default())
            .await;
        let Ok(list) = list else {
            return true;
        };
        let mut now = HashSet::new();
        for crd in &list.items {
            for r in served(crd) {
                if api::resources::find(&r.group, &r.version, &r.plural).is_some() {
                    continue; // never in place of a built-in resource
                }
                now.insert((r.group.clone(), r.version.clone(), r.plural.clone()));
                if self
                    .reg
                    .served()
                    .find(&r.group, &r.version, &r.plural)
                    .as_deref()
                    != Some(&r)
                {
                    self.reg.served().add(r);
                }
            }
        }
        for (g, v, p) in self.ours.difference(&now) {
            self.reg.served().remove(g, v, p);
        }
        self.ours = now;
        let mut pending = false;
        for crd in list.items {
            let deleting = crd["metadata"].get("deletionTimestamp").is_some();
            let done = if deleting {
                pending |= has_cleanup_finalizer(&crd);
                clean_up(&self.reg, &crd).await
            } else {
                establish(&self.reg, crd).await
            };
            if let Err(s) = done {
                pending = true;
                tracing::debug!(message = %s.message, "custom resource definition not synced");
            }
        }
        pending
    }
}

/// Takes the events already waiting, without waiting for more; false once the watch ended.
fn drain<S: futures::Stream + Unpin>(events: &mut S) -> bool {
    loop {
        match events.next().now_or_never() {
            None => return true,
            Some(Some(_)) => {}
            Some(None) => return false,
        }
    }
}

/// Writes the status a served definition has: its accepted names, its stored versions, and
/// the `NamesAccepted` and `Established` conditions.
async fn establish(reg: &Registry, mut crd: Value) -> Result<(), Status> {
    let before = crd["status"].clone();
    let mut names = crd["spec"]["names"].clone();
    if let Some(m) = names.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    crd["status"]["acceptedNames"] = names;
    let mut stored = str_list(&crd["status"]["storedVersions"]);
    if let Some(r) = self::stored(&crd)
        && !stored.contains(&r.version)
    {
        stored.push(r.version);
    }
    crd["status"]["storedVersions"] = json!(stored);
    set_condition(
        &mut crd,
        "NamesAccepted",
        "NoConflicts",
        "no conflicts found",
    );
    set_condition(
        &mut crd,
        "Established",
        "InitialNamesAccepted",
        "the initial names have been accepted",
    );
    if crd["status"] == before {
        return Ok(());
    }
    let name = crd["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    reg.update(
        definitions(),
        None,
        &name,
        crd,
        Some("status"),
        Caller::SERVER,
    )
    .await
    .map(drop)
}

/// Deletes a deleted definition's custom resources; once none is left, removes the
/// cleanup finalizer, which lets the definition go.
async fn clean_up(reg: &Registry, crd: &Value) -> Result<(), Status> {
    if !has_cleanup_finalizer(crd) {
        return Ok(());
    }
    if let Some(r) = stored(crd) {
        let left = reg.list(&r, None, &ListOptions::default()).await?;
        if !left.items.is_empty() {
            for obj in left.items {
                let meta = &obj["metadata"];
                let name = meta["name"].as_str().unwrap_or_default();
                let ns = meta["namespace"].as_str().filter(|_| r.namespaced);
                let gone = reg
                    .delete(&r, ns, name, &DeleteOptions::default(), Caller::SERVER)
                    .await;
                if let Err(s) = gone
                    && s.code != 404
                {
                    return Err(s);
                }
            }
            // Held ones (finalizers) are looked at again on the next round.
            if !reg
                .list(&r, None, &ListOptions::default())
                .await?
                .items
                .is_empty()
            {
                return Ok(());
            }
        }
    }
    let mut crd = crd.clone();
    if let Some(f) = crd["metadata"]["finalizers"].as_array_mut() {
        f.retain(|v| v != CLEANUP_FINALIZER);
    }
    let name = crd["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    reg.update(definitions(), None, &name, crd, None, Caller::SERVER)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widgets() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                     "selectableFields": [{"jsonPath": ".spec.color"}],
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}}},
                    {"name": "v1beta1", "served": false, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                ],
            },
        })
    }

    #[test]
    fn a_definition_serves_its_served_versions() {
        let served = served(&widgets());
        assert_eq!(served.len(), 1);
        let r = &served[0];
        assert_eq!(
            (
                r.group.as_str(),
                r.version.as_str(),
                r.kind.as_str(),
                r.singular.as_str()
            ),
            ("example.com", "v1", "Widget", "widget")
        );
        assert!(r.namespaced);
        assert_eq!(r.short_names, ["wd"]);
        assert_eq!(r.subresources, ["status", "scale"]);
        assert_eq!(r.key(Some("d"), "w"), "/registry/example.com/widgets/d/w");
        assert!(r.selectable("spec.color"));
        assert_eq!(r.scale.as_ref().unwrap().spec_replicas, ".spec.replicas");
    }

    async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
        for _ in 0..200 {
            if done().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{what} did not happen within 5 s");
    }

    #[tokio::test]
    async fn definitions_come_and_go_with_their_resources() {
        let (_dir, reg) = crate::registry::scratch(&["d"]).await;
        let task = start(reg.clone()).await;
        reg.create(definitions(), None, widgets(), Caller::SERVER)
            .await
            .unwrap();
        wait_until("the resource is served", async || {
            reg.served().find("example.com", "v1", "widgets").is_some()
        })
        .await;
        wait_until("the definition is established", async || {
            let crd = reg
                .get(definitions(), None, "widgets.example.com")
                .await
                .unwrap();
            crd["status"]["conditions"]
                .to_string()
                .contains("Established")
        })
        .await;
        let r = reg.served().find("example.com", "v1", "widgets").unwrap();
        let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "d"}});
        reg.create(&r, Some("d"), w, Caller::SERVER).await.unwrap();
        reg.delete(
            definitions(),
            None,
            "widgets.example.com",
            &DeleteOptions::default(),
            Caller::SERVER,
        )
        .await
        .unwrap();
        wait_until("the definition is gone", async || {
            reg.get(definitions(), None, "widgets.example.com")
                .await
                .is_err()
        })
        .await;
        assert!(
            reg.list(&r, None, &ListOptions::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
        wait_until("the resource is no longer served", async || {
            reg.served().find("example.com", "v1", "widgets").is_none()
        })
        .await;
        task.abort();
    }
}
