//! A container's environment as the kubelet builds it: the image's variables, then
//! `envFrom`, then `env` (literals with `$(VAR)` expansion, and `valueFrom` config map and
//! secret keys, downward-API fields and resource fields), then the service link variables of
//! the namespace's services (`enableServiceLinks`) and of the `kubernetes` service, where not
//! already set. A missing source is a `CreateContainerConfigError` with upstream's message.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use kube::ResourceExt;
use kube::api::Api;

/// The config maps and secrets of a namespace, read as needed.
pub(crate) struct Sources {
    client: kube::Client,
    namespace: String,
}

impl Sources {
    pub(crate) fn new(client: kube::Client, namespace: String) -> Sources {
        Sources { client, namespace }
    }

    pub(crate) async fn config_map(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        Ok(self
            .config_map_object(name)
            .await?
            .map(|cm| cm.data.unwrap_or_default()))
    }

    /// A ConfigMap's `data` and `binaryData` as bytes, for a volume's files.
    pub(crate) async fn config_map_files(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        Ok(self.config_map_object(name).await?.map(|cm| {
            let mut files: BTreeMap<String, Vec<u8>> = cm
                .binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in cm.data.unwrap_or_default() {
                files.insert(k, v.into_bytes());
            }
            files
        }))
    }

    async fn config_map_object(&self, name: &str) -> Result<Option<ConfigMap>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        api.get_opt(name)
            .await
            .map_err(|e| format!("reading configmap {name:?}: {e}"))
    }

    pub(crate) async fn secret(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.get_opt(name).await {
            Ok(Some(s)) => {
                let mut out: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (k, v) in s.string_data.unwrap_or_default() {
                    out.insert(k, v.into_bytes());
                }
                Ok(Some(out))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(format!("reading secret {name:?}: {e}")),
        }
    }

    /// A token for `pod`'s service account from the TokenRequest API, bound to the pod, for
    /// `audience` (the API server's when none) and `seconds`: a projected
    /// `serviceAccountToken` source's, as the kubelet's token manager asks for it.
    pub(crate) async fn service_account_token(
        &self,
        pod: &Pod,
        audience: Option<&str>,
        seconds: i64,
    ) -> Result<String, String> {
        use k8s_openapi::api::authentication::v1::{
            BoundObjectReference, TokenRequest, TokenRequestSpec,
        };
        use k8s_openapi::api::core::v1::ServiceAccount;
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.name_any()),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..TokenRequest::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.namespace);
        let answer = api
            .create_token_request(&account, &Default::default(), &request)
            .await
            .map_err(|e| format!("failed to fetch token: {e}"))?;
        answer
            .status
            .map(|s| s.token)
            .ok_or_else(|| "failed to fetch token: the answer has no token".into())
    }

    /// The volume bound to claim `name`, as the kubelet resolves a `persistentVolumeClaim`
    /// volume: an unbound claim is an error until it binds. With `owner` (a generic ephemeral
    /// volume), the claim must be that pod's.
    pub(crate) async fn claimed_volume(
        &self,
        name: &str,
        owner: Option<&Pod>,
    ) -> Result<PersistentVolume, String> {
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let claim = claims
            .get_opt(name)
            .await
            .map_err(|e| format!("reading persistentvolumeclaim {name:?}: {e}"))?
            .ok_or_else(|| format!("persistentvolumeclaim \"{name}\" not found"))?;
        if let Some(pod) = owner
            && !pod::claim_is_for_pod(&claim, pod)
        {
            return Err(format!(
                "error processing PVC {ns}/{name}: PVC was not created for pod {ns}/{} (pod is not owner)",
                pod.name_any(),
                ns = self.namespace
            ));
        }
        let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let volume = claim.spec.and_then(|s| s.volume_name);
        let Some(volume) = volume.filter(|v| bound && !v.is_empty()) else {
            return Err(format!(
                "error processing PVC {}/{name}: PVC is not bound",
                self.namespace
            ));
        };
        Api::<PersistentVolume>::all(self.client.clone())
            .get_opt(&volume)
            .await
            .map_err(|e| format!("reading persistentvolume {volume:?}: {e}"))?
            .ok_or_else(|| format!("persistentvolume \"{volume}\" not found"))
    }
}

