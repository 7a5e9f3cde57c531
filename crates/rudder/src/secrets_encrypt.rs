//! `rudder secrets-encrypt`: asks a running server about its encryption at rest, or tells it
//! to rotate its key or re-encrypt (the server's `/rudder/v1/secrets-encrypt/*` endpoints, as
//! k3s' command asks its supervisor), with the admin kubeconfig.

use anyhow::Context;
use serde_json::Value;

use crate::cli::{SecretsEncryptAction, SecretsEncryptArgs};

/// Runs the action and prints its outcome.
pub(crate) async fn run(opts: SecretsEncryptArgs) -> anyhow::Result<()> {
    let kubeconfig = opts.kubeconfig.unwrap_or_else(|| {
        let dir = opts
            .data_dir
            .unwrap_or_else(crate::server::default_data_dir);
        dir.join("kubeconfig.yaml")
    });
    let client = crate::client::from_kubeconfig(&kubeconfig).await?;
    let (method, action) = match opts.action {
        SecretsEncryptAction::Status => ("GET", "status"),
        SecretsEncryptAction::RotateKeys => ("POST", "rotate-keys"),
        SecretsEncryptAction::Reencrypt => ("POST", "reencrypt"),
    };
    let req = http::Request::builder()
        .method(method)
        .uri(format!("/rudder/v1/secrets-encrypt/{action}"))
        .body(Vec::new())
        .expect("a valid request");
    let text = client
        .request_text(req)
        .await
        .with_context(|| format!("secrets-encrypt {action}"))?;
    let answer: Value = serde_json::from_str(&text).context("decoding the server's answer")?;
    match opts.action {
        SecretsEncryptAction::Status => print!("{}", status(&answer)),
        _ => println!(
            "{action}: {} values re-encrypted",
            answer["reencrypted"].as_u64().unwrap_or(0)
        ),
    }
    Ok(())
}

/// k3s' status layout: whether encryption is on, then one line per key of each encrypted
/// resource set, the active (writing) key starred, with how many stored values it wrote.
fn status(answer: &Value) -> String {
    if answer["enabled"] != true {
        return "Encryption Status: Disabled\n".into();
    }
    let mut out = format!(
        "Encryption Status: Enabled\nConfiguration: {}\n",
        answer["file"].as_str().unwrap_or_default()
    );
    for resources in answer["resources"].as_array().into_iter().flatten() {
        let written = &resources["written"];
        out.push_str(&format!(
            "\n{:<8}{:<20}{:<32}{}\n{:<8}{:<20}{:<32}{}\n",
            "Active", "Key Type", "Name", "Values", "------", "--------", "----", "------"
        ));
        let mut active = true;
        for p in resources["providers"].as_array().into_iter().flatten() {
            let kind = key_type(p["type"].as_str().unwrap_or_default());
            let names: Vec<&str> = p["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let names = if names.is_empty() {
                vec!["identity"]
            } else {
                names
            };
            for name in names {
                let star = if active { " *" } else { "" };
                let count = written[name].as_u64().unwrap_or(0);
                out.push_str(&format!("{star:<8}{kind:<20}{name:<32}{count}\n"));
                active = false;
            }
        }
    }
    out
}

fn key_type(provider: &str) -> &str {
    match provider {
        "aescbc" => "AES-CBC",
        "aesgcm" => "AES-GCM",
        "secretbox" => "XSalsa20-Poly1305",
        _ => "Identity",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn status_is_printed_as_k3s_prints_it() {
        assert_eq!(
            super::status(&json!({"enabled": false})),
            "Encryption Status: Disabled\n"
        );
        let answer = json!({"enabled": true, "file": "/d/cred/encryption-config.json", "resources": [{
            "providers": [{"type": "aescbc", "keys": ["new", "aescbckey"]}, {"type": "identity", "keys": []}],
            "written": {"new": 3, "identity": 1},
        }]});
        let shown = super::status(&answer);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines[0], "Encryption Status: Enabled");
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["Active", "Key", "Type", "Name", "Values"]
        );
        assert_eq!(
            lines[5].split_whitespace().collect::<Vec<_>>(),
            ["*", "AES-CBC", "new", "3"]
        );
        assert_eq!(
            lines[6].split_whitespace().collect::<Vec<_>>(),
            ["AES-CBC", "aescbckey", "0"]
        );
        assert_eq!(
            lines[7].split_whitespace().collect::<Vec<_>>(),
            ["Identity", "identity", "1"]
        );
    }
}
