//! ClusterIP and NodePort allocation for Services (upstream's service IP and port
//! allocators). Each address or port in use is a key in the store, created with
//! create-if-absent, so two API servers on one etcd never hand out the same one. The key's
//! value names the Service holding it.

use std::net::Ipv4Addr;

use api::Resource;
use api::Status;
use api::validation::FieldError;
use serde_json::{Value, json};
use store::Store;

/// A service CIDR: the range ClusterIPs come from (`--service-cidr`, k3s' 10.43.0.0/16 by
/// default). Its first address belongs to the `kubernetes` Service, its tenth to cluster DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRange {
    base: Ipv4Addr,
    bits: u8,
}

impl Default for ServiceRange {
    fn default() -> ServiceRange {
        ServiceRange {
            base: Ipv4Addr::new(10, 43, 0, 0),
            bits: 16,
        }
    }
}

impl std::str::FromStr for ServiceRange {
    type Err = String;

    /// Parses `a.b.c.d/n` (IPv4, a prefix of 8 to 28 bits).
    fn from_str(s: &str) -> Result<ServiceRange, String> {
        let bad = || format!("{s:?} is not an IPv4 CIDR such as 10.43.0.0/16");
        let (ip, bits) = s.split_once('/').ok_or_else(bad)?;
        let base: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let bits: u8 = bits.parse().map_err(|_| bad())?;
        if !(8..=28).contains(&bits) {
            return Err(format!("{s:?}: the prefix must be 8 to 28 bits long"));
        }
        let mask = u32::MAX << (32 - bits);
        Ok(ServiceRange {
            base: Ipv4Addr::from(u32::from(base) & mask),
            bits,
        })
    }
}

impl std::fmt::Display for ServiceRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.bits)
    }
}

impl ServiceRange {
    fn mask(self) -> u32 {
        u32::MAX << (32 - self.bits)
    }

    /// Whether `ip` is in the range.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.base)
    }

    /// The range's `n`th address (1: the `kubernetes` Service's, 10: cluster DNS's).
    pub fn nth(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + n)
    }

    fn random(self) -> Ipv4Addr {
        let size = 1u32 << (32 - self.bits);
        // Skip the network address and the broadcast address.
        self.nth(1 + random_u32() % (size - 2))
    }
}
/// The NodePort range.
pub const NODE_PORTS: (u16, u16) = (30000, 32767);

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

fn random_u32() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn random_port() -> u16 {
    let (lo, hi) = NODE_PORTS;
    lo + (random_u32() % u32::from(hi - lo + 1)) as u16
}

