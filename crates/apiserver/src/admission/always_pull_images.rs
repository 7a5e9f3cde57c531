//! `AlwaysPullImages` (off unless `--enable-admission-plugins` names it): every container of
//! a new pod (init and ephemeral ones too) gets `imagePullPolicy: Always`, so that a node
//! checks the registry's credentials before running an image it already holds, and one
//! tenant cannot run another's private image from a node's cache. An update that brings no
//! new image is left alone, as upstream's step leaves it (pods made before the step was
//! turned on stay updatable).

use std::collections::HashSet;

use api::Status;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{Attributes, Mutating, Operation};
use crate::registry::Registry;

/// The step.
pub(super) struct AlwaysPullImages;

impl Mutating for AlwaysPullImages {
    fn name(&self) -> &'static str {
        "AlwaysPullImages"
    }

    fn admit<'a>(
        &'a self,
        _: &'a Registry,
        a: &'a Attributes<'a>,
        pod: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        let new_images = match (a.operation, a.old) {
            (Operation::Update, Some(old)) => !images(pod).is_subset(&images(old)),
            _ => true,
        };
        if a.is_pod() && new_images {
            for_each_container(pod, |c| c["imagePullPolicy"] = "Always".into());
        }
        Box::pin(async { Ok(()) })
    }
}

/// The container lists of a pod spec.
const LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

fn for_each_container(pod: &mut Value, mut f: impl FnMut(&mut Value)) {
    for list in LISTS {
        if let Some(cs) = pod["spec"][list].as_array_mut() {
            cs.iter_mut().for_each(&mut f);
        }
    }
}

/// The images a pod's containers name.
fn images(pod: &Value) -> HashSet<&str> {
    LISTS
        .iter()
        .filter_map(|l| pod["spec"][l].as_array())
        .flatten()
        .filter_map(|c| c["image"].as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_container_pulls_always_unless_an_update_brings_no_new_image() {
        let mut pod = json!({"spec": {
            "initContainers": [{"name": "i", "image": "a", "imagePullPolicy": "IfNotPresent"}],
            "containers": [{"name": "c", "image": "b"}]}});
        for_each_container(&mut pod, |c| c["imagePullPolicy"] = "Always".into());
        assert_eq!(
            pod["spec"]["initContainers"][0]["imagePullPolicy"],
            "Always"
        );
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        let old = json!({"spec": {"containers": [{"image": "a"}, {"image": "b"}]}});
        assert!(images(&pod).is_subset(&images(&old)));
        let changed = json!({"spec": {"containers": [{"image": "c"}]}});
        assert!(!images(&changed).is_subset(&images(&old)));
    }
}
