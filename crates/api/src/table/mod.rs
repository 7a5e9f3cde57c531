//! Server-side printing: the columns `kubectl get` shows for each resource, computed from the
//! object as upstream's printers compute them, and the `Table` object that carries them.
//!
//! Custom resources print their name and age. Rows keep the list's order, except where
//! upstream's printer sorts (flow schemas: [`row_order`]).
//!
//! Upstream's API server prints every row wide (all columns, whatever their priority); kubectl
//! hides the priority-1 columns unless asked for `-o wide`. Resources upstream has no printer
//! for (limit ranges, roles, cluster roles) get its default table: `Name` and `Created At`.
//! Where upstream's defaulting always fills a field that the printer reads (a CronJob's
//! `suspend`, a PersistentVolume's `volumeMode`, ...), the API server's defaulting fills it
//! too; an object stored without it still prints as the default would.
//!
//! This module holds what every table shares: [`Column`], the `Table` and row builders and the
//! small readers of JSON fields. Each resource's printer, its columns beside the function that
//! computes its cells, lives in the module of its area (`core`, `workloads`, `storage`,
//! `networking`, `access`, `cluster`); `printer` is the one place that maps a resource to
//! its printer.

use std::borrow::Cow;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::resources::Resource;
use crate::selector::LabelSelector;

pub use raw::row_json;

mod access;
mod cluster;
mod core;
mod custom;
mod networking;
mod raw;
mod storage;
mod workloads;

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The header, as kubectl upper-cases it.
    pub name: Cow<'static, str>,
    /// `string`, `integer`, `boolean` or `date`.
    pub kind: Cow<'static, str>,
    /// A format hint: `name` for the object's name column, else mostly empty.
    pub format: Cow<'static, str>,
    /// 0 for the default view, 1 for `-o wide` only.
    pub priority: u8,
}

const fn col(name: &'static str, kind: &'static str, priority: u8) -> Column {
    Column {
        name: Cow::Borrowed(name),
        kind: Cow::Borrowed(kind),
        format: Cow::Borrowed(""),
        priority,
    }
}

/// A string column of the default view.
const fn string(name: &'static str) -> Column {
    col(name, "string", 0)
}

/// An integer column of the default view.
const fn integer(name: &'static str) -> Column {
    col(name, "integer", 0)
}

/// A boolean column of the default view.
const fn boolean(name: &'static str) -> Column {
    col(name, "boolean", 0)
}

/// A string column shown only with `-o wide`.
const fn wide(name: &'static str) -> Column {
    col(name, "string", 1)
}

const NAME: Column = string("Name");
const AGE: Column = string("Age");

/// How one resource prints: its columns and, beside them, how a row's cells are computed.
struct Printer {
    /// The columns, in order.
    columns: &'static [Column],
    /// One object's cells, one per column and in their order, at time `now` (ages, durations).
    cells: fn(&Value, Timestamp) -> Vec<Value>,
}

/// Upstream's default table, for resources without a printer of their own: the name and the
/// creation time as a date.
static DEFAULT: Printer = Printer {
    columns: &[NAME, col("Created At", "date", 0)],
    cells: default_cells,
};

/// The table of a custom resource whose definition names no columns: the name, and the
/// `Age` column upstream's definitions default to (a date, printed as an age).
static CUSTOM: Printer = Printer {
    columns: &[NAME, col("Age", "date", 0)],
    cells: |obj, now| vec![name(obj), age(obj, now)],
};

fn default_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let created = str_at(obj, "metadata.creationTimestamp");
    let created = match created.parse::<Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => created.to_string(),
    };
    vec![name(obj), Value::from(created)]
}

