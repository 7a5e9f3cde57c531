//! Ingress status: each of our Ingresses' `status.loadBalancer.ingress` lists the addresses
//! the controller is configured to announce, written (a merge patch of the status
//! subresource) only where it differs.

use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Api, Patch, PatchParams};

/// The field manager our status patches are recorded under.
const FIELD_MANAGER: &str = "rudder-ingress";

/// The load-balancer entries announcing `addresses`, in order.
pub fn wanted(addresses: &[IpAddr]) -> Vec<IngressLoadBalancerIngress> {
    addresses
        .iter()
        .map(|ip| IngressLoadBalancerIngress {
            ip: Some(ip.to_string()),
            ..IngressLoadBalancerIngress::default()
        })
        .collect()
}

/// Whether `ingress`'s status lists other entries than `wanted`.
pub fn differs(ingress: &Ingress, wanted: &[IngressLoadBalancerIngress]) -> bool {
    let current = ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default();
    current != wanted
}

/// The merge patch that sets the entries to `wanted` (a merge patch replaces a list whole).
pub fn patch(wanted: &[IngressLoadBalancerIngress]) -> serde_json::Value {
    serde_json::json!({"status": {"loadBalancer": {"ingress": wanted}}})
}

/// Writes our Ingresses' status, remembering what it already wrote.
pub struct Writer {
    client: kube::Client,
    wanted: Vec<IngressLoadBalancerIngress>,
    /// The resourceVersion each Ingress had when its status was patched: the same version
    /// seen again is only the watch lagging behind the patch.
    patched: HashMap<(String, String), String>,
}

impl Writer {
    /// A writer announcing `addresses` (none: status is left alone).
    pub fn new(client: kube::Client, addresses: &[IpAddr]) -> Writer {
        Writer {
            client,
            wanted: wanted(addresses),
            patched: HashMap::new(),
        }
    }

    /// Patches the status of each of `ingresses` that differs; false if a patch failed (the
    /// caller retries later).
    pub async fn sync(&mut self, ingresses: &[&Ingress]) -> bool {
        if self.wanted.is_empty() {
            return true;
        }
        let mut ok = true;
        for ing in ingresses {
            let (Some(ns), Some(name)) = (&ing.metadata.namespace, &ing.metadata.name) else {
                continue;
            };
            let key = (ns.clone(), name.clone());
            let version = ing.metadata.resource_version.clone().unwrap_or_default();
            if !differs(ing, &self.wanted) || self.patched.get(&key) == Some(&version) {
                continue;
            }
            let api = Api::<Ingress>::namespaced(self.client.clone(), ns);
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            match api
                .patch_status(name, &params, &Patch::Merge(patch(&self.wanted)))
                .await
            {
                Ok(_) => {
                    tracing::debug!(ingress = %format!("{ns}/{name}"), "status written");
                    self.patched.insert(key, version);
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => {
                    tracing::warn!(ingress = %format!("{ns}/{name}"), "writing status: {e}");
                    ok = false;
                }
            }
        }
        let live: std::collections::HashSet<(&str, &str)> = ingresses
            .iter()
            .filter_map(|i| {
                Some((
                    i.metadata.namespace.as_deref()?,
                    i.metadata.name.as_deref()?,
                ))
            })
            .collect();
        self.patched
            .retain(|(ns, name), _| live.contains(&(ns.as_str(), name.as_str())));
        ok
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ingress(status: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": "i", "namespace": "web"},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn the_wanted_entries_are_the_addresses_in_order() {
        let addresses = ["10.0.0.2".parse().unwrap(), "fd00::1".parse().unwrap()];
        let ips: Vec<_> = wanted(&addresses)
            .into_iter()
            .map(|e| e.ip.unwrap())
            .collect();
        assert_eq!(ips, ["10.0.0.2", "fd00::1"]);
    }

    #[test]
    fn status_differs_unless_it_lists_exactly_the_wanted_entries() {
        let want = wanted(&["10.0.0.2".parse().unwrap()]);
        assert!(differs(&ingress(json!({})), &want));
        assert!(!differs(
            &ingress(json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}]}})),
            &want
        ));
        assert!(differs(
            &ingress(
                json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}]}})
            ),
            &want
        ));
        assert!(differs(
            &ingress(json!({"loadBalancer": {"ingress": [{"hostname": "lb.test"}]}})),
            &want
        ));
        assert!(!differs(&ingress(json!({})), &[]));
    }

    #[test]
    fn the_patch_replaces_the_list() {
        let want = wanted(&["10.0.0.2".parse().unwrap()]);
        assert_eq!(
            patch(&want),
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}]}}})
        );
    }
}
