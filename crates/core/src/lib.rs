//! The audio-transcoder domain: object keys, transcode jobs, and the handlers that turn events into
//! jobs, written against small traits that the outside world implements.
//!
//! Nothing here talks to AWS. The Lambda binaries and the local runner supply adapters for the
//! traits and call the same handlers, so what happens when a file lands is decided in one place.

pub mod analysis;
pub mod choice;
pub mod completion;
pub mod config;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod intake;
pub mod job;
pub mod key;
pub mod links;
pub mod memory;
pub mod message;
pub mod metadata;
pub mod queue;
pub mod record;
pub mod sniff;
pub mod source;
pub mod start;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod transcoder;
pub mod upload;

pub use analysis::Analysis;
pub use choice::{Backend, Choice, ChoiceError, OutputChoice, Outputs};
pub use completion::{Completion, Notification, NotificationError, Outcome};
pub use config::{ConfigError, Prefixes, StartConfig};
pub use intake::{BatchResponse, Handled, StartEvent, start_from_event};
pub use job::{Claim, JobMessage, JobOutput, Loudness, OutputFormat, Owner, TranscodeJob};
pub use key::{Escaped, KeyError, ObjectKey, is_nfc, nfc};
pub use links::{Link, LinkError, Links, Upload};
pub use message::{Message, MessageId};
pub use queue::{Enqueued, JobQueue, QueuedJob};
pub use record::{RawSnsEvent, RecordConfig, RecordError, RecordReport, record_completion};
pub use sniff::{AudioFormat, NotAudio, SNIFF_BYTES, Sniffed, sniff};
pub use source::{
    Examined, Head, SourceError, SourceObject, SourceReader, UserMetadata, examine, identify,
};
pub use start::{RawS3Event, StartError, StartReport, start_transcode};
pub use store::{ClaimOutcome, ClaimStore, MessageStore, Page, StoreError, UploadStore};
pub use transcoder::{JobId, Paced, Transcoder, TranscoderError};
pub use upload::{UploadId, UploadPage, UploadRecord, UploadRef, UploadState};
