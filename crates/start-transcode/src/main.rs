//! `start-transcode`: the Lambda function S3 invokes when objects are created under the input
//! prefix. Configuration and clients are built once per cold start.

use lambda_runtime::{Diagnostic, Error, LambdaEvent, run, service_fn, tracing};
use transcoder_aws::{CloudTranscoder, DynamoStore};
use transcoder_core::config::ProcessEnv;
use transcoder_core::{RawS3Event, StartConfig, start_transcode};

// One thread: the work is waiting on AWS, and at the memory sizes in template.yaml Lambda gives a
// fraction of a vCPU; a single-threaded runtime saves the cross-thread wake-ups of every call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let (config, transcoder, claims) = setup()
        .await
        .inspect_err(|e| tracing::error!("start-up refused: {e}"))?;
    run(service_fn(|event: LambdaEvent<RawS3Event>| async {
        start_transcode(event.payload, &config, &transcoder, &claims)
            .await
            .map_err(|e| Diagnostic {
                error_type: "JobsNotStarted".into(),
                error_message: e.to_string(),
            })
    }))
    .await
}

async fn setup() -> Result<(StartConfig, CloudTranscoder, DynamoStore), Error> {
    let config = StartConfig::from_env(&ProcessEnv)?;
    let sdk = aws_config::load_from_env().await;
    let transcoder = CloudTranscoder::from_env(&sdk, &ProcessEnv).await?;
    // The claims that keep a redelivered upload from starting a second job.
    let claims = DynamoStore::from_env(&sdk, &ProcessEnv)?;
    Ok((config, transcoder, claims))
}
