//! MediaConvert: one CreateJob per transcode job, on the regional endpoint (account-specific
//! endpoints and DescribeEndpoints are no longer needed).
//!
//! Each output gets its own FILE_GROUP output group whose `Destination` is the planned key without
//! its extension, and whose one output sets that extension: MediaConvert writes
//! `{Destination}{NameModifier}.{Extension}`, so every file lands exactly at the key the core
//! planned. The job's end reaches `record-completion` as an EventBridge event forwarded to the SNS
//! topic; the [`JOB_TAG_KEY`] user-metadata pair is what the stack's EventBridge rule matches, so
//! that each stack hears about its own jobs only.

use aws_sdk_mediaconvert::Client;
use aws_sdk_mediaconvert::types::{
    AacCodecProfile, AacCodingMode, AacRateControlMode, AacSettings, AudioCodec,
    AudioCodecSettings, AudioDefaultSelection, AudioDescription, AudioNormalizationAlgorithm,
    AudioNormalizationAlgorithmControl, AudioNormalizationLoudnessLogging,
    AudioNormalizationPeakCalculation, AudioNormalizationSettings, AudioSelector,
    ContainerSettings, ContainerType, FileGroupSettings, FlacSettings, Input, JobSettings,
    Mp3RateControlMode, Mp3Settings, OpusSettings, Output, OutputGroup, OutputGroupSettings,
    OutputGroupType, WavFormat, WavSettings,
};
use transcoder_core::{
    JobId, JobOutput, Loudness, OutputFormat, TranscodeJob, Transcoder, TranscoderError, metadata,
};

use crate::errors::created_job;

/// User-metadata key of the tag that marks this deployment's jobs for its EventBridge rule.
pub const JOB_TAG_KEY: &str = "app";

/// The tag when `JOB_TAG` is unset. Deployments set the stack name, so that two stacks in one
/// account and region never receive each other's job states.
pub const DEFAULT_JOB_TAG: &str = "audio-transcoder";

/// The one audio selector of every job's input; each output's audio comes from it.
const AUDIO_SELECTOR: &str = "Audio Selector 1";

/// Elastic Transcoder's system presets produce CD-quality audio: 44.1 kHz, stereo, 16 bits.
const SAMPLE_RATE: i32 = 44_100;
const CHANNELS: i32 = 2;
const BIT_DEPTH: i32 = 16;

/// The format identifiers MediaConvert resolves in a `Destination` (case-sensitive). A key that
/// contains one would be written somewhere else, so such a job is refused.
const DESTINATION_VARIABLES: [&str; 3] = ["$dt$", "$d$", "$t$"];

#[derive(Debug, Clone)]
pub struct MediaConvert {
    client: Client,
    role_arn: String,
    queue_arn: Option<String>,
    job_tag: String,
}

impl MediaConvert {
    /// `role_arn` is the role MediaConvert assumes to read the input and write the outputs;
    /// without `queue_arn` jobs go to the account's default queue.
    pub fn new(
        client: Client,
        role_arn: impl Into<String>,
        queue_arn: Option<String>,
        job_tag: impl Into<String>,
    ) -> Self {
        Self {
            client,
            role_arn: role_arn.into(),
            queue_arn,
            job_tag: job_tag.into(),
        }
    }

    pub fn role_arn(&self) -> &str {
        &self.role_arn
    }

    #[cfg(test)]
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub fn queue_arn(&self) -> Option<&str> {
        self.queue_arn.as_deref()
    }

    pub fn job_tag(&self) -> &str {
        &self.job_tag
    }
}

/// The job's settings: the source with its audio selector, and one output group per output.
pub fn job_settings(job: &TranscodeJob) -> Result<JobSettings, TranscoderError> {
    let input = Input::builder()
        .file_input(s3_url(&job.bucket, job.source.as_str()))
        .audio_selectors(
            AUDIO_SELECTOR,
            AudioSelector::builder()
                .default_selection(AudioDefaultSelection::Default)
                .build(),
        )
        .build();
    let groups = job
        .outputs
        .iter()
        .map(|output| output_group(&job.bucket, output, job.loudness))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(JobSettings::builder()
        .inputs(input)
        .set_output_groups(Some(groups))
        .build())
}

