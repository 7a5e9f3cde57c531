//! Printers of cluster-wide machinery: priority classes (`scheduling.k8s.io`), runtime
//! classes (`node.k8s.io`), leases (`coordination.k8s.io`), and flow schemas and priority
//! levels (`flowcontrol.apiserver.k8s.io`).

use jiff::Timestamp;
use serde_json::Value;

use super::{
    AGE, NAME, Printer, age, at, boolean, flag, int_at, integer, list_at, name, or_none, str_at,
    str_or, string,
};

/// Priority classes: their value, whether they are the default, and their preemption policy.
pub(super) static PRIORITY_CLASSES: Printer = Printer {
    columns: &[
        NAME,
        integer("Value"),
        boolean("Global-Default"),
        AGE,
        string("PreemptionPolicy"),
    ],
    cells: priority_class_cells,
};

fn priority_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(int_at(obj, "value")),
        flag(obj, "globalDefault", false),
        age(obj, now),
        Value::from(str_or(obj, "preemptionPolicy", "PreemptLowerPriority")),
    ]
}

/// Runtime classes: their handler.
pub(super) static RUNTIME_CLASSES: Printer = Printer {
    columns: &[NAME, string("Handler"), AGE],
    cells: runtime_class_cells,
};

fn runtime_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "handler")),
        age(obj, now),
    ]
}

/// Leases: their holder.
pub(super) static LEASES: Printer = Printer {
    columns: &[NAME, string("Holder"), AGE],
    cells: lease_cells,
};

fn lease_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "spec.holderIdentity")),
        age(obj, now),
    ]
}

/// Flow schemas: their priority level, precedence, distinguisher, and whether the level is
/// missing (their `Dangling` condition; `?` before the server has set it).
pub(super) static FLOW_SCHEMAS: Printer = Printer {
    columns: &[
        NAME,
        string("PriorityLevel"),
        string("MatchingPrecedence"),
        string("DistinguisherMethod"),
        AGE,
        string("MissingPL"),
    ],
    cells: flow_schema_cells,
};

fn flow_schema_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let dangling = list_at(obj, "status.conditions")
        .iter()
        .find(|c| c["type"] == "Dangling")
        .map_or("?", |c| c["status"].as_str().unwrap_or_default());
    vec![
        name(obj),
        Value::from(str_at(obj, "spec.priorityLevelConfiguration.name")),
        Value::from(int_at(obj, "spec.matchingPrecedence")),
        or_none(str_at(obj, "spec.distinguisherMethod.type")),
        age(obj, now),
        Value::from(dangling),
    ]
}

/// Where a flow schema's row goes: by matching precedence, then name.
pub(super) fn flow_schema_order(obj: &Value) -> (i64, String) {
    let name = str_at(obj, "metadata.name").to_string();
    (int_at(obj, "spec.matchingPrecedence"), name)
}

/// Priority levels: their type, shares and queues (`<none>` where the level has none).
pub(super) static PRIORITY_LEVELS: Printer = Printer {
    columns: &[
        NAME,
        string("Type"),
        string("NominalConcurrencyShares"),
        string("Queues"),
        string("HandSize"),
        string("QueueLengthLimit"),
        AGE,
    ],
    cells: priority_level_cells,
};

fn priority_level_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let limited = at(obj, "spec.limited");
    let shares = limited.map(|l| l["nominalConcurrencyShares"].clone());
    let queuing = limited.and_then(|l| at(l, "limitResponse.queuing"));
    let of_queuing = |key: &str| queuing.map_or(Value::from("<none>"), |q| q[key].clone());
    vec![
        name(obj),
        Value::from(str_at(obj, "spec.type")),
        shares.unwrap_or_else(|| Value::from("<none>")),
        of_queuing("queues"),
        of_queuing("handSize"),
        of_queuing("queueLengthLimit"),
        age(obj, now),
    ]
}
