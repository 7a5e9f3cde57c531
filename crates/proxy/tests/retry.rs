//! The proxy against the real API server in-process, with a kernel that refuses the first
//! rules: the proxy tries again on its own, with no change in the cluster to prompt it.

use std::sync::{Arc, Mutex};

use rudder_proxy::conntrack::Flow;
use rudder_proxy::host::{Error, Host};
use rudder_proxy::rules::Config;
use testkit::{TestServer, eventually};

/// Refuses the first script, takes the others; keeps whether each went in.
#[derive(Default)]
struct RefusesFirst {
    applied: Mutex<Vec<bool>>,
}

#[async_trait::async_trait]
impl Host for RefusesFirst {
    async fn apply(&self, _script: &str) -> Result<(), Error> {
        let mut applied = self.applied.lock().unwrap();
        let ok = !applied.is_empty();
        applied.push(ok);
        if ok {
            Ok(())
        } else {
            Err(Error::Refused("the first script is refused".into()))
        }
    }

    async fn forget(&self, _flow: &Flow) -> Result<(), Error> {
        Ok(())
    }

    fn sysctl(&self, _key: &str, _value: &str) -> Result<(), Error> {
        Ok(())
    }
}

#[tokio::test]
async fn refused_rules_are_tried_again_without_a_change_to_prompt_it() {
    let server = TestServer::start().await;
    let host = Arc::new(RefusesFirst::default());
    let config = Config {
        table: "rudder-test".into(),
        cluster_cidr: Some("10.42.0.0/16".into()),
        service_cidr: Some("10.43.0.0/16".into()),
        node: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let proxy = tokio::spawn(rudder_proxy::run(
        server.client(),
        config,
        host.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    // The `kubernetes` Service is there from the start: the first sync has rules to write,
    // which the host refuses; nothing in the cluster changes after that.
    eventually("a second sync after the refused one", || async {
        host.applied.lock().unwrap().starts_with(&[false, true])
    })
    .await;
    stop.send(()).unwrap();
    proxy.await.unwrap().unwrap();
}
