//! Ingress status: each of our Ingresses' `status.loadBalancer.ingress` lists the addresses
//! the controller announces, written (a merge patch of the status subresource) only when one
//! is missing. Several servers each run a controller announcing its own node's address: each
//! adds its own to what is there and none removes another's (else they would overwrite each
//! other for ever); an address no Node has any more is dropped when the list is written. An
//! Ingress that stops being ours (its class changed) has our addresses taken out again.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Api, ListParams, Patch, PatchParams};

/// The field manager our status patches are recorded under.
const FIELD_MANAGER: &str = "rudder-ingress";

/// The entries `ingress`'s status lists.
fn current(ingress: &Ingress) -> &[IngressLoadBalancerIngress] {
    ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default()
}

/// Whether one of `own` is not in `ingress`'s status.
pub fn missing(ingress: &Ingress, own: &[IpAddr]) -> bool {
    let listed: BTreeSet<&str> = current(ingress)
        .iter()
        .filter_map(|e| e.ip.as_deref())
        .collect();
    own.iter()
        .any(|ip| !listed.contains(ip.to_string().as_str()))
}

/// The entries to write: the listed addresses some Node still has (all of them when the
/// Nodes are not known) and `own`, sorted.
pub fn merged(
    ingress: &Ingress,
    own: &[IpAddr],
    nodes: Option<&BTreeSet<String>>,
) -> Vec<IngressLoadBalancerIngress> {
    let mut ips: BTreeSet<String> = current(ingress)
        .iter()
        .filter_map(|e| e.ip.clone())
        .filter(|ip| nodes.is_none_or(|n| n.contains(ip)))
        .collect();
    ips.extend(own.iter().map(ToString::to_string));
    ips.into_iter()
        .map(|ip| IngressLoadBalancerIngress {
            ip: Some(ip),
            ..IngressLoadBalancerIngress::default()
        })
        .collect()
}

/// The entries of `ingress`'s status but `own`, if it lists one of `own` (an Ingress no
/// longer ours keeps only what others announce).
pub fn without_own(ingress: &Ingress, own: &[IpAddr]) -> Option<Vec<IngressLoadBalancerIngress>> {
    let own: BTreeSet<String> = own.iter().map(ToString::to_string).collect();
    let is_own = |e: &IngressLoadBalancerIngress| e.ip.as_ref().is_some_and(|ip| own.contains(ip));
    let entries = current(ingress);
    entries
        .iter()
        .any(is_own)
        .then(|| entries.iter().filter(|e| !is_own(e)).cloned().collect())
}

/// The merge patch that sets the entries to `wanted` (a merge patch replaces a list whole).
pub fn patch(wanted: &[IngressLoadBalancerIngress]) -> serde_json::Value {
    serde_json::json!({"status": {"loadBalancer": {"ingress": wanted}}})
}

