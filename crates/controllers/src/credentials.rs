//! One identity per controller, as upstream's `--use-service-account-credentials`: each
//! controller acts as the service account `kube-system/<account>` that the bootstrap policy
//! binds to `system:controller:<account>`, so it may do what its role allows and no more,
//! and the audit log and priority and fairness tell controllers apart.
//!
//! The controller manager's own client makes a missing account and asks for its token
//! through the TokenRequest API: an hour's token, asked for again once 80% of its life is
//! gone. Each controller's client sends the account's current token; the shared informers
//! keep the controller manager's identity.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http::HeaderValue;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::runtime::{Error, Result};

/// Where the controllers' accounts live.
const NAMESPACE: &str = "kube-system";
/// The life a token is asked for with (upstream's controller client builder's hour).
const LIFETIME_SECONDS: i64 = 3600;
/// How long to wait before asking again after the server refused a token.
const RETRY: Duration = Duration::from_secs(1);

/// An account's current `Authorization` header, shared with its client's requests.
type Header = Arc<RwLock<HeaderValue>>;

/// The controllers' accounts: a client acting as each, and their tokens to keep fresh.
pub(crate) struct Accounts {
    root: kube::Client,
    clients: BTreeMap<&'static str, kube::Client>,
    /// Each account's header and when its token is to be asked for again.
    tokens: Vec<(&'static str, Header, Duration)>,
}

impl Accounts {
    /// A client for each of `accounts`, reaching the server through `connection` (a
    /// configuration without a user of its own), with a first token that `root` asks for;
    /// waits until the server gives every one.
    pub(crate) async fn new(
        root: &kube::Client,
        connection: &kube::Config,
        accounts: impl IntoIterator<Item = &'static str>,
    ) -> Result<Accounts> {
        let mut out = Accounts {
            root: root.clone(),
            clients: BTreeMap::new(),
            tokens: Vec::new(),
        };
        for account in accounts {
            if out.clients.contains_key(account) {
                continue;
            }
            let (header, renew) = issued_until_given(root, account).await;
            let header = Arc::new(RwLock::new(header));
            out.clients
                .insert(account, client(connection, header.clone())?);
            out.tokens.push((account, header, renew));
        }
        Ok(out)
    }

    /// The client acting as `account`, one of those [`Accounts::new`] was given.
    pub(crate) fn client(&self, account: &str) -> kube::Client {
        self.clients[account].clone()
    }

    /// Asks for each account's token again whenever 80% of its life is gone; never returns.
    pub(crate) async fn keep(&self) {
        let each = self
            .tokens
            .iter()
            .map(|(account, header, first)| async move {
                let mut renew = *first;
                loop {
                    tokio::time::sleep(renew).await;
                    let (fresh, next) = issued_until_given(&self.root, account).await;
                    *header.write().unwrap_or_else(PoisonError::into_inner) = fresh;
                    renew = next;
                }
            });
        futures::future::join_all(each).await;
    }
}

/// A client over `connection` that sends `header` as its `Authorization`.
fn client(connection: &kube::Config, header: Header) -> Result<kube::Client> {
    let layer = tower::util::MapRequestLayer::new(move |mut req: http::Request<_>| {
        let value = header
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        req.headers_mut().insert(http::header::AUTHORIZATION, value);
        req
    });
    let builder = kube::client::ClientBuilder::try_from(connection.clone())?;
    Ok(builder.with_layer(&layer).build())
}

/// A token for `account` and when to ask again, trying until the server gives one.
async fn issued_until_given(root: &kube::Client, account: &str) -> (HeaderValue, Duration) {
    loop {
        match issued(root, account).await {
            Ok(issued) => return issued,
            Err(e) => {
                tracing::warn!("a token for the controllers' account {NAMESPACE}/{account}: {e}");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// A token for `account` (made first if missing), as an `Authorization` header, and when
/// to ask again: after 80% of the life the server gave it.
async fn issued(root: &kube::Client, account: &str) -> Result<(HeaderValue, Duration)> {
    let api: Api<ServiceAccount> = Api::namespaced(root.clone(), NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(LIFETIME_SECONDS),
            ..Default::default()
        },
        ..Default::default()
    };
    let pp = PostParams::default();
    let issued = match api.create_token_request(account, &pp, &request).await {
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(account.to_string()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match api.create(&pp, &sa).await {
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                other => drop(other?),
            }
            api.create_token_request(account, &pp, &request).await?
        }
        other => other?,
    };
    let status = issued
        .status
        .ok_or_else(|| Error::Failed("the TokenRequest came back without a token".into()))?;
    let mut header = HeaderValue::from_str(&format!("Bearer {}", status.token))
        .map_err(|e| Error::Failed(format!("the token is no header value: {e}")))?;
    header.set_sensitive(true);
    let left = status.expiration_timestamp.0.as_second() - jiff::Timestamp::now().as_second();
    let renew = Duration::from_secs(u64::try_from(left.max(10) * 4 / 5).unwrap_or(8));
    Ok((header, renew))
}
