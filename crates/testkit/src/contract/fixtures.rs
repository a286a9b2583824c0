//! The owners, messages, uploads, claims and jobs the checks are written with, for any test.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use transcoder_core::{
    Claim, Message, MessageId, MessageOutput, ObjectKey, Outcome, OutputFormat, Owner, REPLACED,
    TranscodeJob, UploadId, UploadRecord, UploadRef, UploadState,
};

/// The job for `media/{owner}/{name}`, upload `version`.
pub fn job(owner: &str, name: &str, version: &str) -> TranscodeJob {
    TranscodeJob::plan(
        "bucket",
        ObjectKey::new(format!("media/{owner}/{name}")).unwrap(),
        version,
        self::owner(owner),
        name,
        "transcoded/",
        &OutputFormat::DEFAULT,
    )
}

/// The time the checks' messages are written around.
pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap()
}

pub fn owner(name: &str) -> Owner {
    Owner::new(name).unwrap()
}

/// A message for `owner`, written `minute` minutes after [`base_time`], with every field set.
pub fn message(owner: &str, id: &str, minute: i64) -> Message {
    MessageBuilder::new(owner, id, minute)
        .warning("upsampled")
        .output("wav", "wav", Some(6042))
        .output("aac", "m4a", None)
        // Milliseconds and nanoseconds too: a store must give back exactly what it was given.
        .nanoseconds(123_456_789)
        .build()
}

/// The messages tests store, when they need less than [`message`] or other outputs.
///
/// `MessageBuilder::new(owner, id, minute).build()` is the file `{id}.mp3`, uploaded as
/// `media/{owner}/{id}.mp3` and processed without warnings or outputs, written on the whole
/// minute `minute` after [`base_time`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MessageBuilder(Message);

impl MessageBuilder {
    pub fn new(owner: &str, id: &str, minute: i64) -> Self {
        Self(Message {
            id: MessageId(id.to_owned()),
            owner: self::owner(owner),
            state: Outcome::Completed,
            text: format!("Your file {id}.mp3 has been processed"),
            file: format!("{id}.mp3"),
            source_key: format!("media/{owner}/{id}.mp3"),
            outputs: Vec::new(),
            created_at: base_time() + TimeDelta::minutes(minute),
        })
    }

    /// Processed with a warning, which the text names.
    pub fn warning(mut self, warning: &str) -> Self {
        let m = &mut self.0;
        m.state = Outcome::CompletedWithWarnings;
        m.text = format!(
            "Your file {} has been processed, with a warning: {warning}.",
            m.file
        );
        self
    }

    /// One more output, `transcoded/{owner}/{id}.{extension}` in `format`.
    pub fn output(mut self, format: &str, extension: &str, duration_ms: Option<u64>) -> Self {
        let m = &mut self.0;
        m.outputs.push(MessageOutput {
            format: format.into(),
            key: format!("transcoded/{}/{}.{extension}", m.owner, m.id),
            duration_ms,
        });
        self
    }

    /// Written `nanoseconds` after its minute.
    pub fn nanoseconds(mut self, nanoseconds: i64) -> Self {
        self.0.created_at += TimeDelta::nanoseconds(nanoseconds);
        self
    }

    pub fn build(self) -> Message {
        self.0
    }
}

/// The upload `media/{owner}/{name}`, whose id is `name`.
pub fn upload_ref(owner: &str, name: &str) -> UploadRef {
    UploadRef {
        owner: self::owner(owner),
        id: UploadId(name.to_owned()),
        source: ObjectKey::new(format!("media/{owner}/{name}")).unwrap(),
    }
}

/// The time `minute` minutes after [`base_time`], with nanoseconds a store must keep.
pub(crate) fn at(minute: i64) -> DateTime<Utc> {
    base_time() + TimeDelta::minutes(minute) + TimeDelta::nanoseconds(123_456_789)
}

/// `owner`'s upload `name` in `state` (`transcoding` at `percent`), written at `minute`.
pub fn upload(
    owner: &str,
    name: &str,
    state: UploadState,
    percent: Option<u8>,
    minute: i64,
) -> UploadRecord {
    let upload = upload_ref(owner, name);
    match state {
        UploadState::Transcoding => UploadRecord::progress(&upload, percent, at(minute)),
        UploadState::Rejected => UploadRecord::rejected(&upload, "not an audio file", at(minute)),
        UploadState::Superseded => UploadRecord::superseded(&upload, REPLACED, at(minute)),
        UploadState::Completed | UploadState::CompletedWithWarnings => UploadRecord {
            percent: Some(100),
            reason: (state == UploadState::CompletedWithWarnings).then(|| "upsampled".into()),
            outputs: message(owner, name, minute).outputs,
            ..UploadRecord::new(&upload, state, at(minute))
        },
        _ => UploadRecord::new(&upload, state, at(minute)),
    }
}

/// One upload's life as a transcoder reports it, in order: seen, its job started, progress at
/// each of `percents` (ascending), and `end`.
pub fn upload_life(percents: &[u8], end: UploadState) -> Vec<UploadRecord> {
    let o = "contract-upload-life";
    let mut life = vec![
        upload(o, "life.mp3", UploadState::Received, None, 0),
        upload(o, "life.mp3", UploadState::Transcoding, None, 1),
    ];
    let mut minute = 2;
    for &p in percents {
        life.push(upload(
            o,
            "life.mp3",
            UploadState::Transcoding,
            Some(p),
            minute,
        ));
        minute += 1;
    }
    life.push(upload(o, "life.mp3", end, None, minute));
    life
}

/// What a store holds after `events` were written in that order: the first of the highest rank,
/// with the first event's `created_at`. The model the stores are checked against.
pub fn expected_after(events: &[UploadRecord]) -> Option<UploadRecord> {
    let first = events.first()?;
    let winner = events.iter().fold(
        first,
        |best, e| {
            if e.rank() > best.rank() { e } else { best }
        },
    );
    Some(UploadRecord {
        created_at: first.created_at,
        ..winner.clone()
    })
}

/// The claim on upload `version` of `key`, in the checks' bucket.
pub fn claim(key: &str, version: &str) -> Claim {
    Claim {
        bucket: "contract-bucket".into(),
        key: ObjectKey::new(key).unwrap(),
        version: version.into(),
    }
}
