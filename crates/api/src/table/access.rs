//! Printers of who may do what: certificate signing requests, role bindings and cluster role
//! bindings, and admission webhook configurations.

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::{
    AGE, NAME, Printer, age, at, human_duration, integer, list_at, name, str_at, str_or, string,
    wide,
};

/// Certificate signing requests: signer, requestor, asked duration and state.
pub(super) static CSRS: Printer = Printer {
    columns: &[
        NAME,
        AGE,
        string("SignerName"),
        string("Requestor"),
        string("RequestedDuration"),
        string("Condition"),
    ],
    cells: csr_cells,
};

fn csr_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let duration = at(obj, "spec.expirationSeconds")
        .and_then(Value::as_i64)
        .map_or("<none>".into(), |s| {
            human_duration(SignedDuration::from_secs(s))
        });
    vec![
        name(obj),
        age(obj, now),
        Value::from(str_or(obj, "spec.signerName", "<none>")),
        Value::from(str_at(obj, "spec.username")),
        Value::from(duration),
        Value::from(csr_condition(obj)),
    ]
}

/// A CSR's state: `Pending`, `Approved` or `Denied` (by condition type), then `,Failed` and
/// `,Issued` (a certificate is in the status).
fn csr_condition(csr: &Value) -> String {
    let conditions = list_at(csr, "status.conditions");
    let has = |ty: &str| conditions.iter().any(|c| str_at(c, "type") == ty);
    let mut s = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        s.push_str(",Failed");
    }
    if !str_at(csr, "status.certificate").is_empty() {
        s.push_str(",Issued");
    }
    s
}

/// Role bindings and cluster role bindings: the role; the subjects by kind with `-o wide`.
pub(super) static BINDINGS: Printer = Printer {
    columns: &[
        NAME,
        string("Role"),
        AGE,
        wide("Users"),
        wide("Groups"),
        wide("ServiceAccounts"),
    ],
    cells: binding_cells,
};

fn binding_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(format!(
            "{}/{}",
            str_at(obj, "roleRef.kind"),
            str_at(obj, "roleRef.name")
        )),
        age(obj, now),
        binding_subjects(obj, "User"),
        binding_subjects(obj, "Group"),
        binding_subjects(obj, "ServiceAccount"),
    ]
}

fn binding_subjects(obj: &Value, kind: &str) -> Value {
    let names: Vec<String> = list_at(obj, "subjects")
        .iter()
        .filter(|s| str_at(s, "kind") == kind)
        .map(|s| match kind {
            "ServiceAccount" => format!("{}/{}", str_at(s, "namespace"), str_at(s, "name")),
            _ => str_at(s, "name").to_string(),
        })
        .collect();
    Value::from(names.join(", "))
}

/// Mutating and validating webhook configurations: how many webhooks they hold.
pub(super) static WEBHOOK_CONFIGURATIONS: Printer = Printer {
    columns: &[NAME, integer("Webhooks"), AGE],
    cells: webhook_configuration_cells,
};

fn webhook_configuration_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(list_at(obj, "webhooks").len()),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::testing::{meta, row};

    #[test]
    fn csr_condition_and_duration() {
        let csr = |conditions: Value, certificate: Option<&str>| {
            let mut status = json!({"conditions": conditions});
            if let Some(c) = certificate {
                status["certificate"] = json!(c);
            }
            row(
                "certificates.k8s.io",
                "v1",
                "certificatesigningrequests",
                json!({"metadata": meta(), "spec": {"signerName": "kubernetes.io/kube-apiserver-client",
                    "username": "alice", "expirationSeconds": 86400}, "status": status}),
            )
        };
        assert_eq!(
            csr(json!([]), None),
            vec![
                json!("x"),
                json!("60m"),
                json!("kubernetes.io/kube-apiserver-client"),
                json!("alice"),
                json!("24h"),
                json!("Pending"),
            ]
        );
        let approved = json!([{"type": "Approved", "status": "True"}]);
        assert_eq!(csr(approved.clone(), None)[5], json!("Approved"));
        assert_eq!(csr(approved, Some("LS0t"))[5], json!("Approved,Issued"));
        let denied = json!([{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"},
            {"type": "Failed", "status": "True"}]);
        assert_eq!(csr(denied, None)[5], json!("Denied,Failed"));
    }
}
