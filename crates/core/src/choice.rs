//! What an upload asks of its outputs: which formats, at which bitrates, normalized to which
//! loudness. One form travels everywhere: `mp3:128,opus:96` in the `OUTPUTS` variable (the
//! deployment's default), in the object's `x-amz-meta-outputs` header (one upload's choice) and
//! in the local runner's links; `podcast` or `broadcast` in `x-amz-meta-loudness`. Whether the
//! deployed backend can honour a choice is decided here too ([`Backend::honours`]), so that the
//! API refuses what the starter would never do.
//!
//! This module parses and checks; it never falls back to a default (the starter does, and logs).

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use crate::env::{ConfigError, Env};
use crate::format::{Loudness, OutputFormat, UnknownFormat};
use crate::key::Escaped;

/// Metadata key (`x-amz-meta-outputs`): the outputs an upload asked for, as [`Outputs`] writes them.
pub const OUTPUTS_KEY: &str = "outputs";
/// Metadata key (`x-amz-meta-loudness`): the loudness an upload asked for.
pub const LOUDNESS_KEY: &str = "loudness";

/// The longest outputs value read: every format once with a three-digit bitrate is 37
/// characters. Anything longer is not a list this API wrote.
pub const MAX_OUTPUTS_LEN: usize = 64;

/// One output asked for: a format and, for a lossy one, perhaps a bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutputChoice {
    pub format: OutputFormat,
    /// In kb/s; `None` for the format's default (and always for a lossless format).
    pub bitrate_kbps: Option<u32>,
}

impl OutputChoice {
    /// `format` at `bitrate_kbps`, if the format takes that bitrate.
    pub fn new(format: OutputFormat, bitrate_kbps: Option<u32>) -> Result<Self, ChoiceError> {
        match (format.bitrates(), bitrate_kbps) {
            (None, Some(_)) => Err(ChoiceError::Lossless(format)),
            (Some((range, _)), Some(kbps)) if !range.contains(&kbps) => {
                Err(ChoiceError::OutOfRange {
                    format,
                    kbps,
                    range,
                })
            }
            _ => Ok(Self {
                format,
                bitrate_kbps,
            }),
        }
    }

    /// The bitrate the output is encoded at: the one asked for or the format's default.
    pub fn bitrate(self) -> Option<u32> {
        let (_, default) = self.format.bitrates()?;
        Some(self.bitrate_kbps.unwrap_or(default))
    }
}

impl fmt::Display for OutputChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bitrate_kbps {
            Some(kbps) => write!(f, "{}:{kbps}", self.format),
            None => write!(f, "{}", self.format),
        }
    }
}

/// The outputs of one job: at least one, each format at most once, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs(Vec<OutputChoice>);

impl Outputs {
    pub fn new(outputs: Vec<OutputChoice>) -> Result<Self, ChoiceError> {
        if outputs.is_empty() {
            return Err(ChoiceError::Empty);
        }
        for (i, output) in outputs.iter().enumerate() {
            if outputs[..i].iter().any(|o| o.format == output.format) {
                return Err(ChoiceError::Duplicate(output.format));
            }
        }
        Ok(Self(outputs))
    }

    /// Each format at its default bitrate: how `OUTPUT_FORMATS` lists were read.
    pub fn of_formats(formats: &[OutputFormat]) -> Result<Self, ChoiceError> {
        Self::new(
            formats
                .iter()
                .map(|&format| OutputChoice {
                    format,
                    bitrate_kbps: None,
                })
                .collect(),
        )
    }

    /// The original design's outputs: WAV, FLAC and AAC, at their defaults.
    pub fn default_set() -> Self {
        Self::of_formats(&OutputFormat::DEFAULT).unwrap_or_else(|_| unreachable!())
    }

    pub fn as_slice(&self) -> &[OutputChoice] {
        &self.0
    }

    pub fn formats(&self) -> impl Iterator<Item = OutputFormat> + '_ {
        self.0.iter().map(|o| o.format)
    }
}

