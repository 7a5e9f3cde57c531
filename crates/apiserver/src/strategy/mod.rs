//! Per-resource behaviour on top of the generic registry (upstream's `Strategy`): one
//! [`Strategy`] per kind, in a module of its own, holding the defaults filled in on every write,
//! what a create adds, what an update keeps or adds, validation, and how names are checked.
//! [`of`] is the one list of which kind has which strategy; a kind not in it gets
//! [`Generic`]: metadata checks only.
//!
//! The registry calls the free functions here ([`defaults`], [`prepare_for_create`],
//! [`prepare_for_update`], [`validate`], [`validate_update`]), which add the generic part
//! (metadata checks) to the kind's own. To give a built-in kind behaviour: write its
//! `Strategy` (every method defaults to doing nothing) and add a line to [`of`].

mod batch;
mod config;
pub(crate) mod crd;
mod csr;
mod custom;
mod defaults;
mod ephemeral;
mod flowcontrol;
mod namespace;
mod node;
mod pod;
mod podspec;
mod rbac;
mod scheduling;
pub(crate) mod service;
mod storage;
mod workloads;

use api::Resource;
use api::validation::{FieldError, NameRule, object_meta};
use serde_json::Value;

/// What a kind does beyond the generic registry (upstream's create and update strategies
/// and defaulting). Every method defaults to the generic behaviour: nothing.
pub trait Strategy: Sync {
    /// How names are checked.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Fills in defaults, as upstream's decoder does on every write (create, update, patch):
    /// an unchanged object sent back (`kubectl replace`) reads as the stored one.
    fn defaults(&self, _obj: &mut Value) {}

    /// What a create adds besides the defaults (upstream's `PrepareForCreate`).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// What an update through `sub` (`None`: the object itself) takes from the stored `old`
    /// or adds, after the defaults (upstream's `PrepareForUpdate`): fields only their own
    /// subresource writes, what a subresource stamps.
    fn prepare_for_update(&self, _old: &Value, _new: &mut Value, _sub: Option<&str>) {}

    /// The kind's own checks of an object about to be stored (its metadata is checked for
    /// every kind).
    fn validate(&self, _obj: &Value, _errs: &mut Vec<FieldError>) {}

    /// How many seconds a deletion waits (upstream's `CheckGracefulDelete`), given the grace
    /// period the request asked for; 0 deletes at once, unless something else holds it.
    fn deletion_grace(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Whether the object, though asked to go, stays until something of its own is done
    /// (a namespace's finalizers in its spec).
    fn holds_deletion(&self, _obj: &Value) -> bool {
        false
    }

    /// What a deletion that does not remove the object at once changes besides its
    /// `deletionTimestamp`.
    fn mark_deleting(&self, _obj: &mut Value) {}

    /// What may not change in an update through `sub`.
    fn validate_update(
        &self,
        _old: &Value,
        _new: &Value,
        _sub: Option<&str>,
        _errs: &mut Vec<FieldError>,
    ) {
    }
}

/// The strategy of a kind without one of its own.
pub struct Generic;

impl Strategy for Generic {}

/// A resource's strategy: a built-in kind's, or a custom resource's built from its schema.
pub(crate) enum Of {
    /// A built-in kind's (or [`Generic`]).
    Static(&'static dyn Strategy),
    /// A custom resource's.
    Custom(custom::Custom),
}

impl std::ops::Deref for Of {
    type Target = dyn Strategy;

    fn deref(&self) -> &(dyn Strategy + 'static) {
        match self {
            Of::Static(s) => *s,
            Of::Custom(c) => c,
        }
    }
}

/// The strategy of `r`: a custom resource's from its schema, else a built-in kind's.
pub(crate) fn of(r: &Resource) -> Of {
    match &r.schema {
        Some(schema) => Of::Custom(custom::Custom(schema.0.clone())),
        None => Of::Static(built_in(r)),
    }
}

/// The one list of built-in kinds with behaviour of their own.
fn built_in(r: &Resource) -> &'static dyn Strategy {
    match r.group_plural() {
        ("", "pods") => &pod::Pod,
        ("", "services") => &service::Service,
        ("", "namespaces") => &namespace::Namespace,
        ("", "nodes") => &node::Node,
        ("", "configmaps") => &config::ConfigMap,
        ("", "secrets") => &config::Secret,
        ("", "replicationcontrollers") => &workloads::ReplicationController,
        ("", "podtemplates") => &workloads::PodTemplate,
        ("", "persistentvolumes") => &storage::PERSISTENT_VOLUMES,
        ("", "persistentvolumeclaims") => &storage::PERSISTENT_VOLUME_CLAIMS,
        ("apps", "deployments") => &workloads::DEPLOYMENTS,
        ("apps", "replicasets") => &workloads::REPLICA_SETS,
        ("apps", "statefulsets") => &workloads::STATEFUL_SETS,
        ("apps", "daemonsets") => &workloads::DAEMON_SETS,
        ("autoscaling", "horizontalpodautoscalers") => &workloads::HORIZONTAL_POD_AUTOSCALERS,
        ("batch", "jobs") => &batch::Job,
        ("batch", "cronjobs") => &batch::CronJob,
        ("certificates.k8s.io", "certificatesigningrequests") => &csr::CertificateSigningRequest,
        ("rbac.authorization.k8s.io", _) => &rbac::Rbac,
        ("scheduling.k8s.io", "priorityclasses") => &scheduling::PriorityClass,
        ("flowcontrol.apiserver.k8s.io", "flowschemas") => &flowcontrol::FlowSchema,
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations") => {
            &flowcontrol::PriorityLevelConfiguration
        }
        ("storage.k8s.io", "storageclasses") => &storage::STORAGE_CLASSES,
        ("storage.k8s.io", "csidrivers") => &storage::CSI_DRIVERS,
        ("apiextensions.k8s.io", "customresourcedefinitions") => &crd::CustomResourceDefinition,
        _ => &Generic,
    }
}

