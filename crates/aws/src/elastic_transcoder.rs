//! Elastic Transcoder: one CreateJob per transcode job, with a system preset per output format.
//!
//! AWS discontinued Elastic Transcoder on 13 Nov 2025; it is kept for accounts that still have a
//! pipeline. The pipeline is fixed at start-up: looked up by name at most once per cold start.

use aws_sdk_elastictranscoder::Client;
use aws_sdk_elastictranscoder::error::DisplayErrorContext;
use aws_sdk_elastictranscoder::types::{CreateJobOutput, JobInput};
use transcoder_core::{JobId, OutputFormat, TranscodeJob, Transcoder, TranscoderError, metadata};

use crate::errors::{SetupError, created_job};

/// The system preset of a format at a bitrate (kb/s; `None` for a lossless format); `None` where
/// Elastic Transcoder has none: no Opus, and AAC and MP3 only at the bitrates of
/// [`transcoder_core::ELASTIC_TRANSCODER_KBPS`], which the API and the starter check.
pub fn system_preset(format: OutputFormat, kbps: Option<u32>) -> Option<&'static str> {
    Some(match (format, kbps) {
        // "System preset: Audio WAV 44100 Hz, 16 bit - CD Quality"
        (OutputFormat::Wav, _) => "1351620000001-300300",
        // "System preset: Audio FLAC - CD"
        (OutputFormat::Flac, _) => "1351620000001-300110",
        // "System preset: Audio AAC - 256k" and its siblings (MP4 container)
        (OutputFormat::Aac, Some(256)) => "1351620000001-100110",
        (OutputFormat::Aac, Some(160)) => "1351620000001-100120",
        (OutputFormat::Aac, Some(128)) => "1351620000001-100130",
        (OutputFormat::Aac, Some(64)) => "1351620000001-100141",
        // "System preset: Audio MP3 - 192k" and its siblings
        (OutputFormat::Mp3, Some(320)) => "1351620000001-300010",
        (OutputFormat::Mp3, Some(192)) => "1351620000001-300020",
        (OutputFormat::Mp3, Some(160)) => "1351620000001-300030",
        (OutputFormat::Mp3, Some(128)) => "1351620000001-300040",
        _ => return None,
    })
}

#[derive(Debug, Clone)]
pub struct ElasticTranscoder {
    client: Client,
    pipeline_id: String,
}

impl ElasticTranscoder {
    pub fn new(client: Client, pipeline_id: impl Into<String>) -> Self {
        Self {
            client,
            pipeline_id: pipeline_id.into(),
        }
    }

    pub fn pipeline_id(&self) -> &str {
        &self.pipeline_id
    }

    #[cfg(test)]
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Finds the id of the one pipeline called `name`.
    pub async fn find_pipeline(client: &Client, name: &str) -> Result<String, SetupError> {
        let pipelines: Vec<_> = client
            .list_pipelines()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| SetupError::PipelineLookup(DisplayErrorContext(e).to_string()))?;
        let mut ids = pipelines
            .iter()
            .filter(|p| p.name() == Some(name))
            .filter_map(|p| p.id());
        match (ids.next(), ids.next()) {
            (Some(id), None) => Ok(id.to_owned()),
            (None, _) => Err(SetupError::PipelineNotFound(name.to_owned())),
            (Some(_), Some(_)) => Err(SetupError::AmbiguousPipeline(name.to_owned())),
        }
    }
}

