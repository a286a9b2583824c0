//! `start-transcode`: the Lambda function on the intake queue, which S3 notifies when objects are
//! created under the input prefix; it takes a plain S3 event too (`sam local invoke`). Configuration
//! and clients are built once per cold start.

use lambda_runtime::{Diagnostic, Error, LambdaEvent, run, service_fn, tracing};
use transcoder_aws::{CloudTranscoder, DynamoStore, S3Source};
use transcoder_core::{Handled, Paced, ProcessEnv, StartConfig, StartEvent, start_from_event};

// One thread: the work is waiting on AWS, and at the memory sizes in template.yaml Lambda gives a
// fraction of a vCPU; a single-threaded runtime saves the cross-thread wake-ups of every call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let (config, source, transcoder, store) = setup()
        .await
        .inspect_err(|e| tracing::error!("start-up refused: {e}"))?;
    run(service_fn(|event: LambdaEvent<StartEvent>| async {
        let handled = start_from_event(event.payload, &config, &source, &transcoder, &store).await;
        // A queue batch is answered with its batch-item failures only; a plain S3 event with
        // its report, or an error that has Lambda retry it.
        let answer = match handled {
            Handled::Batch(response) => serde_json::to_value(response),
            Handled::Direct(Ok(report)) => serde_json::to_value(report),
            Handled::Direct(Err(e)) => {
                return Err(Diagnostic {
                    error_type: "JobsNotStarted".into(),
                    error_message: e.to_string(),
                });
            }
        };
        answer.map_err(|e| Diagnostic {
            error_type: "AnswerNotWritten".into(),
            error_message: e.to_string(),
        })
    }))
    .await
}

async fn setup() -> Result<(StartConfig, S3Source, Paced<CloudTranscoder>, DynamoStore), Error> {
    let config = StartConfig::from_env(&ProcessEnv)?;
    let sdk = aws_config::load_from_env().await;
    // Reads the first bytes of each upload, to know it is audio before a job is created.
    let source = S3Source::from_sdk(&sdk);
    // At this instance's share of the rate the transcoder accepts, if one is set.
    let transcoder = Paced::new(
        CloudTranscoder::from_env(&sdk, &ProcessEnv).await?,
        config.job_interval,
        StartConfig::LONGEST_TURN_WAIT,
    );
    // The claims that keep a redelivered upload from starting a second job, and the messages
    // that tell an owner their file was refused.
    let store = DynamoStore::from_env(&sdk, &ProcessEnv)?;
    Ok((config, source, transcoder, store))
}
