//! The plugins of the default profile, one module each, under upstream's names.

pub mod balanced_allocation;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;
pub mod volume_restrictions;

pub use node_ports::host_ports;

use crate::framework::Plugin;

/// The default profile's plugins, in upstream's order.
pub fn default_profile() -> Vec<Box<dyn Plugin>> {
    vec![
        Box::new(node_unschedulable::NodeUnschedulable),
        Box::new(node_resources_fit::NodeResourcesFit::default()),
        Box::new(node_ports::NodePorts),
        Box::new(node_affinity::NodeAffinity),
        Box::new(taint_toleration::TaintToleration),
        Box::new(volume_restrictions::VolumeRestrictions),
        Box::new(volume_binding::VolumeBinding),
        Box::new(pod_topology_spread::PodTopologySpread::default()),
        Box::new(inter_pod_affinity::InterPodAffinity),
        Box::new(balanced_allocation::NodeResourcesBalancedAllocation),
        Box::new(image_locality::ImageLocality),
    ]
}

#[cfg(test)]
pub(crate) mod testing {
    //! Small builders for plugin tests.

    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    use crate::framework::{NodeInfo, PodSummary, Resources};

    pub(crate) fn pod(spec: Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    /// A placed pod `default/<name>` with `app=<app>`.
    pub(crate) fn placed(name: &str, app: &str) -> PodSummary {
        let mut p = pod(json!({"containers": []}));
        p.metadata.name = Some(name.into());
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        PodSummary::of(&p)
    }

    pub(crate) fn node(name: &str, extra: Value) -> NodeInfo {
        let mut obj = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}});
        merge(&mut obj, extra);
        let node: Node = serde_json::from_value(obj).unwrap();
        let allocatable =
            Resources::from_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
        NodeInfo {
            node,
            allocatable,
            requested: Resources::default(),
            ports: Vec::new(),
            pods: Vec::new(),
            label_index: Default::default(),
            anti_affinity_pods: 0,
        }
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }
}
