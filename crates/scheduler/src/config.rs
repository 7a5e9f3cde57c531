//! `KubeSchedulerConfiguration` (`kubescheduler.config.k8s.io/v1`, `rudder scheduler
//! --config PATH`): profiles, each a scheduler name with plugins enabled, disabled and
//! weighted, and plugin arguments (NodeResourcesFit's scoring strategy, PodTopologySpread's
//! default constraints).
//!
//! Extension points are not told apart: a plugin disabled at any of them leaves the profile,
//! and one enabled at any of them joins it (`*` disables every default plugin).

use serde::Deserialize;

use crate::Error;
use crate::framework::Plugin;
use crate::plugins::node_resources_fit::{NodeResourcesFit, Strategy};
use crate::scheduler::SCHEDULER_NAME;

/// One named set of plugins.
pub struct Profile {
    /// The `spec.schedulerName` it serves.
    pub scheduler_name: String,
    /// Its plugins, each with its score weight.
    pub plugins: Vec<(Box<dyn Plugin>, i64)>,
}

impl Profile {
    /// The default profile for `default-scheduler`.
    pub fn default_profile() -> Profile {
        Profile {
            scheduler_name: SCHEDULER_NAME.into(),
            plugins: crate::plugins::default_profile()
                .into_iter()
                .map(|p| {
                    let w = p.weight();
                    (p, w)
                })
                .collect(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Config {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    profiles: Vec<ProfileConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ProfileConfig {
    scheduler_name: Option<String>,
    #[serde(default)]
    plugins: std::collections::BTreeMap<String, PluginSet>,
    #[serde(default)]
    plugin_config: Vec<PluginArgs>,
}

#[derive(Deserialize, Default)]
struct PluginSet {
    #[serde(default)]
    enabled: Vec<PluginRef>,
    #[serde(default)]
    disabled: Vec<PluginRef>,
}

#[derive(Deserialize)]
struct PluginRef {
    name: String,
    weight: Option<i64>,
}

#[derive(Deserialize)]
struct PluginArgs {
    name: String,
    #[serde(default)]
    args: serde_json::Value,
}

/// A plugin by upstream's name, with its arguments.
fn plugin(name: &str, args: Option<&serde_json::Value>) -> crate::Result<Box<dyn Plugin>> {
    use crate::plugins::*;
    Ok(match name {
        "NodeResourcesFit" => Box::new(fit(args)?),
        "NodeUnschedulable" => Box::new(node_unschedulable::NodeUnschedulable),
        "NodePorts" => Box::new(node_ports::NodePorts),
        "NodeAffinity" => Box::new(node_affinity::NodeAffinity),
        "TaintToleration" => Box::new(taint_toleration::TaintToleration),
        "VolumeBinding" => Box::new(volume_binding::VolumeBinding),
        "VolumeRestrictions" => Box::new(volume_restrictions::VolumeRestrictions),
        "PodTopologySpread" => Box::new(pod_topology_spread::PodTopologySpread::from_args(args)?),
        "InterPodAffinity" => Box::new(inter_pod_affinity::InterPodAffinity),
        "NodeResourcesBalancedAllocation" => {
            Box::new(balanced_allocation::NodeResourcesBalancedAllocation)
        }
        "ImageLocality" => Box::new(image_locality::ImageLocality),
        other => return Err(Error::Invalid(format!("plugin {other:?} does not exist"))),
    })
}

fn fit(args: Option<&serde_json::Value>) -> crate::Result<NodeResourcesFit> {
    let mut fit = NodeResourcesFit::default();
    let Some(strategy) = args.map(|a| &a["scoringStrategy"]).filter(|s| !s.is_null()) else {
        return Ok(fit);
    };
    fit.strategy = match strategy["type"].as_str().unwrap_or("LeastAllocated") {
        "LeastAllocated" => Strategy::LeastAllocated,
        "MostAllocated" => Strategy::MostAllocated,
        "RequestedToCapacityRatio" => {
            let shape = strategy["requestedToCapacityRatio"]["shape"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            Strategy::RequestedToCapacityRatio(
                shape
                    .iter()
                    .map(|p| {
                        (
                            p["utilization"].as_i64().unwrap_or(0),
                            p["score"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect(),
            )
        }
        other => {
            return Err(Error::Invalid(format!(
                "scoringStrategy.type: Unsupported value: {other:?}"
            )));
        }
    };
    if let Some(resources) = strategy["resources"].as_array() {
        fit.resources = resources
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap_or("").to_string(),
                    r["weight"].as_i64().unwrap_or(1),
                )
            })
            .collect();
    }
    Ok(fit)
}

/// Reads a configuration (YAML or JSON) into its profiles; no profile means the default one.
pub fn profiles(text: &str) -> crate::Result<Vec<Profile>> {
    let config: Config = serde_saphyr::from_str(text).map_err(|e| Error::Parse(e.to_string()))?;
    if config
        .kind
        .as_deref()
        .is_some_and(|k| k != "KubeSchedulerConfiguration")
        || config
            .api_version
            .as_deref()
            .is_some_and(|v| v != "kubescheduler.config.k8s.io/v1")
    {
        return Err(Error::Invalid(
            "the configuration is not a kubescheduler.config.k8s.io/v1 KubeSchedulerConfiguration"
                .into(),
        ));
    }
    if config.profiles.is_empty() {
        return Ok(vec![Profile::default_profile()]);
    }
    let mut out: Vec<Profile> = Vec::new();
    for p in config.profiles {
        let name = p.scheduler_name.unwrap_or_else(|| SCHEDULER_NAME.into());
        if out.iter().any(|o| o.scheduler_name == name) {
            return Err(Error::Invalid(format!(
                "profiles[].schedulerName: Duplicate value: {name:?}"
            )));
        }
        let args = |plugin: &str| {
            p.plugin_config
                .iter()
                .find(|c| c.name == plugin)
                .map(|c| &c.args)
        };
        let sets: Vec<&PluginSet> = p.plugins.values().collect();
        let disabled = |plugin: &str| {
            sets.iter()
                .flat_map(|s| &s.disabled)
                .any(|d| d.name == plugin || d.name == "*")
        };
        let weight_of = |plugin: &str| {
            sets.iter()
                .flat_map(|s| &s.enabled)
                .find(|e| e.name == plugin)
                .and_then(|e| e.weight)
        };
        let mut plugins: Vec<(Box<dyn Plugin>, i64)> = Vec::new();
        for default in crate::plugins::default_profile() {
            let name = default.name();
            if disabled(name)
                && weight_of(name).is_none()
                && !sets.iter().flat_map(|s| &s.enabled).any(|e| e.name == name)
            {
                continue;
            }
            let built = plugin(name, args(name))?;
            let w = weight_of(name).unwrap_or_else(|| built.weight());
            plugins.push((built, w));
        }
        for e in sets.iter().flat_map(|s| &s.enabled) {
            if !plugins.iter().any(|(p, _)| p.name() == e.name) {
                let built = plugin(&e.name, args(&e.name))?;
                let w = e.weight.unwrap_or_else(|| built.weight());
                plugins.push((built, w));
            }
        }
        out.push(Profile {
            scheduler_name: name,
            plugins,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_enable_disable_weigh_and_configure_plugins() {
        let ps = profiles(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
             profiles:\n- schedulerName: default-scheduler\n- schedulerName: packer\n  \
             plugins:\n    score:\n      disabled: [{name: NodeResourcesBalancedAllocation}]\n      \
             enabled: [{name: NodeAffinity, weight: 5}]\n  pluginConfig:\n  - name: NodeResourcesFit\n    \
             args: {scoringStrategy: {type: MostAllocated}}\n",
        )
        .unwrap();
        assert_eq!(ps.len(), 2);
        let packer = &ps[1];
        assert_eq!(packer.scheduler_name, "packer");
        let names: Vec<&str> = packer.plugins.iter().map(|(p, _)| p.name()).collect();
        assert!(!names.contains(&"NodeResourcesBalancedAllocation"));
        let affinity = packer
            .plugins
            .iter()
            .find(|(p, _)| p.name() == "NodeAffinity");
        assert_eq!(affinity.map(|(_, w)| *w), Some(5));
        assert_eq!(
            ps[0].plugins.len(),
            Profile::default_profile().plugins.len()
        );
        let err = profiles("profiles:\n- plugins: {filter: {enabled: [{name: Magic}]}}\n")
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "plugin \"Magic\" does not exist");
    }
}
