//! `rudder certificate` (k3s' command): `check` lists the certificates of a server's or an
//! agent's data directory (`tls/`, `pki/`) with their expiry; `rotate` sets the chosen ones
//! aside so that the next start issues new ones from the same CA (as a start does for a
//! certificate close to expiry), or replaces the service-account signing key, keeping the old
//! key's public half so that the tokens it signed stay valid until they expire.

use std::path::{Path, PathBuf};

use anyhow::Context;
use apiserver::pki;
use serde_json::json;

use crate::cli::{CertificateAction, CertificateArgs, CertificateCheckArgs, CertificateRotateArgs};

/// What `rotate` can set aside: the service, its directory in the data directory, its files.
const SERVICES: &[(&str, &str, &[&str])] = &[
    ("admin", "tls", &["admin.crt", "admin.key"]),
    (
        "controller-manager",
        "tls",
        &["client-controller.crt", "client-controller.key"],
    ),
    (
        "kube-proxy",
        "tls",
        &["client-kube-proxy.crt", "client-kube-proxy.key"],
    ),
    (
        "scheduler",
        "tls",
        &["client-scheduler.crt", "client-scheduler.key"],
    ),
    (
        "api-server",
        "tls",
        &[
            "server.crt",
            "server.key",
            "kubelet-client.crt",
            "kubelet-client.key",
        ],
    ),
    (
        "kubelet",
        "pki",
        &[
            "kubelet-client.crt",
            "kubelet-client.key",
            "kubelet-serving.crt",
            "kubelet-serving.key",
        ],
    ),
];

/// The service-account signing key's service name (its file is `tls/service-account.key`).
const SERVICE_ACCOUNT: &str = "service-account";

/// Runs the action and prints what it found or did.
pub(crate) fn run(opts: CertificateArgs) -> anyhow::Result<()> {
    match opts.action {
        CertificateAction::Check(opts) => check(opts),
        CertificateAction::Rotate(opts) => rotate(opts),
    }
}

fn data_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(crate::server::default_data_dir)
}

/// One certificate file, described.
struct Row {
    file: String,
    described: pki::Described,
}

fn check(opts: CertificateCheckArgs) -> anyhow::Result<()> {
    let dir = data_dir(opts.data_dir);
    let rows = certificates(&dir)?;
    anyhow::ensure!(!rows.is_empty(), "no certificates in {}", dir.display());
    let now = jiff::Timestamp::now().as_second();
    match opts.output.as_str() {
        "json" => {
            let items: Vec<_> = rows.iter().map(|r| row_json(r, now)).collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        }
        "text" => print!("{}", table(&rows, now)),
        other => anyhow::bail!("unknown output {other:?}: text or json"),
    }
    Ok(())
}

/// The certificates under the data directory's `tls/` and `pki/`, by file.
fn certificates(dir: &Path) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for sub in ["tls", "pki"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.retain(|f| f.extension().is_some_and(|e| e == "crt"));
        files.sort();
        for file in files {
            let pem = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
            let described = pki::described(&pem)
                .with_context(|| format!("{}: not a certificate", file.display()))?;
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            rows.push(Row {
                file: format!("{sub}/{name}"),
                described,
            });
        }
    }
    Ok(rows)
}

/// `OK`, `WARNING` (issued anew at the next start) or `EXPIRED`.
fn status(left: i64) -> &'static str {
    if left <= 0 {
        "EXPIRED"
    } else if left < pki::RENEW_DAYS * 86_400 {
        "WARNING"
    } else {
        "OK"
    }
}

fn expires(at: i64) -> String {
    let t = jiff::Timestamp::from_second(at).unwrap_or_default();
    t.strftime("%b %d, %Y %H:%M UTC").to_string()
}

fn table(rows: &[Row], now: i64) -> String {
    let mut lines = vec![[
        "CERTIFICATE".to_string(),
        "SUBJECT".into(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "CA".into(),
        "STATUS".into(),
    ]];
    for r in rows {
        let left = r.described.not_after - now;
        let residual = api::table::human_duration(jiff::SignedDuration::from_secs(left.max(0)));
        let ca = if r.described.is_ca { "yes" } else { "no" };
        let d = &r.described;
        lines.push([
            r.file.clone(),
            d.subject.clone(),
            expires(d.not_after),
            residual,
            ca.into(),
            status(left).into(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

fn row_json(r: &Row, now: i64) -> serde_json::Value {
    let left = r.described.not_after - now;
    let at = jiff::Timestamp::from_second(r.described.not_after).unwrap_or_default();
    json!({"file": r.file, "subject": r.described.subject, "notAfter": at.to_string(),
           "residualSeconds": left, "ca": r.described.is_ca, "status": status(left)})
}

fn rotate(opts: CertificateRotateArgs) -> anyhow::Result<()> {
    let dir = data_dir(opts.data_dir);
    let known: Vec<&str> = SERVICES
        .iter()
        .map(|(s, _, _)| *s)
        .chain([SERVICE_ACCOUNT])
        .collect();
    if let Some(unknown) = opts.service.iter().find(|s| !known.contains(&s.as_str())) {
        anyhow::bail!("unknown service {unknown:?}: one of {}", known.join(", "));
    }
    let chosen = |name: &str| opts.service.is_empty() || opts.service.iter().any(|s| s == name);
    let mut done = false;
    for (service, sub, files) in SERVICES.iter().filter(|(s, _, _)| chosen(s)) {
        let (backup, moved) = pki::set_aside(&dir.join(sub), files)?;
        if !moved.is_empty() {
            println!(
                "{service}: {} set aside in {}",
                moved.join(", "),
                backup.display()
            );
            done = true;
        }
    }
    let key = dir.join("tls/service-account.key");
    if chosen(SERVICE_ACCOUNT) && key.exists() {
        let kid = apiserver::authn::serviceaccount::rotate(&dir.join("tls"))
            .map_err(anyhow::Error::msg)?;
        println!(
            "{SERVICE_ACCOUNT}: new signing key {kid}; tokens signed by the old one stay valid until they expire"
        );
        done = true;
    }
    anyhow::ensure!(done, "nothing to rotate in {}", dir.display());
    println!("Restart to use the new certificates and key.");
    Ok(())
}