impl Transcoder for ElasticTranscoder {
    async fn start_job(&self, job: &TranscodeJob) -> Result<JobId, TranscoderError> {
        let mut request = self
            .client
            .create_job()
            .pipeline_id(&self.pipeline_id)
            .input(JobInput::builder().key(job.source.as_str()).build());
        if let Some(loudness) = job.loudness {
            return Err(TranscoderError::new(format!(
                "Elastic Transcoder cannot normalize loudness ({} was asked for)",
                loudness.name()
            )));
        }
        for output in &job.outputs {
            let preset = system_preset(output.format, output.bitrate()).ok_or_else(|| {
                TranscoderError::new(match output.bitrate() {
                    Some(kbps) => format!(
                        "Elastic Transcoder has no system preset for {} at {kbps} kb/s",
                        output.format
                    ),
                    None => format!(
                        "Elastic Transcoder has no system preset for {}",
                        output.format
                    ),
                })
            })?;
            request = request.outputs(
                CreateJobOutput::builder()
                    .key(output.key.as_str())
                    .preset_id(preset)
                    .build(),
            );
        }
        for (key, value) in metadata::for_job(job) {
            request = request.user_metadata(key, value);
        }
        let sent = request.send().await;
        created_job(
            "Elastic Transcoder",
            sent.map(|r| r.job().and_then(|j| j.id()).map(str::to_owned)),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_elastictranscoder::operation::create_job::{
        CreateJobInput, CreateJobOutput as CreateJobResponse,
    };
    use aws_sdk_elastictranscoder::operation::list_pipelines::ListPipelinesOutput;
    use aws_sdk_elastictranscoder::types::Pipeline;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use transcoder_core::{Env, RawS3Event, StartConfig, start_transcode};
    use transcoder_testkit::{MemorySource, MemoryStore};

    use super::*;

    type Requests = Arc<Mutex<Vec<CreateJobInput>>>;

    /// A client whose CreateJob records each request and answers with job ids `job-1`, `job-2`, ...
    fn recording_client() -> (Client, Requests) {
        recording_client!(aws_sdk_elastictranscoder, CreateJobResponse)
    }

    /// The request for upload `version` of `source` (in the sample events' bucket).
    fn expected(
        source: &str,
        version: &str,
        owner: &str,
        outputs: &[(&str, &str)],
    ) -> CreateJobInput {
        let claim = transcoder_core::Claim {
            bucket: "audio-transcoder-media".into(),
            key: transcoder_core::ObjectKey::new(source).unwrap(),
            version: version.into(),
        };
        let mut request = CreateJobInput::builder()
            .pipeline_id("1111111111111-abcde1")
            .input(JobInput::builder().key(source).build());
        for (key, preset) in outputs {
            request = request.outputs(
                CreateJobOutput::builder()
                    .key(*key)
                    .preset_id(*preset)
                    .build(),
            );
        }
        request
            .user_metadata("owner", metadata::encode(owner))
            .user_metadata("source-key", metadata::encode(source))
            .user_metadata("upload", claim.token())
            .build()
            .unwrap()
    }

    async fn run(
        event: &str,
        env: &impl Env,
    ) -> (Vec<CreateJobInput>, Result<Vec<String>, String>) {
        run_reading(event, env, &MemorySource::audio()).await
    }

    /// As [`run`], the uploads read from `source`.
    async fn run_reading(
        event: &str,
        env: &impl Env,
        source: &MemorySource,
    ) -> (Vec<CreateJobInput>, Result<Vec<String>, String>) {
        let (client, requests) = recording_client();
        let transcoder = ElasticTranscoder::new(client, "1111111111111-abcde1");
        let event: RawS3Event = serde_json::from_str(event).unwrap();
        let result = start_transcode(
            event,
            &StartConfig::from_env(env).unwrap(),
            source,
            &transcoder,
            &MemoryStore::default(),
        )
        .await
        .map(|r| r.started.into_iter().map(|s| s.job_id.0).collect())
        .map_err(|e| e.to_string());
        let mut requests = requests.lock().unwrap().clone();
        requests.sort_by(|a, b| {
            a.input()
                .and_then(|i| i.key())
                .cmp(&b.input().and_then(|i| i.key()))
        });
        (requests, result)
    }

    #[tokio::test]
    async fn a_put_becomes_one_create_job_with_the_three_system_presets() {
        let (requests, result) = run(include_str!("../../../events/s3-put.json"), &[]).await;
        assert_eq!(result, Ok(vec!["job-1".to_owned()]));
        assert_eq!(
            requests,
            [expected(
                "media/alice/song.mp3",
                "0062E99A88DC407460",
                "alice",
                &[
                    ("transcoded/alice/song.mp3.wav", "1351620000001-300300"),
                    ("transcoded/alice/song.mp3.flac", "1351620000001-300110"),
                    ("transcoded/alice/song.mp3.m4a", "1351620000001-100110"),
                ]
            )]
        );
    }

    #[tokio::test]
    async fn an_encoded_key_is_sent_decoded_and_its_metadata_encoded() {
        let (requests, _) = run(include_str!("../../../events/s3-put-encoded-key.json"), &[]).await;
        let source = "media/alice/red flower (live) café C++.mp3";
        assert_eq!(
            requests,
            [expected(
                source,
                "0062E99A88DC407461",
                "alice",
                &[
                    (
                        "transcoded/alice/red flower (live) café C++.mp3.wav",
                        "1351620000001-300300"
                    ),
                    (
                        "transcoded/alice/red flower (live) café C++.mp3.flac",
                        "1351620000001-300110"
                    ),
                    (
                        "transcoded/alice/red flower (live) café C++.mp3.m4a",
                        "1351620000001-100110"
                    ),
                ]
            )]
        );
        assert_eq!(
            requests[0].user_metadata().unwrap()["source-key"],
            "media/alice/red flower %28live%29 caf%C3%A9 C++.mp3"
        );
    }

    #[tokio::test]
    async fn a_multipart_upload_starts_a_job_with_the_configured_outputs() {
        let env = [("OUTPUT_FORMATS", "mp3,flac")];
        let (requests, _) = run(
            include_str!("../../../events/s3-multipart-upload.json"),
            &env,
        )
        .await;
        assert_eq!(
            requests,
            [expected(
                "media/bob/Long Set.MP3",
                "0062E99A88DC407462",
                "bob",
                &[
                    ("transcoded/bob/Long Set.MP3.mp3", "1351620000001-300020"),
                    ("transcoded/bob/Long Set.MP3.flac", "1351620000001-300110"),
                ]
            )]
        );
    }

    #[tokio::test]
    async fn an_uploads_choice_gets_the_system_presets_of_its_bitrates() {
        let source = MemorySource::audio().with_metadata(
            "media/alice/song.mp3",
            &[("outputs", "mp3:128,aac:160,wav")],
        );
        let env = [("TRANSCODER", "elastictranscoder")];
        let (requests, result) =
            run_reading(include_str!("../../../events/s3-put.json"), &env, &source).await;
        assert_eq!(result, Ok(vec!["job-1".to_owned()]));
        assert_eq!(
            requests,
            [expected(
                "media/alice/song.mp3",
                "0062E99A88DC407460",
                "alice",
                &[
                    ("transcoded/alice/song.mp3.mp3", "1351620000001-300040"),
                    ("transcoded/alice/song.mp3.m4a", "1351620000001-100120"),
                    ("transcoded/alice/song.mp3.wav", "1351620000001-300300"),
                ]
            )]
        );
    }

    #[tokio::test]
    async fn a_choice_it_cannot_honour_gets_the_defaults() {
        for metadata in [
            &[("outputs", "opus")][..],
            &[("outputs", "mp3:96")],
            &[("loudness", "podcast")],
        ] {
            let source = MemorySource::audio().with_metadata("media/alice/song.mp3", metadata);
            let env = [("TRANSCODER", "elastictranscoder")];
            let (requests, _) =
                run_reading(include_str!("../../../events/s3-put.json"), &env, &source).await;
            let presets: Vec<_> = requests[0]
                .outputs()
                .iter()
                .map(|o| o.preset_id())
                .collect();
            assert_eq!(
                presets,
                [
                    Some("1351620000001-300300"),
                    Some("1351620000001-300110"),
                    Some("1351620000001-100110")
                ],
                "{metadata:?}"
            );
        }
    }

    #[test]
    fn a_preset_exists_for_exactly_what_core_says_elastic_transcoder_honours() {
        use transcoder_core::{Backend, OutputChoice};
        for format in OutputFormat::ALL {
            let kbps: Vec<Option<u32>> = match format.bitrates() {
                None => vec![None],
                Some((range, _)) => range.map(Some).collect(),
            };
            for kbps in kbps {
                let choice = OutputChoice::new(format, kbps).unwrap();
                assert_eq!(
                    system_preset(format, choice.bitrate()).is_some(),
                    Backend::ElasticTranscoder.writes(choice).is_ok(),
                    "{choice}"
                );
            }
        }
    }

    #[tokio::test]
    async fn several_records_start_one_job_each_and_skip_the_rest() {
        let (requests, result) =
            run(include_str!("../../../events/s3-several-records.json"), &[]).await;
        assert_eq!(result.map(|ids| ids.len()), Ok(3));
        let sources: Vec<_> = requests
            .iter()
            .map(|r| r.input().unwrap().key().unwrap())
            .collect();
        assert_eq!(
            sources,
            [
                "media/alice/one.mp3",
                "media/bob/two.flac",
                "media/loose file.mp3"
            ]
        );
        assert_eq!(requests[2].user_metadata().unwrap()["owner"], "_unassigned");
        assert_eq!(
            requests[2].outputs()[0].key(),
            Some("transcoded/_unassigned/loose file.mp3.wav")
        );
    }

    #[tokio::test]
    async fn skipped_keys_send_nothing() {
        for event in [
            include_str!("../../../events/s3-output-prefix.json"),
            include_str!("../../../events/s3-not-audio.json"),
        ] {
            let (requests, result) = run(event, &[]).await;
            assert!(requests.is_empty());
            assert_eq!(result, Ok(vec![]));
        }
    }

    #[tokio::test]
    async fn a_refused_create_job_is_an_error_that_names_the_file() {
        let rule = mock!(Client::create_job).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                aws_smithy_types::body::SdkBody::from(
                    r#"{"message":"Pipeline 1111111111111-abcde1 is paused."}"#,
                ),
            )
        });
        let client = mock_client!(aws_sdk_elastictranscoder, RuleMode::MatchAny, [&rule]);
        let transcoder = ElasticTranscoder::new(client, "1111111111111-abcde1");
        crate::errors::refused_start(&transcoder, "Elastic Transcoder").await;
        assert_eq!(rule.num_calls(), 1);
    }

    fn pipeline(id: &str, name: &str) -> Pipeline {
        Pipeline::builder().id(id).name(name).build()
    }

    #[tokio::test]
    async fn a_pipeline_is_found_by_name_across_pages() {
        let first = mock!(Client::list_pipelines)
            .match_requests(|r| r.page_token().is_none())
            .then_output(|| {
                ListPipelinesOutput::builder()
                    .pipelines(pipeline("1-aaaaaa", "other"))
                    .next_page_token("page-2")
                    .build()
            });
        let second = mock!(Client::list_pipelines)
            .match_requests(|r| r.page_token() == Some("page-2"))
            .then_output(|| {
                ListPipelinesOutput::builder()
                    .pipelines(pipeline("2-bbbbbb", "audio"))
                    .build()
            });
        let client = mock_client!(
            aws_sdk_elastictranscoder,
            RuleMode::MatchAny,
            [&first, &second]
        );
        assert_eq!(
            ElasticTranscoder::find_pipeline(&client, "audio")
                .await
                .unwrap(),
            "2-bbbbbb"
        );
        assert!(matches!(
            ElasticTranscoder::find_pipeline(&client, "missing").await,
            Err(SetupError::PipelineNotFound(name)) if name == "missing"
        ));
    }

    #[tokio::test]
    async fn two_pipelines_with_one_name_are_refused() {
        let rule = mock!(Client::list_pipelines).then_output(|| {
            ListPipelinesOutput::builder()
                .pipelines(pipeline("1-aaaaaa", "audio"))
                .pipelines(pipeline("2-bbbbbb", "audio"))
                .build()
        });
        let client = mock_client!(aws_sdk_elastictranscoder, [&rule]);
        assert!(matches!(
            ElasticTranscoder::find_pipeline(&client, "audio").await,
            Err(SetupError::AmbiguousPipeline(_))
        ));
    }
}
