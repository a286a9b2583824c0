//! What an output can be: its format, with the bitrates a lossy one may have, and the loudness
//! it may be normalized to. A leaf: the choices, the jobs and the backends all name these.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// One output of a job. The names are the ones `OUTPUTS` and an upload's choice use ([`crate::choice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// PCM WAV, 44.1 kHz, 16-bit.
    Wav,
    /// FLAC, lossless.
    Flac,
    /// AAC at 256 kb/s in an MP4 container.
    Aac,
    /// MP3 (not in the default set).
    Mp3,
    /// Opus in an Ogg file (not in the default set).
    Opus,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 5] = [Self::Wav, Self::Flac, Self::Aac, Self::Mp3, Self::Opus];
    /// The output set of the original design.
    pub const DEFAULT: [OutputFormat; 3] = [Self::Wav, Self::Flac, Self::Aac];

    pub fn name(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Flac => "flac",
            Self::Aac => "aac",
            Self::Mp3 => "mp3",
            Self::Opus => "opus",
        }
    }

    /// The bitrates, in kb/s, a lossy format may be asked for, and the one it gets when none is
    /// asked for; `None` for a lossless format, which has no bitrate to choose.
    pub fn bitrates(self) -> Option<(RangeInclusive<u32>, u32)> {
        match self {
            Self::Wav | Self::Flac => None,
            Self::Aac => Some((32..=320, 256)),
            Self::Mp3 => Some((32..=320, 192)),
            Self::Opus => Some((16..=256, 96)),
        }
    }

    /// The media type an output is stored and served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Wav => "audio/wav",
            Self::Flac => "audio/flac",
            Self::Aac => "audio/mp4",
            Self::Mp3 => "audio/mpeg",
            Self::Opus => "audio/ogg",
        }
    }

    /// The output file's extension. AAC goes in an audio-only MP4, which players know as `.m4a`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Flac => "flac",
            Self::Aac => "m4a",
            Self::Mp3 => "mp3",
            Self::Opus => "opus",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown output format '{0}' (known: wav, flac, aac, mp3, opus)")]
pub struct UnknownFormat(pub String);

impl FromStr for OutputFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownFormat(s.trim().to_owned()))
    }
}

/// A loudness an upload's outputs are normalized to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loudness {
    /// -16 LUFS integrated, true peak at most -1 dBTP: what podcast platforms ask for.
    Podcast,
    /// EBU R128: -23 LUFS integrated, true peak at most -1 dBTP.
    Broadcast,
}

impl Loudness {
    pub const ALL: [Loudness; 2] = [Self::Podcast, Self::Broadcast];

    pub fn name(self) -> &'static str {
        match self {
            Self::Podcast => "podcast",
            Self::Broadcast => "broadcast",
        }
    }

    /// The integrated loudness aimed at, in LUFS (ITU-R BS.1770).
    pub fn integrated_lufs(self) -> f64 {
        match self {
            Self::Podcast => -16.0,
            Self::Broadcast => -23.0,
        }
    }

    /// The highest true peak allowed, in dBTP.
    pub fn true_peak_dbtp(self) -> f64 {
        -1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_case_insensitively() {
        assert_eq!(" FLAC ".parse::<OutputFormat>(), Ok(OutputFormat::Flac));
        assert_eq!(
            "aac".parse::<OutputFormat>().map(OutputFormat::extension),
            Ok("m4a")
        );
        assert_eq!(
            "ogg".parse::<OutputFormat>(),
            Err(UnknownFormat("ogg".into()))
        );
    }
}