/// How this resource's names are checked.
pub fn name_rule(r: &Resource) -> NameRule {
    of(r).name_rule()
}

/// Fills in `r`'s defaults (see [`Strategy::defaults`]).
pub fn defaults(r: &Resource, obj: &mut Value) {
    of(r).defaults(obj);
}

/// What a create of `r` adds besides the defaults (see [`Strategy::prepare_for_create`]).
pub fn prepare_for_create(r: &Resource, obj: &mut Value) {
    of(r).prepare_for_create(obj);
}

/// What an update of `r` through `sub` keeps or adds (see [`Strategy::prepare_for_update`]).
pub fn prepare_for_update(r: &Resource, old: &Value, new: &mut Value, sub: Option<&str>) {
    of(r).prepare_for_update(old, new, sub);
}

/// Validates an object about to be stored: its metadata, then its kind's rules.
pub fn validate(r: &Resource, obj: &Value) -> Vec<FieldError> {
    let strategy = of(r);
    let mut errs = object_meta(&obj["metadata"], r.namespaced, strategy.name_rule());
    strategy.validate(obj, &mut errs);
    errs
}

/// Checks what may not change on update.
///
/// `sub` is the subresource the update came through, if any.
pub fn validate_update(
    r: &Resource,
    old: &Value,
    new: &Value,
    sub: Option<&str>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    of(r).validate_update(old, new, sub, &mut errs);
    errs
}

/// Sets `key` of an object to `value` unless it has one; does nothing to a non-object.
fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry(key).or_insert(value);
    }
}

/// Puts back the old object's `metadata.<field>` for each of `fields`: what a status write
/// may not change of a kind's metadata.
fn keep_metadata(old: &Value, new: &mut Value, fields: &[&str]) {
    for field in fields {
        let path = format!("/metadata/{field}");
        crate::object::set_pointer(new, &path, old.pointer(&path).cloned());
    }
}

