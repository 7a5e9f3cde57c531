//! The service-account issuer's OIDC discovery documents, so that other systems (a cloud's
//! workload identity, Vault) can check the cluster's tokens: `/.well-known/openid-configuration`
//! and the verification keys at `/openid/v1/jwks`. Upstream's `system:service-account-issuer-discovery`
//! role grants them to service accounts; `system:masters` read them too.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::authn::serviceaccount::openid_configuration;
use crate::handlers::{App, allowed_path, json_response};

/// `/.well-known/openid-configuration`.
pub async fn configuration(State(app): State<Arc<App>>, req: Request) -> Response {
    if let Err(refusal) = allowed_path(&app, req).await {
        return refusal;
    }
    let jwks_uri = format!("https://{}/openid/v1/jwks", app.address);
    json_response(StatusCode::OK, &openid_configuration(&jwks_uri))
}

/// `/openid/v1/jwks`, as `application/jwk-set+json`.
pub async fn jwks(State(app): State<Arc<App>>, req: Request) -> Response {
    if let Err(refusal) = allowed_path(&app, req).await {
        return refusal;
    }
    let mut body = app.service_accounts.jwks().to_string();
    body.push('\n');
    ([(header::CONTENT_TYPE, "application/jwk-set+json")], body).into_response()
}
