//! The one thing a transcoding service must do for the starter: accept a job.

use std::fmt;
use std::future::Future;

use crate::job::TranscodeJob;

/// The backend's identifier of an accepted job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct JobId(pub String);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A transcoding service: Elastic Transcoder, MediaConvert, or ffmpeg on this machine.
pub trait Transcoder: Send + Sync {
    /// Submits `job` and returns once the service has accepted it. Completion is reported later,
    /// out of band, in the service's own notification.
    fn start_job(
        &self,
        job: &TranscodeJob,
    ) -> impl Future<Output = Result<JobId, TranscoderError>> + Send;
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The service did not accept a job (after the retries its client makes).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TranscoderError {
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl TranscoderError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}
