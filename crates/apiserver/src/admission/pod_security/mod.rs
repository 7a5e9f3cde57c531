//! `PodSecurity`: upstream's Pod Security admission. A namespace's
//! `pod-security.kubernetes.io/{enforce,audit,warn}[-version]` labels (over the cluster's
//! defaults) pick a level of the Pod Security Standards for each mode:
//! - `enforce` refuses a pod that violates it (`violates PodSecurity "restricted:latest": ...`);
//! - `warn` lets it in with a warning (`would violate PodSecurity ...`), for pods and for the
//!   workloads that make pods (their templates are checked, never refused);
//! - `audit` notes the violations in the request's audit event
//!   (`pod-security.kubernetes.io/audit-violations`), beside the enforced policy.
//!
//! Relabelling a namespace to a stricter enforce level warns about its existing pods. Bad
//! labels are refused on namespace writes. Users, namespaces and runtime classes may be
//! exempt, and the defaults set, by the `PodSecurity` plugin of an AdmissionConfiguration
//! file (`pod-security.admission.config.k8s.io/v1` `PodSecurityConfiguration`).
//!
//! Start reading at [`PodSecurity::validate`]; the controls themselves are in [`checks`].

mod checks;
mod policy;

use std::collections::HashSet;

use api::{Resource, Status};
use futures::future::BoxFuture;
use serde_json::Value;

use super::{Attributes, Operation, Validating, forbidden_as, name_of};
use crate::registry::{ListOptions, Registry};
use crate::watched::Watched;
use policy::{Level, LevelVersion, Policy};

/// The audit annotations: the enforced policy, the audit level's violations, an exemption.
const AUDIT_ENFORCE: &str = "pod-security.kubernetes.io/enforce-policy";
const AUDIT_VIOLATIONS: &str = "pod-security.kubernetes.io/audit-violations";
const AUDIT_EXEMPT: &str = "pod-security.kubernetes.io/exempt";

/// At most this many existing pods are checked when a namespace's enforce level rises
/// (upstream's limit).
const MAX_PODS_TO_CHECK: usize = 3000;

/// The step, with the cluster's defaults and exemptions, and its copy of the namespaces.
pub(super) struct PodSecurity {
    defaults: Policy,
    exempt_users: Vec<String>,
    exempt_namespaces: Vec<String>,
    exempt_runtime_classes: Vec<String>,
    namespaces: Watched,
}

impl Default for PodSecurity {
    /// Privileged everywhere, nothing exempt: what upstream does unconfigured.
    fn default() -> PodSecurity {
        PodSecurity {
            defaults: Policy::default(),
            exempt_users: Vec::new(),
            exempt_namespaces: Vec::new(),
            exempt_runtime_classes: Vec::new(),
            namespaces: Watched::new("/registry/namespaces/"),
        }
    }
}

impl PodSecurity {
    /// The step configured by a `PodSecurityConfiguration` (its `defaults` and `exemptions`).
    pub(super) fn configured(config: &Value) -> Result<PodSecurity, String> {
        let kind = config["kind"].as_str().unwrap_or_default();
        if kind != "PodSecurityConfiguration" {
            return Err(format!(
                "PodSecurity: expected kind PodSecurityConfiguration, got {kind:?}"
            ));
        }
        let strings = |field: &str| -> Vec<String> {
            let list = config["exemptions"][field].as_array().into_iter().flatten();
            list.filter_map(|v| v.as_str().map(String::from)).collect()
        };
        Ok(PodSecurity {
            defaults: Policy::from_defaults(&config["defaults"])
                .map_err(|e| format!("PodSecurity: {e}"))?,
            exempt_users: strings("usernames"),
            exempt_namespaces: strings("namespaces"),
            exempt_runtime_classes: strings("runtimeClasses"),
            ..PodSecurity::default()
        })
    }
}

impl Validating for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }

    fn validate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            if !matches!(a.operation, Operation::Create | Operation::Update) {
                return Ok(());
            }
            match (a.resource.group.as_str(), a.resource.plural.as_str()) {
                ("", "namespaces") if a.subresource.is_none() => self.namespace(reg, a, obj).await,
                ("", "pods") if matches!(a.subresource, None | Some("ephemeralcontainers")) => {
                    self.pod(reg, a, obj).await
                }
                _ if a.subresource.is_none() => match template(a.resource, obj) {
                    Some(t) => self.workload(reg, a, t).await,
                    None => Ok(()),
                },
                _ => Ok(()),
            }
        })
    }
}

/// The pod template of a workload (upstream's list of resources with pod specs).
fn template<'v>(r: &Resource, obj: &'v Value) -> Option<&'v Value> {
    let t = match r.group_plural() {
        ("", "podtemplates") => &obj["template"],
        ("", "replicationcontrollers")
        | ("apps", "replicasets" | "deployments" | "daemonsets" | "statefulsets")
        | ("batch", "jobs") => &obj["spec"]["template"],
        ("batch", "cronjobs") => &obj["spec"]["jobTemplate"]["spec"]["template"],
        _ => return None,
    };
    t.is_object().then_some(t)
}

