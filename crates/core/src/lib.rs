//! The audio-transcoder domain: object keys, transcode jobs, and the handlers that turn events into
//! jobs, written against small traits that the outside world implements.
//!
//! Nothing here talks to AWS. The Lambda binaries and the local runner supply adapters for the
//! traits and call the same handlers, so what happens when a file lands is decided in one place.

mod analysis;
mod choice;
mod completion;
mod config;
mod env;
mod error;
mod format;
mod ids;
mod intake;
mod job;
mod key;
mod links;
mod message;
pub mod metadata;
mod outcome;
mod queue;
mod record;
mod sniff;
mod source;
mod start;
mod store;
mod transcoder;
mod upload;

pub use analysis::Analysis;
pub use choice::{
    Backend, Choice, ChoiceError, ELASTIC_TRANSCODER_KBPS, LOUDNESS_KEY, MEDIACONVERT_AAC_KBPS,
    OUTPUTS_KEY, OutputChoice, Outputs,
};
pub use completion::{CompletedOutput, Completion, Notification, NotificationError, Progress};
pub use config::{Location, Prefixes, StartConfig, prefix};
pub use env::{ConfigError, Env, ProcessEnv};
pub use error::{Cause, Chain};
pub use format::{Loudness, OutputFormat, UnknownFormat};
pub use ids::{Claim, JobId, MessageId, Owner, OwnerError, UploadId, UploadRef};
pub use intake::{ABANDONED_REASON, BatchResponse, Handled, StartEvent, start_from_event};
pub use job::{AUDIO_EXTENSIONS, JobMessage, JobOutput, TranscodeJob, is_audio};
pub use key::{Escaped, KeyError, ObjectKey, is_nfc, nfc};
pub use links::{
    LINK_LIFETIME, Link, LinkError, Links, METADATA_HEADER_PREFIX, UPLOAD_LINK_LIFETIME, Upload,
};
pub use message::Message;
pub use outcome::{MessageOutput, Outcome};
pub use queue::{Enqueued, JobQueue, QueuedJob, local_job_id};
pub use record::{
    NO_OWN_OUTPUTS, RawSnsEvent, RecordConfig, RecordError, RecordReport, record_completion,
};
pub use sniff::{AudioFormat, NotAudio, SNIFF_BYTES, Sniffed, sniff};
pub use source::{
    Examined, Head, MAX_READS, SourceError, SourceObject, SourceReader, UserMetadata, examine,
    identify,
};
pub use start::{NotStarted, RawS3Event, StartError, StartReport, plan, start_transcode};
pub use store::{
    CLAIM_LEASE, ClaimOutcome, ClaimStore, DEFAULT_MESSAGE_TTL_DAYS, MessageStore, Page,
    StoreError, UploadStore,
};
pub use transcoder::{Paced, Transcoder, TranscoderError};
pub use upload::{GONE, REPLACED, UploadPage, UploadRecord, UploadState};
