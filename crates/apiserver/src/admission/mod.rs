//! The admission chain: what runs on a create or update after the resource's strategy has
//! filled in defaults, as upstream's admission plugins do. Mutating steps run first, in
//! order, and may change the object; then the strategy validates it; then the validating
//! steps run, in order, and may only refuse it. A step that needs other objects reads them
//! from a copy kept current by a store watch ([`crate::watched::Watched`], what upstream's plugins
//! read from informers), so it costs no store read.
//!
//! To add a step: write a module with a type implementing [`Mutating`] or [`Validating`]
//! (it decides from the [`Attributes`] whether the request concerns it), and put it in the
//! list in [`Chain::default`], where upstream's order places it.
//!
//! A deletion passes the validating steps only, with the stored object. So do requests that
//! write nothing themselves: an eviction (a create of `pods/eviction`, its body the object;
//! the pod's deletion then passes as a deletion) and a connect request (exec, attach,
//! port-forward, proxy: [`Operation::Connect`], its query's parameters the object), through
//! [`Registry::admit_request`](crate::registry::Registry::admit_request).

mod always_pull_images;
mod default_ingress_class;
mod default_storage_class;
mod default_toleration_seconds;
mod limit_ranger;
mod namespace_lifecycle;
mod node_restriction;
mod pod_security;
mod priority;
mod rbac_escalation;
mod resource_quota;
mod runtime_class;
pub mod service_account;
mod storage_object_in_use_protection;

use std::path::Path;

use api::{Resource, Status};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::authn::Identity;
use crate::registry::Registry;

/// What the request does to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A new object.
    Create,
    /// A change to a stored one.
    Update,
    /// A deletion; the object the steps see is the stored one.
    Delete,
    /// A connect request: a stream to or through a pod, a Service or a node.
    Connect,
}

/// What an admission step learns of a request (upstream's `admission.Attributes`).
pub struct Attributes<'a> {
    /// Create or update.
    pub operation: Operation,
    /// The resource written, in its storage version.
    pub resource: &'a Resource,
    /// The subresource written (`status`, `binding`, ...), if any.
    pub subresource: Option<&'a str>,
    /// The object's namespace, for namespaced resources.
    pub namespace: Option<&'a str>,
    /// The stored object an update replaces or a deletion removes.
    pub old: Option<&'a Value>,
    /// The requesting user; `None` for the server's own writes.
    pub user: Option<&'a Identity>,
    /// Whether nothing is to be persisted.
    pub dry_run: bool,
}

impl Attributes<'_> {
    /// Whether this writes a pod itself (not one of its subresources).
    pub fn is_pod(&self) -> bool {
        self.resource.group.is_empty()
            && self.resource.plural == "pods"
            && self.subresource.is_none()
    }
}

/// A step that may change the object, or refuse it.
pub trait Mutating: Send + Sync {
    /// The step's name, upstream's where it has one.
    fn name(&self) -> &'static str;
    /// Changes `obj` as the step requires, or refuses the request.
    fn admit<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Status>>;
}

/// A step that may only refuse the object, once it is complete and valid.
pub trait Validating: Send + Sync {
    /// The step's name, upstream's where it has one.
    fn name(&self) -> &'static str;
    /// Refuses the request, or lets it through.
    fn validate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a Value,
    ) -> BoxFuture<'a, Result<(), Status>>;
}

