//! The scheduling framework's vocabulary: what a plugin sees of a node ([`NodeInfo`]), what it
//! answers ([`Verdict`]), what else it may look at ([`Cluster`]), and the extension points
//! Rudder runs, PreFilter/PreScore, Filter and Score ([`Plugin`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, Pod, PodAffinityTerm,
};
use k8s_openapi::api::storage::v1::StorageClass;

/// Resource amounts: CPU in millicores, memory and everything else in units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU, millicores.
    pub milli_cpu: i64,
    /// Memory, bytes.
    pub memory: i64,
    /// Pods.
    pub pods: i64,
    /// Extended resources (and ephemeral-storage), by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Adds `other` to these.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Takes `other` from these.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Reads a resource list (`requests`, `allocatable`).
    pub fn from_list(
        list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    ) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            let Ok(parsed) = api::quantity::Quantity::parse(&q.0) else {
                continue;
            };
            match name.as_str() {
                "cpu" => r.milli_cpu = parsed.milli() as i64,
                "memory" => r.memory = parsed.units() as i64,
                "pods" => r.pods = parsed.units() as i64,
                other => {
                    r.scalar.insert(other.to_string(), parsed.units() as i64);
                }
            }
        }
        r
    }
}

/// What a pod asks for: the larger of its containers' summed requests and each init
/// container's, plus its overhead, and one pod.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::default();
    };
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&Resources::from_list(
            c.resources.as_ref().and_then(|r| r.requests.as_ref()),
        ));
    }
    for c in spec.init_containers.iter().flatten() {
        let init = Resources::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
        sum.milli_cpu = sum.milli_cpu.max(init.milli_cpu);
        sum.memory = sum.memory.max(init.memory);
        for (k, v) in init.scalar {
            let e = sum.scalar.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    sum.add(&Resources::from_list(spec.overhead.as_ref()));
    sum.pods = 1;
    sum
}

/// What the scheduler keeps of a pod placed on a node, for the plugins that look at
/// neighbours (topology spread, inter-pod affinity).
#[derive(Debug, Clone)]
pub struct PodSummary {
    /// `namespace/name`.
    pub key: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// Its required anti-affinity terms, which keep matching pods out of its domains.
    pub anti_affinity: Vec<k8s_openapi::api::core::v1::PodAffinityTerm>,
    /// `spec.priority`.
    pub priority: i32,
    /// What it requests.
    pub requests: Resources,
    /// The host ports it takes.
    pub ports: Vec<(String, String, i32)>,
    /// `metadata.uid`.
    pub uid: String,
    /// Whether it is being deleted.
    pub terminating: bool,
    /// The labels as JSON, for label selectors.
    pub labels_json: serde_json::Value,
    /// The claims its volumes use (`persistentVolumeClaim` and generic ephemeral ones).
    pub claims: Vec<String>,
}

impl PodSummary {
    /// The summary of `pod`.
    pub fn of(pod: &Pod) -> PodSummary {
        let anti_affinity = pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            })
            .unwrap_or_default();
        PodSummary {
            key: crate::cache::key(pod),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            anti_affinity,
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            requests: pod_requests(pod),
            ports: crate::plugins::host_ports(pod),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            terminating: pod::is_terminating(pod),
            labels_json: serde_json::to_value(pod.metadata.labels.clone().unwrap_or_default())
                .unwrap_or_default(),
            claims: pod::claim_names(pod),
        }
    }
}

/// A node as the scheduler sees it: the object, what it offers, what its pods (bound or
/// assumed) take, the host ports in use, and the pods themselves.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The Node object.
    pub node: Node,
    /// `status.allocatable` (or capacity).
    pub allocatable: Resources,
    /// The sum of its pods' requests.
    pub requested: Resources,
    /// Host ports in use: (protocol, host IP, port).
    pub ports: Vec<(String, String, i32)>,
    /// The pods on it.
    pub pods: Vec<PodSummary>,
    /// How many of its pods carry each label, by [`label_key`] (namespace, key and value).
    pub label_index: std::collections::HashMap<String, i64>,
    /// How many of its pods have required anti-affinity terms.
    pub anti_affinity_pods: usize,
}

