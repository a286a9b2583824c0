//! The transcoding service chosen by `TRANSCODER`, built once per cold start.

use aws_config::SdkConfig;
use aws_config::retry::{RetryConfig, RetryMode};
use transcoder_core::{ConfigError, Env, JobId, TranscodeJob, Transcoder, TranscoderError};

use crate::elastic_transcoder::ElasticTranscoder;
use crate::errors::SetupError;
use crate::jobs_queue::JobsQueue;
use crate::mediaconvert::{self, MediaConvert};

/// A cloud transcoding backend.
#[derive(Debug, Clone)]
pub enum CloudTranscoder {
    /// Our own `transcode-audio` function, fed by the jobs queue: template.yaml's default.
    Lambda(JobsQueue),
    ElasticTranscoder(ElasticTranscoder),
    MediaConvert(MediaConvert),
}

impl CloudTranscoder {
    /// Every variable [`CloudTranscoder::from_env`] reads.
    pub const VARIABLES: &[&str] = &[
        "TRANSCODER",
        "PIPELINE_ID",
        "PIPELINE_NAME",
        "MEDIACONVERT_ROLE_ARN",
        "MEDIACONVERT_QUEUE_ARN",
        "JOB_TAG",
        "JOBS_QUEUE_URL",
        "AWS_RETRY_MODE",
    ];

    /// Builds the backend named by `TRANSCODER` (default `lambda`, as in template.yaml: our own
    /// worker, fed by a queue; Elastic Transcoder was discontinued on 13 Nov 2025).
    pub async fn from_env(sdk: &SdkConfig, env: &impl Env) -> Result<Self, SetupError> {
        let sdk = &with_adaptive_retry(sdk, env);
        let backend = env.get_or("TRANSCODER", "lambda");
        match backend.trim().to_ascii_lowercase().as_str() {
            "lambda" => {
                let url = env.get("JOBS_QUEUE_URL").ok_or(SetupError::NoJobsQueue)?;
                let url = url.trim();
                if !url.starts_with("https://") && !url.starts_with("http://") {
                    return Err(ConfigError::invalid(
                        "JOBS_QUEUE_URL",
                        url,
                        "not a queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/jobs",
                    )
                    .into());
                }
                Ok(Self::Lambda(JobsQueue::new(
                    aws_sdk_sqs::Client::new(sdk),
                    url,
                )))
            }
            "elastictranscoder" => {
                let client = aws_sdk_elastictranscoder::Client::new(sdk);
                let pipeline_id = match (env.get("PIPELINE_ID"), env.get("PIPELINE_NAME")) {
                    (Some(id), _) => id,
                    (None, Some(name)) => ElasticTranscoder::find_pipeline(&client, &name).await?,
                    (None, None) => return Err(SetupError::NoPipeline),
                };
                Ok(Self::ElasticTranscoder(ElasticTranscoder::new(
                    client,
                    pipeline_id,
                )))
            }
            "mediaconvert" => {
                let role_arn = env
                    .get("MEDIACONVERT_ROLE_ARN")
                    .ok_or(SetupError::NoMediaConvertRole)?;
                let role_arn = arn("MEDIACONVERT_ROLE_ARN", &role_arn, ":iam::", ":role/")?;
                let queue_arn = env
                    .get("MEDIACONVERT_QUEUE_ARN")
                    .map(|queue| {
                        arn(
                            "MEDIACONVERT_QUEUE_ARN",
                            &queue,
                            ":mediaconvert:",
                            ":queues/",
                        )
                    })
                    .transpose()?;
                let job_tag = env.get_or("JOB_TAG", mediaconvert::DEFAULT_JOB_TAG);
                let job_tag = job_tag.trim();
                if job_tag.is_empty() || job_tag.chars().count() > 128 {
                    return Err(ConfigError::invalid(
                        "JOB_TAG",
                        job_tag,
                        "use 1 to 128 characters, such as the stack name",
                    )
                    .into());
                }
                Ok(Self::MediaConvert(MediaConvert::new(
                    aws_sdk_mediaconvert::Client::new(sdk),
                    role_arn,
                    queue_arn,
                    job_tag,
                )))
            }
            _ => Err(SetupError::UnknownBackend(backend)),
        }
    }
}

