//! Printers of networking: ingresses and ingress classes, network policies, and endpoint
//! slices (`discovery.k8s.io`).

use jiff::Timestamp;
use serde_json::Value;

use super::{
    AGE, NAME, Printer, age, at, list_at, list_with_more, load_balancer_addresses, name,
    selector_cell, str_at, str_or, string,
};

/// Ingresses: class, hosts, load-balancer addresses and the ports they listen on.
pub(super) static INGRESSES: Printer = Printer {
    columns: &[
        NAME,
        string("Class"),
        string("Hosts"),
        string("Address"),
        string("Ports"),
        AGE,
    ],
    cells: ingress_cells,
};

fn ingress_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports = if list_at(obj, "spec.tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(obj),
        Value::from(str_or(obj, "spec.ingressClassName", "<none>")),
        Value::from(ingress_hosts(obj)),
        Value::from(load_balancer_addresses(obj).join(",")),
        Value::from(ports),
        age(obj, now),
    ]
}

/// An Ingress's hosts: the first three named ones and a count of the remaining rules; `*`
/// when no rule names a host.
fn ingress_hosts(ing: &Value) -> String {
    let rules = list_at(ing, "spec.rules");
    let mut hosts = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == 3 {
            more = true;
            break;
        }
        if !str_at(rule, "host").is_empty() {
            hosts.push(str_at(rule, "host"));
        }
    }
    if hosts.is_empty() {
        return "*".into();
    }
    let shown = hosts.join(",");
    if more {
        format!("{shown} + {} more...", rules.len() - 3)
    } else {
        shown
    }
}

/// Ingress classes: their controller and parameters.
pub(super) static INGRESS_CLASSES: Printer = Printer {
    columns: &[NAME, string("Controller"), string("Parameters"), AGE],
    cells: ingress_class_cells,
};

fn ingress_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = at(obj, "spec.parameters").map_or("<none>".into(), |p| {
        match at(p, "apiGroup").and_then(Value::as_str) {
            Some(group) => {
                format!("{}.{group}/{}", str_at(p, "kind"), str_at(p, "name"))
            }
            None => format!("{}/{}", str_at(p, "kind"), str_at(p, "name")),
        }
    });
    vec![
        name(obj),
        Value::from(str_at(obj, "spec.controller")),
        Value::from(parameters),
        age(obj, now),
    ]
}

/// Network policies: the pods they select.
pub(super) static NETWORK_POLICIES: Printer = Printer {
    columns: &[NAME, string("Pod-Selector"), AGE],
    cells: network_policy_cells,
};

fn network_policy_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        selector_cell(at(obj, "spec.podSelector")),
        age(obj, now),
    ]
}

/// Endpoint slices: address type, ports and the first addresses.
pub(super) static ENDPOINT_SLICES: Printer = Printer {
    columns: &[
        NAME,
        string("AddressType"),
        string("Ports"),
        string("Endpoints"),
        AGE,
    ],
    cells: endpoint_slice_cells,
};

fn endpoint_slice_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports = list_at(obj, "ports")
        .iter()
        .map(|p| match at(p, "port").and_then(Value::as_i64) {
            Some(port) => port.to_string(),
            None => str_or(p, "name", "*").to_string(),
        })
        .collect();
    let addresses = list_at(obj, "endpoints")
        .iter()
        .flat_map(|e| list_at(e, "addresses"))
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    vec![
        name(obj),
        Value::from(str_at(obj, "addressType")),
        Value::from(list_with_more(ports, 3)),
        Value::from(list_with_more(addresses, 3)),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{meta, row};

    #[test]
    fn ingress_and_endpoint_slice_rows() {
        let ing = row(
            "networking.k8s.io",
            "v1",
            "ingresses",
            json!({"metadata": meta(), "spec": {"ingressClassName": "nginx", "tls": [{}],
                "rules": [{"host": "a.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {"host": "d.example"}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"hostname": "lb.example"}, {"ip": "10.0.0.2"}]}}}),
        );
        assert_eq!(
            &ing[1..5],
            [
                json!("nginx"),
                json!("a.example,b.example,c.example + 2 more..."),
                json!("10.0.0.2,lb.example"),
                json!("80, 443"),
            ]
        );
        let slice = row(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            json!({"metadata": meta(), "addressType": "IPv4", "ports": [{"port": 80}, {"name": "dns"}],
                "endpoints": [{"addresses": ["10.0.0.1", "10.0.0.2"]}, {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]}),
        );
        assert_eq!(
            &slice[1..4],
            [
                json!("IPv4"),
                json!("80,dns"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")
            ]
        );
        let empty = row(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            json!({"metadata": meta(), "addressType": "IPv4"}),
        );
        assert_eq!(&empty[2..4], [json!("<unset>"), json!("<unset>")]);
    }
}