/// The key of one namespaced label in [`NodeInfo::label_index`].
pub fn label_key(namespace: &str, key: &str, value: &str) -> String {
    format!("{namespace}\0{key}\0{value}")
}

impl NodeInfo {
    /// Counts a pod on this node.
    pub fn add_pod(&mut self, pod: PodSummary) {
        for (k, v) in &pod.labels {
            *self
                .label_index
                .entry(label_key(&pod.namespace, k, v))
                .or_default() += 1;
        }
        self.anti_affinity_pods += usize::from(!pod.anti_affinity.is_empty());
        self.requested.add(&pod.requests);
        self.ports.extend(pod.ports.iter().cloned());
        self.pods.push(pod);
    }

    /// Stops counting a pod on this node.
    pub fn remove_pod(&mut self, key: &str) {
        let Some(i) = self.pods.iter().position(|p| p.key == key) else {
            return;
        };
        let pod = self.pods.remove(i);
        for (k, v) in &pod.labels {
            let entry = label_key(&pod.namespace, k, v);
            if let Some(n) = self.label_index.get_mut(&entry) {
                *n -= 1;
                if *n <= 0 {
                    self.label_index.remove(&entry);
                }
            }
        }
        self.anti_affinity_pods -= usize::from(!pod.anti_affinity.is_empty());
        self.requested.sub(&pod.requests);
        for port in &pod.ports {
            if let Some(i) = self.ports.iter().position(|x| x == port) {
                self.ports.remove(i);
            }
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    /// The value of one of the node's labels.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .map(String::as_str)
    }
}

/// A label selector over the pods placed on nodes, in some namespaces. A selector that is one
/// `key: value` (the usual case) is answered from each node's label index; others look at
/// every pod.
pub struct PodMatcher {
    namespaces: Vec<String>,
    selector: api::selector::LabelSelector,
    /// For a one-label selector: its index keys, one per namespace.
    single: Option<Vec<String>>,
}

impl PodMatcher {
    /// From a `metav1.LabelSelector` (JSON); `None` if it does not parse.
    pub fn new(selector: &serde_json::Value, namespaces: Vec<String>) -> Option<PodMatcher> {
        let parsed = api::selector::LabelSelector::from_object(selector).ok()?;
        let labels = selector["matchLabels"].as_object();
        let exprs = selector["matchExpressions"]
            .as_array()
            .is_some_and(|e| !e.is_empty());
        let single = match labels {
            Some(m) if m.len() == 1 && !exprs => m.iter().next().and_then(|(k, v)| {
                let v = v.as_str()?;
                Some(namespaces.iter().map(|ns| label_key(ns, k, v)).collect())
            }),
            _ => None,
        };
        Some(PodMatcher {
            namespaces,
            selector: parsed,
            single,
        })
    }

    /// Whether a pod in `namespace` with these labels (JSON) is selected.
    pub fn matches(&self, namespace: &str, labels: &serde_json::Value) -> bool {
        self.namespaces.iter().any(|n| n == namespace) && self.selector.matches(Some(labels))
    }

