//! The service load balancer (`service-lb-controller`, after k3s' ServiceLB): a LoadBalancer
//! Service that names no `loadBalancerClass` gets the addresses of the nodes taking part in
//! `status.loadBalancer.ingress`, and the service proxy on every node forwards those
//! addresses' Service ports as it does the ClusterIP's. The nodes taking part are the Ready
//! ones, and only those labelled `svccontroller.k3s.cattle.io/enablelb=true` when any node
//! carries the label (k3s' rule). A Service that stops being ours (another type, or a class
//! of another implementation) loses the addresses it was given.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use serde_json::json;

use crate::runtime::{self, Informers, Shared};

/// The controller's name.
const NAME: &str = "service-lb-controller";

/// The node label that, once on any node, limits load balancing to the nodes carrying it.
const ENABLE_LB: &str = "svccontroller.k3s.cattle.io/enablelb";

struct Ctx {
    client: kube::Client,
    nodes: Store<Node>,
}

/// Starts the controller: a loop over Services, all of them again when a node changes.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        nodes: informers.store::<Node>(),
    });
    let nodes_changed = informers.subscribe::<Node>().map(|_| ());
    let controller = Controller::for_stream(
        informers.subscribe::<Service>(),
        informers.store::<Service>(),
    )
    .reconcile_all_on(nodes_changed);
    runtime::run(NAME, controller, shared, ctx, reconcile)
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> runtime::Result<Action> {
    let nodes = ctx.nodes.state();
    let want = if ours(&svc) {
        addresses(nodes.iter().map(Arc::as_ref))
    } else {
        Vec::new()
    };
    let have: Vec<String> = ingress_ips(&svc);
    if have == want {
        return Ok(Action::await_change());
    }
    let ingress: Vec<_> = want
        .iter()
        .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
        .collect();
    let patch = if ingress.is_empty() {
        json!({"status": {"loadBalancer": {"ingress": null}}})
    } else {
        json!({"status": {"loadBalancer": {"ingress": ingress}}})
    };
    let api: Api<Service> =
        Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
    match api
        .patch_status(
            &svc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Whether this controller balances `svc`: type LoadBalancer, no class naming another one.
fn ours(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    })
}

fn ingress_ips(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

/// The InternalIPs of the nodes taking part, sorted.
fn addresses<'a>(nodes: impl Iterator<Item = &'a Node> + Clone) -> Vec<String> {
    let labelled = nodes.clone().any(|n| n.labels().contains_key(ENABLE_LB));
    let mut ips: Vec<String> = nodes
        .filter(|n| !labelled || n.labels().get(ENABLE_LB).is_some_and(|v| v == "true"))
        .filter(|n| ready(n))
        .flat_map(|n| {
            n.status
                .iter()
                .flat_map(|s| s.addresses.iter().flatten())
                .filter(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

fn ready(node: &Node) -> bool {
    node.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, ready: bool, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {
                "addresses": [{"type": "InternalIP", "address": ip},
                              {"type": "Hostname", "address": name}],
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn ready_nodes_take_part_unless_some_are_chosen_by_label() {
        let a = node("a", "192.0.2.11", true, json!({}));
        let b = node("b", "192.0.2.10", true, json!({}));
        let down = node("c", "192.0.2.12", false, json!({}));
        assert_eq!(
            addresses([&a, &b, &down].into_iter()),
            ["192.0.2.10", "192.0.2.11"]
        );
        let chosen = node("d", "192.0.2.13", true, json!({ENABLE_LB: "true"}));
        assert_eq!(addresses([&a, &b, &chosen].into_iter()), ["192.0.2.13"]);
    }

    #[test]
    fn only_classless_load_balancers_are_ours() {
        let svc = |spec: serde_json::Value| -> Service {
            serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": spec})).unwrap()
        };
        assert!(ours(&svc(json!({"type": "LoadBalancer"}))));
        assert!(!ours(&svc(
            json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"})
        )));
        assert!(!ours(&svc(json!({"type": "NodePort"}))));
    }
}