impl fmt::Display for Outputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, output) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{output}")?;
        }
        Ok(())
    }
}

impl FromStr for Outputs {
    type Err = ChoiceError;

    /// `wav`, `mp3:128,opus:96`: formats case-insensitively, each with an optional `:kbps`;
    /// blanks around items and empty items (a trailing comma) are ignored.
    fn from_str(list: &str) -> Result<Self, ChoiceError> {
        if list.len() > MAX_OUTPUTS_LEN {
            return Err(ChoiceError::TooLong(list.len()));
        }
        let outputs = list
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                let (name, kbps) = match item.split_once(':') {
                    Some((name, kbps)) => (name, Some(kbps.trim())),
                    None => (item, None),
                };
                let format: OutputFormat = name.parse()?;
                let kbps = kbps
                    .map(|k| {
                        k.parse::<u32>()
                            .ok()
                            .filter(|_| k.bytes().all(|b| b.is_ascii_digit()))
                            .ok_or_else(|| ChoiceError::BadBitrate {
                                format,
                                value: k.to_owned(),
                            })
                    })
                    .transpose()?;
                OutputChoice::new(format, kbps)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(outputs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown loudness '{0}' (known: podcast, broadcast)")]
pub struct UnknownLoudness(pub String);

impl FromStr for Loudness {
    type Err = UnknownLoudness;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownLoudness(Escaped(s.trim()).to_string()))
    }
}

impl fmt::Display for Loudness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a choice is refused, in words its sender can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error(transparent)]
    UnknownFormat(#[from] UnknownFormat),
    #[error(transparent)]
    UnknownLoudness(#[from] UnknownLoudness),
    #[error("{0} is lossless and takes no bitrate")]
    Lossless(OutputFormat),
    #[error(
        "the bitrate of {format} is a whole number of kb/s, not '{}'",
        Escaped(value)
    )]
    BadBitrate { format: OutputFormat, value: String },
    #[error(
        "{format} at {kbps} kb/s is out of range: choose {} to {} kb/s",
        range.start(),
        range.end()
    )]
    OutOfRange {
        format: OutputFormat,
        kbps: u32,
        range: RangeInclusive<u32>,
    },
    #[error("{0} is asked for twice")]
    Duplicate(OutputFormat),
    #[error("ask for at least one output")]
    Empty,
    #[error("the list of outputs is {0} characters long, more than {MAX_OUTPUTS_LEN}")]
    TooLong(usize),
    #[error("this deployment transcodes with {backend}, which {cannot}")]
    Unsupported {
        backend: Backend,
        cannot: &'static str,
    },
}

/// What one upload asked for. `None` is the deployment's default for that part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    pub outputs: Option<Outputs>,
    pub loudness: Option<Loudness>,
}

/// A metadata value that is not a choice: the key it was under, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata '{key}' = '{}' is not a choice: {reason}", Escaped(value))]
pub struct BadMetadata {
    pub key: &'static str,
    pub value: String,
    pub reason: ChoiceError,
}

impl Choice {
    /// The choice an object's user metadata carries (keys lowercase, without `x-amz-meta-`, as S3
    /// answers them). No key: nothing chosen. Other keys are not ours and are ignored.
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Result<Self, BadMetadata> {
        let bad = |key, value: &String, reason| BadMetadata {
            key,
            value: value.clone(),
            reason,
        };
        let outputs = metadata
            .get(OUTPUTS_KEY)
            .map(|v| v.parse().map_err(|e| bad(OUTPUTS_KEY, v, e)))
            .transpose()?;
        let loudness = metadata
            .get(LOUDNESS_KEY)
            .map(|v| {
                v.parse()
                    .map_err(|e: UnknownLoudness| bad(LOUDNESS_KEY, v, e.into()))
            })
            .transpose()?;
        Ok(Self { outputs, loudness })
    }

    /// The metadata pairs that carry this choice, keys as [`Choice::from_metadata`] reads them;
    /// nothing for what is left to the default.
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        let outputs = self.outputs.as_ref().map(|o| (OUTPUTS_KEY, o.to_string()));
        let loudness = self.loudness.map(|l| (LOUDNESS_KEY, l.to_string()));
        outputs.into_iter().chain(loudness).collect()
    }
}

