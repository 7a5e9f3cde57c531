//! ImageLocality: prefers nodes that already hold the pod's images, by their size, scaled by
//! how many nodes hold them (an image on every node says little about any one of them).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{Cluster, NodeInfo, Plugin, Prepared};

/// The ImageLocality plugin.
pub struct ImageLocality;

const MB: i64 = 1024 * 1024;
/// Images summing to less than this score 0.
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container: images summing to more than this score 100.
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// The pod's images (init containers too), with `:latest` added to untagged names as
/// upstream's `normalizedImageName` does.
fn images(pod: &Pod) -> Vec<String> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .filter_map(|c| c.image.clone())
        .map(|name| {
            if name.rfind(':').unwrap_or(0) > name.rfind('/').unwrap_or(0) {
                name
            } else {
                format!("{name}:latest")
            }
        })
        .collect()
}

/// The size of `image` on `node`, if the node reports holding it.
fn size_on(node: &NodeInfo, image: &str) -> Option<i64> {
    node.node
        .status
        .as_ref()?
        .images
        .iter()
        .flatten()
        .find(|i| i.names.iter().flatten().any(|n| n == image))
        .map(|i| i.size_bytes.unwrap_or(0))
}

struct State {
    images: Vec<String>,
    /// How many nodes hold each image.
    holders: HashMap<String, i64>,
    nodes: i64,
    containers: i64,
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }

    fn prepare(&self, pod: &Pod, nodes: &[&NodeInfo], cluster: &Cluster) -> Prepared {
        let images = images(pod);
        let holders: HashMap<String, i64> = images
            .iter()
            .filter_map(|i| Some((i.clone(), *cluster.images.get(i)?)))
            .collect();
        if holders.is_empty() {
            return None;
        }
        Some(Box::new(State {
            containers: images.len() as i64,
            images,
            holders,
            nodes: nodes.len() as i64,
        }))
    }

    fn score(&self, _pod: &Pod, node: &NodeInfo, prepared: &Prepared) -> Option<i64> {
        let Some(st) = prepared.as_ref().and_then(|p| p.downcast_ref::<State>()) else {
            return Some(0);
        };
        let sum: i64 = st
            .images
            .iter()
            .filter_map(|image| {
                let size = size_on(node, image)?;
                // Counted over every node; a pod's candidates may be fewer.
                let holders = st.holders.get(image).copied().unwrap_or(0).min(st.nodes);
                Some((size as f64 * holders as f64 / st.nodes.max(1) as f64) as i64)
            })
            .sum();
        let max = MAX_CONTAINER_THRESHOLD * st.containers.max(1);
        let sum = sum.clamp(MIN_THRESHOLD, max);
        Some(100 * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn big_images_already_there_score_by_their_spread() {
        let with = |name: &str| {
            node(
                name,
                json!({"status": {"images": [{"names": ["registry.example/big:latest"],
                    "sizeBytes": 600 * MB}]}}),
            )
        };
        let nodes = [
            with("a"),
            with("b"),
            node("c", json!({})),
            node("d", json!({})),
        ];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let mut cluster = Cluster::default();
        for n in &nodes {
            cluster.count_images(&n.node, 1);
        }
        let p = pod(json!({"containers": [{"name": "c", "image": "registry.example/big"}]}));
        let st = ImageLocality.prepare(&p, &refs, &cluster);
        // Half the nodes hold it: 300 MB counts, of the 23..1000 MB range.
        let want = 100 * (300 * MB - MIN_THRESHOLD) / (MAX_CONTAINER_THRESHOLD - MIN_THRESHOLD);
        assert_eq!(ImageLocality.score(&p, &nodes[0], &st), Some(want));
        assert_eq!(ImageLocality.score(&p, &nodes[2], &st), Some(0));
        let other = pod(json!({"containers": [{"name": "c", "image": "nginx:1.25"}]}));
        assert!(ImageLocality.prepare(&other, &refs, &cluster).is_none());
    }
}
