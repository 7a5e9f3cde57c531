//! Printers of cluster-wide machinery: priority classes (`scheduling.k8s.io`), runtime
//! classes (`node.k8s.io`) and leases (`coordination.k8s.io`).

use jiff::Timestamp;
use serde_json::Value;

use super::{
    AGE, NAME, Printer, age, boolean, flag, int_at, integer, name, str_at, str_or, string,
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