/// Who transcodes in a deployment (`TRANSCODER`), and so what a choice may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Our `transcode-audio` function: ffmpeg, every format, bitrate and loudness.
    Lambda,
    /// Every format; AAC and Opus only at the bitrates MediaConvert's settings take; loudness
    /// with its own normalization.
    MediaConvert,
    /// Only what a system preset writes: no Opus, a few bitrates, no loudness.
    ElasticTranscoder,
    /// The local runner's ffmpeg: everything, as `Lambda`.
    Local,
}

/// The bitrates MediaConvert takes for AAC-LC stereo at 44.1 kHz within [`OutputFormat::bitrates`]
/// (its `AacSettings.Bitrate` is one of a list of values, in b/s).
pub const MEDIACONVERT_AAC_KBPS: &[u32] = &[
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 288, 320,
];

/// The bitrates of Elastic Transcoder's audio system presets, per format.
pub const ELASTIC_TRANSCODER_KBPS: &[(OutputFormat, &[u32])] = &[
    (OutputFormat::Aac, &[64, 128, 160, 256]),
    (OutputFormat::Mp3, &[128, 160, 192, 320]),
];

impl Backend {
    /// Every variable [`Backend::from_env`] reads.
    pub const VARIABLES: &[&str] = &["TRANSCODER"];

    /// The backend `TRANSCODER` names; `lambda` when unset, as template.yaml's default.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let name = env.get_or("TRANSCODER", "lambda");
        name.parse().map_err(|()| {
            ConfigError::invalid(
                "TRANSCODER",
                &name,
                "not a known backend (known: lambda, mediaconvert, elastictranscoder)",
            )
        })
    }

    /// The name `TRANSCODER` spells it with.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lambda => "lambda",
            Self::MediaConvert => "mediaconvert",
            Self::ElasticTranscoder => "elastictranscoder",
            Self::Local => "local",
        }
    }

    /// Whether this backend writes `output` as asked; the reason it cannot if not.
    pub fn writes(self, output: OutputChoice) -> Result<(), ChoiceError> {
        let cannot = |cannot| {
            Err(ChoiceError::Unsupported {
                backend: self,
                cannot,
            })
        };
        let kbps = output.bitrate();
        match (self, output.format) {
            (Self::Lambda | Self::Local, _) => Ok(()),
            (Self::MediaConvert, OutputFormat::Aac)
                if !kbps.is_some_and(|k| MEDIACONVERT_AAC_KBPS.contains(&k)) =>
            {
                cannot(
                    "writes AAC only at 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 288 or 320 kb/s",
                )
            }
            (Self::MediaConvert, OutputFormat::Opus)
                if !kbps.is_some_and(|k| (32..=192).contains(&k) && k % 8 == 0) =>
            {
                cannot("writes Opus only at a multiple of 8 kb/s from 32 to 192")
            }
            (Self::MediaConvert, _) => Ok(()),
            (Self::ElasticTranscoder, OutputFormat::Opus) => {
                cannot("has no system preset for Opus")
            }
            (Self::ElasticTranscoder, format) => {
                let presets = ELASTIC_TRANSCODER_KBPS
                    .iter()
                    .find(|(f, _)| *f == format)
                    .map(|(_, kbps)| *kbps);
                match (presets, kbps) {
                    (Some(presets), Some(kbps)) if !presets.contains(&kbps) => match format {
                        OutputFormat::Aac => {
                            cannot("has system presets for AAC only at 64, 128, 160 and 256 kb/s")
                        }
                        _ => {
                            cannot("has system presets for MP3 only at 128, 160, 192 and 320 kb/s")
                        }
                    },
                    _ => Ok(()),
                }
            }
        }
    }

    /// Whether this backend can honour a loudness target.
    pub fn normalizes(self, loudness: Loudness) -> Result<(), ChoiceError> {
        let _ = loudness;
        match self {
            Self::ElasticTranscoder => Err(ChoiceError::Unsupported {
                backend: self,
                cannot: "cannot normalize loudness",
            }),
            Self::Lambda | Self::MediaConvert | Self::Local => Ok(()),
        }
    }

    /// Whether this backend can honour all of `outputs` and `loudness`; the first thing it
    /// cannot, if not.
    pub fn honours(self, outputs: &Outputs, loudness: Option<Loudness>) -> Result<(), ChoiceError> {
        for &output in outputs.as_slice() {
            self.writes(output)?;
        }
        loudness.map_or(Ok(()), |l| self.normalizes(l))
    }
}

