//! `rudder bench authz`: what authorization costs a request as RoleBindings pile up, and how
//! many service-account tokens the server checks per second. In process, over a scratch
//! SQLite store with upstream's bootstrap policy: the authorizer chain and the token check
//! the server runs, without HTTP around them (a request's round trip would hide them).
//!
//! Authorization is timed for a user allowed by the last of the namespace's bindings and for
//! one no binding names (who costs the most: every binding is looked at), first with no other
//! bindings, then with `--bindings` more in the same namespace; the difference of the p99s
//! is what the bindings add. Token checks are compared with the signature check alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use apiserver::authn::Identity;
use apiserver::authn::serviceaccount::{Claims, ISSUER, Private, Ref, Signer};
use apiserver::authz::{Attributes, Chain, Decision};
use apiserver::registry::Registry;
use serde_json::json;
use store::Store;

use super::Report;
use crate::cli::AuthzBench;

const NS: &str = "bench";

/// Runs the benchmark and prints its report.
pub(crate) async fn run(opts: AuthzBench) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("a scratch directory")?;
    let options = store::sqlite::SqliteOptions { durable: false };
    let sqlite = store::sqlite::SqliteStore::open(dir.path().join("db"), options).await?;
    let store: Arc<dyn Store> = Arc::new(sqlite);
    let reg = Registry::new(store.clone());
    apiserver::authz::rbac::bootstrap::reconcile(&reg)
        .await
        .map_err(|s| anyhow::anyhow!("bootstrap policy: {}", s.message))?;
    let chain = Chain::new(reg.clone());
    let reader = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "bench-reader", "uid": "uid-bench-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    });
    let key = "/registry/clusterroles/bench-reader";
    store.create(key, serde_json::to_vec(&reader)?).await?;
    bind(&store, "zz-alice", "alice").await?;
    let mut report = Report::new(format!(
        "rudder bench authz: {} RoleBindings in one namespace, {} authorizations each",
        opts.bindings, opts.requests
    ));
    let before = settle_and_time(&chain, &opts, "alice").await?;
    for i in 0..opts.bindings {
        bind(&store, &format!("user-{i:06}"), &format!("user-{i}")).await?;
    }
    let last = format!("user-{}", opts.bindings.saturating_sub(1));
    let after = settle_and_time(&chain, &opts, &last).await?;
    report.add(
        "allowed_p99_us_0",
        "allowed, no other bindings: p99 (µs)",
        before.0,
    );
    report.add(
        "denied_p99_us_0",
        "denied, no other bindings: p99 (µs)",
        before.1,
    );
    report.add(
        "allowed_p99_us",
        "allowed, with the bindings: p99 (µs)",
        after.0,
    );
    report.add(
        "denied_p99_us",
        "denied, with the bindings: p99 (µs)",
        after.1,
    );
    report.add(
        "added_p99_us",
        "added by the bindings: p99 (µs)",
        after.1 - before.1,
    );
    let (checked, verified) = tokens(&reg, &store, dir.path(), opts.token_seconds).await?;
    report.add(
        "token_checks_per_s",
        "token checks /s (signature, account)",
        checked,
    );
    report.add("signatures_per_s", "signature checks alone /s", verified);
    report.add(
        "token_check_ratio",
        "token checks / signature checks",
        checked / verified,
    );
    report.print(opts.json);
    Ok(())
}

/// A RoleBinding `name` in the benchmark's namespace giving `bench-reader` (pods: get, list,
/// watch) to `user`, written to the store directly (admission would only slow the set-up).
async fn bind(store: &Arc<dyn Store>, name: &str, user: &str) -> anyhow::Result<()> {
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bench-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    });
    let key = format!("/registry/rolebindings/{NS}/{name}");
    store.create(&key, serde_json::to_vec(&binding)?).await?;
    Ok(())
}

/// `get pods` in the namespace as `user`.
async fn authorize(chain: &Chain, user: &str) -> anyhow::Result<bool> {
    let who = Identity {
        user: user.to_string(),
        groups: vec!["system:authenticated".into()],
    };
    let pods = api::resources::find("", "v1", "pods")
        .context("pods")?
        .clone();
    let info = apiserver::authz::made_up_request(pods, None, Some(NS.into()), None);
    let a = Attributes {
        user: &who,
        verb: "get",
        request: Some(&info),
        path: "/api/v1/namespaces/bench/pods/p",
    };
    let decision = chain
        .authorize(&a)
        .await
        .map_err(|s| anyhow::anyhow!(s.message))?;
    Ok(matches!(decision, Decision::Allow(_)))
}

/// Waits until the watch-fed copies hold `newest`'s binding, then times `alice` (allowed)
/// and `mallory` (denied): the p99s in microseconds.
async fn settle_and_time(
    chain: &Chain,
    opts: &AuthzBench,
    newest: &str,
) -> anyhow::Result<(f64, f64)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !authorize(chain, newest).await? {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the bindings never reached the authorizer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::ensure!(authorize(chain, "alice").await?, "alice is not allowed");
    anyhow::ensure!(!authorize(chain, "mallory").await?, "mallory is allowed");
    let mut p99 = Vec::new();
    for user in ["alice", "mallory"] {
        // Warm-up, untimed: the index and caches are built on first use.
        for _ in 0..opts.requests / 10 {
            authorize(chain, user).await?;
        }
        let mut times = Vec::with_capacity(opts.requests);
        for _ in 0..opts.requests {
            let started = Instant::now();
            authorize(chain, user).await?;
            times.push(started.elapsed());
        }
        times.sort();
        let at = (times.len() * 99 / 100).min(times.len().saturating_sub(1));
        p99.push(times.get(at).copied().unwrap_or_default().as_secs_f64() * 1e6);
    }
    Ok((p99[0], p99[1]))
}

/// Token checks per second (the signature, then the account's UID from the store) and
/// signature checks alone per second, each for `seconds`.
async fn tokens(
    reg: &Registry,
    store: &Arc<dyn Store>,
    dir: &std::path::Path,
    seconds: f64,
) -> anyhow::Result<(f64, f64)> {
    let signer = Signer::ensure(dir).map_err(anyhow::Error::msg)?;
    let uid = "robot-uid".to_string();
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot", "namespace": NS, "uid": uid}});
    store
        .create(
            &format!("/registry/serviceaccounts/{NS}/robot"),
            serde_json::to_vec(&account)?,
        )
        .await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let claims = Claims {
        aud: vec![ISSUER.into()],
        exp: now + 3600,
        iat: now,
        iss: ISSUER.into(),
        jti: "bench".into(),
        kubernetes: Private {
            namespace: NS.into(),
            serviceaccount: Ref {
                name: "robot".into(),
                uid,
            },
            ..Private::default()
        },
        nbf: now,
        sub: format!("system:serviceaccount:{NS}:robot"),
    };
    let token = signer.issue(&claims).map_err(anyhow::Error::msg)?;
    let audiences = [ISSUER];
    let rate = |n: usize, took: Duration| n as f64 / took.as_secs_f64();
    let (started, mut n) = (Instant::now(), 0);
    while started.elapsed().as_secs_f64() < seconds {
        let who = apiserver::authn::authenticate_service_account(&signer, reg, &token, &audiences);
        anyhow::ensure!(who.await.is_some(), "the token was refused");
        n += 1;
    }
    let checked = rate(n, started.elapsed());
    let (started, mut n) = (Instant::now(), 0);
    while started.elapsed().as_secs_f64() < seconds {
        anyhow::ensure!(signer.verify(&token, &audiences).is_some(), "bad signature");
        n += 1;
    }
    Ok((checked, rate(n, started.elapsed())))
}
