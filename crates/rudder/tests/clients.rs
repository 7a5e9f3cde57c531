//! Client libraries other than kubectl against the real server: the official Python client
//! (`kubernetes` from PyPI, installed by scripts/test.sh): pagination, watch resume, and
//! concurrent conflicting updates.

mod support;

use std::process::Command;

use support::Cluster;

/// The Python with the `kubernetes` package: `RUDDER_TEST_PYTHON`, set by scripts/test.sh,
/// or `python3`.
fn python() -> String {
    std::env::var("RUDDER_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs one script of tests/python against `c`; returns its stdout.
fn run_python(c: &Cluster, script: &str) -> String {
    let path = format!("{}/../../tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python())
        .arg(path)
        .arg(c.kubeconfig())
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'kubernetes'"),
        "the Python client is missing: run scripts/test.sh, which installs it, or pip install kubernetes"
    );
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn python_client_paginates_and_resumes_watches() {
    let c = Cluster::start(&[]);
    assert!(run_python(&c, "client_test.py").contains("python client: ok"));
}

#[test]
fn a_thousand_concurrent_conflicting_updates_have_exactly_one_winner() {
    let c = Cluster::start(&[]);
    assert!(run_python(&c, "conflicts_test.py").contains("conflicts: ok"));
}
