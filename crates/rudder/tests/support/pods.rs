//! Helpers for end-to-end tests with a node agent: a test image in a registry on loopback,
//! kubectl shorthands, patient waits. Included with `#[path]` by the tests that run pods.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::time::Duration;

use crate::support::Cluster;
use crate::testimage;

/// A busybox image in a registry of its own on loopback; the registry goes when dropped.
pub struct Image {
    _registry: testimage::Registry,
    pub name: String,
    _layout: tempfile::TempDir,
}

pub fn busybox() -> Image {
    let registry = testimage::Registry::start();
    let layout = tempfile::tempdir().unwrap();
    testimage::busybox_layout(layout.path(), "1");
    let name = registry.push_layout(layout.path(), "1", "busybox");
    Image {
        _registry: registry,
        name,
        _layout: layout,
    }
}

pub fn get(c: &Cluster, args: &[&str]) -> String {
    c.kubectl(args).out().trim().to_string()
}

pub fn jsonpath(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let p = format!("jsonpath={path}");
    args.extend(["-o", &p]);
    let r = c.kubectl(&args);
    if r.ok {
        r.stdout.trim().to_string()
    } else {
        String::new()
    }
}

/// Waits (longer than `eventually`: images pull, containers back off) for `cond`.
pub fn patiently(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (as [`patiently`]) until what `read` gives contains `want`; on giving up, shows
/// what it gave last.
pub fn patiently_see(what: &str, secs: u64, want: &str, mut read: impl FnMut() -> String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = read();
        if got.contains(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}: wanted {want:?}, last saw {got}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for pod `name` to fail as a whole with `reason`, then checks its phase and message.
pub fn pod_fails_with(c: &Cluster, name: &str, reason: &str, message: &str) {
    patiently(reason, 60, || {
        jsonpath(c, &["pod", name], "{.status.reason}") == reason
    });
    assert_eq!(jsonpath(c, &["pod", name], "{.status.phase}"), "Failed");
    assert_eq!(jsonpath(c, &["pod", name], "{.status.message}"), message);
}

pub fn node_ready(c: &Cluster, node: &str) {
    patiently("the node Ready", 90, || {
        get(c, &["get", "nodes", "--no-headers"])
            .lines()
            .any(|l| l.starts_with(node) && l.split_whitespace().nth(1) == Some("Ready"))
    });
}

/// HTTP GET of `path` from the host, the body.
pub fn http_get_path(ip: &str, port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}