impl PodSecurity {
    /// Whether the namespace or the user is exempt (noted in the audit log).
    fn exempt(&self, a: &Attributes<'_>) -> bool {
        let user = a.user.map(|u| u.user.as_str());
        let why = if a
            .namespace
            .is_some_and(|ns| self.exempt_namespaces.iter().any(|e| e == ns))
        {
            "namespace"
        } else if user.is_some_and(|u| self.exempt_users.iter().any(|e| e == u)) {
            "user"
        } else {
            return false;
        };
        crate::audit::annotate(AUDIT_EXEMPT, why);
        true
    }

    fn exempt_runtime_class(&self, spec: &Value) -> bool {
        let class = spec["runtimeClassName"].as_str().unwrap_or_default();
        !class.is_empty() && self.exempt_runtime_classes.iter().any(|e| e == class)
    }

    /// The policy of the namespace the object is in, from the watched copy (or the store,
    /// for a namespace too new for the copy).
    async fn policy_of(&self, reg: &Registry, ns: &str) -> Result<Policy, Status> {
        let namespaces = crate::podlogs::resource("namespaces");
        let key = namespaces.key(None, ns);
        let namespace = match self.namespaces.get(reg.store(), &key).await {
            Ok(Some(namespace)) => namespace,
            _ => reg
                .get(namespaces, None, ns)
                .await
                .map_err(|_| Status::internal(format!("failed to lookup namespace {ns:?}")))?,
        };
        Ok(Policy::from_labels(&namespace["metadata"]["labels"], &self.defaults).0)
    }

    /// A pod: refused if it violates the enforced level, warned about at the warn level.
    async fn pod(&self, reg: &Registry, a: &Attributes<'_>, pod: &Value) -> Result<(), Status> {
        let Some(ns) = a.namespace.filter(|_| !self.exempt(a)) else {
            return Ok(());
        };
        let policy = self.policy_of(reg, ns).await?;
        if policy.fully_privileged() || a.old.is_some_and(|old| !significant_update(pod, old)) {
            return Ok(());
        }
        if self.exempt_runtime_class(&pod["spec"]) {
            crate::audit::annotate(AUDIT_EXEMPT, "runtimeClass");
            return Ok(());
        }
        let (meta, spec) = (&pod["metadata"], &pod["spec"]);
        crate::audit::annotate(AUDIT_ENFORCE, policy.enforce.to_string());
        let audited = checks::evaluate(policy.audit, meta, spec);
        if !audited.is_empty() {
            let why = checks::detail(&audited);
            let violations = format!("would violate PodSecurity \"{}\": {why}", policy.audit);
            crate::audit::annotate(AUDIT_VIOLATIONS, violations);
        }
        let enforced = checks::evaluate(policy.enforce, meta, spec);
        if !enforced.is_empty() {
            let why = format!(
                "violates PodSecurity \"{}\": {}",
                policy.enforce,
                checks::detail(&enforced)
            );
            return Err(forbidden_as(a.resource, &name_of(pod), &why));
        }
        warn(policy.warn, meta, spec);
        Ok(())
    }

    /// A workload's pod template: warned about at the warn level, never refused.
    async fn workload(
        &self,
        reg: &Registry,
        a: &Attributes<'_>,
        template: &Value,
    ) -> Result<(), Status> {
        let Some(ns) = a.namespace.filter(|_| !self.exempt(a)) else {
            return Ok(());
        };
        let Ok(policy) = self.policy_of(reg, ns).await else {
            return Ok(());
        };
        if policy.warn.level != Level::Privileged && !self.exempt_runtime_class(&template["spec"]) {
            warn(policy.warn, &template["metadata"], &template["spec"]);
        }
        Ok(())
    }

    /// A namespace: its labels must be valid; exempt namespaces get a warning that their
    /// policy is ignored; a stricter enforce level warns about the pods already there.
    async fn namespace(
        &self,
        reg: &Registry,
        a: &Attributes<'_>,
        ns: &Value,
    ) -> Result<(), Status> {
        let name = name_of(ns);
        let labels = &ns["metadata"]["labels"];
        let (new, errors) = Policy::from_labels(labels, &self.defaults);
        let old = a
            .old
            .map(|o| Policy::from_labels(&o["metadata"]["labels"], &self.defaults));
        let same_errors = old
            .as_ref()
            .is_some_and(|(_, e)| !e.is_empty() && *e == errors);
        if !errors.is_empty() && !same_errors {
            return Err(Status::invalid(a.resource, &name, &errors));
        }
        if let Some((old, _)) = old {
            let (n, o) = (new.enforce, old.enforce);
            let looser = n.version == o.version && n.level <= o.level;
            if n == o || n.level == Level::Privileged || looser {
                return Ok(());
            }
        }
        if self.exempt_namespaces.contains(&name) {
            if !new.fully_privileged() && !new.equivalent(&self.defaults) {
                crate::warning::add(exempt_warning(&name, &new, labels));
            }
            return Ok(());
        }
        if a.old.is_some() {
            for w in self.existing_pods(reg, &name, new.enforce).await? {
                crate::warning::add(w);
            }
        }
        Ok(())
    }