impl FromStr for Backend {
    type Err = ();

    /// A name as `TRANSCODER` spells it, in any case; `local` is the local runner's.
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lambda" => Ok(Self::Lambda),
            "mediaconvert" => Ok(Self::MediaConvert),
            "elastictranscoder" => Ok(Self::ElasticTranscoder),
            "local" => Ok(Self::Local),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lambda => "its own ffmpeg function (TRANSCODER=lambda)",
            Self::MediaConvert => "MediaConvert (TRANSCODER=mediaconvert)",
            Self::ElasticTranscoder => "Elastic Transcoder (TRANSCODER=elastictranscoder)",
            Self::Local => "the local runner's ffmpeg",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OutputFormat::*;

    fn outputs(list: &str) -> Result<Outputs, ChoiceError> {
        list.parse()
    }

    fn choice(format: OutputFormat, kbps: Option<u32>) -> OutputChoice {
        OutputChoice::new(format, kbps).unwrap()
    }

    #[test]
    fn a_list_round_trips_in_its_one_written_form() {
        let parsed = outputs(" MP3:128 , opus:96,wav, ").unwrap();
        assert_eq!(
            parsed.as_slice(),
            [
                choice(Mp3, Some(128)),
                choice(Opus, Some(96)),
                choice(Wav, None)
            ]
        );
        assert_eq!(parsed.to_string(), "mp3:128,opus:96,wav");
        assert_eq!(outputs(&parsed.to_string()), Ok(parsed));
        assert_eq!(outputs("wav,flac,aac"), Ok(Outputs::default_set()));
        let every = "wav,flac,aac:320,mp3:320,opus:256";
        assert_eq!(outputs(every).unwrap().to_string(), every);
    }

    #[test]
    fn each_refusal_says_what_is_wrong() {
        let refused = |list: &str| outputs(list).unwrap_err().to_string();
        assert_eq!(
            refused("ogg"),
            "unknown output format 'ogg' (known: wav, flac, aac, mp3, opus)"
        );
        assert_eq!(
            refused("mp3:8"),
            "mp3 at 8 kb/s is out of range: choose 32 to 320 kb/s"
        );
        assert_eq!(
            refused("opus:300"),
            "opus at 300 kb/s is out of range: choose 16 to 256 kb/s"
        );
        assert_eq!(refused("flac:900"), "flac is lossless and takes no bitrate");
        assert_eq!(
            refused("mp3:fast"),
            "the bitrate of mp3 is a whole number of kb/s, not 'fast'"
        );
        assert_eq!(
            refused("mp3:+128"),
            "the bitrate of mp3 is a whole number of kb/s, not '+128'"
        );
        assert_eq!(
            refused("mp3:"),
            "the bitrate of mp3 is a whole number of kb/s, not ''"
        );
        assert_eq!(refused("mp3,MP3:128"), "mp3 is asked for twice");
        assert_eq!(refused(" , "), "ask for at least one output");
        assert_eq!(outputs(&"wav,".repeat(20)), Err(ChoiceError::TooLong(80)));
    }

    #[test]
    fn a_bitrate_is_the_one_asked_for_or_the_formats_default() {
        assert_eq!(choice(Mp3, Some(128)).bitrate(), Some(128));
        assert_eq!(choice(Mp3, None).bitrate(), Some(192));
        assert_eq!(choice(Flac, None).bitrate(), None);
    }

