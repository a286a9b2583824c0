//! Configuration of the messages API, read once at start-up.

use transcoder_core::{Backend, ConfigError, Env, StartConfig, prefix};

/// The default upload limit, 500 MiB: hours of MP3, an album as FLAC, a long talk as WAV.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 500 * 1024 * 1024;
/// The largest object one S3 PUT may write (5 GiB); a larger limit could never be honoured.
pub const S3_MAX_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// The bucket that download and upload links point into (`BUCKET_NAME`).
    pub bucket: String,
    /// Uploads are written to `{INPUT_PREFIX}{caller}/{file}`.
    pub input_prefix: String,
    /// The largest file an upload link is signed for (`MAX_UPLOAD_BYTES`).
    pub max_upload_bytes: u64,
    /// Who transcodes (`TRANSCODER`): an upload link is signed only for what it can honour.
    pub backend: Backend,
}

impl ApiConfig {
    /// Every variable [`ApiConfig::from_env`] reads.
    pub const VARIABLES: &[&str] = &[
        "BUCKET_NAME",
        "INPUT_PREFIX",
        "MAX_UPLOAD_BYTES",
        "TRANSCODER",
    ];

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
            max_upload_bytes: max_upload_bytes(env)?,
            backend: Backend::from_env(env)?,
        })
    }
}

/// `MAX_UPLOAD_BYTES`: 1 byte to 5 GiB, default [`DEFAULT_MAX_UPLOAD_BYTES`]. The local runner
/// reads it too, for its `/files/` route.
pub fn max_upload_bytes(env: &impl Env) -> Result<u64, ConfigError> {
    let max = env.parse("MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)?;
    if (1..=S3_MAX_PUT_BYTES).contains(&max) {
        Ok(max)
    } else {
        Err(ConfigError::invalid(
            "MAX_UPLOAD_BYTES",
            &max.to_string(),
            format!("must be from 1 to {S3_MAX_PUT_BYTES} bytes (5 GiB, S3's limit for one PUT)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_limit_defaults_to_500_mib_and_is_checked() {
        let base = [("BUCKET_NAME", "b")];
        assert_eq!(
            ApiConfig::from_env(&base).unwrap().max_upload_bytes,
            524_288_000
        );
        let config = ApiConfig::from_env(&[("BUCKET_NAME", "b"), ("MAX_UPLOAD_BYTES", " 1000 ")]);
        assert_eq!(config.unwrap().max_upload_bytes, 1000);
        for bad in ["0", "-1", "ten", "5368709121", ""] {
            let refused = ApiConfig::from_env(&[("BUCKET_NAME", "b"), ("MAX_UPLOAD_BYTES", bad)]);
            assert!(
                matches!(
                    &refused,
                    Err(ConfigError::Invalid {
                        name: "MAX_UPLOAD_BYTES",
                        ..
                    })
                ),
                "{bad}: {refused:?}"
            );
        }
    }
}
