//! Transcode jobs: whose file it is, which outputs it gets, and where they are written.

use crate::choice::Outputs;
use crate::format::{Loudness, OutputFormat};
use crate::ids::{Claim, Owner, UploadId, UploadRef};
use crate::key::ObjectKey;

/// The input formats a backend can decode, matched case-insensitively on the extension.
pub const AUDIO_EXTENSIONS: &[&str] = &["mp3", "m4a", "aac", "wav", "flac", "ogg", "oga"];

/// Whether a file name looks like audio this pipeline transcodes.
pub fn is_audio(key: &ObjectKey) -> bool {
    key.extension()
        .is_some_and(|ext| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(ext)))
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobOutput {
    pub format: OutputFormat,
    pub key: ObjectKey,
    /// The bitrate of a lossy format, in kb/s: the one asked for, or the format's default
    /// ([`OutputFormat::bitrates`]). `None` for a lossless format, and in jobs queued before
    /// bitrates could be chosen, which get the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<u32>,
}

impl JobOutput {
    /// The bitrate to encode at, in kb/s; `None` for a lossless format.
    pub fn bitrate(&self) -> Option<u32> {
        let (_, default) = self.format.bitrates()?;
        Some(self.bitrate_kbps.unwrap_or(default))
    }
}

/// One transcode job: one source file in, one file per configured format out. It serializes, so
/// that the local runner can keep it in its queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TranscodeJob {
    pub bucket: String,
    pub source: ObjectKey,
    /// Which upload of `source` this is: the event's sequencer, or the object's ETag.
    pub version: String,
    /// The ETag the event reported, if it did: a transcoder that reads the bytes itself reads
    /// only that version (`If-Match`), so a newer upload is never transcoded on this one's behalf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub owner: Owner,
    pub outputs: Vec<JobOutput>,
    /// The loudness the outputs are normalized to, if the upload asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness: Option<Loudness>,
    /// Where a backend that measures the source writes its waveform's peaks
    /// ([`crate::Analysis::peaks`]); `None` in jobs queued before peaks were drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peaks: Option<ObjectKey>,
}

impl TranscodeJob {
    /// Plans the job for `source`, a file of `owner` at `path` below the owner's folder
    /// (`sub/song.mp3`): each output is `{output_prefix}{owner}/{path}.{ext}`, such as
    /// `transcoded/alice/sub/song.mp3.wav`; its waveform's peaks, where a backend draws them,
    /// are `{output_prefix}{owner}/{path}.peaks.json`.
    ///
    /// The source's whole name, extension included, stays in the output's name, so two uploads
    /// never share an output (`song.mp3` and `song.wav`, or `song.MP3`, each get their own files)
    /// and a new upload of the same key replaces exactly that key's outputs. The output extensions
    /// (`.wav`, `.flac`, `.m4a`, `.mp3`) are none of them the end of another, so the mapping from
    /// (upload, format) to output key is one-to-one.
    pub fn plan(
        bucket: &str,
        source: ObjectKey,
        version: &str,
        owner: Owner,
        path: &str,
        output_prefix: &str,
        formats: &[OutputFormat],
    ) -> Self {
        let outputs = formats
            .iter()
            .map(|&format| JobOutput {
                format,
                key: ObjectKey(format!(
                    "{output_prefix}{owner}/{path}.{}",
                    format.extension()
                )),
                bitrate_kbps: format.bitrates().map(|(_, default)| default),
            })
            .collect();
        Self {
            bucket: bucket.to_owned(),
            source,
            version: version.to_owned(),
            etag: None,
            peaks: Some(ObjectKey(format!(
                "{output_prefix}{owner}/{path}.peaks.json"
            ))),
            owner,
            outputs,
            loudness: None,
        }
    }

    /// The job with each output at the bitrate `outputs` chooses for its format (the format's
    /// default where it chooses none); outputs of other formats are left as they are.
    pub fn at_bitrates(mut self, outputs: &Outputs) -> Self {
        for output in &mut self.outputs {
            if let Some(chosen) = outputs
                .as_slice()
                .iter()
                .find(|c| c.format == output.format)
            {
                output.bitrate_kbps = chosen.bitrate();
            }
        }
        self
    }

