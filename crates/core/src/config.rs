//! Configuration of the starter, read from the environment once at start-up and checked there.

use std::time::Duration;

use crate::choice::{Backend, Outputs};
use crate::env::{ConfigError, Env};
use crate::ids::Owner;
use crate::key::ObjectKey;

/// The input and output prefixes of the bucket. Neither contains the other, so nothing the
/// pipeline writes can ever be taken for an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefixes {
    input: String,
    output: String,
}

/// Where a key sits in the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location<'k> {
    /// Below the input prefix: `owner` is the first folder, if the file is in one, and `path` the
    /// rest (`song.mp3` for `media/alice/song.mp3`).
    Input {
        owner: Option<&'k str>,
        path: &'k str,
    },
    /// Below the output prefix: something the pipeline wrote.
    Output,
    /// Anywhere else.
    Outside,
}

impl Prefixes {
    /// Checks the prefixes. A missing trailing `/` is added, so `media` means the folder `media/`.
    pub fn new(input: &str, output: &str) -> Result<Self, ConfigError> {
        let input = prefix("INPUT_PREFIX", input)?;
        let output = prefix("OUTPUT_PREFIX", output)?;
        if input.starts_with(&output) || output.starts_with(&input) {
            return Err(ConfigError::OverlappingPrefixes { input, output });
        }
        Ok(Self { input, output })
    }

    pub fn input(&self) -> &str {
        &self.input
    }

    pub fn output(&self) -> &str {
        &self.output
    }

    pub fn locate<'k>(&self, key: &'k ObjectKey) -> Location<'k> {
        let key = key.as_str();
        if key.starts_with(&self.output) {
            Location::Output
        } else if let Some(rest) = key.strip_prefix(&self.input) {
            match rest.split_once('/') {
                Some((owner, path)) => Location::Input {
                    owner: Some(owner),
                    path,
                },
                None => Location::Input {
                    owner: None,
                    path: rest,
                },
            }
        } else {
            Location::Outside
        }
    }
}

/// Checks a key prefix read from variable `name`; a missing trailing `/` is added.
pub fn prefix(name: &'static str, value: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed == "/" {
        return Err(ConfigError::invalid(
            name,
            value,
            "a prefix must name a folder, such as 'media/'",
        ));
    }
    if trimmed.starts_with('/') {
        return Err(ConfigError::invalid(
            name,
            value,
            "S3 keys do not start with '/'",
        ));
    }
    Ok(if trimmed.ends_with('/') {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/")
    })
}

/// Everything `start-transcode` decides by configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartConfig {
    pub prefixes: Prefixes,
    /// The outputs of a job whose upload chose none (`OUTPUTS`, as `mp3:128,opus:96`; the
    /// older `OUTPUT_FORMATS` when it is unset).
    pub outputs: Outputs,
    /// Who transcodes (`TRANSCODER`): what an upload's choice may ask for, and `OUTPUTS` too.
    pub backend: Backend,
    /// Who owns a file dropped straight under the input prefix, outside any user's folder.
    pub default_owner: Owner,
    /// How many jobs one invocation submits at once.
    pub max_concurrent_jobs: usize,
    /// The intake queue's dead-letter queue (`INTAKE_DEAD_LETTER_QUEUE_ARN`), also an event
    /// source: an upload whose message comes from it could not be started, and its owner is told.
    pub dead_letter_queue_arn: Option<String>,
    /// The intake queue's `maxReceiveCount` (`INTAKE_MAX_RECEIVES`): on that receive, an upload
    /// that still cannot be started ends `failed` with the last error, before its message goes
    /// to the dead-letter queue.
    pub intake_max_receives: Option<u32>,
    /// The least time between two jobs one instance starts: its share of the jobs the
    /// transcoder accepts a second (`JOBS_PER_SECOND`) among the instances that run at once
    /// (`START_MAX_CONCURRENCY`). `None`: as fast as the jobs come.
    pub job_interval: Option<Duration>,
}