impl Sources {
    /// The services whose variables a pod gets: with links enabled, the namespace's; always
    /// the API server's own (`kubernetes` in `default`), unless a namespace service has its
    /// name.
    pub(crate) async fn services(&self, links: bool) -> Result<Vec<Service>, String> {
        let mut out = Vec::new();
        if links {
            let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
            let list = api
                .list(&Default::default())
                .await
                .map_err(|e| format!("listing services: {e}"))?;
            out.extend(list.items);
        }
        if !out.iter().any(|s| s.name_any() == "kubernetes") {
            let api: Api<Service> = Api::namespaced(self.client.clone(), "default");
            if let Some(master) = api
                .get_opt("kubernetes")
                .await
                .map_err(|e| format!("reading the kubernetes service: {e}"))?
            {
                out.push(master);
            }
        }
        Ok(out)
    }
}

/// The service link variables of `services`, as upstream's `FromServices` makes them:
/// `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORT NAME>]` and Docker's link variables
/// (`<NAME>_PORT`, `<NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]`). Services without a
/// cluster IP (headless) have none.
pub(crate) fn service_links(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let ports = spec.ports.clone().unwrap_or_default();
        if ip.is_empty() || ip == "None" || ports.is_empty() {
            continue;
        }
        let prefix = svc.name_any().to_uppercase().replace('-', "_");
        out.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string()));
        for p in &ports {
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                let name = name.to_uppercase().replace('-', "_");
                out.push((format!("{prefix}_SERVICE_PORT_{name}"), p.port.to_string()));
            }
        }
        let host = |port: i32| {
            if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        };
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let url = format!("{}://{}", proto.to_lowercase(), host(p.port));
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((port_prefix.clone(), url));
            out.push((format!("{port_prefix}_PROTO"), proto.to_lowercase()));
            out.push((format!("{port_prefix}_PORT"), p.port.to_string()));
            out.push((format!("{port_prefix}_ADDR"), ip.clone()));
        }
    }
    out
}

/// Expands a volume mount's `subPathExpr` as upstream's kubelet does: every `$(VAR)` must
/// name a variable of the container with a value (`missing value for A, B`).
pub(crate) fn expand_sub_path(
    expr: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut missing = std::collections::BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("$(") {
        if rest[..at].ends_with('$') {
            rest = &rest[at + 2..];
            continue;
        }
        let Some(end) = rest[at + 2..].find(')') else {
            break;
        };
        let name = &rest[at + 2..at + 2 + end];
        if vars.get(name).is_none_or(|v| v.is_empty()) {
            missing.insert(name.to_string());
        }
        rest = &rest[at + 3 + end..];
    }
    if !missing.is_empty() {
        let names: Vec<String> = missing.into_iter().collect();
        return Err(format!("missing value for {}", names.join(", ")));
    }
    Ok(expand(expr, vars))
}

/// Expands `$(VAR)` references from `vars`; `$$` escapes; unknown references stay as written.
pub(crate) fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&s[i..i + 3 + end]),
                }
                i += 3 + end;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// A downward-API field of the pod (`metadata.name`, `status.podIP`, ...).
pub(crate) fn field(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Result<String, String> {
    let label = |p: &str, map: &BTreeMap<String, String>| {
        let key = p
            .trim_end_matches(['\'', ']'])
            .rsplit(['\'', '['])
            .next()
            .unwrap_or("");
        map.get(key).cloned().unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => pod.namespace().unwrap_or_default(),
        "metadata.uid" => pod.uid().unwrap_or_default(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        "metadata.labels" => format_map(pod.labels()),
        "metadata.annotations" => format_map(pod.annotations()),
        p if p.starts_with("metadata.labels[") => label(p, pod.labels()),
        p if p.starts_with("metadata.annotations[") => label(p, pod.annotations()),
        other => return Err(format!("unsupported fieldRef {other:?}")),
    })
}

/// `key="value"` lines, as the downward API writes labels and annotations.
pub(crate) fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The node's allocatable resources: what a resource field of a container without that limit
/// reads, as upstream merges the node's allocatable into the container's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Allocatable {
    pub(crate) cpus: u64,
    /// Bytes.
    pub(crate) memory: u64,
    /// Bytes.
    pub(crate) ephemeral_storage: u64,
}