#[cfg(test)]
impl CloudTranscoder {
    /// The retry mode of this backend's client.
    fn retry_mode(&self) -> Option<RetryMode> {
        let retry = match self {
            Self::Lambda(queue) => queue.client().config().retry_config().cloned(),
            Self::ElasticTranscoder(et) => et.client().config().retry_config().cloned(),
            Self::MediaConvert(mc) => mc.client().config().retry_config().cloned(),
        };
        retry.map(|r| r.mode())
    }
}

impl Transcoder for CloudTranscoder {
    async fn start_job(&self, job: &TranscodeJob) -> Result<JobId, TranscoderError> {
        match self {
            Self::Lambda(queue) => queue.start_job(job).await,
            Self::ElasticTranscoder(et) => et.start_job(job).await,
            Self::MediaConvert(mc) => mc.start_job(job).await,
        }
    }
}

/// `sdk` for the transcoder's requests: the SDK's adaptive retry mode, unless `AWS_RETRY_MODE`
/// names one. Once throttled, adaptive mode also paces the client's own requests at the rate the
/// service answers, so a burst waits in the client instead of going back to the intake queue.
/// With the standard mode, at the stack's visibility timeout, each throttled message came back
/// 185 s later with all the others (`make bench SECTION=burst`, docs/benchmarks.md).
fn with_adaptive_retry(sdk: &SdkConfig, env: &impl Env) -> SdkConfig {
    if env.get("AWS_RETRY_MODE").is_some() {
        return sdk.clone();
    }
    // Keeps what else was configured, such as AWS_MAX_ATTEMPTS.
    let retry = sdk
        .retry_config()
        .cloned()
        .unwrap_or_else(RetryConfig::standard)
        .with_retry_mode(RetryMode::Adaptive);
    sdk.to_builder().retry_config(retry).build()
}