    /// Warnings about the pods of `ns` that violate `enforce`: one per distinct set of
    /// reasons, naming the first pod by name and how many others share it.
    async fn existing_pods(
        &self,
        reg: &Registry,
        ns: &str,
        enforce: LevelVersion,
    ) -> Result<Vec<String>, Status> {
        let pods = crate::podlogs::resource("pods");
        let listed = reg.list(pods, Some(ns), &ListOptions::default()).await?;
        let all: Vec<&Value> = listed
            .items
            .iter()
            .filter(|p| !self.exempt_runtime_class(&p["spec"]))
            .collect();
        let checked = prioritized(&all);
        let mut found: Vec<(String, String, usize)> = Vec::new();
        for pod in checked.iter().take(MAX_PODS_TO_CHECK) {
            let violations = checks::evaluate(enforce, &pod["metadata"], &pod["spec"]);
            if violations.is_empty() {
                continue;
            }
            let (reason, pod_name) = (checks::reasons(&violations), name_of(pod));
            match found.iter_mut().find(|(r, _, _)| *r == reason) {
                Some((_, first, count)) => {
                    *count += 1;
                    if pod_name < *first {
                        *first = pod_name;
                    }
                }
                None => found.push((reason, pod_name, 1)),
            }
        }
        let mut warnings = Vec::new();
        if checked.len() > MAX_PODS_TO_CHECK {
            warnings.push(format!(
                "new PodSecurity enforce level only checked against the first {MAX_PODS_TO_CHECK} of {} existing pods",
                checked.len()
            ));
        }
        if !found.is_empty() {
            warnings.push(format!(
                "existing pods in namespace {ns:?} violate the new PodSecurity enforce level \"{enforce}\""
            ));
        }
        let mut per_pod: Vec<String> = found.into_iter().map(pod_warning).collect();
        per_pod.sort();
        warnings.extend(per_pod);
        Ok(warnings)
    }
}

/// Adds the warn level's warning for a pod or template, if it violates that level.
fn warn(lv: LevelVersion, meta: &Value, spec: &Value) {
    let violations = checks::evaluate(lv, meta, spec);
    if !violations.is_empty() {
        crate::warning::add(format!(
            "would violate PodSecurity \"{lv}\": {}",
            checks::detail(&violations)
        ));
    }
}

/// `pod: reasons`, `pod (and 1 other pod): reasons`, `pod (and N other pods): reasons`.
fn pod_warning((reasons, first, count): (String, String, usize)) -> String {
    match count {
        1 => format!("{first}: {reasons}"),
        2 => format!("{first} (and 1 other pod): {reasons}"),
        n => format!("{first} (and {} other pods): {reasons}", n - 1),
    }
}

/// Pods without a controller and the first pod of each controller, then the rest, so that a
/// limited check sees every workload.
fn prioritized<'v>(pods: &[&'v Value]) -> Vec<&'v Value> {
    let mut seen = HashSet::new();
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for pod in pods {
        let owners = pod["metadata"]["ownerReferences"].as_array();
        let controller = owners
            .into_iter()
            .flatten()
            .find(|o| o["controller"] == true)
            .and_then(|o| o["uid"].as_str());
        match controller {
            Some(uid) if !seen.insert(uid) => rest.push(*pod),
            _ => first.push(*pod),
        }
    }
    first.extend(rest);
    first
}

/// Whether a pod update changes what the policy looks at: containers added or removed, an
/// image changed, an ephemeral container added or changed (upstream's test).
fn significant_update(pod: &Value, old: &Value) -> bool {
    let list = |p: &Value, l: &str| p["spec"][l].as_array().cloned().unwrap_or_default();
    for l in ["containers", "initContainers"] {
        let (new, old) = (list(pod, l), list(old, l));
        if new.len() != old.len() || new.iter().zip(&old).any(|(n, o)| n["image"] != o["image"]) {
            return true;
        }
    }
    let old_ephemeral = list(old, "ephemeralContainers");
    list(pod, "ephemeralContainers").iter().any(|c| {
        let same = old_ephemeral.iter().find(|o| o["name"] == c["name"]);
        same.is_none_or(|o| o["image"] != c["image"])
    })
}

/// Upstream's warning when an exempt namespace is labelled with a policy it will not get.
fn exempt_warning(ns: &str, p: &Policy, labels: &Value) -> String {
    let modes = [("enforce", p.enforce), ("audit", p.audit), ("warn", p.warn)];
    let shown: Vec<String> = modes
        .into_iter()
        .filter(|(m, lv)| lv.level != Level::Privileged && policy::labelled(labels, m))
        .map(|(m, lv)| format!("{m}={lv}"))
        .collect();
    format!(
        "namespace {ns:?} is exempt from Pod Security, and the policy ({}) will be ignored",
        shown.join(", ")
    )
}