/// A resource field (`limits.memory`, `requests.cpu`, ...) of a container divided by the
/// divisor (default 1) and rounded up, as upstream's `ExtractContainerResourceValue` does: a
/// limit left unset reads as the node's allocatable, a request left unset as 0. Shared by
/// `env[].valueFrom.resourceFieldRef` and the downwardAPI volume items.
pub(crate) fn resource_field(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    node: Allocatable,
) -> Result<String, String> {
    let unsupported = || format!("unsupported container resource : {resource}");
    let (kind, name) = resource.split_once('.').ok_or_else(unsupported)?;
    let known =
        matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
    if !known || !matches!(kind, "limits" | "requests") {
        return Err(unsupported());
    }
    let res = c.resources.as_ref();
    let set = if kind == "requests" {
        res.and_then(|r| r.requests.as_ref())
    } else {
        res.and_then(|r| r.limits.as_ref())
    };
    let milli = |s: &str| api::quantity::Quantity::parse(s).ok().map(|q| q.milli());
    let value = match set.and_then(|m| m.get(name)).and_then(|q| milli(&q.0)) {
        Some(v) => v,
        None if kind == "requests" => 0,
        None => {
            i128::from(match name {
                "cpu" => node.cpus,
                "memory" => node.memory,
                "ephemeral-storage" => node.ephemeral_storage,
                _ => 0,
            }) * 1000
        }
    };
    let divisor = divisor.and_then(milli).filter(|d| *d > 0).unwrap_or(1000);
    Ok(((value + divisor - 1).div_euclid(divisor)).to_string())
}

/// Builds `NAME=value` pairs for container `c` of `pod`.
pub(crate) async fn build(
    pod: &Pod,
    c: &Container,
    image_env: &[String],
    sources: &Sources,
    pod_ip: &str,
    host_ip: &str,
    node: Allocatable,
) -> Result<Vec<String>, String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |vars: &mut BTreeMap<String, String>, k: String, v: String| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for kv in image_env {
        if let Some((k, v)) = kv.split_once('=') {
            set(&mut vars, k.into(), v.into());
        }
    }
    set(&mut vars, "HOSTNAME".into(), pod.name_any());
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links) != Some(false);
    let services: BTreeMap<String, String> = service_links(&sources.services(links).await?)
        .into_iter()
        .collect();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            match sources.config_map(&r.name).await? {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if optional => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            match sources.secret(&r.name).await? {
                Some(data) => {
                    for (k, v) in data {
                        set(
                            &mut vars,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).into_owned(),
                        );
                    }
                }
                None if optional => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                match sources.config_map(&r.name).await? {
                    Some(data) => match data.get(&r.key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                r.key,
                                pod.namespace().unwrap_or_default(),
                                r.name
                            ));
                        }
                    },
                    None if optional => continue,
                    None => return Err(format!("configmap {:?} not found", r.name)),
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                match sources.secret(&r.name).await? {
                    Some(data) => match data.get(&r.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {}/{}",
                                r.key,
                                pod.namespace().unwrap_or_default(),
                                r.name
                            ));
                        }
                    },
                    None if optional => continue,
                    None => return Err(format!("secret {:?} not found", r.name)),
                }
            } else if let Some(f) = &from.field_ref {
                field(pod, &f.field_path, pod_ip, host_ip)?
            } else if let Some(r) = &from.resource_field_ref {
                let target = match &r.container_name {
                    Some(n) if !n.is_empty() => pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.iter().find(|x| &x.name == n))
                        .unwrap_or(c),
                    _ => c,
                };
                resource_field(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    node,
                )?
            } else {
                String::new()
            }
        } else {
            // References see the variables so far, then the services'.
            let mut known = services.clone();
            known.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            expand(e.value.as_deref().unwrap_or(""), &known)
        };
        set(&mut vars, e.name.clone(), value);
    }
    for (k, v) in services {
        if !vars.contains_key(&k) {
            set(&mut vars, k, v);
        }
    }
    Ok(order
        .into_iter()
        .map(|k| format!("{k}={}", vars[&k]))
        .collect())
}