/// Reserves `key` for `owner`; `Ok(false)` if someone holds it.
async fn reserve(store: &dyn Store, key: &str, owner: &str) -> Result<bool, Status> {
    match store.create(key, owner.as_bytes().to_vec()).await {
        Ok(_) => Ok(true),
        Err(store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(Status::internal(format!("allocating {key}: {e}"))),
    }
}

/// Gives back every address and port `svc` holds.
async fn release(store: &dyn Store, svc: &Value) {
    for key in held(svc) {
        if let Err(e) = store.delete(&key, None).await
            && !matches!(e, store::Error::NotFound { .. })
        {
            tracing::warn!(%key, error = %e, "could not release a service allocation");
        }
    }
}

fn held(svc: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(ip) = svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
    {
        keys.push(format!("{IP_PREFIX}{ip}"));
    }
    keys.extend(
        node_ports(svc)
            .into_iter()
            .map(|p| format!("{PORT_PREFIX}{p}")),
    );
    keys
}

/// The node ports `svc` holds: its ports' and its health check's.
fn node_ports(svc: &Value) -> Vec<i64> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
        .chain(svc["spec"]["healthCheckNodePort"].as_i64())
        .collect()
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(
        svc["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    )
}

/// Allocates what a new Service needs: its ClusterIP (unless headless or ExternalName) and
/// NodePorts. On error, nothing stays reserved. Returns the keys reserved.
async fn allocate(
    store: &dyn Store,
    range: ServiceRange,
    r: &Resource,
    svc: &mut Value,
    owner: &str,
) -> Result<Vec<String>, Status> {
    let mut taken = Vec::new();
    let result = allocate_into(store, range, r, svc, owner, &mut taken).await;
    if result.is_err() {
        for key in &taken {
            let _ = store.delete(key, None).await;
        }
    }
    result.map(|()| taken)
}

async fn allocate_into(
    store: &dyn Store,
    range: ServiceRange,
    r: &Resource,
    svc: &mut Value,
    owner: &str,
    taken: &mut Vec<String>,
) -> Result<(), Status> {
    let name = svc["metadata"]["name"].as_str().unwrap_or("").to_string();
    if svc["spec"]["type"] != "ExternalName" {
        allocate_cluster_ip(store, range, r, svc, owner, taken).await?;
    }
    if wants_node_ports(svc) {
        default(svc, "externalTrafficPolicy", "Cluster");
        let mut claim = Claim {
            store,
            r,
            owner,
            name: &name,
            taken,
            already: &[],
        };
        claim.node_ports(svc).await?;
    }
    Ok(())
}

/// Sets `spec.<field>` to `value` unless the Service says otherwise.
fn default(svc: &mut Value, field: &str, value: &str) {
    if svc["spec"].get(field).is_none_or(Value::is_null) {
        svc["spec"][field] = json!(value);
    }
}

/// Gives a Service that uses one its ClusterIP (the one asked for, or one picked at random),
/// and the fields that go with it.
async fn allocate_cluster_ip(
    store: &dyn Store,
    range: ServiceRange,
    r: &Resource,
    svc: &mut Value,
    owner: &str,
    taken: &mut Vec<String>,
) -> Result<(), Status> {
    let name = svc["metadata"]["name"].as_str().unwrap_or("").to_string();
    let invalid = |field: &str, value: Value, why: String| {
        Status::invalid(r, &name, &[FieldError::invalid(field, &value, why)])
    };
    let requested = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
    let ip = match requested.as_str() {
        "None" => None,
        "" => {
            let mut found = None;
            for _ in 0..256 {
                let ip = range.random();
                let key = format!("{IP_PREFIX}{ip}");
                if reserve(store, &key, owner).await? {
                    taken.push(key);
                    found = Some(ip);
                    break;
                }
            }
            Some(found.ok_or_else(|| {
                Status::internal("failed to allocate a service IP: range is full")
            })?)
        }
        text => {
            let field = "spec.clusterIPs[0]";
            let ip: Ipv4Addr = text
                .parse()
                .map_err(|_| invalid(field, json!(text), "must be a valid IP address".into()))?;
            if !range.contains(ip) {
                return Err(invalid(
                    field,
                    json!(text),
                    format!(
                        "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}"
                    ),
                ));
            }
            let key = format!("{IP_PREFIX}{ip}");
            if !reserve(store, &key, owner).await? {
                return Err(invalid(
                    field,
                    json!(text),
                    format!("failed to allocate IP {ip}: provided IP is already allocated"),
                ));
            }
            taken.push(key);
            Some(ip)
        }
    };
    match ip {
        Some(ip) => {
            svc["spec"]["clusterIP"] = json!(ip.to_string());
            svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
        }
        None => {
            svc["spec"]["clusterIPs"] = json!(["None"]);
        }
    }
    svc["spec"]["ipFamilies"] = json!(["IPv4"]);
    svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    default(svc, "internalTrafficPolicy", "Cluster");
    Ok(())
}

/// One Service's node port allocation: where, for whom, what it took so far, and which
/// ports it already held before an update.
struct Claim<'a> {
    store: &'a dyn Store,
    r: &'a Resource,
    owner: &'a str,
    name: &'a str,
    taken: &'a mut Vec<String>,
    already: &'a [i64],
}

impl Claim<'_> {
    /// Every port's `nodePort`, then the health check's port when the Service needs one:
    /// first the ports asked for, then random ones for the rest (so a random pick cannot take
    /// a port this same Service asks for).
    async fn node_ports(&mut self, svc: &mut Value) -> Result<(), Status> {
        let health = crate::strategy::service::needs_health_check(svc);
        for explicit in [true, false] {
            let asked =
                |slot: &Value, key: &str| slot.get(key).and_then(Value::as_i64).unwrap_or(0) != 0;
            let count = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
            for i in 0..count {
                let p = &mut svc["spec"]["ports"][i];
                if asked(p, "nodePort") == explicit {
                    self.port(p, "nodePort", format!("spec.ports[{i}].nodePort"))
                        .await?;
                }
            }
            let spec = &mut svc["spec"];
            if health && asked(spec, "healthCheckNodePort") == explicit {
                let field = "spec.healthCheckNodePort".to_string();
                self.port(spec, "healthCheckNodePort", field).await?;
            }
        }
        Ok(())
    }

    /// The port in `slot[key]`: reserved as asked, or picked at random when unset.
    async fn port(&mut self, slot: &mut Value, key: &str, field: String) -> Result<(), Status> {
        match slot.get(key).and_then(Value::as_i64).filter(|p| *p != 0) {
            Some(port) if self.already.contains(&port) => Ok(()),
            Some(port) => {
                let (lo, hi) = NODE_PORTS;
                if !(i64::from(lo)..=i64::from(hi)).contains(&port) {
                    return Err(self.invalid(
                        field,
                        port,
                        format!(
                            "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                        ),
                    ));
                }
                let key = format!("{PORT_PREFIX}{port}");
                if !reserve(self.store, &key, self.owner).await? {
                    return Err(self.invalid(
                        field,
                        port,
                        "provided port is already allocated".into(),
                    ));
                }
                self.taken.push(key);
                Ok(())
            }
            None => {
                for _ in 0..256 {
                    let port = random_port();
                    let reserved = format!("{PORT_PREFIX}{port}");
                    if reserve(self.store, &reserved, self.owner).await? {
                        self.taken.push(reserved);
                        slot[key] = json!(port);
                        return Ok(());
                    }
                }
                Err(Status::internal(
                    "failed to allocate a node port: range is full",
                ))
            }
        }
    }

    fn invalid(&self, field: String, port: i64, why: String) -> Status {
        Status::invalid(
            self.r,
            self.name,
            &[FieldError::invalid(field, &json!(port), why)],
        )
    }
}

/// On update: a ClusterIP for a Service that needs one again (out of ExternalName), NodePorts
/// for one that now needs them (new ports, or a type change).
/// Returns the keys reserved, for release if the update fails.
async fn allocate_on_update(
    store: &dyn Store,
    range: ServiceRange,
    r: &Resource,
    old: &Value,
    new: &mut Value,
    owner: &str,
) -> Result<Vec<String>, Status> {
    let mut taken = Vec::new();
    // Out of ExternalName: the Service needs an address again.
    if new["spec"]["type"] != "ExternalName"
        && new["spec"]["clusterIP"].as_str().unwrap_or("").is_empty()
    {
        allocate_cluster_ip(store, range, r, new, owner, &mut taken).await?;
    }
    if !wants_node_ports(new) {
        if let Some(ports) = new["spec"]["ports"].as_array_mut() {
            for p in ports {
                p.as_object_mut().map(|m| m.remove("nodePort"));
            }
        }
        return Ok(taken);
    }
    let name = new["metadata"]["name"].as_str().unwrap_or("").to_string();
    let already = if wants_node_ports(old) {
        node_ports(old)
    } else {
        Vec::new()
    };
    // As upstream: a health check port the update left out is the one held before.
    if crate::strategy::service::needs_health_check(old)
        && crate::strategy::service::needs_health_check(new)
        && new["spec"]["healthCheckNodePort"].as_i64().unwrap_or(0) == 0
    {
        new["spec"]["healthCheckNodePort"] = old["spec"]["healthCheckNodePort"].clone();
    }
    let mut claim = Claim {
        store,
        r,
        owner,
        name: &name,
        taken: &mut taken,
        already: &already,
    };
    let result = claim.node_ports(new).await;
    match result {
        Ok(()) => Ok(taken),
        Err(e) => {
            for key in &taken {
                let _ = store.delete(key, None).await;
            }
            Err(e)
        }
    }
}

/// After an update: gives back the ClusterIP and NodePorts `old` held that `new` no longer
/// does.
async fn release_dropped(store: &dyn Store, old: &Value, new: &Value) {
    if let Some(ip) = old["spec"]["clusterIP"].as_str()
        && ip.parse::<Ipv4Addr>().is_ok()
        && new["spec"]["clusterIP"].as_str() != Some(ip)
    {
        let _ = store.delete(&format!("{IP_PREFIX}{ip}"), None).await;
    }
    let kept = if wants_node_ports(new) {
        node_ports(new)
    } else {
        Vec::new()
    };
    for port in node_ports(old).into_iter().filter(|p| !kept.contains(p)) {
        let _ = store.delete(&format!("{PORT_PREFIX}{port}"), None).await;
    }
}

/// What a write reserves in the store beside its object, for the kinds that reserve
/// anything (a Service's ClusterIPs and node ports): the registry calls these at the same
/// points of every create, update and delete, whatever the kind, and they do nothing for a
/// kind that reserves nothing.
pub(crate) struct Reservations<'a> {
    /// Where reservations are kept.
    pub(crate) store: &'a dyn Store,
    /// Where ClusterIPs come from.
    pub(crate) range: ServiceRange,
}