/// A step that runs only when `--enable-admission-plugins` names it: its name, its place
/// among the mutating steps in upstream's order, and how to make it.
type OffByDefault = (&'static str, usize, fn() -> Box<dyn Mutating>);

/// The steps off by default.
const OFF_BY_DEFAULT: &[OffByDefault] = &[
    // After LimitRanger and ServiceAccount.
    ("AlwaysPullImages", 2, || {
        Box::new(always_pull_images::AlwaysPullImages)
    }),
];

/// The steps every write passes, in order.
pub struct Chain {
    mutating: Vec<Box<dyn Mutating>>,
    validating: Vec<Box<dyn Validating>>,
}

impl Default for Chain {
    /// The built-in steps, in upstream's order, with their default configurations.
    fn default() -> Chain {
        Chain::with(pod_security::PodSecurity::default())
    }
}

impl Chain {
    /// The built-in steps, in upstream's order.
    fn with(pod_security: pod_security::PodSecurity) -> Chain {
        Chain {
            mutating: vec![
                Box::new(limit_ranger::LimitRanger::default()),
                Box::new(service_account::ServiceAccount),
                Box::new(priority::Priority::default()),
                Box::new(runtime_class::RuntimeClass),
                Box::new(default_toleration_seconds::DefaultTolerationSeconds),
                Box::new(default_storage_class::DefaultStorageClass),
                Box::new(storage_object_in_use_protection::StorageObjectInUseProtection),
                Box::new(default_ingress_class::DefaultIngressClass),
            ],
            validating: vec![
                Box::new(namespace_lifecycle::NamespaceLifecycle),
                Box::new(node_restriction::NodeRestriction),
                Box::new(pod_security),
                Box::new(rbac_escalation::RbacEscalation),
                Box::new(resource_quota::ResourceQuota::default()),
            ],
        }
    }

    /// The built-in steps, configured by an `AdmissionConfiguration` file (upstream's
    /// `--admission-control-config-file`, YAML or JSON): each plugin's `configuration`, or
    /// the file its `path` names (relative to this one). `PodSecurity` is the step that
    /// reads one.
    pub fn configured(file: &Path) -> Result<Chain, String> {
        let config = read_config(file)?;
        if config["kind"] != "AdmissionConfiguration" {
            return Err(format!("{}: not an AdmissionConfiguration", file.display()));
        }
        let mut pod_security = pod_security::PodSecurity::default();
        for plugin in config["plugins"].as_array().into_iter().flatten() {
            let plugin_config = match plugin["path"].as_str() {
                Some(path) => read_config(&file.parent().unwrap_or(Path::new(".")).join(path))?,
                None => plugin["configuration"].clone(),
            };
            match plugin["name"].as_str() {
                Some("PodSecurity") => {
                    pod_security = pod_security::PodSecurity::configured(&plugin_config)?
                }
                Some(other) => tracing::warn!(plugin = other, "admission configuration ignored"),
                None => return Err(format!("{}: a plugin without a name", file.display())),
            }
        }
        Ok(Chain::with(pod_security))
    }

    /// The chain with the steps off by default that `names` turns on (upstream's
    /// `--enable-admission-plugins`; naming a step on by default changes nothing), placed as
    /// upstream's order places them; a name that is no step's is an error.
    pub fn enabling(mut self, names: &[String]) -> Result<Chain, String> {
        for name in names {
            if !self.knows(name) {
                return Err(self.unknown(name));
            }
            let off = OFF_BY_DEFAULT.iter().find(|(n, _, _)| n == name);
            if let Some((_, at, make)) = off.filter(|_| !self.has(name)) {
                let at = (*at).min(self.mutating.len());
                self.mutating.insert(at, make());
            }
        }
        Ok(self)
    }

    /// Whether a step in the chain is called `name`.
    fn has(&self, name: &str) -> bool {
        self.names().any(|n| n == name)
    }

    /// Whether `name` is a step's, in the chain or off by default.
    fn knows(&self, name: &str) -> bool {
        self.has(name) || OFF_BY_DEFAULT.iter().any(|(n, _, _)| *n == name)
    }

    fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        let mutating = self.mutating.iter().map(|s| s.name());
        mutating.chain(self.validating.iter().map(|s| s.name()))
    }

    /// The error for a name that is no step's.
    fn unknown(&self, name: &str) -> String {
        let mut known: Vec<&str> = self.names().collect();
        let off = OFF_BY_DEFAULT.iter().map(|(n, _, _)| *n);
        known.extend(off.filter(|n| !self.has(n)));
        format!(
            "unknown admission plugin {name:?}; known: {}",
            known.join(", ")
        )
    }

    /// The chain without the steps named in `names` (upstream's `--disable-admission-plugins`);
    /// a name that is no step's is an error.
    pub fn without(mut self, names: &[String]) -> Result<Chain, String> {
        if let Some(name) = names.iter().find(|n| !self.knows(n)) {
            return Err(self.unknown(name));
        }
        self.mutating
            .retain(|s| !names.iter().any(|n| n == s.name()));
        self.validating
            .retain(|s| !names.iter().any(|n| n == s.name()));
        Ok(self)
    }

    /// Runs the mutating steps over `obj`; the first refusal ends the request.
    pub async fn admit(
        &self,
        reg: &Registry,
        a: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<(), Status> {
        for step in &self.mutating {
            step.admit(reg, a, obj)
                .await
                .inspect_err(|s| refused(step.name(), s))?;
        }
        Ok(())
    }

    /// Runs the validating steps over `obj`; the first refusal ends the request.
    pub async fn validate(
        &self,
        reg: &Registry,
        a: &Attributes<'_>,
        obj: &Value,
    ) -> Result<(), Status> {
        for step in &self.validating {
            step.validate(reg, a, obj)
                .await
                .inspect_err(|s| refused(step.name(), s))?;
        }
        Ok(())
    }
}

/// A YAML or JSON configuration file.
fn read_config(file: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))
}

