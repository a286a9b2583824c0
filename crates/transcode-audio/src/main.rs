//! `transcode-audio`: the Lambda function on the jobs queue and its dead-letter queue (the
//! `lambda` backend). Configuration and clients are built once per cold start.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};
use transcode_audio::{RawSqsEvent, Worker, WorkerConfig};
use transcoder_core::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = WorkerConfig::from_env(&ProcessEnv)
        .inspect_err(|e| tracing::error!("start-up refused: {e}"))?;
    let sdk = aws_config::load_from_env().await;
    let worker = Worker::new(config, &sdk, std::env::temp_dir().join("jobs"));
    run(service_fn(|event: LambdaEvent<RawSqsEvent>| {
        let deadline = deadline(event.context.deadline);
        let worker = &worker;
        async move { Ok::<_, Error>(worker.handle(event.payload, deadline).await) }
    }))
    .await
}

/// The invocation's deadline (milliseconds since the epoch) as an instant of this clock.
fn deadline(epoch_millis: u64) -> Option<Instant> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let left = Duration::from_millis(epoch_millis).saturating_sub(now);
    Instant::now().checked_add(left)
}
