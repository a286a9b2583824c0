//! What the pipeline needs from a database: messages and upload records per owner, and claims
//! that keep a redelivered upload from starting a second job. DynamoDB serves both in the cloud, an embedded
//! store on one machine; both pass the same contract tests.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::error::Cause;
use crate::ids::{Claim, MessageId, Owner, UploadId};
use crate::message::Message;
use crate::upload::{UploadPage, UploadRecord};

/// The database failed us. `Unavailable` is worth a retry; the others are not. The database's
/// own error is the source, not part of the text: write one out with [`Chain`](crate::Chain).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("the page cursor is not valid for this caller")]
    BadCursor,
    #[error("the store returned an item it cannot read: {context}")]
    Corrupt {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl StoreError {
    /// The store did not answer, or refused us, where `context` says.
    pub fn unavailable(context: impl Into<String>) -> Self {
        Self::Unavailable {
            context: context.into(),
            cause: None,
        }
    }

    /// The store holds, or was handed, something it cannot read, which `context` names.
    pub fn corrupt(context: impl Into<String>) -> Self {
        Self::Corrupt {
            context: context.into(),
            cause: None,
        }
    }

    /// The same error, with the error beneath it as its source.
    pub fn caused_by(mut self, err: impl Into<Cause>) -> Self {
        if let Self::Unavailable { cause, .. } | Self::Corrupt { cause, .. } = &mut self {
            *cause = Some(err.into());
        }
        self
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<Message>,
    /// Opaque: hand it back to get the next page.
    pub next_cursor: Option<String>,
}

pub trait MessageStore: Send + Sync {
    /// Stores `message` unless its owner already has a message with that id. Returns whether it
    /// was stored now.
    fn insert(&self, message: &Message) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The owner's unread messages, newest first.
    fn list_unread(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// Marks the owner's message read. Returns false if the owner has no message with that id;
    /// dismissing twice is not an error.
    fn dismiss(
        &self,
        owner: &Owner,
        id: &MessageId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

pub trait UploadStore: Send + Sync {
    /// Writes `record` unless the owner's record of that upload already ranks as high or higher
    /// ([`UploadRecord::rank`]), in one conditional write; the first `created_at` given is kept.
    /// Returns whether it was written now.
    fn advance(
        &self,
        record: &UploadRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The owner's uploads, newest first by `created_at`.
    fn list_uploads(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<UploadPage, StoreError>> + Send;

    /// One of the owner's uploads; another owner's does not exist.
    fn upload(
        &self,
        owner: &Owner,
        id: &UploadId,
    ) -> impl Future<Output = Result<Option<UploadRecord>, StoreError>> + Send;
}

/// What taking a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Ours now: start the job, then record it or release the claim.
    Claimed,
    /// A job was already started for this upload.
    AlreadyStarted { job_id: String },
    /// Another invocation holds the claim right now and has not finished.
    Held,
}

pub trait ClaimStore: Send + Sync {
    /// Takes the claim unless a job was started for it, or another invocation took it less than
    /// the lease ago. A claim older than the lease that never recorded a job is taken over, so a
    /// crash between claiming and starting loses nothing.
    fn claim(
        &self,
        claim: &Claim,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;

    /// Records the job started under a claim we hold.
    fn record_job(
        &self,
        claim: &Claim,
        job_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives up a claim whose job could not be started, so that the retry can take it.
    fn release(&self, claim: &Claim) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// How long a claim without a job holds off other invocations: longer than the starter's timeout
/// (30 s), shorter than the gap before Lambda's second retry of a failed event (about 3 min).
pub const CLAIM_LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(90);

/// Messages disappear this long after they are written, and upload records this long after their
/// last change, unless configured otherwise.
pub const DEFAULT_MESSAGE_TTL_DAYS: u32 = 30;

/// A shared store is a store: the local runner hands one to several tasks.
impl<T: MessageStore> MessageStore for std::sync::Arc<T> {
    fn insert(&self, message: &Message) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).insert(message)
    }

    fn list_unread(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send {
        (**self).list_unread(owner, limit, cursor)
    }

    fn dismiss(
        &self,
        owner: &Owner,
        id: &MessageId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).dismiss(owner, id)
    }
}

impl<T: UploadStore> UploadStore for std::sync::Arc<T> {
    fn advance(
        &self,
        record: &UploadRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).advance(record)
    }

    fn list_uploads(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<UploadPage, StoreError>> + Send {
        (**self).list_uploads(owner, limit, cursor)
    }

    fn upload(
        &self,
        owner: &Owner,
        id: &UploadId,
    ) -> impl Future<Output = Result<Option<UploadRecord>, StoreError>> + Send {
        (**self).upload(owner, id)
    }
}

impl<T: ClaimStore> ClaimStore for std::sync::Arc<T> {
    fn claim(
        &self,
        claim: &Claim,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send {
        (**self).claim(claim, now)
    }

    fn record_job(
        &self,
        claim: &Claim,
        job_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).record_job(claim, job_id)
    }

    fn release(&self, claim: &Claim) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).release(claim)
    }
}