fn reserves(r: &Resource) -> bool {
    r.group.is_empty() && r.plural == "services"
}

impl Reservations<'_> {
    /// Before a create: reserves what the new object needs, unless an object is already
    /// stored at `key` (then the create is refused as upstream refuses it). Returns the keys
    /// reserved, for [`Self::give_back`] if the write fails.
    pub(crate) async fn create(
        &self,
        r: &Resource,
        obj: &mut Value,
        key: &str,
    ) -> Result<Vec<String>, Status> {
        if !reserves(r) {
            return Ok(Vec::new());
        }
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let exists = self.store.get(key).await;
        match exists {
            Ok(Some(_)) => return Err(Status::already_exists(r, &name)),
            Ok(None) => {}
            Err(e) => return Err(Status::internal(format!("reading {key}: {e}"))),
        }
        allocate(self.store, self.range, r, obj, key).await
    }

    /// Before an update through `sub` (`None`: the object itself; a subresource write
    /// reserves nothing): what the changed object needs now.
    pub(crate) async fn update(
        &self,
        r: &Resource,
        current: &Value,
        new: &mut Value,
        key: &str,
        sub: Option<&str>,
    ) -> Result<Vec<String>, Status> {
        if !reserves(r) || sub.is_some() {
            return Ok(Vec::new());
        }
        allocate_on_update(self.store, self.range, r, current, new, key).await
    }

    /// After a failed write: gives back what was reserved for it.
    pub(crate) async fn give_back(&self, reserved: &[String]) {
        for k in reserved {
            let _ = self.store.delete(k, None).await;
        }
    }

    /// After a write stored `new` (`None`: the object is gone): gives back what `current`
    /// held and `new` no longer does.
    pub(crate) async fn written(&self, r: &Resource, current: &Value, new: Option<&Value>) {
        if !reserves(r) {
            return;
        }
        match new {
            Some(new) => release_dropped(self.store, current, new).await,
            None => release(self.store, current).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_picks_stay_in_range() {
        let range = ServiceRange::default();
        for _ in 0..1000 {
            let ip = range.random();
            assert!(range.contains(ip) && ip != range.nth(0) && ip != range.nth(65535));
            assert!((NODE_PORTS.0..=NODE_PORTS.1).contains(&random_port()));
        }
        assert!(!range.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert_eq!(range.to_string(), "10.43.0.0/16");
    }

    #[test]
    fn ranges_parse_to_their_network() {
        let r: ServiceRange = "10.230.7.9/20".parse().unwrap();
        assert_eq!(r.to_string(), "10.230.0.0/20");
        assert_eq!(r.nth(10), Ipv4Addr::new(10, 230, 0, 10));
        assert!("10.0.0.0/30".parse::<ServiceRange>().is_err());
        assert!("fd00::/108".parse::<ServiceRange>().is_err());
    }
}