/// The variables a command may refer to, from a built environment.
pub(crate) fn as_map(env: &[String]) -> BTreeMap<String, String> {
    env.iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_links_are_upstreams() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "my-db"},
            "spec": {"clusterIP": "10.43.0.7", "ports": [
                {"name": "sql", "port": 5432},
                {"name": "metrics", "port": 9187, "protocol": "UDP"},
            ]},
        }))
        .unwrap();
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "peers"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
        }))
        .unwrap();
        let vars: BTreeMap<String, String> = service_links(&[svc, headless]).into_iter().collect();
        let want = [
            ("MY_DB_SERVICE_HOST", "10.43.0.7"),
            ("MY_DB_SERVICE_PORT", "5432"),
            ("MY_DB_SERVICE_PORT_SQL", "5432"),
            ("MY_DB_SERVICE_PORT_METRICS", "9187"),
            ("MY_DB_PORT", "tcp://10.43.0.7:5432"),
            ("MY_DB_PORT_5432_TCP", "tcp://10.43.0.7:5432"),
            ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_5432_TCP_PORT", "5432"),
            ("MY_DB_PORT_5432_TCP_ADDR", "10.43.0.7"),
            ("MY_DB_PORT_9187_UDP", "udp://10.43.0.7:9187"),
            ("MY_DB_PORT_9187_UDP_PROTO", "udp"),
            ("MY_DB_PORT_9187_UDP_PORT", "9187"),
            ("MY_DB_PORT_9187_UDP_ADDR", "10.43.0.7"),
        ];
        assert_eq!(
            vars,
            want.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        );
    }

    #[test]
    fn sub_path_expressions_need_every_variable() {
        let vars: BTreeMap<String, String> = [("POD", "web-0"), ("EMPTY", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(expand_sub_path("logs/$(POD)", &vars).unwrap(), "logs/web-0");
        assert_eq!(expand_sub_path("$$(POD)", &vars).unwrap(), "$(POD)");
        assert_eq!(
            expand_sub_path("$(NOPE)/$(EMPTY)/$(POD)", &vars).unwrap_err(),
            "missing value for EMPTY, NOPE"
        );
    }

    #[test]
    fn resource_fields_divide_round_up_and_default_like_upstream() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {
                "limits": {"cpu": "1250m", "memory": "64Mi"},
                "requests": {"cpu": "250m", "memory": "32Mi"},
            },
        }))
        .unwrap();
        let node = Allocatable {
            cpus: 4,
            memory: 8 << 30,
            ephemeral_storage: 100 << 30,
        };
        let f = |c: &Container, r: &str, d: Option<&str>| resource_field(c, r, d, node);
        // CPU rounds up to whole cores by default; the divisor "1m" gives millicores.
        assert_eq!(f(&c, "limits.cpu", None).unwrap(), "2");
        assert_eq!(f(&c, "limits.cpu", Some("1m")).unwrap(), "1250");
        assert_eq!(f(&c, "requests.cpu", Some("1m")).unwrap(), "250");
        assert_eq!(f(&c, "requests.cpu", None).unwrap(), "1");
        assert_eq!(f(&c, "limits.memory", None).unwrap(), "67108864");
        assert_eq!(f(&c, "limits.memory", Some("1Mi")).unwrap(), "64");
        assert_eq!(f(&c, "requests.memory", Some("1Mi")).unwrap(), "32");
        assert_eq!(f(&c, "requests.memory", Some("1G")).unwrap(), "1");
        // No limit: the node's allocatable; no request: 0.
        let bare = Container {
            name: "bare".into(),
            ..Default::default()
        };
        assert_eq!(f(&bare, "limits.cpu", None).unwrap(), "4");
        assert_eq!(f(&bare, "limits.cpu", Some("1m")).unwrap(), "4000");
        assert_eq!(
            f(&bare, "limits.memory", None).unwrap(),
            (8u64 << 30).to_string()
        );
        assert_eq!(
            f(&bare, "limits.ephemeral-storage", Some("1Gi")).unwrap(),
            "100"
        );
        assert_eq!(f(&bare, "requests.cpu", None).unwrap(), "0");
        assert_eq!(f(&bare, "requests.memory", None).unwrap(), "0");
        assert_eq!(
            f(&bare, "limits.gpu", None).unwrap_err(),
            "unsupported container resource : limits.gpu"
        );
    }

    #[test]
    fn references_expand_like_upstream() {
        let vars = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5", &vars), "cost $5");
        assert_eq!(expand("é$(A", &vars), "é$(A");
    }
}