/// The printer of a resource, [`DEFAULT`] for those upstream prints no columns of its own for.
fn printer(r: &Resource) -> &'static Printer {
    match r.group_plural() {
        ("", "namespaces") => &core::NAMESPACES,
        ("", "pods") => &core::PODS,
        ("", "podtemplates") => &core::POD_TEMPLATES,
        ("", "services") => &core::SERVICES,
        ("", "configmaps") => &core::CONFIG_MAPS,
        ("", "secrets") => &core::SECRETS,
        ("", "serviceaccounts") => &core::SERVICE_ACCOUNTS,
        ("", "endpoints") => &core::ENDPOINTS,
        ("", "nodes") => &core::NODES,
        ("", "events") => &core::EVENTS,
        ("", "resourcequotas") => &core::RESOURCE_QUOTAS,
        ("", "persistentvolumes") => &storage::PERSISTENT_VOLUMES,
        ("", "persistentvolumeclaims") => &storage::PERSISTENT_VOLUME_CLAIMS,
        ("apps", "deployments") => &workloads::DEPLOYMENTS,
        ("apps", "replicasets") | ("", "replicationcontrollers") => &workloads::REPLICA_SETS,
        ("apps", "statefulsets") => &workloads::STATEFUL_SETS,
        ("apps", "daemonsets") => &workloads::DAEMON_SETS,
        ("apps", "controllerrevisions") => &workloads::CONTROLLER_REVISIONS,
        ("batch", "jobs") => &workloads::JOBS,
        ("batch", "cronjobs") => &workloads::CRON_JOBS,
        ("autoscaling", "horizontalpodautoscalers") => &workloads::HORIZONTAL_POD_AUTOSCALERS,
        ("policy", "poddisruptionbudgets") => &workloads::POD_DISRUPTION_BUDGETS,
        ("networking.k8s.io", "ingresses") => &networking::INGRESSES,
        ("networking.k8s.io", "ingressclasses") => &networking::INGRESS_CLASSES,
        ("networking.k8s.io", "networkpolicies") => &networking::NETWORK_POLICIES,
        ("discovery.k8s.io", "endpointslices") => &networking::ENDPOINT_SLICES,
        ("storage.k8s.io", "storageclasses") => &storage::STORAGE_CLASSES,
        ("storage.k8s.io", "csidrivers") => &storage::CSI_DRIVERS,
        ("storage.k8s.io", "csinodes") => &storage::CSI_NODES,
        ("storage.k8s.io", "volumeattachments") => &storage::VOLUME_ATTACHMENTS,
        ("scheduling.k8s.io", "priorityclasses") => &cluster::PRIORITY_CLASSES,
        ("flowcontrol.apiserver.k8s.io", "flowschemas") => &cluster::FLOW_SCHEMAS,
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations") => {
            &cluster::PRIORITY_LEVELS
        }
        ("node.k8s.io", "runtimeclasses") => &cluster::RUNTIME_CLASSES,
        ("coordination.k8s.io", "leases") => &cluster::LEASES,
        ("certificates.k8s.io", "certificatesigningrequests") => &access::CSRS,
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => &access::BINDINGS,
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations" | "validatingwebhookconfigurations",
        ) => &access::WEBHOOK_CONFIGURATIONS,
        // A custom resource (its definition gives it a schema) prints its age; a built-in
        // kind without a printer, upstream's default table.
        _ if r.schema.is_some() => &CUSTOM,
        _ => &DEFAULT,
    }
}

/// The fields a resource's cells read, where its printer says (as dotted paths, a path into
/// an array applying to each element): a row's cells need only those decoded ([`row_json`]).
/// `None`: the whole object.
fn fields_read(r: &Resource) -> Option<&'static raw::Wanted> {
    static PODS: std::sync::OnceLock<raw::Wanted> = std::sync::OnceLock::new();
    match r.group_plural() {
        ("", "pods") => Some(PODS.get_or_init(|| raw::Wanted::new(core::POD_FIELDS))),
        _ => None,
    }
}

/// A row's place: rows are sorted by what this gives their objects.
pub type RowOrder = fn(&Value) -> (i64, String);

/// The order of a resource's rows where upstream's printer sorts what it prints (flow schemas:
/// by matching precedence, then name); `None`: the order of the list.
pub fn row_order(r: &Resource) -> Option<RowOrder> {
    match r.group_plural() {
        ("flowcontrol.apiserver.k8s.io", "flowschemas") => Some(cluster::flow_schema_order),
        _ => None,
    }
}

/// The columns of a resource's table.
pub fn columns(r: &Resource) -> Vec<Column> {
    if !r.columns.is_empty() {
        return custom::columns(&r.columns);
    }
    printer(r).columns.to_vec()
}