/// Checks that `value` of variable `name` is an ARN of the kind that contains `service` and
/// `resource` (`:iam::` and `:role/` for a role).
fn arn(
    name: &'static str,
    value: &str,
    service: &str,
    resource: &str,
) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.starts_with("arn:") && value.contains(service) && value.contains(resource) {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::invalid(
            name,
            value,
            format!("not an ARN of the form arn:aws{service}...{resource}..."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use aws_config::BehaviorVersion;

    use super::*;

    async fn backend(env: &impl Env) -> Result<CloudTranscoder, SetupError> {
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build();
        CloudTranscoder::from_env(&sdk, env).await
    }

    const ROLE: &str = "arn:aws:iam::123456789012:role/MediaConvertRole";

    /// `env` and one more variable.
    struct Also<'a, E>((&'a str, &'a str), &'a E);

    impl<E: Env> Env for Also<'_, E> {
        fn get(&self, name: &str) -> Option<String> {
            let ((extra, value), env) = (self.0, self.1);
            if name == extra {
                Some(value.to_owned())
            } else {
                env.get(name)
            }
        }
    }

    /// The retry mode of the backend `env` names: by itself, and with `AWS_RETRY_MODE=standard`
    /// (then the SDK has read the variable already, and its configuration stays as it is).
    async fn retry_modes(env: &impl Env) -> (Option<RetryMode>, Option<RetryMode>) {
        let by_itself = backend(env).await.unwrap().retry_mode();
        let standard = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard())
            .build();
        let told = Also(("AWS_RETRY_MODE", "standard"), env);
        let told = CloudTranscoder::from_env(&standard, &told).await.unwrap();
        (by_itself, told.retry_mode())
    }

    #[tokio::test]
    async fn every_backend_retries_adaptively_unless_aws_retry_mode_says_otherwise() {
        let expected = (Some(RetryMode::Adaptive), Some(RetryMode::Standard));
        let queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs";
        let lambda = [("TRANSCODER", "lambda"), ("JOBS_QUEUE_URL", queue)];
        assert_eq!(retry_modes(&lambda).await, expected);
        let et = [
            ("TRANSCODER", "elastictranscoder"),
            ("PIPELINE_ID", "1111111111111-abcde1"),
        ];
        assert_eq!(retry_modes(&et).await, expected);
        let mc = [
            ("TRANSCODER", "mediaconvert"),
            ("MEDIACONVERT_ROLE_ARN", ROLE),
        ];
        assert_eq!(retry_modes(&mc).await, expected);
    }

    #[test]
    fn adaptive_retry_keeps_the_other_retry_settings() {
        let sdk = SdkConfig::builder()
            .retry_config(RetryConfig::standard().with_max_attempts(5))
            .build();
        let retry = with_adaptive_retry(&sdk, &[("TRANSCODER", "lambda")])
            .retry_config()
            .cloned()
            .unwrap();
        assert_eq!(
            (retry.mode(), retry.max_attempts()),
            (RetryMode::Adaptive, 5)
        );
    }

    #[tokio::test]
    async fn mediaconvert_takes_its_role_queue_and_tag_from_the_environment() {
        let Ok(CloudTranscoder::MediaConvert(mc)) = backend(&[
            ("TRANSCODER", " MediaConvert "),
            ("MEDIACONVERT_ROLE_ARN", ROLE),
            (
                "MEDIACONVERT_QUEUE_ARN",
                "arn:aws:mediaconvert:eu-west-1:123456789012:queues/audio",
            ),
            ("JOB_TAG", "my-stack"),
        ])
        .await
        else {
            panic!("expected the MediaConvert backend");
        };
        assert_eq!(mc.role_arn(), ROLE);
        assert_eq!(
            mc.queue_arn(),
            Some("arn:aws:mediaconvert:eu-west-1:123456789012:queues/audio")
        );
        assert_eq!(mc.job_tag(), "my-stack");

        let Ok(CloudTranscoder::MediaConvert(mc)) = backend(&[
            ("TRANSCODER", "mediaconvert"),
            ("MEDIACONVERT_ROLE_ARN", ROLE),
        ])
        .await
        else {
            panic!("expected the MediaConvert backend");
        };
        assert_eq!((mc.queue_arn(), mc.job_tag()), (None, "audio-transcoder"));
    }

    #[tokio::test]
    async fn mediaconvert_without_a_usable_role_or_queue_is_refused() {
        let err = backend(&[("TRANSCODER", "mediaconvert")])
            .await
            .unwrap_err();
        assert!(matches!(err, SetupError::NoMediaConvertRole));
        assert!(err.to_string().contains("MEDIACONVERT_ROLE_ARN"), "{err}");

        for (name, value) in [
            ("MEDIACONVERT_ROLE_ARN", "MediaConvertRole"),
            ("MEDIACONVERT_ROLE_ARN", "arn:aws:s3:::bucket"),
            ("MEDIACONVERT_QUEUE_ARN", "Default"),
            ("JOB_TAG", &"x".repeat(129)),
        ] {
            // The first value of a name wins: the case overrides the valid role.
            let env = [
                (name, value),
                ("TRANSCODER", "mediaconvert"),
                ("MEDIACONVERT_ROLE_ARN", ROLE),
            ];
            let err = backend(&env).await.unwrap_err();
            assert!(err.to_string().starts_with(name), "{name}={value}: {err}");
        }
    }

    #[tokio::test]
    async fn lambda_is_the_default_as_in_the_template() {
        let queue = (
            "JOBS_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/jobs",
        );
        let chosen = backend(&[("MEDIACONVERT_ROLE_ARN", ROLE), queue]).await;
        assert!(matches!(chosen, Ok(CloudTranscoder::Lambda(_))));
        let err = backend(&[("MEDIACONVERT_ROLE_ARN", ROLE)])
            .await
            .unwrap_err();
        assert!(matches!(err, SetupError::NoJobsQueue), "{err}");
    }

    #[tokio::test]
    async fn lambda_sends_to_the_jobs_queue_it_is_given() {
        const QUEUE: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs";
        let Ok(CloudTranscoder::Lambda(queue)) =
            backend(&[("TRANSCODER", "Lambda"), ("JOBS_QUEUE_URL", QUEUE)]).await
        else {
            panic!("expected the lambda backend");
        };
        assert_eq!(queue.queue_url(), QUEUE);
        let err = backend(&[("TRANSCODER", "lambda")]).await.unwrap_err();
        assert!(matches!(err, SetupError::NoJobsQueue), "{err}");
        let err = backend(&[("TRANSCODER", "lambda"), ("JOBS_QUEUE_URL", "jobs")])
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("JOBS_QUEUE_URL='jobs'"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unknown_backend_names_the_known_ones() {
        let err = backend(&[("TRANSCODER", "handbrake")]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "TRANSCODER='handbrake' is not a known backend (known: lambda, mediaconvert, elastictranscoder)"
        );
    }
}
