//! How a backend fails: at set-up, from its configuration ([`SetupError`]), and when its service
//! refuses a job ([`created_job`]). The factory and each transcoder share these.

use aws_smithy_types::error::display::DisplayErrorContext;
use transcoder_core::{ConfigError, JobId, TranscoderError};

/// Why no backend could be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "TRANSCODER='{0}' is not a known backend (known: lambda, mediaconvert, elastictranscoder)"
    )]
    UnknownBackend(String),
    #[error(
        "TRANSCODER=lambda needs JOBS_QUEUE_URL: the queue transcode-audio takes its jobs from"
    )]
    NoJobsQueue,
    #[error(
        "TRANSCODER=mediaconvert needs MEDIACONVERT_ROLE_ARN: the role MediaConvert assumes to \
         read uploads and write outputs"
    )]
    NoMediaConvertRole,
    #[error("set PIPELINE_ID, or PIPELINE_NAME to look the pipeline up at start-up")]
    NoPipeline,
    #[error("no Elastic Transcoder pipeline is named '{0}'")]
    PipelineNotFound(String),
    #[error("more than one Elastic Transcoder pipeline is named '{0}'; set PIPELINE_ID instead")]
    AmbiguousPipeline(String),
    #[error("listing Elastic Transcoder pipelines failed: {0}")]
    PipelineLookup(String),
}

/// What a backend's `CreateJob` came to: the id of the job `service` created, or an error that
/// says which service refused and why (the SDK error's whole chain, its source kept).
pub(crate) fn created_job<E>(
    service: &str,
    sent: Result<Option<String>, E>,
) -> Result<JobId, TranscoderError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let id = sent.map_err(|e| {
        let message = format!("{service} refused CreateJob: {}", DisplayErrorContext(&e));
        TranscoderError::with_source(message, e)
    })?;
    id.map(JobId).ok_or_else(|| {
        TranscoderError::new(format!("{service} accepted the job but returned no job id"))
    })
}

/// Runs `events/s3-put.json` through the starter with `transcoder`, which must refuse the job,
/// and checks that the invocation's error names the record and `service`'s refusal.
#[cfg(test)]
pub(crate) async fn refused_start(transcoder: &impl transcoder_core::Transcoder, service: &str) {
    use transcoder_core::{MemorySource, StartConfig, memory::MemoryStore, start_transcode};

    let event = serde_json::from_str(include_str!("../../../events/s3-put.json")).unwrap();
    let err = start_transcode(
        event,
        &StartConfig::from_env(&[]).unwrap(),
        &MemorySource::audio(),
        transcoder,
        &MemoryStore::default(),
    )
    .await
    .expect_err("the transcoder refuses every job");
    let message = err.to_string();
    assert!(
        message.starts_with(
            "1 of 1 transcode jobs could not be started: record 0 'media/alice/song.mp3'"
        ),
        "{message}"
    );
    assert!(
        message.contains(&format!("{service} refused CreateJob")),
        "{message}"
    );
}
