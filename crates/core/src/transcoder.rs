//! The one thing a transcoding service must do for the starter: accept a job.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::ids::JobId;
use crate::job::TranscodeJob;

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

/// A transcoder whose jobs are started no faster than a rate: one instance's share of what the
/// service accepts a second, so that a burst is spread over time instead of throttled. A job
/// whose turn would come only after `longest_wait` is refused at once (as a throttled one is),
/// and comes back with its message. Without a rate, every job is passed on at once.
pub struct Paced<T> {
    inner: T,
    interval: Option<Duration>,
    longest_wait: Duration,
    /// When the next job may be sent.
    next: Mutex<Instant>,
}

impl<T> Paced<T> {
    /// `inner`, with at least `interval` between two jobs, if given.
    pub fn new(inner: T, interval: Option<Duration>, longest_wait: Duration) -> Self {
        Self {
            inner,
            interval,
            longest_wait,
            next: Mutex::new(Instant::now()),
        }
    }

    /// The transcoder the jobs go to.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The time at which a job may be sent, taken for it; `None` if that is too far off.
    fn turn(&self, interval: Duration) -> Option<Instant> {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let turn = (*next).max(now);
        if turn - now > self.longest_wait {
            return None;
        }
        *next = turn + interval;
        Some(turn)
    }
}

impl<T: Transcoder> Transcoder for Paced<T> {
    async fn start_job(&self, job: &TranscodeJob) -> Result<JobId, TranscoderError> {
        if let Some(interval) = self.interval {
            let turn = self.turn(interval).ok_or_else(|| {
                TranscoderError::new(format!(
                    "{:.1} jobs a second are being started already: tried again later",
                    1.0 / interval.as_secs_f64()
                ))
            })?;
            tokio::time::sleep_until(turn).await;
        }
        self.inner.start_job(job).await
    }
}
