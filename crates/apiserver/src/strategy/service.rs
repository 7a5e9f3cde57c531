//! Services: what a Service of each type may hold, and what an update that changes the type
//! drops (upstream's `dropTypeDependentFields`): a field is wiped only when the new type has
//! no use for it, the server may have filled it in, and the update left it as it was. The
//! addresses and ports wiped are given back by the allocator after the write.

use api::validation::{FieldError, NameRule};
use serde_json::{Value, json};

use super::{Strategy, immutable, set_default};

/// The Service strategy.
pub(super) struct Service;

impl Strategy for Service {
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1035
    }

    fn defaults(&self, obj: &mut Value) {
        set_default(obj, "spec", json!({}));
        let spec = &mut obj["spec"];
        set_default(spec, "type", json!("ClusterIP"));
        set_default(spec, "sessionAffinity", json!("None"));
        for p in spec
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            set_default(p, "protocol", json!("TCP"));
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            set_default(p, "targetPort", port);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        set_default(obj, "status", json!({"loadBalancer": {}}));
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value, sub: Option<&str>) {
        if sub.is_none() {
            drop_type_dependent(old, new);
        }
    }

    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        errs.extend(validate(obj));
    }

    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        _sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        if old["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty())
            && !cluster_ip_may_change(old, new)
        {
            immutable(old, new, "/spec/clusterIP", errs);
        }
    }
}

/// The Service types upstream knows.
const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