    #[test]
    fn metadata_carries_a_choice_and_refuses_a_tampered_one() {
        let chosen = Choice {
            outputs: Some(outputs("mp3:128,opus:96").unwrap()),
            loudness: Some(Loudness::Podcast),
        };
        let pairs: HashMap<String, String> = chosen
            .metadata()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(pairs["outputs"], "mp3:128,opus:96");
        assert_eq!(pairs["loudness"], "podcast");
        assert_eq!(Choice::from_metadata(&pairs), Ok(chosen));
        assert_eq!(
            Choice::from_metadata(&HashMap::new()),
            Ok(Choice::default())
        );
        assert!(Choice::default().metadata().is_empty());

        let tampered = HashMap::from([("loudness".to_owned(), "loud".to_owned())]);
        let err = Choice::from_metadata(&tampered).unwrap_err();
        assert_eq!(err.key, LOUDNESS_KEY);
        assert_eq!(
            err.to_string(),
            "metadata 'loudness' = 'loud' is not a choice: unknown loudness 'loud' (known: podcast, broadcast)"
        );
        let tampered = HashMap::from([("outputs".to_owned(), "mp3:9999".to_owned())]);
        assert_eq!(
            Choice::from_metadata(&tampered).unwrap_err().key,
            OUTPUTS_KEY
        );
    }

    #[test]
    fn lambda_and_local_honour_everything() {
        for backend in [Backend::Lambda, Backend::Local] {
            let every = outputs("wav,flac,aac:33,mp3:319,opus:17").unwrap();
            assert_eq!(backend.honours(&every, Some(Loudness::Broadcast)), Ok(()));
        }
    }

    #[test]
    fn mediaconvert_honours_loudness_and_the_bitrates_its_settings_take() {
        let mc = Backend::MediaConvert;
        let fine = outputs("wav,flac,aac:128,mp3:150,opus:96").unwrap();
        assert_eq!(mc.honours(&fine, Some(Loudness::Podcast)), Ok(()));
        assert_eq!(mc.honours(&Outputs::default_set(), None), Ok(()));
        for refused in ["aac:150", "opus:100", "opus:256", "opus:16"] {
            let err = mc.honours(&outputs(refused).unwrap(), None).unwrap_err();
            assert!(err.to_string().contains("MediaConvert"), "{refused}: {err}");
        }
    }

    #[test]
    fn elastic_transcoder_honours_only_its_presets() {
        let et = Backend::ElasticTranscoder;
        let fine = outputs("wav,flac,aac:128,mp3").unwrap();
        assert_eq!(et.honours(&fine, None), Ok(()));
        assert_eq!(et.honours(&Outputs::default_set(), None), Ok(()));
        let err = et.honours(&outputs("opus").unwrap(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this deployment transcodes with Elastic Transcoder (TRANSCODER=elastictranscoder), which has no system preset for Opus"
        );
        assert!(et.honours(&outputs("mp3:96").unwrap(), None).is_err());
        assert!(et.honours(&outputs("aac:192").unwrap(), None).is_err());
        let err = et
            .honours(&Outputs::default_set(), Some(Loudness::Podcast))
            .unwrap_err();
        assert!(
            err.to_string().ends_with("cannot normalize loudness"),
            "{err}"
        );
    }

    #[test]
    fn backends_are_named_as_transcoder_spells_them() {
        assert_eq!(Backend::from_env(&[]), Ok(Backend::Lambda));
        assert_eq!(
            Backend::from_env(&[("TRANSCODER", " MediaConvert ")]),
            Ok(Backend::MediaConvert)
        );
        for backend in [
            Backend::Lambda,
            Backend::MediaConvert,
            Backend::ElasticTranscoder,
            Backend::Local,
        ] {
            assert_eq!(backend.name().parse(), Ok(backend));
        }
        let err = Backend::from_env(&[("TRANSCODER", "handbrake")]).unwrap_err();
        assert!(err.to_string().starts_with("TRANSCODER="), "{err}");
    }
}
