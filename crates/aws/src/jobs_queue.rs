//! The `lambda` backend: "start a job" is one SendMessage of the job to the jobs queue, which
//! `transcode-audio` consumes. The queue has no CreateJob rate to throttle a burst, and the job id
//! is the upload's own, so a redelivered event sends the same job under the same id.

use aws_sdk_sqs::Client;
use transcoder_core::{JobId, JobMessage, TranscodeJob, Transcoder, TranscoderError};

use crate::errors::created_job;

/// What the ids of this backend's jobs start with, so a log line or a message says which
/// backend ran the job.
pub const JOB_ID_PREFIX: &str = "audio-";

#[derive(Debug, Clone)]
pub struct JobsQueue {
    client: Client,
    queue_url: String,
}

impl JobsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    #[cfg(test)]
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }
}

impl Transcoder for JobsQueue {
    async fn start_job(&self, job: &TranscodeJob) -> Result<JobId, TranscoderError> {
        let message = JobMessage {
            job_id: job.deterministic_id(JOB_ID_PREFIX),
            job: job.clone(),
        };
        let body = serde_json::to_string(&message)
            .map_err(|e| TranscoderError::with_source("the job cannot be written as JSON", e))?;
        let sent = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await;
        // SQS answers with its own message id; the job's id is the one the worker reports.
        created_job("SQS", sent.map(|_| Some(message.job_id)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_sqs::operation::send_message::SendMessageOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use transcoder_core::{RawS3Event, StartConfig, start_transcode};
    use transcoder_testkit::{MemorySource, MemoryStore};

    use super::*;

    const QUEUE: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/audio-transcoder-jobs";

    #[tokio::test]
    async fn a_job_is_one_message_whose_id_a_redelivered_event_repeats() {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        let rule = mock!(Client::send_message).then_compute_output(move |input| {
            assert_eq!(input.queue_url(), Some(QUEUE));
            seen.lock()
                .unwrap()
                .push(input.message_body().unwrap().to_owned());
            SendMessageOutput::builder().message_id("sqs-1").build()
        });
        let queue = JobsQueue::new(
            mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&rule]),
            QUEUE,
        );
        let event = include_str!("../../../events/s3-put.json");
        let mut ids = Vec::new();
        // Two deliveries of one event, each to a fresh store: as if the claim had been lost.
        for _ in 0..2 {
            let report = start_transcode(
                serde_json::from_str::<RawS3Event>(event).unwrap(),
                &StartConfig::from_env(&[]).unwrap(),
                &MemorySource::audio(),
                &queue,
                &MemoryStore::default(),
            )
            .await
            .unwrap();
            ids.push(report.started[0].job_id.clone());
        }
        let bodies = bodies.lock().unwrap();
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[0], bodies[1], "the same job, the same message");
        let message: JobMessage = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(JobId(message.job_id.clone()), ids[0]);
        assert_eq!(ids[0], ids[1]);
        assert!(message.job_id.starts_with("audio-"), "{}", message.job_id);
        // The job's id is its upload's: the upload record and the job name one another.
        let upload = message.job.upload_ref();
        assert_eq!(message.job_id, format!("audio-{}", upload.id.0));
        assert_eq!(message.job.source.as_str(), "media/alice/song.mp3");
        assert_eq!(
            message.job.etag.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        let keys: Vec<_> = message.job.outputs.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "transcoded/alice/song.mp3.wav",
                "transcoded/alice/song.mp3.flac",
                "transcoded/alice/song.mp3.m4a"
            ]
        );
    }

    #[tokio::test]
    async fn a_refused_send_is_an_error_that_names_the_file() {
        let rule = mock!(Client::send_message).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                aws_smithy_types::body::SdkBody::from(
                    r#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}"#,
                ),
            )
        });
        let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&rule]);
        crate::errors::refused_start(&JobsQueue::new(client, QUEUE), "SQS").await;
        assert_eq!(rule.num_calls(), 1);
    }
}