/// One row's cells, in the order of [`columns`].
pub fn cells(r: &Resource, obj: &Value, now: Timestamp) -> Vec<Value> {
    if !r.columns.is_empty() {
        return custom::cells(&r.columns, obj, now);
    }
    (printer(r).cells)(obj, now)
}

/// The value at a dotted path, if it is there and not null.
fn at<'a>(mut v: &'a Value, mut path: &str) -> Option<&'a Value> {
    // A byte search: paths are short, and `split('.')` costs a searcher per call.
    while let Some(dot) = path.bytes().position(|b| b == b'.') {
        v = v.get(&path[..dot])?;
        path = &path[dot + 1..];
    }
    v.get(path).filter(|v| !v.is_null())
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn int_at(v: &Value, path: &str) -> i64 {
    at(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn list_at<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn time_at(v: &Value, path: &str) -> Option<Timestamp> {
    str_at(v, path).parse().ok()
}

/// A string field, or `default` when it is absent or empty.
fn str_or<'a>(v: &'a Value, path: &str, default: &'a str) -> &'a str {
    match str_at(v, path) {
        "" => default,
        s => s,
    }
}

fn or_none(s: &str) -> Value {
    Value::from(if s.is_empty() { "<none>" } else { s })
}

/// A boolean field as a cell, `default` when it is absent.
fn flag(obj: &Value, path: &str, default: bool) -> Value {
    Value::from(at(obj, path).and_then(Value::as_bool).unwrap_or(default))
}

/// The Name cell: `metadata.name`.
fn name(obj: &Value) -> Value {
    Value::from(str_at(obj, "metadata.name"))
}

/// The Age cell: the time since `metadata.creationTimestamp`.
fn age(obj: &Value, now: Timestamp) -> Value {
    since(obj, "metadata.creationTimestamp", now)
}

/// upstream's `HumanDuration`: `45s`, `5m10s`, `3h`, `2d5h`, `1y20d`.
pub fn human_duration(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    let (m, h) = (secs / 60, secs / 3600);
    let (d_, y) = (h / 24, h / (24 * 365));
    let two = |big: i64, unit: &str, small: i64, sunit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{sunit}")
        }
    };
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        two(m, "m", secs % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        two(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        two(d_, "d", h % 24, "h")
    } else if h < 24 * 365 * 2 {
        format!("{d_}d")
    } else if h < 24 * 365 * 8 {
        two(y, "y", d_ % 365, "d")
    } else {
        format!("{y}y")
    }
}

/// Time since `t`, as the AGE column prints it; `<unknown>` without a time.
fn ago(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map_or_else(
        || "<unknown>".into(),
        |t| human_duration(now.duration_since(t)),
    )
}

/// Time since an RFC 3339 timestamp field.
fn since(v: &Value, path: &str, now: Timestamp) -> Value {
    Value::from(ago(time_at(v, path), now))
}

/// Whether the first condition of type `ty` has status `True`.
fn condition_true(conditions: &[Value], ty: &str) -> bool {
    conditions
        .iter()
        .find(|c| str_at(c, "type") == ty)
        .is_some_and(|c| str_at(c, "status") == "True")
}

/// A selector (object or plain map) in its query form, or "" when absent or malformed.
fn selector_string(sel: Option<&Value>) -> String {
    sel.and_then(|s| LabelSelector::from_any(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// A selector or label map as upstream's printers show it: `a=b,c=d`, `<none>` when empty.
fn selector_cell(sel: Option<&Value>) -> Value {
    or_none(&selector_string(sel))
}

/// A field that is a string or a bare number, as text: quantities (`500m`, `2`) and
/// int-or-string fields (`1`, `50%`).
fn string_or_number(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Up to `max` items, then `+ N more...`; `<unset>` when there are none.
fn list_with_more(items: Vec<String>, max: usize) -> String {
    let count = items.len();
    let shown = items[..count.min(max)].join(",");
    if count > max {
        format!("{shown} + {} more...", count - max)
    } else if shown.is_empty() {
        "<unset>".into()
    } else {
        shown
    }
}

fn containers_and_images(pod_spec: &Value) -> (Value, Value) {
    let cs = list_at(pod_spec, "containers");
    let names: Vec<&str> = cs.iter().map(|c| str_at(c, "name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| str_at(c, "image")).collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

fn deleting(obj: &Value) -> bool {
    at(obj, "metadata.deletionTimestamp").is_some()
}

/// Load-balancer ingress points (IPs, else hostnames), sorted and without repeats.
fn load_balancer_addresses(obj: &Value) -> Vec<&str> {
    let mut addrs: Vec<&str> = list_at(obj, "status.loadBalancer.ingress")
        .iter()
        .map(|i| str_or(i, "ip", str_at(i, "hostname")))
        .filter(|a| !a.is_empty())
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs
}

/// How much of each object a table row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

/// One object's row: its cells and, as `include` asks, its metadata or itself. Built by
/// moving values into maps (`json!` would serialize every borrowed value anew).
pub fn row(r: &Resource, mut o: Value, include: Include, now: Timestamp) -> Value {
    let mut row = serde_json::Map::new();
    row.insert("cells".into(), Value::Array(cells(r, &o, now)));
    let object = match include {
        Include::None => None,
        Include::Metadata => {
            let mut partial = serde_json::Map::new();
            partial.insert("kind".into(), Value::from("PartialObjectMetadata"));
            partial.insert("apiVersion".into(), Value::from("meta.k8s.io/v1"));
            partial.insert("metadata".into(), o["metadata"].take());
            Some(Value::Object(partial))
        }
        Include::Object => {
            o["kind"] = Value::from(r.kind.as_str());
            o["apiVersion"] = Value::from(r.api_version());
            Some(o)
        }
    };
    if let Some(object) = object {
        row.insert("object".into(), object);
    }
    Value::Object(row)
}

/// A Table without its rows: kind, list metadata `meta` (`resourceVersion`, and for a page
/// `continue` and `remainingItemCount`) and the column definitions.
fn head(r: &Resource, meta: Value) -> serde_json::Map<String, Value> {
    let defs: Vec<Value> = columns(r)
        .iter()
        .map(|c| {
            // upstream marks the attacher of a VolumeAttachment as a name too.
            let named = c.name == "Name" || (r.plural == "volumeattachments" && c.name == "Attacher");
            let format = if named { "name" } else { &c.format };
            json!({"name": c.name, "type": c.kind, "format": format, "description": c.name, "priority": c.priority})
        })
        .collect();
    let mut table = serde_json::Map::new();
    table.insert("kind".into(), Value::from("Table"));
    table.insert("apiVersion".into(), Value::from("meta.k8s.io/v1"));
    table.insert("metadata".into(), meta);
    table.insert("columnDefinitions".into(), Value::Array(defs));
    table
}

/// Builds a `meta.k8s.io/v1` Table for `objects`, with the list metadata `meta`
/// (`resourceVersion`, and for a page `continue` and `remainingItemCount`).
pub fn table(
    r: &Resource,
    objects: Vec<Value>,
    include: Include,
    meta: Value,
    now: Timestamp,
) -> Value {
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|o| row(r, o, include, now))
        .collect();
    let mut table = head(r, meta);
    table.insert("rows".into(), Value::Array(rows));
    Value::Object(table)
}

/// The JSON text of the Table [`table`] builds, from its rows already written (each entry
/// of `rows` one [`row`] as JSON, or several joined by commas): a long LIST keeps each object
/// only while its row is made.
pub fn table_json(r: &Resource, meta: Value, rows: &[Vec<u8>]) -> Vec<u8> {
    let head = Value::Object(head(r, meta));
    let size = rows.iter().map(|row| row.len() + 1).sum::<usize>() + 4096;
    let mut out = Vec::with_capacity(size);
    serde_json::to_writer(&mut out, &head).expect("JSON values always encode");
    // The keys are written sorted, so `rows` comes last, as in `table`'s.
    out.pop();
    out.extend_from_slice(b",\"rows\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(row);
    }
    out.extend_from_slice(b"]}");
    out
}

/// What the printers' tests share: a fixed clock and a one-row printer.
#[cfg(test)]
mod testing {
    use serde_json::{Value, json};

    use super::{cells, columns};
    use crate::resources::find;

    /// The tests' clock: an hour after the objects' creation at midnight.
    pub(super) const NOW: &str = "2026-01-01T01:00:00Z";

    /// One row of `obj` as `group/plural` prints it, an hour after midnight.
    pub(super) fn row(group: &str, version: &str, plural: &str, obj: Value) -> Vec<Value> {
        let r = find(group, version, plural).unwrap();
        let cells = cells(r, &obj, NOW.parse().unwrap());
        assert_eq!(columns(r).len(), cells.len(), "{plural}");
        // The fields the printer says it reads are enough for the same cells.
        if let Some(wanted) = super::fields_read(r) {
            let text = serde_json::to_vec(&obj).unwrap();
            let slim = super::raw::pruned(&text, wanted).unwrap();
            assert_eq!(
                super::cells(r, &slim, NOW.parse().unwrap()),
                cells,
                "{plural}"
            );
        }
        cells
    }

    /// Metadata named `x`, created at midnight.
    pub(super) fn meta() -> Value {
        json!({"name": "x", "creationTimestamp": "2026-01-01T00:00:00Z"})
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{NOW, meta};
    use super::*;
    use crate::resources::{builtin, find};

    #[test]
    fn durations_print_like_kubectl() {
        let d = |s| human_duration(SignedDuration::from_secs(s));
        assert_eq!(d(5), "5s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(310), "5m10s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(3 * 3600 + 120), "3h2m");
        assert_eq!(d(20 * 3600), "20h");
        assert_eq!(d(3 * 86400 + 3600), "3d1h");
        assert_eq!(d(30 * 86400), "30d");
        assert_eq!(d(-5), "<invalid>");
    }

    #[test]
    fn every_resource_has_as_many_cells_as_columns() {
        let now: Timestamp = NOW.parse().unwrap();
        for r in builtin() {
            let obj = json!({"metadata": meta()});
            assert_eq!(columns(r).len(), cells(r, &obj, now).len(), "{}", r.plural);
        }
    }

    #[test]
    fn default_tables() {
        let obj = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.43.0.10",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}});
        let lr = find("", "v1", "limitranges").unwrap();
        let now: Timestamp = NOW.parse().unwrap();
        let t = table(
            lr,
            vec![obj],
            Include::Metadata,
            json!({"resourceVersion": "7"}),
            now,
        );
        assert_eq!(t["columnDefinitions"][1]["name"], "Created At");
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        let roles = find("rbac.authorization.k8s.io", "v1", "roles").unwrap();
        assert_eq!(columns(roles)[1].name, "Created At");
        let va = find("storage.k8s.io", "v1", "volumeattachments").unwrap();
        let t = table(va, vec![], Include::None, json!({}), now);
        assert_eq!(t["columnDefinitions"][1]["format"], "name");
        let cj = find("batch", "v1", "cronjobs").unwrap();
        let wide: Vec<String> = columns(cj)
            .into_iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name.into_owned())
            .collect();
        assert_eq!(wide, ["Containers", "Images", "Selector"]);
    }

    #[test]
    fn rows_written_one_by_one_make_the_same_table() {
        let now: Timestamp = NOW.parse().unwrap();
        let pods = find("", "v1", "pods").unwrap();
        let pod = |name: &str| {
            json!({"metadata": {"name": name, "namespace": "d", "resourceVersion": "3"},
                "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "n1"},
                "status": {"phase": "Running", "podIP": "10.42.0.5"}})
        };
        let meta = json!({"resourceVersion": "9", "continue": "x", "remainingItemCount": 2});
        for include in [Include::None, Include::Metadata, Include::Object] {
            for objects in [vec![], vec![pod("a")], vec![pod("a"), pod("b")]] {
                let whole = table(pods, objects.clone(), include, meta.clone(), now);
                let rows: Vec<Vec<u8>> = objects
                    .into_iter()
                    .map(|o| serde_json::to_vec(&row(pods, o, include, now)).unwrap())
                    .collect();
                assert_eq!(
                    String::from_utf8(table_json(pods, meta.clone(), &rows)).unwrap(),
                    serde_json::to_string(&whole).unwrap()
                );
            }
        }
    }
}