    /// This job's id with a transcoder that takes the id from the job (the `lambda` backend's
    /// queue): the same upload always gets the same id, so a redelivered event never makes two
    /// different jobs, and the id is the upload's claim token, as the upload record's is.
    pub fn deterministic_id(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.claim().token())
    }

    /// The upload record this job's upload has: its id is the claim's token.
    pub fn upload_ref(&self) -> UploadRef {
        UploadRef {
            owner: self.owner.clone(),
            id: UploadId::of(&self.claim()),
            source: self.source.clone(),
        }
    }

    /// The claim that makes this upload start one job, however often its event is delivered.
    pub fn claim(&self) -> Claim {
        Claim {
            bucket: self.bucket.clone(),
            key: self.source.clone(),
            version: self.version.clone(),
        }
    }
}

/// A job as the `lambda` backend's jobs queue carries it: the body of one SQS message, which
/// `transcode-audio` runs. Its id is [`TranscodeJob::deterministic_id`], so two deliveries of one
/// upload's event send the same job under the same id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobMessage {
    pub job_id: String,
    pub job: TranscodeJob,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(path: &str, formats: &[OutputFormat]) -> TranscodeJob {
        let owner = Owner::new("alice").unwrap();
        let source = ObjectKey::new(format!("media/alice/{path}")).unwrap();
        TranscodeJob::plan(
            "bucket",
            source,
            "0062E99A88DC407460",
            owner,
            path,
            "transcoded/",
            formats,
        )
    }

    fn keys(job: &TranscodeJob) -> Vec<&str> {
        job.outputs.iter().map(|o| o.key.as_str()).collect()
    }

    #[test]
    fn default_outputs_are_wav_flac_and_aac_in_m4a() {
        let job = job("red flower.mp3", &OutputFormat::DEFAULT);
        assert_eq!(
            keys(&job),
            [
                "transcoded/alice/red flower.mp3.wav",
                "transcoded/alice/red flower.mp3.flac",
                "transcoded/alice/red flower.mp3.m4a"
            ]
        );
        assert_eq!(job.bucket, "bucket");
        assert_eq!(job.owner.as_str(), "alice");
        assert_eq!(job.source.as_str(), "media/alice/red flower.mp3");
    }

    #[test]
    fn the_whole_source_name_is_kept_and_subfolders_too() {
        let job = job("live/2024.set.MP3", &[OutputFormat::Flac]);
        assert_eq!(keys(&job), ["transcoded/alice/live/2024.set.MP3.flac"]);
        assert_eq!(
            job.peaks.as_ref().map(ObjectKey::as_str),
            Some("transcoded/alice/live/2024.set.MP3.peaks.json")
        );
    }

    #[test]
    fn distinct_uploads_never_share_an_output() {
        // Names that an extension-stripping scheme would map onto one another.
        let paths = [
            "song.mp3",
            "song.MP3",
            "song.wav",
            "song",
            "song.mp3.wav",
            "song.wav.mp3",
            "a/b.mp3",
            "a.b.mp3",
            "song.flac",
            "song.m4a",
            "song.aac",
        ];
        let mut seen = std::collections::HashMap::new();
        for path in paths {
            let job = job(path, &OutputFormat::ALL);
            let peaks = job.peaks.clone().expect("a planned job draws peaks");
            let files = job.outputs.into_iter().map(|o| o.key).chain([peaks]);
            for file in files {
                if let Some(other) = seen.insert(file.clone(), path) {
                    panic!("{path} and {other} share {file}");
                }
            }
        }
        assert_eq!(seen.len(), paths.len() * (OutputFormat::ALL.len() + 1));
    }

    #[test]
    fn chosen_bitrates_go_to_their_formats() {
        let chosen: Outputs = "opus:64,mp3".parse().unwrap();
        let job = job(
            "a.wav",
            &[OutputFormat::Mp3, OutputFormat::Opus, OutputFormat::Wav],
        )
        .at_bitrates(&chosen);
        let bitrates: Vec<_> = job.outputs.iter().map(|o| o.bitrate_kbps).collect();
        assert_eq!(bitrates, [Some(192), Some(64), None]);
    }

    #[test]
    fn audio_extensions_match_case_insensitively() {
        for name in [
            "a.mp3", "a.MP3", "a.Mp3", "a.flac", "a.M4A", "a.ogg", "a.wav",
        ] {
            assert!(is_audio(&ObjectKey::new(name).unwrap()), "{name}");
        }
        for name in ["a.txt", "a.mp3.txt", "mp3", ".mp3", "a.jpg"] {
            assert!(!is_audio(&ObjectKey::new(name).unwrap()), "{name}");
        }
    }
}