impl StartConfig {
    pub const DEFAULT_INPUT_PREFIX: &str = "media/";
    pub const DEFAULT_OUTPUT_PREFIX: &str = "transcoded/";
    pub const DEFAULT_OWNER: &str = "_unassigned";
    pub const DEFAULT_MAX_CONCURRENT_JOBS: usize = 16;
    /// Every variable [`StartConfig::from_env`] reads.
    pub const VARIABLES: &[&str] = &[
        "INPUT_PREFIX",
        "OUTPUT_PREFIX",
        "OUTPUTS",
        "OUTPUT_FORMATS",
        "TRANSCODER",
        "DEFAULT_OWNER",
        "MAX_CONCURRENT_JOBS",
        "INTAKE_DEAD_LETTER_QUEUE_ARN",
        "INTAKE_MAX_RECEIVES",
        "JOBS_PER_SECOND",
        "START_MAX_CONCURRENCY",
    ];
    /// The longest a job waits for its turn under `JOBS_PER_SECOND` before it is given back to
    /// the queue: well within the function's 30 s.
    pub const LONGEST_TURN_WAIT: Duration = Duration::from_secs(10);

    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let dead_letter_queue_arn = env
            .get("INTAKE_DEAD_LETTER_QUEUE_ARN")
            .filter(|arn| !arn.is_empty());
        if let Some(arn) = dead_letter_queue_arn.as_deref()
            && !(arn.starts_with("arn:") && arn.contains(":sqs:"))
        {
            return Err(ConfigError::invalid(
                "INTAKE_DEAD_LETTER_QUEUE_ARN",
                arn,
                "must be an SQS queue's ARN (arn:aws:sqs:…)",
            ));
        }
        let prefixes = Prefixes::new(
            &env.get_or("INPUT_PREFIX", Self::DEFAULT_INPUT_PREFIX),
            &env.get_or("OUTPUT_PREFIX", Self::DEFAULT_OUTPUT_PREFIX),
        )?;
        let backend = Backend::from_env(env)?;
        let outputs = default_outputs(env, backend)?;
        let owner = env.get_or("DEFAULT_OWNER", Self::DEFAULT_OWNER);
        let default_owner = Owner::new(owner.trim())
            .map_err(|e| ConfigError::invalid("DEFAULT_OWNER", &owner, e))?;
        let max_concurrent_jobs =
            env.parse("MAX_CONCURRENT_JOBS", Self::DEFAULT_MAX_CONCURRENT_JOBS)?;
        if !(1..=100).contains(&max_concurrent_jobs) {
            return Err(ConfigError::invalid(
                "MAX_CONCURRENT_JOBS",
                &max_concurrent_jobs.to_string(),
                "must be between 1 and 100",
            ));
        }
        let intake_max_receives = match env.get("INTAKE_MAX_RECEIVES") {
            None => None,
            Some(n) => Some(
                n.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            "INTAKE_MAX_RECEIVES",
                            &n,
                            "must be between 1 and 1000",
                        )
                    })?,
            ),
        };
        // 0, as the template's default has it, is no pace.
        let job_interval = match env.get("JOBS_PER_SECOND").filter(|r| r.trim() != "0") {
            None => None,
            Some(rate) => {
                let per_second = rate
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite() && (0.01..=10_000.0).contains(r))
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            "JOBS_PER_SECOND",
                            &rate,
                            "must be 0 (no pace) or between 0.01 and 10000",
                        )
                    })?;
                let instances: u32 = env.parse("START_MAX_CONCURRENCY", 1)?;
                if !(1..=1000).contains(&instances) {
                    return Err(ConfigError::invalid(
                        "START_MAX_CONCURRENCY",
                        &instances.to_string(),
                        "must be between 1 and 1000",
                    ));
                }
                Some(Duration::from_secs_f64(f64::from(instances) / per_second))
            }
        };
        Ok(Self {
            prefixes,
            outputs,
            backend,
            default_owner,
            max_concurrent_jobs,
            dead_letter_queue_arn,
            intake_max_receives,
            job_interval,
        })
    }
}

