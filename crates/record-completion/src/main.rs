//! `record-completion`: the Lambda function subscribed to the transcoder's SNS topic. It writes a
//! message for the file's owner when a job ends. Configuration and clients are built once per
//! cold start.

use lambda_runtime::{Diagnostic, Error, LambdaEvent, run, service_fn, tracing};
use transcoder_aws::DynamoStore;
use transcoder_core::{ProcessEnv, RawSnsEvent, RecordConfig, record_completion};

// One thread: the work is waiting on AWS, and at the memory sizes in template.yaml Lambda gives a
// fraction of a vCPU; a single-threaded runtime saves the cross-thread wake-ups of every call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let (config, store) = setup()
        .await
        .inspect_err(|e| tracing::error!("start-up refused: {e}"))?;
    run(service_fn(|event: LambdaEvent<RawSnsEvent>| async {
        record_completion(event.payload, &config, &store)
            .await
            .map_err(|e| Diagnostic {
                error_type: "MessagesNotStored".into(),
                error_message: e.to_string(),
            })
    }))
    .await
}

async fn setup() -> Result<(RecordConfig, DynamoStore), Error> {
    let config = RecordConfig::from_env(&ProcessEnv)?;
    let sdk = aws_config::load_from_env().await;
    let store = DynamoStore::from_env(&sdk, &ProcessEnv)?;
    Ok((config, store))
}