/// Refuses a change of the field at `path` (a JSON pointer) with upstream's message.
fn immutable(old: &Value, new: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let (a, b) = (old.pointer(path), new.pointer(path));
    if a != b {
        let field = path.trim_start_matches('/').replace('/', ".");
        errs.push(FieldError::invalid(
            field,
            b.unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::find;
    use serde_json::json;

    /// What a create applies: the defaults, then what only a create adds.
    fn on_create(r: &Resource, obj: &mut Value) {
        defaults(r, obj);
        prepare_for_create(r, obj);
    }

    #[test]
    fn every_write_gets_defaults_that_need_no_create() {
        let rcs = find("", "v1", "replicationcontrollers").unwrap();
        let mut rc = json!({"metadata": {"name": "rc"}, "spec": {"template": {
            "metadata": {"labels": {"app": "a"}}, "spec": {"containers": []}}}});
        defaults(rcs, &mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "a"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "a"}));
        let secrets = find("", "v1", "secrets").unwrap();
        let mut secret = json!({"data": {"a": "b2xk"}, "stringData": {"a": "new", "b": "x"}});
        defaults(secrets, &mut secret);
        assert_eq!(secret["data"], json!({"a": "bmV3", "b": "eA=="}));
        assert!(secret.get("stringData").is_none());
        let pods = find("", "v1", "pods").unwrap();
        let mut pod = json!({"spec": {"containers": [{"name": "c", "env": [
            {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
            "volumes": [{"name": "v"}, {"name": "d", "downwardAPI": {"items": [
                {"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}});
        defaults(pods, &mut pod);
        let spec = &pod["spec"];
        assert_eq!(
            spec["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["apiVersion"],
            "v1"
        );
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(
            spec["volumes"][1]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
            "v1"
        );
        // Status is a create's business, not every write's.
        assert!(pod.get("status").is_none());
    }

    #[test]
    fn jobs_get_a_selector_by_uid_unless_manual() {
        let jobs = find("batch", "v1", "jobs").unwrap();
        let mut job = json!({"metadata": {"name": "pi", "uid": "u1"}, "spec": {
            "template": {"metadata": {"labels": {"app": "pi"}}, "spec": {"containers": []}}}});
        on_create(jobs, &mut job);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}})
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"app": "pi", "job-name": "pi", "batch.kubernetes.io/job-name": "pi",
                "controller-uid": "u1", "batch.kubernetes.io/controller-uid": "u1"})
        );
        let mut manual = json!({"metadata": {"name": "m", "uid": "u2"}, "spec": {
            "manualSelector": true, "selector": {"matchLabels": {"app": "m"}},
            "backoffLimitPerIndex": 1, "template": {"metadata": {"labels": {"app": "m"}}}}});
        on_create(jobs, &mut manual);
        assert_eq!(
            manual["spec"]["selector"],
            json!({"matchLabels": {"app": "m"}})
        );
        assert_eq!(
            manual["spec"]["template"]["metadata"]["labels"],
            json!({"app": "m"})
        );
        assert_eq!(manual["spec"]["backoffLimit"], json!(i32::MAX));
    }

    #[test]
    fn deployment_selector_must_match_labels() {
        let d = find("apps", "v1", "deployments").unwrap();
        let obj = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        let errs = validate(d, &obj);
        let status = api::Status::invalid(d, "web", &errs);
        assert_eq!(
            status.message,
            "The Deployment \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"
        );
    }

    #[test]
    fn pods_get_upstream_defaults_and_checks() {
        let p = find("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}, {"name": "d", "image": "busybox"}]}});
        on_create(p, &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(
            pod["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(pod["spec"]["containers"][1]["imagePullPolicy"], "Always");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
        assert!(validate(p, &pod).is_empty());
        let quantities = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"limits": {"cpu": "1", "memory": "64Mx"}, "requests": {"cpu": "2"}}}]}});
        let text: Vec<String> = validate(p, &quantities)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(text.contains(&"spec.containers[0].resources.limits[memory]: Invalid value: \"64Mx\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".to_string()), "{text:?}");
        assert!(text.contains(&"spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1".to_string()), "{text:?}");
        let bad = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            validate(p, &bad)[0].to_string(),
            "spec.containers[0].image: Required value"
        );
        let dns = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.x"]},
            "containers": [{"name": "c", "image": "i"}]}});
        let text: Vec<String> = validate(p, &dns).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            ["spec.dnsConfig.nameservers[0]: Invalid value: \"1.1.1.x\": must be valid IP address"]
        );
        let none = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "dnsPolicy": "None", "containers": [{"name": "c", "image": "i"}]}});
        assert_eq!(
            validate(p, &none)[0].to_string(),
            "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"
        );
        let sysctls = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "securityContext": {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"},
                {"name": "foo-", "value": "1"}, {"name": "bar..", "value": "1"},
                {"name": "kernel.shm_rmid_forced", "value": "0"}]},
            "containers": [{"name": "c", "image": "i"}]}});
        let text: Vec<String> = validate(p, &sysctls)
            .iter()
            .map(ToString::to_string)
            .collect();
        let pattern = "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";
        assert_eq!(
            text,
            [
                format!("spec.securityContext.sysctls[1].name: Invalid value: \"foo-\": {pattern}"),
                format!(
                    "spec.securityContext.sysctls[2].name: Invalid value: \"bar..\": {pattern}"
                ),
                "spec.securityContext.sysctls[3].name: Duplicate value: \"kernel.shm_rmid_forced\""
                    .to_string(),
            ]
        );
        let seccomp = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "../x.json"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {"seccompProfile": {"type": "Default"}}}]}});
        let text: Vec<String> = validate(p, &seccomp)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "spec.securityContext.seccompProfile.localhostProfile: Invalid value: \"../x.json\": must not contain '..'",
                "spec.containers[0].securityContext.seccompProfile.type: Unsupported value: \"Default\": supported values: \"Localhost\", \"RuntimeDefault\", \"Unconfined\"",
            ]
        );
        let mut changed = pod.clone();
        changed["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert!(validate_update(p, &pod, &changed, None).is_empty());
        changed["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(validate_update(p, &pod, &changed, None).len(), 1);
    }

    #[test]
    fn a_node_keeps_its_pod_cidr_once_given() {
        let nodes = find("", "v1", "nodes").unwrap();
        let bare = json!({"metadata": {"name": "n"}, "spec": {}});
        let given = json!({"metadata": {"name": "n"},
            "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]}});
        assert!(validate_update(nodes, &bare, &given, None).is_empty());
        let mut other = given.clone();
        other["spec"] = json!({"podCIDR": "10.42.2.0/24", "podCIDRs": ["10.42.2.0/24"]});
        let errs = validate_update(nodes, &given, &other, None);
        assert_eq!(errs.len(), 1);
        assert!(validate_update(nodes, &given, &given, None).is_empty());
    }
}
