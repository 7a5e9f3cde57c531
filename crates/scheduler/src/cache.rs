//! The scheduler's view of the cluster: every node with what its pods take, kept current from
//! watches, plus the pods it has assumed onto a node while their binding is in flight, so the
//! next decision already counts them.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{NodeInfo, PodSummary, Resources};

/// A pod's key: `namespace/name`.
pub fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// Nodes and the pods placed on them.
#[derive(Default)]
pub struct Cache {
    nodes: BTreeMap<String, NodeInfo>,
    /// Every placed pod: its node and summary.
    pods: HashMap<String, (String, PodSummary)>,
    /// Pending pods nominated to a node by preemption (`status.nominatedNodeName`), by node
    /// and by pod key.
    nominated: HashMap<String, Vec<PodSummary>>,
    nominated_node: HashMap<String, String>,
}

impl Cache {
    /// Adds or refreshes a node, keeping what its pods take.
    pub fn upsert_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let allocatable = Resources::from_list(allocatable);
        if let Some(info) = self.nodes.get_mut(&name) {
            info.node = node;
            info.allocatable = allocatable;
            return;
        }
        let mut info = NodeInfo {
            node,
            allocatable,
            requested: Resources::default(),
            ports: Vec::new(),
            pods: Vec::new(),
            label_index: Default::default(),
            anti_affinity_pods: 0,
        };
        for (_, p) in self.pods.values().filter(|(n, _)| *n == name) {
            info.add_pod(p.clone());
        }
        self.nodes.insert(name, info);
    }

    /// Forgets a node.
    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// The nodes, by name.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    /// One node.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    /// How many nodes there are.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Places `pod` on `node` (bound, or assumed while binding); a pod placed before moves
    /// or is refreshed.
    pub fn place(&mut self, pod: &Pod, node: &str) {
        let k = key(pod);
        self.remove_pod(&k);
        let summary = PodSummary::of(pod);
        if let Some(info) = self.nodes.get_mut(node) {
            info.add_pod(summary.clone());
        }
        self.pods.insert(k, (node.to_string(), summary));
    }

    /// Forgets a pod: deleted, finished, or its binding failed.
    pub fn remove_pod(&mut self, key: &str) {
        let Some((node, _)) = self.pods.remove(key) else {
            return;
        };
        if let Some(info) = self.nodes.get_mut(&node) {
            info.remove_pod(key);
        }
    }

    /// Records that pending `pod` waits for room on `node` (its nominated node).
    pub fn nominate(&mut self, pod: &Pod, node: &str) {
        let k = key(pod);
        self.unnominate(&k);
        self.nominated
            .entry(node.to_string())
            .or_default()
            .push(PodSummary::of(pod));
        self.nominated_node.insert(k, node.to_string());
    }

    /// Forgets a pod's nomination: bound, deleted, or no longer nominated.
    pub fn unnominate(&mut self, key: &str) {
        let Some(node) = self.nominated_node.remove(key) else {
            return;
        };
        if let Some(list) = self.nominated.get_mut(&node) {
            list.retain(|p| p.key != key);
            if list.is_empty() {
                self.nominated.remove(&node);
            }
        }
    }

    /// The pods nominated to `node` that a pod of `priority` (whose key is `except`) must
    /// leave room for: those at least as important.
    pub fn nominated_on(&self, node: &str, priority: i32, except: &str) -> Vec<PodSummary> {
        // Most of the time no pod is nominated anywhere: no lookup per node then.
        if self.nominated.is_empty() {
            return Vec::new();
        }
        self.nominated
            .get(node)
            .into_iter()
            .flatten()
            .filter(|p| p.priority >= priority && p.key != except)
            .cloned()
            .collect()
    }

    /// Whether a pod is placed (bound or assumed).
    pub fn placed(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_count_on_their_node_whenever_it_appears() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "250m"}}}]}}))
        .unwrap();
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}}))
        .unwrap();
        let mut c = Cache::default();
        c.place(&pod, "n");
        c.upsert_node(node.clone());
        assert_eq!(c.nodes().next().unwrap().requested.milli_cpu, 250);
        c.upsert_node(node);
        assert_eq!(c.nodes().next().unwrap().requested.milli_cpu, 250);
        c.remove_pod("d/p");
        assert_eq!(c.nodes().next().unwrap().requested.milli_cpu, 0);
        assert_eq!(c.nodes().next().unwrap().allocatable.pods, 10);

        c.nominate(&pod, "n");
        assert_eq!(c.nominated_on("n", 0, "d/other").len(), 1);
        assert!(
            c.nominated_on("n", 1, "d/other").is_empty(),
            "less important"
        );
        assert!(c.nominated_on("n", 0, "d/p").is_empty(), "itself");
        c.unnominate("d/p");
        assert!(c.nominated_on("n", 0, "d/other").is_empty());
    }
}