    /// How many pods on `node` are selected.
    pub fn count(&self, node: &NodeInfo) -> i64 {
        match &self.single {
            Some(keys) => keys
                .iter()
                .map(|k| node.label_index.get(k).copied().unwrap_or(0))
                .sum(),
            None => node
                .pods
                .iter()
                .filter(|p| self.matches(&p.namespace, &p.labels_json))
                .count() as i64,
        }
    }
}

/// What the scheduler keeps of the cluster besides nodes and pods (upstream's listers), for
/// the plugins and the preemption step that look further.
#[derive(Debug, Default)]
pub struct Cluster {
    /// Each namespace's labels (JSON), for `namespaceSelector`.
    pub namespaces: HashMap<String, serde_json::Value>,
    /// Services' pod selectors, by namespace and name.
    pub services: HashMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    /// The label selectors (JSON) of the controllers that own pods: ReplicationControllers
    /// (as `matchLabels`), ReplicaSets and StatefulSets, by `Kind/namespace/name`.
    pub controllers: HashMap<String, serde_json::Value>,
    /// PodDisruptionBudgets, by `namespace/name`.
    pub budgets: HashMap<String, Budget>,
    /// PersistentVolumeClaims, by `namespace/name`.
    pub claims: HashMap<String, PersistentVolumeClaim>,
    /// PersistentVolumes, by name.
    pub volumes: HashMap<String, PersistentVolume>,
    /// StorageClasses, by name.
    pub classes: HashMap<String, StorageClass>,
    /// How many nodes list each image name in `status.images` (upstream's image states), so
    /// that ImageLocality need not look at every node for a pod whose images none holds.
    pub images: HashMap<String, i64>,
}

/// What preemption needs of a PodDisruptionBudget.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Its namespace.
    pub namespace: String,
    /// `spec.selector`; `None` when absent or empty, which selects nothing here.
    pub selector: Option<api::selector::LabelSelector>,
    /// `status.disruptionsAllowed`.
    pub allowed: i32,
    /// `status.disruptedPods`: pods already counted as disrupted.
    pub disrupted: HashSet<String>,
}

impl Cluster {
    /// Counts the image names `node` lists into [`Cluster::images`]: `by` is 1 for a node
    /// that comes, -1 for one that goes (or its old version).
    pub fn count_images(&mut self, node: &Node, by: i64) {
        let listed = node.status.iter().flat_map(|s| s.images.iter().flatten());
        for name in listed.flat_map(|i| i.names.iter().flatten()) {
            let n = self.images.entry(name.clone()).or_default();
            *n += by;
            if *n <= 0 {
                self.images.remove(name);
            }
        }
    }

    /// The namespaces a pod affinity term of a pod in `pod_ns` looks in: `namespaces` and those
    /// `namespaceSelector` selects (`{}` selects all), or the pod's own when both are unset.
    pub fn term_namespaces(&self, term: &PodAffinityTerm, pod_ns: &str) -> Vec<String> {
        let mut out: Vec<String> = term.namespaces.clone().unwrap_or_default();
        match &term.namespace_selector {
            Some(sel) => {
                let Ok(sel) = serde_json::to_value(sel) else {
                    return out;
                };
                if let Ok(sel) = api::selector::LabelSelector::from_object(&sel) {
                    for (ns, labels) in &self.namespaces {
                        if sel.matches(Some(labels)) && !out.contains(ns) {
                            out.push(ns.clone());
                        }
                    }
                }
            }
            None if out.is_empty() => out.push(pod_ns.to_string()),
            None => {}
        }
        out
    }