fn refused(step: &str, s: &Status) {
    tracing::debug!(step, code = s.code, message = %s.message, "admission refused");
}

/// A refusal of pod `name` in the words of upstream's pod admission steps.
fn forbidden(name: &str, why: String) -> Status {
    Status::new(
        403,
        "Forbidden",
        format!("pods {name:?} is forbidden: {why}"),
    )
}

/// A refusal of `name` of resource `r`.
fn forbidden_as(r: &Resource, name: &str, why: &str) -> Status {
    Status::new(
        403,
        "Forbidden",
        format!("{} {name:?} is forbidden: {why}", r.qualified()),
    )
}

/// The name of the object written.
fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// The name of the default class among `classes`: of those with one of the `annotations` set
/// to `"true"`, the most recently created, then the first by name (upstream's order for
/// default StorageClasses and IngressClasses alike).
fn newest_default<'a>(classes: &'a [Value], annotations: &[&str]) -> Option<&'a str> {
    let created = |c: &'a Value| c["metadata"]["creationTimestamp"].as_str().unwrap_or("");
    let name = |c: &'a Value| c["metadata"]["name"].as_str().unwrap_or("");
    classes
        .iter()
        .filter(|c| {
            let marks = &c["metadata"]["annotations"];
            annotations.iter().any(|a| marks[*a] == "true")
        })
        .min_by(|a, b| created(b).cmp(created(a)).then(name(a).cmp(name(b))))
        .map(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_off_by_default_are_enabled_by_name_and_unknown_names_refused() {
        let names = |c: &Chain| c.names().collect::<Vec<_>>().join(",");
        let default = Chain::default();
        assert!(!default.has("AlwaysPullImages"));
        let on = Chain::default()
            .enabling(&["AlwaysPullImages".into(), "LimitRanger".into()])
            .unwrap();
        assert!(names(&on).starts_with("LimitRanger,ServiceAccount,AlwaysPullImages,"));
        let off = Chain::default().without(&["AlwaysPullImages".into()]);
        assert!(off.is_ok(), "disabling a step that is off");
        let Err(e) = Chain::default().enabling(&["AlwaysPushImages".into()]) else {
            panic!("an unknown name accepted");
        };
        assert!(
            e.starts_with("unknown admission plugin \"AlwaysPushImages\"; known: LimitRanger,")
        );
        assert!(e.ends_with(", AlwaysPullImages"), "{e}");
    }
}