/// An Ingress's namespace and name.
fn key(ing: &Ingress) -> (String, String) {
    let meta = &ing.metadata;
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Writes our Ingresses' status, remembering what it already wrote.
pub struct Writer {
    client: kube::Client,
    own: Vec<IpAddr>,
    /// The resourceVersion each Ingress had when its status was patched: the same version
    /// seen again is only the watch lagging behind the patch.
    patched: HashMap<(String, String), String>,
}

impl Writer {
    /// A writer announcing `addresses` (none: status is left alone).
    pub fn new(client: kube::Client, addresses: &[IpAddr]) -> Writer {
        Writer {
            client,
            own: addresses.to_vec(),
            patched: HashMap::new(),
        }
    }

    /// Patches the status of each of `ours` that lacks one of our addresses, and of each of
    /// `others` that still lists one; false if a patch failed (the caller retries later).
    pub async fn sync(&mut self, ours: &[&Ingress], others: &[&Ingress]) -> bool {
        let mut ok = true;
        let mut nodes = None;
        for ing in ours {
            if !missing(ing, &self.own) || self.written(ing) {
                continue;
            }
            if nodes.is_none() {
                nodes = Some(self.node_addresses().await);
            }
            let wanted = merged(ing, &self.own, nodes.as_ref().and_then(Option::as_ref));
            ok &= self.write(ing, &wanted).await;
        }
        for ing in others {
            if let Some(wanted) = without_own(ing, &self.own)
                && !self.written(ing)
            {
                ok &= self.write(ing, &wanted).await;
            }
        }
        let live: std::collections::HashSet<(&str, &str)> = ours
            .iter()
            .chain(others)
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

    /// Whether `ing`'s status was written at the version seen: the watch lags behind.
    fn written(&self, ing: &Ingress) -> bool {
        let version = ing.metadata.resource_version.as_deref().unwrap_or_default();
        self.patched.get(&key(ing)).map(String::as_str) == Some(version)
    }

    /// Sets `ing`'s status entries to `wanted`; false if that failed.
    async fn write(&mut self, ing: &Ingress, wanted: &[IngressLoadBalancerIngress]) -> bool {
        let (ns, name) = key(ing);
        let api = Api::<Ingress>::namespaced(self.client.clone(), &ns);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let version = ing.metadata.resource_version.clone().unwrap_or_default();
        match api
            .patch_status(&name, &params, &Patch::Merge(patch(wanted)))
            .await
        {
            Ok(_) => {
                tracing::debug!(ingress = %format!("{ns}/{name}"), "status written");
                self.patched.insert((ns, name), version);
                true
            }
            Err(kube::Error::Api(status)) if status.code == 404 => true,
            Err(e) => {
                tracing::warn!(ingress = %format!("{ns}/{name}"), "writing status: {e}");
                false
            }
        }
    }

    /// Every address of every Node, or `None` if they cannot be listed.
    async fn node_addresses(&self) -> Option<BTreeSet<String>> {
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .inspect_err(|e| tracing::debug!("listing nodes: {e}"))
            .ok()?;
        Some(
            nodes
                .items
                .iter()
                .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
                .flatten()
                .map(|a| a.address.clone())
                .collect(),
        )
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

    fn ips(entries: &[IngressLoadBalancerIngress]) -> Vec<&str> {
        entries.iter().filter_map(|e| e.ip.as_deref()).collect()
    }

    #[test]
    fn only_a_missing_own_address_asks_for_a_write() {
        let own = ["10.0.0.2".parse().unwrap()];
        assert!(missing(&ingress(json!({})), &own));
        let both =
            ingress(json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.3"}, {"ip": "10.0.0.2"}]}}));
        assert!(!missing(&both, &own));
        assert!(!missing(&ingress(json!({})), &[]));
    }

    #[test]
    fn another_servers_address_stays_while_a_node_has_it() {
        let own = ["10.0.0.2".parse().unwrap()];
        let other =
            ingress(json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.3"}, {"ip": "10.0.0.9"}]}}));
        let nodes: BTreeSet<String> = ["10.0.0.2", "10.0.0.3"].map(String::from).into();
        assert_eq!(
            ips(&merged(&other, &own, Some(&nodes))),
            ["10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(
            ips(&merged(&other, &own, None)),
            ["10.0.0.2", "10.0.0.3", "10.0.0.9"]
        );
    }

    #[test]
    fn an_ingress_no_longer_ours_keeps_only_other_addresses() {
        let own = ["10.0.0.2".parse().unwrap()];
        let listed =
            ingress(json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.3"}, {"ip": "10.0.0.2"}]}}));
        assert_eq!(ips(&without_own(&listed, &own).unwrap()), ["10.0.0.3"]);
        let theirs = ingress(json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.3"}]}}));
        assert!(without_own(&theirs, &own).is_none());
        assert!(without_own(&ingress(json!({})), &own).is_none());
    }

    #[test]
    fn the_patch_replaces_the_list() {
        let want = merged(&ingress(json!({})), &["10.0.0.2".parse().unwrap()], None);
        assert_eq!(
            patch(&want),
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}]}}})
        );
    }
}