    /// Upstream's `DefaultSelector`: the labels the Services selecting `pod` select on, with
    /// the selector of the controller owning it (ReplicationController, ReplicaSet,
    /// StatefulSet); `None` when that is empty.
    pub fn default_selector(&self, pod: &Pod) -> Option<serde_json::Value> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let mut match_labels: BTreeMap<String, String> = BTreeMap::new();
        for selector in self.services.get(ns).into_iter().flat_map(|s| s.values()) {
            if !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                match_labels.extend(selector.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let mut expressions = Vec::new();
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        if let Some(o) = owner
            && matches!(
                (o.api_version.as_str(), o.kind.as_str()),
                ("v1", "ReplicationController") | ("apps/v1", "ReplicaSet" | "StatefulSet")
            )
            && let Some(sel) = self.controllers.get(&format!("{}/{ns}/{}", o.kind, o.name))
        {
            for (k, v) in sel["matchLabels"].as_object().into_iter().flatten() {
                if let Some(v) = v.as_str() {
                    match_labels.insert(k.clone(), v.to_string());
                }
            }
            expressions.extend(
                sel["matchExpressions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        if match_labels.is_empty() && expressions.is_empty() {
            return None;
        }
        Some(serde_json::json!({"matchLabels": match_labels, "matchExpressions": expressions}))
    }
}

/// A plugin's answer at Filter: the node fits, or why not (upstream's reason texts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The pod may go there.
    Fits,
    /// It may not; the reasons as `FailedScheduling` counts them.
    Unschedulable(Vec<String>),
}

/// What a plugin worked out about one pod from all the nodes before filtering them one by
/// one (upstream's PreFilter/PreScore state), for it alone to read back.
pub type Prepared = Option<Box<dyn std::any::Any + Send>>;

/// A scheduling plugin, with upstream's name. Prepare looks at every node once per pod;
/// Filter answers whether a pod may go on a node; Score ranks the nodes that may take it.
pub trait Plugin: Send + Sync {
    /// Upstream's plugin name (`NodeResourcesFit`, ...).
    fn name(&self) -> &'static str;

    /// PreFilter's refusal: a reason that holds for every node, so none is filtered
    /// (upstream's UnschedulableAndUnresolvable from PreFilter).
    fn pre_filter(&self, _pod: &Pod, _cluster: &Cluster) -> Result<(), String> {
        Ok(())
    }

    /// PreFilter and PreScore in one: state computed once per pod from all nodes and what
    /// else is known of the cluster.
    fn prepare(&self, _pod: &Pod, _nodes: &[&NodeInfo], _cluster: &Cluster) -> Prepared {
        None
    }

    /// Filter; plugins without a filter let every node through.
    fn filter(&self, _pod: &Pod, _node: &NodeInfo, _prepared: &Prepared) -> Verdict {
        Verdict::Fits
    }

    /// Score, or `None` for plugins that do not score.
    fn score(&self, _pod: &Pod, _node: &NodeInfo, _prepared: &Prepared) -> Option<i64> {
        None
    }

    /// The weight of this plugin's score (upstream's default profile's).
    fn weight(&self) -> i64 {
        1
    }

    /// Whether removing lower-priority pods from a node this plugin refused can make it
    /// fit (upstream's Unschedulable, as against UnschedulableAndUnresolvable).
    fn preemption_helps(&self) -> bool {
        false
    }

    /// How raw scores become 0-100 across the feasible nodes.
    fn normalize(&self) -> Normalize {
        Normalize::None
    }

    /// PreBind: what must be written before the pod is bound to the chosen `node`, worked
    /// out with the decision (under the cache's lock) and written in the binding cycle.
    fn pre_bind(&self, _pod: &Pod, _node: &NodeInfo, _prepared: &Prepared) -> Vec<PreBind> {
        Vec::new()
    }
}

/// A write a plugin needs before a pod is bound: a JSON merge patch (carrying the
/// `resourceVersion` it was worked out from, so a concurrent change makes it fail).
#[derive(Debug, Clone, PartialEq)]
pub enum PreBind {
    /// To the PersistentVolume of this name.
    Volume(String, serde_json::Value),
    /// To the PersistentVolumeClaim of this namespace and name.
    Claim(String, String, serde_json::Value),
}

/// Score normalization (upstream's `DefaultNormalizeScore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// Scores are already 0-100.
    None,
    /// The highest raw score becomes 100, the others in proportion (0 if all are 0).
    Max,
    /// Fewer is better: the highest raw score becomes 0, zero becomes 100.
    Reverse,
    /// Scores may be negative: the lowest becomes 0, the highest 100.
    MinMax,
}

/// Normalizes `scores` in place.
pub fn normalize(how: Normalize, scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    let min = scores.iter().copied().min().unwrap_or(0);
    for s in scores.iter_mut() {
        *s = match how {
            Normalize::None => *s,
            Normalize::Max if max > 0 => *s * 100 / max,
            Normalize::Max => 0,
            Normalize::Reverse if max > 0 => 100 - *s * 100 / max,
            Normalize::Reverse => 100,
            Normalize::MinMax if max > min => (*s - min) * 100 / (max - min),
            Normalize::MinMax => 0,
        };
    }
}
