//! The conformance suite against a real etcd (Debian's etcd-server) started per test, plus
//! etcd-specific failure behaviour.

use std::time::Duration;

use store::etcd::EtcdStore;
use store::testing::EtcdBackend;

store::store_suite!(EtcdBackend::start().await);

#[tokio::test]
async fn unreachable_etcd_names_the_endpoint_after_retrying() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("127.0.0.1:{port}");
    let err = EtcdStore::connect(
        std::slice::from_ref(&endpoint),
        Duration::from_secs(2),
        None,
    )
    .await
    .err()
    .expect("nothing listens there");
    let text = err.to_string();
    assert!(text.contains(&endpoint), "{text}");
    assert!(text.contains("unavailable"), "{text}");
    // It retried until its wait ran out rather than failing at the first refusal.
    assert!(text.contains("gave up after 2s"), "{text}");
}