/// `OUTPUTS` (or the older `OUTPUT_FORMATS`), default WAV, FLAC and AAC; refused at start-up if
/// the backend cannot write it, so that no upload is ever planned a job it cannot run.
fn default_outputs(env: &impl Env, backend: Backend) -> Result<Outputs, ConfigError> {
    let Some((name, list)) = ["OUTPUTS", "OUTPUT_FORMATS"]
        .into_iter()
        .find_map(|name| Some((name, env.get(name)?)))
    else {
        return Ok(Outputs::default_set());
    };
    let outputs: Outputs = list
        .parse()
        .map_err(|e| ConfigError::invalid(name, &list, e))?;
    backend
        .honours(&outputs, None)
        .map_err(|e| ConfigError::invalid(name, &list, e))?;
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> ObjectKey {
        ObjectKey::new(k).unwrap()
    }

    #[test]
    fn defaults() {
        let config = StartConfig::from_env(&[]).unwrap();
        assert_eq!(config.prefixes.input(), "media/");
        assert_eq!(config.prefixes.output(), "transcoded/");
        assert_eq!(config.outputs, Outputs::default_set());
        assert_eq!(config.backend, Backend::Lambda);
        assert_eq!(config.default_owner.as_str(), "_unassigned");
        assert_eq!(config.max_concurrent_jobs, 16);
    }

    #[test]
    fn the_intake_dead_letter_queue_is_an_sqs_arn_or_nothing() {
        let arn = "arn:aws:sqs:eu-west-1:123456789012:intake-dead-letters";
        let config = StartConfig::from_env(&[("INTAKE_DEAD_LETTER_QUEUE_ARN", arn)]).unwrap();
        assert_eq!(config.dead_letter_queue_arn.as_deref(), Some(arn));
        assert_eq!(
            StartConfig::from_env(&[]).unwrap().dead_letter_queue_arn,
            None
        );
        let err = StartConfig::from_env(&[("INTAKE_DEAD_LETTER_QUEUE_ARN", "intake-dead-letters")])
            .unwrap_err();
        assert!(
            err.to_string().contains("INTAKE_DEAD_LETTER_QUEUE_ARN"),
            "{err}"
        );
    }

    #[test]
    fn values_from_the_environment() {
        let config = StartConfig::from_env(&[
            ("INPUT_PREFIX", "uploads"),
            ("OUTPUT_PREFIX", "out/"),
            ("OUTPUT_FORMATS", "flac, mp3"),
            ("DEFAULT_OWNER", "admin"),
            ("MAX_CONCURRENT_JOBS", "4"),
        ])
        .unwrap();
        assert_eq!(config.prefixes.input(), "uploads/");
        assert_eq!(config.prefixes.output(), "out/");
        assert_eq!(config.outputs.to_string(), "flac,mp3");
        assert_eq!(config.default_owner.as_str(), "admin");
        assert_eq!(config.max_concurrent_jobs, 4);
        assert_eq!(config.job_interval, None);
    }

    #[test]
    fn the_default_outputs_take_bitrates_and_must_suit_the_backend() {
        let config = StartConfig::from_env(&[("OUTPUTS", "mp3:128, opus:96")]).unwrap();
        assert_eq!(config.outputs.to_string(), "mp3:128,opus:96");
        let newer = StartConfig::from_env(&[("OUTPUTS", "wav"), ("OUTPUT_FORMATS", "flac")]);
        assert_eq!(newer.unwrap().outputs.to_string(), "wav");
        let err =
            StartConfig::from_env(&[("TRANSCODER", "elastictranscoder"), ("OUTPUTS", "wav,opus")])
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "OUTPUTS='wav,opus' is invalid: this deployment transcodes with Elastic Transcoder \
             (TRANSCODER=elastictranscoder), which has no system preset for Opus"
        );
    }

    #[test]
    fn the_transcoders_rate_is_shared_among_the_instances() {
        let config =
            StartConfig::from_env(&[("JOBS_PER_SECOND", "10"), ("START_MAX_CONCURRENCY", "5")])
                .unwrap();
        assert_eq!(config.job_interval, Some(Duration::from_millis(500)));
        let alone = StartConfig::from_env(&[("JOBS_PER_SECOND", "4")]).unwrap();
        assert_eq!(alone.job_interval, Some(Duration::from_millis(250)));
        let unpaced = StartConfig::from_env(&[("JOBS_PER_SECOND", "0")]).unwrap();
        assert_eq!(unpaced.job_interval, None);
    }

    #[test]
    fn prefixes_that_contain_each_other_are_refused() {
        for (input, output) in [
            ("media/", "media/transcoded/"),
            ("media/out/", "media/"),
            ("media/", "media/"),
            ("media", "media/"),
        ] {
            let err = StartConfig::from_env(&[("INPUT_PREFIX", input), ("OUTPUT_PREFIX", output)])
                .unwrap_err();
            assert!(
                matches!(err, ConfigError::OverlappingPrefixes { .. }),
                "{input} {output}: {err}"
            );
            assert!(err.to_string().contains("overlap"));
        }
        // Sharing a leading string is fine once each is a folder.
        assert!(Prefixes::new("media", "media-out").is_ok());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: [(&str, &str); 14] = [
            ("INPUT_PREFIX", ""),
            ("INPUT_PREFIX", "/media/"),
            ("OUTPUT_FORMATS", "wav,ogg"),
            ("OUTPUT_FORMATS", "wav,WAV"),
            ("OUTPUT_FORMATS", " , "),
            ("OUTPUTS", "mp3:1000"),
            ("OUTPUTS", "flac:128"),
            ("TRANSCODER", "handbrake"),
            ("MAX_CONCURRENT_JOBS", "0"),
            ("MAX_CONCURRENT_JOBS", "many"),
            ("INTAKE_MAX_RECEIVES", "0"),
            ("INTAKE_MAX_RECEIVES", "-1"),
            ("JOBS_PER_SECOND", "-1"),
            ("JOBS_PER_SECOND", "fast"),
        ];
        for (name, value) in cases {
            // An empty value counts as unset in the process environment; here it is explicit.
            let err = StartConfig::from_env(&[(name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(name), "{name}={value}: {err}");
        }
        let err = StartConfig::from_env(&[("DEFAULT_OWNER", "a/b")]).unwrap_err();
        assert!(err.to_string().contains("DEFAULT_OWNER"), "{err}");
    }

    #[test]
    fn keys_are_located() {
        let p = Prefixes::new("media/", "transcoded/").unwrap();
        assert_eq!(
            p.locate(&key("media/alice/song.mp3")),
            Location::Input {
                owner: Some("alice"),
                path: "song.mp3"
            }
        );
        assert_eq!(
            p.locate(&key("media/alice/live/song.mp3")),
            Location::Input {
                owner: Some("alice"),
                path: "live/song.mp3"
            }
        );
        assert_eq!(
            p.locate(&key("media/song.mp3")),
            Location::Input {
                owner: None,
                path: "song.mp3"
            }
        );
        assert_eq!(
            p.locate(&key("transcoded/alice/song.wav")),
            Location::Output
        );
        assert_eq!(p.locate(&key("mediafile.mp3")), Location::Outside);
        assert_eq!(
            p.locate(&key("other/media/alice/song.mp3")),
            Location::Outside
        );
    }
}