fn service_type(svc: &Value) -> &str {
    svc["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

fn needs_cluster_ip(svc: &Value) -> bool {
    service_type(svc) != "ExternalName"
}

fn needs_node_ports(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

/// Whether the Service gets a health check node port: a load balancer that keeps traffic on
/// the nodes with local endpoints asks each node through it.
pub(crate) fn needs_health_check(svc: &Value) -> bool {
    service_type(svc) == "LoadBalancer" && svc["spec"]["externalTrafficPolicy"] == "Local"
}

/// The rules of a Service on its own.
fn validate(svc: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, p) in svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(FieldError::invalid(
                format!("spec.ports[{i}].port"),
                &json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
    if svc["spec"]["healthCheckNodePort"].as_i64().unwrap_or(0) != 0 && !needs_health_check(svc) {
        errs.push(FieldError::forbidden(
            "spec.healthCheckNodePort",
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    }
    let ty = service_type(svc);
    if !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported("spec.type", &json!(ty), TYPES));
    }
    if ty == "ExternalName" {
        let spec = &svc["spec"];
        if spec["externalName"].as_str().unwrap_or("").is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        }
        let ips = spec["clusterIPs"].as_array().is_some_and(|a| !a.is_empty());
        if ips || !spec["clusterIP"].as_str().unwrap_or("").is_empty() {
            errs.push(FieldError::forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
    }
    errs
}

/// Whether an update may change the ClusterIP: only to or from ExternalName, as upstream.
fn cluster_ip_may_change(old: &Value, new: &Value) -> bool {
    !needs_cluster_ip(old) || !needs_cluster_ip(new)
}

/// Wipes what the new type has no use for, when the update left it as it was.
fn drop_type_dependent(old: &Value, new: &mut Value) {
    let same = |new: &Value, field: &str| old["spec"].get(field) == new["spec"].get(field);
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        for (field, kept) in [
            (
                "clusterIP",
                same(new, "clusterIP") && same(new, "clusterIPs"),
            ),
            (
                "clusterIPs",
                same(new, "clusterIP") && same(new, "clusterIPs"),
            ),
            ("ipFamilies", same(new, "ipFamilies")),
            ("ipFamilyPolicy", same(new, "ipFamilyPolicy")),
            ("internalTrafficPolicy", same(new, "internalTrafficPolicy")),
        ] {
            if kept {
                remove(new, field);
            }
        }
    }
    if needs_node_ports(old) && !needs_node_ports(new) && same_node_ports(old, new) {
        for p in new["spec"]["ports"].as_array_mut().into_iter().flatten() {
            p.as_object_mut().map(|m| m.remove("nodePort"));
        }
    }
    if needs_node_ports(old) && !needs_node_ports(new) && same(new, "externalTrafficPolicy") {
        remove(new, "externalTrafficPolicy");
    }
    if needs_health_check(old) && !needs_health_check(new) && same(new, "healthCheckNodePort") {
        remove(new, "healthCheckNodePort");
    }
    if service_type(new) != "LoadBalancer" {
        remove(new, "allocateLoadBalancerNodePorts");
        if same(new, "loadBalancerClass") {
            remove(new, "loadBalancerClass");
        }
        if service_type(old) == "LoadBalancer" {
            new["status"]["loadBalancer"] = json!({});
        }
    }
}

fn remove(svc: &mut Value, field: &str) {
    if let Some(spec) = svc["spec"].as_object_mut() {
        spec.remove(field);
    }
}

fn same_node_ports(old: &Value, new: &Value) -> bool {
    let ports = |svc: &Value| -> Vec<Value> {
        svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p.get("nodePort").cloned().unwrap_or(Value::Null))
            .collect()
    };
    ports(old) == ports(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_port_service() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {
            "type": "NodePort", "clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster", "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "nodePort": 30080}]}})
    }

    #[test]
    fn turning_into_external_name_drops_addresses_and_ports_left_as_they_were() {
        let old = node_port_service();
        let mut new = old.clone();
        new["spec"]["type"] = json!("ExternalName");
        new["spec"]["externalName"] = json!("example.org");
        drop_type_dependent(&old, &mut new);
        assert_eq!(
            new["spec"],
            json!({"type": "ExternalName", "externalName": "example.org", "ports": [{"port": 80}]})
        );
        assert!(validate(&new).is_empty());
        assert!(cluster_ip_may_change(&old, &new));
    }

    #[test]
    fn fields_the_update_set_itself_stay_and_are_judged() {
        let old = node_port_service();
        let mut new = old.clone();
        new["spec"]["type"] = json!("ExternalName");
        new["spec"]["clusterIP"] = json!("10.43.0.6");
        drop_type_dependent(&old, &mut new);
        let errs: Vec<String> = validate(&new).iter().map(ToString::to_string).collect();
        assert_eq!(
            errs,
            [
                "spec.externalName: Required value",
                "spec.clusterIPs: Forbidden: may not be set for ExternalName services"
            ]
        );
    }

    #[test]
    fn the_health_check_port_goes_with_the_local_policy() {
        let mut old = node_port_service();
        old["spec"]["type"] = json!("LoadBalancer");
        old["spec"]["externalTrafficPolicy"] = json!("Local");
        old["spec"]["healthCheckNodePort"] = json!(31000);
        assert!(validate(&old).is_empty());
        let mut new = old.clone();
        new["spec"]["externalTrafficPolicy"] = json!("Cluster");
        drop_type_dependent(&old, &mut new);
        assert!(new["spec"].get("healthCheckNodePort").is_none());
        new["spec"]["healthCheckNodePort"] = json!(31001);
        let errs: Vec<String> = validate(&new).iter().map(ToString::to_string).collect();
        assert_eq!(
            errs,
            [
                "spec.healthCheckNodePort: Forbidden: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"
            ]
        );
    }

    #[test]
    fn a_load_balancer_turned_cluster_ip_loses_its_node_ports_and_status() {
        let mut old = node_port_service();
        old["spec"]["type"] = json!("LoadBalancer");
        old["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.2"}]}});
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        drop_type_dependent(&old, &mut new);
        assert_eq!(new["spec"]["ports"], json!([{"port": 80}]));
        assert_eq!(new["spec"]["clusterIP"], "10.43.0.5");
        assert!(new["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(new["status"], json!({"loadBalancer": {}}));
        assert!(!cluster_ip_may_change(&old, &new));
    }
}
