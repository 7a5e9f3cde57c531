//! Client libraries other than kubectl against the real server: the official Python client
//! (`kubernetes` from PyPI, installed by scripts/test.sh) for pagination and watch resume.

mod support;

use std::process::Command;

use support::Cluster;

/// The Python with the `kubernetes` package: `RUDDER_TEST_PYTHON`, set by scripts/test.sh,
/// or `python3`.
fn python() -> String {
    std::env::var("RUDDER_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn python_client_paginates_and_resumes_watches() {
    let c = Cluster::start(&[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/client_test.py"
    );
    let out = Command::new(python())
        .arg(script)
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
        "python client test failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client: ok"));
}