/// The output group that writes `output` to exactly its key.
fn output_group(
    bucket: &str,
    output: &JobOutput,
    loudness: Option<Loudness>,
) -> Result<OutputGroup, TranscoderError> {
    let key = output.key.as_str();
    let extension = output.format.extension();
    let base = key
        .strip_suffix(&format!(".{extension}"))
        .filter(|base| !base.is_empty() && !base.ends_with('/'))
        .ok_or_else(|| {
            TranscoderError::new(format!(
                "the output key '{key}' does not end in a file name with the extension .{extension}"
            ))
        })?;
    if let Some(variable) = DESTINATION_VARIABLES.iter().find(|v| base.contains(*v)) {
        return Err(TranscoderError::new(format!(
            "MediaConvert would replace '{variable}' in the output key '{key}' with the job's \
             date or time; rename the file"
        )));
    }
    let settings = OutputGroupSettings::builder()
        .r#type(OutputGroupType::FileGroupSettings)
        .file_group_settings(
            FileGroupSettings::builder()
                .destination(s3_url(bucket, base))
                .build(),
        )
        .build();
    Ok(OutputGroup::builder()
        .name(output.format.name())
        .output_group_settings(settings)
        .outputs(
            Output::builder()
                .container_settings(
                    ContainerSettings::builder()
                        .container(container(output.format))
                        .build(),
                )
                .audio_descriptions(audio(output, loudness))
                .extension(extension)
                .build(),
        )
        .build())
}

/// The container of each format. MediaConvert has no WAV, FLAC or MP3 container type: those
/// files are the codec's own stream with no container (RAW), as AWS's Elastic Transcoder
/// migration tool also maps them. AAC goes in MP4, as Elastic Transcoder's preset had it.
pub fn container(format: OutputFormat) -> ContainerType {
    match format {
        OutputFormat::Wav | OutputFormat::Flac | OutputFormat::Mp3 => ContainerType::Raw,
        OutputFormat::Aac => ContainerType::Mp4,
        OutputFormat::Opus => ContainerType::Ogg,
    }
}

/// The audio of an output: each format as the Elastic Transcoder system preset of the same name
/// (`crate::elastic_transcoder::system_preset`) at the output's bitrate, normalized to
/// `loudness` if one was chosen.
pub fn audio(output: &JobOutput, loudness: Option<Loudness>) -> AudioDescription {
    // In b/s; a lossless format has none. Within i32: every bitrate is at most 320 kb/s.
    let bitrate = output
        .bitrate()
        .map_or(0, |kbps| i32::try_from(kbps * 1000).unwrap_or(i32::MAX));
    let codec = match output.format {
        // "Audio WAV 44100 Hz, 16 bit - CD Quality": 16-bit PCM in a RIFF WAVE file.
        OutputFormat::Wav => AudioCodecSettings::builder()
            .codec(AudioCodec::Wav)
            .wav_settings(
                WavSettings::builder()
                    .format(WavFormat::Riff)
                    .bit_depth(BIT_DEPTH)
                    .channels(CHANNELS)
                    .sample_rate(SAMPLE_RATE)
                    .build(),
            ),
        // "Audio FLAC - CD": lossless, at CD resolution.
        OutputFormat::Flac => AudioCodecSettings::builder()
            .codec(AudioCodec::Flac)
            .flac_settings(
                FlacSettings::builder()
                    .bit_depth(BIT_DEPTH)
                    .channels(CHANNELS)
                    .sample_rate(SAMPLE_RATE)
                    .build(),
            ),
        // "Audio AAC - 256k": AAC-LC, stereo, constant bitrate (one of the values MediaConvert
        // takes for LC 2.0 at 44.1 kHz: transcoder_core::MEDIACONVERT_AAC_KBPS).
        OutputFormat::Aac => AudioCodecSettings::builder()
            .codec(AudioCodec::Aac)
            .aac_settings(
                AacSettings::builder()
                    .codec_profile(AacCodecProfile::Lc)
                    .coding_mode(AacCodingMode::CodingMode20)
                    .rate_control_mode(AacRateControlMode::Cbr)
                    .bitrate(bitrate)
                    .sample_rate(SAMPLE_RATE)
                    .build(),
            ),
        // "Audio MP3 - 192k": stereo, constant bitrate.
        OutputFormat::Mp3 => AudioCodecSettings::builder()
            .codec(AudioCodec::Mp3)
            .mp3_settings(
                Mp3Settings::builder()
                    .rate_control_mode(Mp3RateControlMode::Cbr)
                    .bitrate(bitrate)
                    .channels(CHANNELS)
                    .sample_rate(SAMPLE_RATE)
                    .build(),
            ),
        // Opus in Ogg, stereo, at 48 kHz (Opus has no 44.1 kHz).
        OutputFormat::Opus => AudioCodecSettings::builder()
            .codec(AudioCodec::Opus)
            .opus_settings(
                OpusSettings::builder()
                    .bitrate(bitrate)
                    .channels(CHANNELS)
                    .sample_rate(48_000)
                    .build(),
            ),
    };
    AudioDescription::builder()
        .audio_source_name(AUDIO_SELECTOR)
        .codec_settings(codec.build())
        .set_audio_normalization_settings(loudness.map(normalization))
        .build()
}

