//! What the worker is told by its environment, read once per cold start.

use std::time::Duration;

use transcoder_core::{ConfigError, Env, Prefixes, StartConfig};

/// Everything `transcode-audio` decides by configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Where announcements go (`TOPIC_ARN`): the topic `record-completion` takes them from.
    pub topic_arn: String,
    /// Where jobs may read (`INPUT_PREFIX`) and write (`OUTPUT_PREFIX`); a job naming a key
    /// outside them is refused, whatever IAM would allow.
    pub prefixes: Prefixes,
    /// The longest audio transcoded (`MAX_DURATION_SECONDS`): a longer file ends `failed`, with a
    /// reason that names the limit, before anything is encoded.
    pub max_duration: Duration,
    /// The jobs queue's `maxReceiveCount` (`MAX_RECEIVES`): on that receive, an error that would
    /// otherwise be retried ends the job `failed`, so only a crash reaches the dead-letter queue.
    pub max_receives: u32,
    /// The dead-letter queue (`DEAD_LETTER_QUEUE_ARN`): a job delivered from it never finished,
    /// and its owner is told so.
    pub dead_letter_queue_arn: Option<String>,
}

impl WorkerConfig {
    /// The longest audio by default: see docs/benchmarks.md for the worker's measured speed.
    pub const DEFAULT_MAX_DURATION_SECONDS: u64 = 2 * 3600;
    pub const DEFAULT_MAX_RECEIVES: u32 = 3;
    /// Every variable [`WorkerConfig::from_env`] reads, and `FFMPEG` (the program to run,
    /// default `ffmpeg` on `PATH`: the layer's `/opt/bin/ffmpeg` on Lambda).
    pub const VARIABLES: &[&str] = &[
        "TOPIC_ARN",
        "INPUT_PREFIX",
        "OUTPUT_PREFIX",
        "MAX_DURATION_SECONDS",
        "MAX_RECEIVES",
        "DEAD_LETTER_QUEUE_ARN",
        "FFMPEG",
    ];

    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let topic_arn =
            arn(env, "TOPIC_ARN", ":sns:")?.ok_or(ConfigError::Missing { name: "TOPIC_ARN" })?;
        let prefixes = Prefixes::new(
            &env.get_or("INPUT_PREFIX", StartConfig::DEFAULT_INPUT_PREFIX),
            &env.get_or("OUTPUT_PREFIX", StartConfig::DEFAULT_OUTPUT_PREFIX),
        )?;
        let seconds = env.parse("MAX_DURATION_SECONDS", Self::DEFAULT_MAX_DURATION_SECONDS)?;
        if seconds == 0 {
            return Err(ConfigError::invalid(
                "MAX_DURATION_SECONDS",
                "0",
                "allow at least one second of audio",
            ));
        }
        let max_receives = env.parse("MAX_RECEIVES", Self::DEFAULT_MAX_RECEIVES)?;
        if !(1..=1000).contains(&max_receives) {
            return Err(ConfigError::invalid(
                "MAX_RECEIVES",
                &max_receives.to_string(),
                "use the jobs queue's maxReceiveCount, 1 to 1000",
            ));
        }
        Ok(Self {
            topic_arn,
            prefixes,
            max_duration: Duration::from_secs(seconds),
            max_receives,
            dead_letter_queue_arn: arn(env, "DEAD_LETTER_QUEUE_ARN", ":sqs:")?,
        })
    }
}

/// The ARN in variable `name`, if set, which must name a resource of `service` (`:sns:`).
fn arn(env: &impl Env, name: &'static str, service: &str) -> Result<Option<String>, ConfigError> {
    let Some(value) = env.get(name) else {
        return Ok(None);
    };
    let value = value.trim();
    if value.starts_with("arn:") && value.contains(service) {
        Ok(Some(value.to_owned()))
    } else {
        Err(ConfigError::invalid(
            name,
            value,
            format!("not an ARN of the form arn:aws{service}..."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:completions";

    #[test]
    fn defaults_need_only_the_topic() {
        let config = WorkerConfig::from_env(&[("TOPIC_ARN", TOPIC)]).unwrap();
        assert_eq!(config.topic_arn, TOPIC);
        assert_eq!(config.prefixes.input(), "media/");
        assert_eq!(config.prefixes.output(), "transcoded/");
        assert_eq!(config.max_duration, Duration::from_secs(7200));
        assert_eq!(config.max_receives, 3);
        assert_eq!(config.dead_letter_queue_arn, None);
    }

    #[test]
    fn each_bad_value_is_refused_by_name() {
        let err = WorkerConfig::from_env(&[]).unwrap_err();
        assert_eq!(err.to_string(), "TOPIC_ARN is required");
        for (name, value) in [
            ("TOPIC_ARN", "completions"),
            ("MAX_DURATION_SECONDS", "0"),
            ("MAX_DURATION_SECONDS", "an hour"),
            ("MAX_RECEIVES", "0"),
            ("DEAD_LETTER_QUEUE_ARN", "arn:aws:sns:eu-west-1:1:x"),
            ("OUTPUT_PREFIX", "media/"),
        ] {
            let env = [(name, value), ("TOPIC_ARN", TOPIC)];
            let err = WorkerConfig::from_env(&env).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={value}: {err}");
        }
    }
}
