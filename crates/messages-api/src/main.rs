//! `messages-api`: the Lambda function behind the API Gateway HTTP API, serving the API's router
//! and the web page, which signs in with Cognito. The caller is the `sub` claim of the JWT that API
//! Gateway's authorizer verified; no header can claim an identity.

use axum::Router;
use axum::extract::Request;
use axum::middleware::map_request;
use lambda_http::request::RequestContext;
use lambda_http::{Error, RequestExt, run, tracing};
use transcoder_api::{Api, ApiConfig, Identity, PageConfig, page, router};
use transcoder_aws::{DynamoStore, S3Links};
use transcoder_core::ProcessEnv;

// One thread: the work is waiting on AWS, and at the memory sizes in template.yaml Lambda gives a
// fraction of a vCPU; a single-threaded runtime saves the cross-thread wake-ups of every call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let (api, page) = setup()
        .await
        .inspect_err(|e| tracing::error!("start-up refused: {e}"))?;
    let app = router(api)
        .merge(page)
        .layer(map_request(verified_identity));
    run(app).await
}

async fn setup() -> Result<(Api<DynamoStore, S3Links>, Router), Error> {
    let config = ApiConfig::from_env(&ProcessEnv)?;
    let page = page::router(&PageConfig::cognito_from_env(&ProcessEnv)?)?;
    let sdk = aws_config::load_from_env().await;
    let store = DynamoStore::from_env(&sdk, &ProcessEnv)?;
    let links = S3Links::from_sdk(&sdk, &config.bucket);
    Ok((Api::new(config, store, links), page))
}

/// Names the caller by the `sub` claim the HTTP API's JWT authorizer verified, if there is one.
async fn verified_identity(mut request: Request) -> Request {
    let sub = match request.extensions().request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .and_then(|jwt| jwt.claims.get("sub"))
            .cloned(),
        _ => None,
    };
    if let Some(sub) = sub {
        request.extensions_mut().insert(Identity(sub));
    }
    request
}