/// MediaConvert's own loudness normalization to `loudness`: measured over the whole file
/// (ITU-R BS.1770-3), corrected to the target, true peaks limited to -1 dBTP.
pub fn normalization(loudness: Loudness) -> AudioNormalizationSettings {
    AudioNormalizationSettings::builder()
        .algorithm(AudioNormalizationAlgorithm::ItuBs17703)
        .algorithm_control(AudioNormalizationAlgorithmControl::CorrectAudio)
        .target_lkfs(loudness.integrated_lufs())
        .peak_calculation(AudioNormalizationPeakCalculation::TruePeak)
        .true_peak_limiter_threshold(loudness.true_peak_dbtp())
        .loudness_logging(AudioNormalizationLoudnessLogging::DontLog)
        .build()
}

/// MediaConvert takes S3 locations as `s3://bucket/key`, with the key as it is stored.
fn s3_url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

impl Transcoder for MediaConvert {
    async fn start_job(&self, job: &TranscodeJob) -> Result<JobId, TranscoderError> {
        let mut request = self
            .client
            .create_job()
            .role(&self.role_arn)
            .set_queue(self.queue_arn.clone())
            .settings(job_settings(job)?)
            // A retry of the same upload (a lost response, a released claim) within MediaConvert's
            // idempotency window returns the job already created instead of a second one.
            .client_request_token(job.claim().token())
            .user_metadata(JOB_TAG_KEY, &self.job_tag);
        for (key, value) in metadata::for_job(job) {
            request = request.user_metadata(key, value);
        }
        let sent = request.send().await;
        created_job(
            "MediaConvert",
            sent.map(|r| r.job().and_then(|j| j.id()).map(str::to_owned)),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_mediaconvert::operation::create_job::{CreateJobInput, CreateJobOutput};

    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use transcoder_core::{Claim, Env, ObjectKey, RawS3Event, StartConfig, start_transcode};
    use transcoder_testkit::{MemorySource, MemoryStore};

    use super::*;

    /// Where MediaConvert writes the one output of a FILE_GROUP output group, as its API reference
    /// describes it: the destination's `s3://bucket/` stripped, then the name modifier and the
    /// extension appended.
    fn written_key(group: &OutputGroup) -> Option<String> {
        let destination = group
            .output_group_settings()?
            .file_group_settings()?
            .destination()?;
        let (_bucket, base) = destination.strip_prefix("s3://")?.split_once('/')?;
        let [output] = group.outputs() else {
            return None;
        };
        Some(format!(
            "{base}{}.{}",
            output.name_modifier().unwrap_or_default(),
            output.extension()?
        ))
    }

    const ROLE: &str = "arn:aws:iam::123456789012:role/audio-transcoder-MediaConvertRole";
    const QUEUE: &str = "arn:aws:mediaconvert:eu-west-1:123456789012:queues/audio";
    const BUCKET: &str = "audio-transcoder-media";

    type Requests = Arc<Mutex<Vec<CreateJobInput>>>;

    /// A client whose CreateJob records each request and answers with job ids `job-1`, `job-2`, ...
    fn recording_client() -> (Client, Requests) {
        recording_client!(aws_sdk_mediaconvert, CreateJobOutput)
    }

    /// Runs the starter on `event` with a recording MediaConvert, and returns its requests in the
    /// order of their source keys.
    async fn run(
        event: &str,
        env: &impl Env,
        queue: Option<&str>,
    ) -> (Vec<CreateJobInput>, Result<Vec<String>, String>) {
        run_reading(event, env, queue, &MemorySource::audio()).await
    }

    /// As [`run`], the uploads read from `source`.
    async fn run_reading(
        event: &str,
        env: &impl Env,
        queue: Option<&str>,
        uploads: &MemorySource,
    ) -> (Vec<CreateJobInput>, Result<Vec<String>, String>) {
        let (client, requests) = recording_client();
        let transcoder = MediaConvert::new(client, ROLE, queue.map(str::to_owned), "my-stack");
        let event: RawS3Event = serde_json::from_str(event).unwrap();
        let result = start_transcode(
            event,
            &StartConfig::from_env(env).unwrap(),
            uploads,
            &transcoder,
            &MemoryStore::default(),
        )
        .await
        .map(|r| r.started.into_iter().map(|s| s.job_id.0).collect())
        .map_err(|e| e.to_string());
        let mut requests = requests.lock().unwrap().clone();
        requests.sort_by_key(|r| source(r).to_owned());
        (requests, result)
    }

    fn source(request: &CreateJobInput) -> &str {
        request.settings().unwrap().inputs()[0]
            .file_input()
            .unwrap()
    }

    fn claim_token(key: &str, version: &str) -> String {
        Claim {
            bucket: BUCKET.into(),
            key: ObjectKey::new(key).unwrap(),
            version: version.into(),
        }
        .token()
    }

    /// One FILE_GROUP output group writing one file, as the request must spell it.
    fn group(
        name: &str,
        destination: &str,
        container: ContainerType,
        codec: AudioCodecSettings,
        extension: &str,
    ) -> OutputGroup {
        OutputGroup::builder()
            .name(name)
            .output_group_settings(
                OutputGroupSettings::builder()
                    .r#type(OutputGroupType::FileGroupSettings)
                    .file_group_settings(
                        FileGroupSettings::builder()
                            .destination(destination)
                            .build(),
                    )
                    .build(),
            )
            .outputs(
                Output::builder()
                    .container_settings(ContainerSettings::builder().container(container).build())
                    .audio_descriptions(
                        AudioDescription::builder()
                            .audio_source_name("Audio Selector 1")
                            .codec_settings(codec)
                            .build(),
                    )
                    .extension(extension)
                    .build(),
            )
            .build()
    }

    #[tokio::test]
    async fn a_put_becomes_one_create_job_with_three_audio_only_outputs() {
        let (requests, result) = run(
            include_str!("../../../events/s3-put.json"),
            &[],
            Some(QUEUE),
        )
        .await;
        assert_eq!(result, Ok(vec!["job-1".to_owned()]));

        let wav = AudioCodecSettings::builder()
            .codec(AudioCodec::Wav)
            .wav_settings(
                WavSettings::builder()
                    .format(WavFormat::Riff)
                    .bit_depth(16)
                    .channels(2)
                    .sample_rate(44_100)
                    .build(),
            )
            .build();
        let flac = AudioCodecSettings::builder()
            .codec(AudioCodec::Flac)
            .flac_settings(
                FlacSettings::builder()
                    .bit_depth(16)
                    .channels(2)
                    .sample_rate(44_100)
                    .build(),
            )
            .build();
        let aac = AudioCodecSettings::builder()
            .codec(AudioCodec::Aac)
            .aac_settings(
                AacSettings::builder()
                    .codec_profile(AacCodecProfile::Lc)
                    .coding_mode(AacCodingMode::CodingMode20)
                    .rate_control_mode(AacRateControlMode::Cbr)
                    .bitrate(256_000)
                    .sample_rate(44_100)
                    .build(),
            )
            .build();
        let destination = "s3://audio-transcoder-media/transcoded/alice/song.mp3";
        let settings = JobSettings::builder()
            .inputs(
                Input::builder()
                    .file_input("s3://audio-transcoder-media/media/alice/song.mp3")
                    .audio_selectors(
                        "Audio Selector 1",
                        AudioSelector::builder()
                            .default_selection(AudioDefaultSelection::Default)
                            .build(),
                    )
                    .build(),
            )
            .output_groups(group("wav", destination, ContainerType::Raw, wav, "wav"))
            .output_groups(group("flac", destination, ContainerType::Raw, flac, "flac"))
            .output_groups(group("aac", destination, ContainerType::Mp4, aac, "m4a"))
            .build();
        let expected = CreateJobInput::builder()
            .role(ROLE)
            .queue(QUEUE)
            .settings(settings)
            .client_request_token(claim_token("media/alice/song.mp3", "0062E99A88DC407460"))
            .user_metadata("app", "my-stack")
            .user_metadata("owner", "alice")
            .user_metadata("source-key", "media/alice/song.mp3")
            .user_metadata(
                "upload",
                claim_token("media/alice/song.mp3", "0062E99A88DC407460"),
            )
            .build()
            .unwrap();
        assert_eq!(requests, [expected]);
    }

    #[tokio::test]
    async fn an_uploads_choice_sets_the_bitrates_and_the_loudness_normalization() {
        let source = MemorySource::audio().with_metadata(
            "media/alice/song.mp3",
            &[
                ("outputs", "mp3:128,opus:64,aac:96"),
                ("loudness", "podcast"),
            ],
        );
        let env = [("TRANSCODER", "mediaconvert")];
        let (requests, result) = run_reading(
            include_str!("../../../events/s3-put.json"),
            &env,
            None,
            &source,
        )
        .await;
        assert_eq!(result, Ok(vec!["job-1".to_owned()]));
        let podcast = AudioNormalizationSettings::builder()
            .algorithm(AudioNormalizationAlgorithm::ItuBs17703)
            .algorithm_control(AudioNormalizationAlgorithmControl::CorrectAudio)
            .target_lkfs(-16.0)
            .peak_calculation(AudioNormalizationPeakCalculation::TruePeak)
            .true_peak_limiter_threshold(-1.0)
            .loudness_logging(AudioNormalizationLoudnessLogging::DontLog)
            .build();
        let mp3 = AudioCodecSettings::builder()
            .codec(AudioCodec::Mp3)
            .mp3_settings(
                Mp3Settings::builder()
                    .rate_control_mode(Mp3RateControlMode::Cbr)
                    .bitrate(128_000)
                    .channels(2)
                    .sample_rate(44_100)
                    .build(),
            )
            .build();
        let opus = AudioCodecSettings::builder()
            .codec(AudioCodec::Opus)
            .opus_settings(
                OpusSettings::builder()
                    .bitrate(64_000)
                    .channels(2)
                    .sample_rate(48_000)
                    .build(),
            )
            .build();
        let aac = AudioCodecSettings::builder()
            .codec(AudioCodec::Aac)
            .aac_settings(
                AacSettings::builder()
                    .codec_profile(AacCodecProfile::Lc)
                    .coding_mode(AacCodingMode::CodingMode20)
                    .rate_control_mode(AacRateControlMode::Cbr)
                    .bitrate(96_000)
                    .sample_rate(44_100)
                    .build(),
            )
            .build();
        let destination = "s3://audio-transcoder-media/transcoded/alice/song.mp3";
        let normalized = |mut group: OutputGroup| {
            let description = &mut group.outputs.as_mut().unwrap()[0]
                .audio_descriptions
                .as_mut()
                .unwrap()[0];
            description.audio_normalization_settings = Some(podcast.clone());
            group
        };
        let groups = requests[0].settings().unwrap().output_groups();
        assert_eq!(
            groups,
            [
                normalized(group("mp3", destination, ContainerType::Raw, mp3, "mp3")),
                normalized(group("opus", destination, ContainerType::Ogg, opus, "opus")),
                normalized(group("aac", destination, ContainerType::Mp4, aac, "m4a")),
            ]
        );
        let broadcast = normalization(Loudness::Broadcast);
        assert_eq!(broadcast.target_lkfs(), Some(-23.0));
        assert_eq!(broadcast.true_peak_limiter_threshold(), Some(-1.0));
    }

    #[tokio::test]
    async fn each_output_is_written_exactly_at_its_planned_key() {
        let env = [("OUTPUT_FORMATS", "wav,flac,aac,mp3")];
        for event in [
            include_str!("../../../events/s3-put.json"),
            include_str!("../../../events/s3-put-encoded-key.json"),
            include_str!("../../../events/s3-multipart-upload.json"),
            include_str!("../../../events/s3-several-records.json"),
        ] {
            let raw: RawS3Event = serde_json::from_str(event).unwrap();
            let config = StartConfig::from_env(&env).unwrap();
            for record in raw.records {
                let Ok(record) = serde_json::from_value(record) else {
                    continue;
                };
                let Ok(job) = transcoder_core::plan(&record, &config) else {
                    continue;
                };
                let settings = job_settings(&job).unwrap();
                let written: Vec<_> = settings
                    .output_groups()
                    .iter()
                    .map(|g| written_key(g).unwrap())
                    .collect();
                let planned: Vec<_> = job.outputs.iter().map(|o| o.key.to_string()).collect();
                assert_eq!(written, planned);
            }
        }
        // Deeper folders and dots in the name are kept; only the extension is the container's.
        let job = TranscodeJob::plan(
            BUCKET,
            ObjectKey::new("media/alice/live/2024.set.MP3").unwrap(),
            "1",
            transcoder_core::Owner::new("alice").unwrap(),
            "live/2024.set.MP3",
            "transcoded/",
            &OutputFormat::ALL,
        );
        let groups = job_settings(&job).unwrap().output_groups;
        let destinations: Vec<_> = groups
            .iter()
            .flatten()
            .map(|g| {
                let file = g.output_group_settings().unwrap().file_group_settings();
                file.unwrap().destination().unwrap()
            })
            .collect();
        assert_eq!(
            destinations,
            ["s3://audio-transcoder-media/transcoded/alice/live/2024.set.MP3"; 5]
        );
        let written: Vec<_> = groups.iter().flatten().filter_map(written_key).collect();
        assert_eq!(
            written,
            [
                "transcoded/alice/live/2024.set.MP3.wav",
                "transcoded/alice/live/2024.set.MP3.flac",
                "transcoded/alice/live/2024.set.MP3.m4a",
                "transcoded/alice/live/2024.set.MP3.mp3",
                "transcoded/alice/live/2024.set.MP3.opus",
            ]
        );
    }

    #[tokio::test]
    async fn an_encoded_key_is_sent_decoded_and_its_metadata_encoded() {
        let (requests, _) = run(
            include_str!("../../../events/s3-put-encoded-key.json"),
            &[],
            None,
        )
        .await;
        let request = &requests[0];
        assert_eq!(
            source(request),
            "s3://audio-transcoder-media/media/alice/red flower (live) café C++.mp3"
        );
        let destination = request.settings().unwrap().output_groups()[0]
            .output_group_settings()
            .and_then(|s| s.file_group_settings())
            .and_then(|f| f.destination());
        assert_eq!(
            destination,
            Some("s3://audio-transcoder-media/transcoded/alice/red flower (live) café C++.mp3")
        );
        let metadata = request.user_metadata().unwrap();
        assert_eq!(
            metadata["source-key"],
            "media/alice/red flower %28live%29 caf%C3%A9 C++.mp3"
        );
        // The stack's tag, the owner, the source and the upload record: 4 of the 10 allowed.
        assert_eq!(metadata.len(), 4);
        // Without a queue, the account's default queue takes the job.
        assert_eq!(request.queue(), None);
    }

    #[tokio::test]
    async fn mp3_is_a_raw_stream_at_192k() {
        let env = [("OUTPUT_FORMATS", "mp3")];
        let (requests, _) = run(
            include_str!("../../../events/s3-multipart-upload.json"),
            &env,
            None,
        )
        .await;
        let groups = requests[0].settings().unwrap().output_groups();
        assert_eq!(groups.len(), 1);
        let output = &groups[0].outputs()[0];
        assert_eq!(
            output.container_settings().and_then(|c| c.container()),
            Some(&ContainerType::Raw)
        );
        let codec = output.audio_descriptions()[0].codec_settings().unwrap();
        assert_eq!(codec.codec(), Some(&AudioCodec::Mp3));
        assert_eq!(
            codec.mp3_settings(),
            Some(
                &Mp3Settings::builder()
                    .rate_control_mode(Mp3RateControlMode::Cbr)
                    .bitrate(192_000)
                    .channels(2)
                    .sample_rate(44_100)
                    .build()
            )
        );
        assert_eq!(
            written_key(&groups[0]).unwrap(),
            "transcoded/bob/Long Set.MP3.mp3"
        );
    }

    #[tokio::test]
    async fn every_job_carries_the_token_of_its_claim() {
        let (requests, result) = run(
            include_str!("../../../events/s3-several-records.json"),
            &[],
            None,
        )
        .await;
        assert_eq!(result.map(|ids| ids.len()), Ok(3));
        let raw: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/s3-several-records.json")).unwrap();
        let mut tokens = Vec::new();
        for request in &requests {
            let key = source(request)
                .strip_prefix("s3://audio-transcoder-media/")
                .unwrap();
            let record = raw["Records"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| {
                    ObjectKey::from_s3_event_key(r["s3"]["object"]["key"].as_str().unwrap())
                        .is_ok_and(|k| k.as_str() == key)
                })
                .unwrap();
            let version = record["s3"]["object"]["sequencer"].as_str().unwrap();
            assert_eq!(
                request.client_request_token(),
                Some(claim_token(key, version).as_str())
            );
            tokens.push(request.client_request_token().unwrap().to_owned());
        }
        tokens.dedup();
        assert_eq!(tokens.len(), 3, "each upload has its own token");
        assert_eq!(requests[2].user_metadata().unwrap()["owner"], "_unassigned");
    }

    #[tokio::test]
    async fn a_key_that_names_a_destination_variable_is_refused_before_any_call() {
        let (client, requests) = recording_client();
        let transcoder = MediaConvert::new(client, ROLE, None, "my-stack");
        let mut raw: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/s3-put.json")).unwrap();
        raw["Records"][0]["s3"]["object"]["key"] = "media/alice/mix+%24d%24.mp3".into();
        let err = start_transcode(
            serde_json::from_value(raw).unwrap(),
            &StartConfig::from_env(&[]).unwrap(),
            &MemorySource::audio(),
            &transcoder,
            &MemoryStore::default(),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("MediaConvert would replace '$d$' in the output key"),
            "{err}"
        );
        assert!(requests.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_create_job_is_an_error_that_names_the_file() {
        let rule = mock!(Client::create_job).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                aws_smithy_types::body::SdkBody::from(
                    r#"{"message":"Unable to assume the service role."}"#,
                ),
            )
        });
        let client = mock_client!(aws_sdk_mediaconvert, RuleMode::MatchAny, [&rule]);
        let transcoder = MediaConvert::new(client, ROLE, None, "my-stack");
        crate::errors::refused_start(&transcoder, "MediaConvert").await;
        assert_eq!(rule.num_calls(), 1);
    }
}
