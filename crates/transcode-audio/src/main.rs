//! `transcode-audio`: the Lambda function on the jobs queue (the `lambda` backend).

use lambda_runtime::{Error, tracing};
use transcode_audio::WorkerConfig;
use transcoder_core::config::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let _config = WorkerConfig::from_env(&ProcessEnv)
        .inspect_err(|e| tracing::error!("start-up refused: {e}"))?;
    Err("the worker's handler is not built yet".into())
}
