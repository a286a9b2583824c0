//! Configuration of the messages API, read once at start-up.

use transcoder_core::StartConfig;
use transcoder_core::config::{ConfigError, Env, prefix};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// The bucket that download and upload links point into (`BUCKET_NAME`).
    pub bucket: String,
    /// Uploads are written to `{INPUT_PREFIX}{caller}/{file}`.
    pub input_prefix: String,
}

impl ApiConfig {
    /// Every variable [`ApiConfig::from_env`] reads.
    pub const VARIABLES: &[&str] = &["BUCKET_NAME", "INPUT_PREFIX"];

    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let bucket = env
            .get("BUCKET_NAME")
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty())
            .ok_or(ConfigError::Missing {
                name: "BUCKET_NAME",
            })?;
        let input = env.get_or("INPUT_PREFIX", StartConfig::DEFAULT_INPUT_PREFIX);
        Ok(Self {
            bucket,
            input_prefix: prefix("INPUT_PREFIX", &input)?,
        })
    }
}
