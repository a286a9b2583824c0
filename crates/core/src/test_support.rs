//! Stand-ins shared by the unit tests of the handlers.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::ids::JobId;
use crate::job::TranscodeJob;
use crate::transcoder::{Transcoder, TranscoderError};

/// Records the jobs it is given; refuses those whose key contains `fail_on`.
#[derive(Default)]
pub struct FakeTranscoder {
    pub jobs: Mutex<Vec<TranscodeJob>>,
    pub fail_on: Option<&'static str>,
    pub in_flight: AtomicUsize,
    pub most_in_flight: AtomicUsize,
}

impl FakeTranscoder {
    /// The source keys of the jobs started, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<_> = self
            .jobs
            .lock()
            .unwrap()
            .iter()
            .map(|j| j.source.to_string())
            .collect();
        keys.sort();
        keys
    }
}

impl Transcoder for FakeTranscoder {
    async fn start_job(&self, job: &TranscodeJob) -> Result<JobId, TranscoderError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self
            .fail_on
            .is_some_and(|f| job.source.as_str().contains(f))
        {
            return Err(TranscoderError::new("service unavailable"));
        }
        let mut jobs = self.jobs.lock().unwrap();
        jobs.push(job.clone());
        Ok(JobId(format!("job-{}", jobs.len())))
    }
}
