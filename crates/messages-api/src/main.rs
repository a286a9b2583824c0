//! `messages-api`: the Lambda function behind the API Gateway HTTP API. The caller is the `sub`
//! claim of the JWT that API Gateway's authorizer verified; no header can claim an identity.

use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Error, Request, RequestExt, run, service_fn, tracing};
use transcoder_api::{Api, ApiConfig};
use transcoder_aws::{DynamoStore, S3Links};
use transcoder_core::config::ProcessEnv;

// One thread: the work is waiting on AWS, and at the memory sizes in template.yaml Lambda gives a
// fraction of a vCPU; a single-threaded runtime saves the cross-thread wake-ups of every call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let api = setup()
        .await
        .inspect_err(|e| tracing::error!("start-up refused: {e}"))?;
    run(service_fn(|request: Request| async {
        let caller = caller(&request);
        let (parts, body) = request.into_parts();
        let request =
            lambda_http::http::Request::from_parts(parts, Bytes::copy_from_slice(body.as_ref()));
        let response = api.handle(caller.as_deref(), &request).await;
        Ok::<_, Error>(response.map(Body::from))
    }))
    .await
}

async fn setup() -> Result<Api<DynamoStore, S3Links>, Error> {
    let config = ApiConfig::from_env(&ProcessEnv)?;
    let sdk = aws_config::load_from_env().await;
    let store = DynamoStore::from_env(&sdk, &ProcessEnv)?;
    let links = S3Links::from_sdk(&sdk, &config.bucket);
    Ok(Api::new(config, store, links))
}

/// The `sub` claim verified by the HTTP API's JWT authorizer, if there is one.
fn caller(request: &Request) -> Option<String> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context
            .authorizer
            .as_ref()?
            .jwt
            .as_ref()?
            .claims
            .get("sub")
            .cloned(),
        _ => None,
    }
}
