//! DynamoDB: messages, upload records and claims in one table, `MessagesTable` in `template.yaml`.
//!
//! - A message is `pk = USER#{owner}`, `sk = MSG#{id}`. While unread it also carries
//!   `unread_pk = USER#{owner}` and `unread_sk = {created_at, to the ms}#{id}`, the keys of the
//!   sparse index `unread`: a listing queries one owner's unread messages, newest first, and costs
//!   the same however much other owners or dismissed history the table holds. Dismissing removes
//!   the two attributes, which takes the message out of the index.
//! - An upload record is `pk = USER#{owner}`, `sk = UPLOAD#{id}`, with `rank` and
//!   `upload_pk = USER#{owner}`, `upload_sk = {created_at, to the ms}#{id}`, the keys of the index
//!   `uploads`: a listing queries one owner's newest uploads and costs the same however much other
//!   owners or older uploads the table holds. Moving a record forward is one `UpdateItem` on
//!   condition that it does not exist or ranks lower; `created_at` and `upload_sk` are set only
//!   if missing, so the first time seen stays. Nothing is read first.
//! - A claim is `pk = CLAIM#{bucket}/{key}`, `sk = VERSION#{version}`, with `claimed_at` (epoch
//!   ms) and, once its job started, `job_id`. Conditional writes make taking it atomic.
//! - Items expire through `expires_at` (epoch s): messages after the configured TTL, upload
//!   records the same TTL after their last change, claims after a week, long after the last
//!   redelivery of their event.
//! - A page cursor is the last listed item's keys, as URL-safe base64 of JSON; it is refused for
//!   any owner but its own, so it cannot open someone else's list.
//!
//! Nothing here decides what a message says or when a job starts: that is transcoder-core's.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};
use transcoder_core::{
    CLAIM_LEASE, Claim, ClaimOutcome, ClaimStore, ConfigError, DEFAULT_MESSAGE_TTL_DAYS, Env,
    Message, MessageId, MessageStore, Owner, Page, StoreError, UploadId, UploadPage, UploadRecord,
    UploadStore,
};

type Item = HashMap<String, AttributeValue>;

/// The sparse index of unread messages.
pub const UNREAD_INDEX: &str = "unread";
/// The index of upload records by owner and time.
pub const UPLOADS_INDEX: &str = "uploads";

/// A listing: which index it queries, its key attributes, and the table sort-key prefix of the
/// items it lists.
struct Listing {
    index: &'static str,
    pk: &'static str,
    sk: &'static str,
    item: &'static str,
}

const UNREAD: Listing = Listing {
    index: UNREAD_INDEX,
    pk: "unread_pk",
    sk: "unread_sk",
    item: "MSG#",
};

const UPLOADS: Listing = Listing {
    index: UPLOADS_INDEX,
    pk: "upload_pk",
    sk: "upload_sk",
    item: "UPLOAD#",
};

/// How long a claim is kept: far longer than S3 keeps redelivering an event.
const CLAIM_TTL: TimeDelta = TimeDelta::days(7);

/// DynamoDB refuses a sort key longer than this many bytes.
const MAX_SORT_KEY_BYTES: usize = 1024;

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    message_ttl: TimeDelta,
}

impl DynamoStore {
    pub const MAX_MESSAGE_TTL_DAYS: u32 = 3650;
    /// Every variable [`DynamoStore::from_env`] reads.
    pub const VARIABLES: &[&str] = &["TABLE_NAME", "MESSAGE_TTL_DAYS"];

    /// A store on `table`, whose messages expire `message_ttl_days` after they were written.
    pub fn new(client: Client, table: impl Into<String>, message_ttl_days: u32) -> Self {
        Self {
            client,
            table: table.into(),
            message_ttl: TimeDelta::days(i64::from(message_ttl_days)),
        }
    }

    /// Reads `TABLE_NAME` (required) and `MESSAGE_TTL_DAYS` (default 30, at most 3650).
    pub fn from_env(sdk: &SdkConfig, env: &impl Env) -> Result<Self, ConfigError> {
        let table = env
            .get("TABLE_NAME")
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or(ConfigError::Missing { name: "TABLE_NAME" })?;
        let days = env.parse("MESSAGE_TTL_DAYS", DEFAULT_MESSAGE_TTL_DAYS)?;
        if !(1..=Self::MAX_MESSAGE_TTL_DAYS).contains(&days) {
            return Err(ConfigError::invalid(
                "MESSAGE_TTL_DAYS",
                &days.to_string(),
                format!("must be between 1 and {} days", Self::MAX_MESSAGE_TTL_DAYS),
            ));
        }
        Ok(Self::new(Client::new(sdk), table, days))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn user_pk(owner: &Owner) -> String {
    format!("USER#{owner}")
}

fn message_key(owner: &Owner, id: &MessageId) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(user_pk(owner))),
        ("sk".to_owned(), s(format!("MSG#{id}"))),
    ])
}

/// Sorts an owner's items by time, then id, as the in-memory store does.
fn time_sk(at: DateTime<Utc>, id: &str) -> String {
    format!("{}#{id}", at.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

fn upload_key(owner: &Owner, id: &UploadId) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(user_pk(owner))),
        ("sk".to_owned(), s(format!("{}{id}", UPLOADS.item))),
    ])
}

fn claim_key(claim: &Claim) -> Item {
    HashMap::from([
        (
            "pk".to_owned(),
            s(format!("CLAIM#{}/{}", claim.bucket, claim.key)),
        ),
        ("sk".to_owned(), s(format!("VERSION#{}", claim.version))),
    ])
}

/// Whether a conditional write was made: `false` when its condition failed, which is an answer,
/// not an error.
fn conditional<T, E, R>(written: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match written {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error().and_then(ProvideErrorMetadata::code)
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(unavailable(e)),
    }
}

/// Any failure but the ones a caller can act on: worth a retry.
fn unavailable<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::unavailable("DynamoDB").caused_by(e)
}

/// Where the next page starts: the keys of the last item listed, in the table (`pk`, `sk`) and
/// in the listing's index (`index_pk`, `index_sk`).
#[derive(Debug, PartialEq, Eq, Deserialize)]
struct Cursor {
    pk: String,
    sk: String,
    index_pk: String,
    index_sk: String,
}

impl Cursor {
    fn of(item: &Item, listing: &Listing) -> Result<Self, StoreError> {
        let key = |name: &str| match item.get(name) {
            Some(AttributeValue::S(value)) => Ok(value.clone()),
            _ => Err(StoreError::corrupt(format!(
                "a listed item has no string attribute {name}"
            ))),
        };
        Ok(Self {
            pk: key("pk")?,
            sk: key("sk")?,
            index_pk: key(listing.pk)?,
            index_sk: key(listing.sk)?,
        })
    }

    fn encode(&self) -> String {
        let json = serde_json::json!({
            "pk": self.pk,
            "sk": self.sk,
            "index_pk": self.index_pk,
            "index_sk": self.index_sk,
        });
        URL_SAFE_NO_PAD.encode(json.to_string())
    }

    /// Reads a cursor of `listing` handed back by the owner whose partition is `pk`.
    fn decode(text: &str, pk: &str, listing: &Listing) -> Result<Self, StoreError> {
        let json = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| StoreError::BadCursor)?;
        let cursor: Self = serde_json::from_slice(&json).map_err(|_| StoreError::BadCursor)?;
        let sk_ok = cursor.sk.starts_with(listing.item) && !cursor.index_sk.is_empty();
        if cursor.pk != pk || cursor.index_pk != pk || !sk_ok {
            return Err(StoreError::BadCursor);
        }
        Ok(cursor)
    }

    fn into_key(self, listing: &Listing) -> Item {
        HashMap::from([
            ("pk".to_owned(), s(self.pk)),
            ("sk".to_owned(), s(self.sk)),
            (listing.pk.to_owned(), s(self.index_pk)),
            (listing.sk.to_owned(), s(self.index_sk)),
        ])
    }
}

impl DynamoStore {
    /// One page of `owner`'s items in `listing`, newest first, each read as a `T`.
    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        listing: &Listing,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<T>, Option<String>), StoreError> {
        let pk = user_pk(owner);
        let mut start = cursor
            .map(|c| Cursor::decode(c, &pk, listing))
            .transpose()?
            .map(|c| c.into_key(listing));
        if limit == 0 {
            return Ok((Vec::new(), None));
        }
        // One more than asked tells whether there is a next page, so the last page says so.
        let wanted = limit.saturating_add(1);
        let mut items = Vec::new();
        loop {
            let remaining = wanted - items.len();
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(listing.index)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", listing.pk)
                .expression_attribute_values(":pk", s(&pk))
                .scan_index_forward(false)
                .limit(i32::try_from(remaining).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            items.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            // A query stops at 1 MB whatever its limit: then there is more to read.
            if items.len() >= wanted || start.is_none() {
                break;
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = match items.last() {
            Some(last) if more => Some(Cursor::of(last, listing)?.encode()),
            _ => None,
        };
        let items = items
            .into_iter()
            .map(|item| {
                from_item(item).map_err(|e| {
                    StoreError::corrupt(format!("an item of {owner} in {}", listing.index))
                        .caused_by(e)
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((items, next_cursor))
    }
}

impl MessageStore for DynamoStore {
    async fn insert(&self, message: &Message) -> Result<bool, StoreError> {
        let mut item: Item = to_item(message).map_err(|e| {
            StoreError::corrupt(format!("message {} cannot be written", message.id)).caused_by(e)
        })?;
        let pk = user_pk(&message.owner);
        item.extend(message_key(&message.owner, &message.id));
        item.insert(UNREAD.pk.into(), s(pk));
        item.insert(
            UNREAD.sk.into(),
            s(time_sk(message.created_at, &message.id.0)),
        );
        let expires_at = message.created_at + self.message_ttl;
        item.insert("expires_at".into(), n(expires_at.timestamp()));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional(put)
    }

    async fn list_unread(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let (messages, next_cursor) = self.page(&UNREAD, owner, limit, cursor).await?;
        Ok(Page {
            messages,
            next_cursor,
        })
    }

    async fn dismiss(&self, owner: &Owner, id: &MessageId) -> Result<bool, StoreError> {
        // No message has a key DynamoDB would refuse; asking would fail as if it were down.
        if "MSG#".len() + id.0.len() > MAX_SORT_KEY_BYTES {
            return Ok(false);
        }
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(message_key(owner, id)))
            .update_expression("REMOVE unread_pk, unread_sk")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        conditional(update)
    }
}

impl UploadStore for DynamoStore {
    async fn advance(&self, record: &UploadRecord) -> Result<bool, StoreError> {
        let attributes: Item = to_item(record).map_err(|e| {
            StoreError::corrupt(format!("upload {} cannot be written", record.id)).caused_by(e)
        })?;
        let pk = user_pk(&record.owner);
        let expires_at = record.updated_at + self.message_ttl;
        // Each attribute, and whether it is written only when missing: the first time an upload
        // was seen stays its time, whoever writes later.
        let mut attributes: Vec<(String, AttributeValue, bool)> = attributes
            .into_iter()
            .map(|(name, value)| {
                let first_only = name == "created_at";
                (name, value, first_only)
            })
            .collect();
        attributes.extend([
            (UPLOADS.pk.to_owned(), s(&pk), false),
            (
                UPLOADS.sk.to_owned(),
                s(time_sk(record.created_at, &record.id.0)),
                true,
            ),
            ("expires_at".to_owned(), n(expires_at.timestamp()), false),
            ("rank".to_owned(), n(i64::from(record.rank())), false),
        ]);
        let rank = attributes.len() - 1;
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(upload_key(&record.owner, &record.id)))
            // Only forward: a late, repeated or reordered event changes nothing.
            .condition_expression(format!("attribute_not_exists(pk) OR #a{rank} < :v{rank}"));
        let mut sets = Vec::with_capacity(attributes.len());
        for (i, (name, value, first_only)) in attributes.into_iter().enumerate() {
            sets.push(if first_only {
                format!("#a{i} = if_not_exists(#a{i}, :v{i})")
            } else {
                format!("#a{i} = :v{i}")
            });
            update = update
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":v{i}"), value);
        }
        let written = update
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await;
        conditional(written)
    }

    async fn list_uploads(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<UploadPage, StoreError> {
        let (uploads, next_cursor) = self.page(&UPLOADS, owner, limit, cursor).await?;
        Ok(UploadPage {
            uploads,
            next_cursor,
        })
    }

    async fn upload(
        &self,
        owner: &Owner,
        id: &UploadId,
    ) -> Result<Option<UploadRecord>, StoreError> {
        // No upload has a key DynamoDB would refuse; asking would fail as if it were down.
        if UPLOADS.item.len() + id.0.len() > MAX_SORT_KEY_BYTES {
            return Ok(None);
        }
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(upload_key(owner, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        found
            .item
            .map(|item| {
                from_item(item).map_err(|e| {
                    StoreError::corrupt(format!("upload {id} of {owner}")).caused_by(e)
                })
            })
            .transpose()
    }
}

impl ClaimStore for DynamoStore {
    async fn claim(&self, claim: &Claim, now: DateTime<Utc>) -> Result<ClaimOutcome, StoreError> {
        let mut item = claim_key(claim);
        item.insert("claimed_at".into(), n(now.timestamp_millis()));
        item.insert("expires_at".into(), n((now + CLAIM_TTL).timestamp()));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // Free, or held past its lease by an invocation that never started the job.
            .condition_expression(
                "attribute_not_exists(pk) OR (attribute_not_exists(job_id) AND claimed_at <= :stale)",
            )
            .expression_attribute_values(":stale", n((now - CLAIM_LEASE).timestamp_millis()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let e = match put {
            Ok(_) => return Ok(ClaimOutcome::Claimed),
            Err(e) => e,
        };
        let Some(PutItemError::ConditionalCheckFailedException(failed)) = e.as_service_error()
        else {
            return Err(unavailable(e));
        };
        match failed.item().and_then(|old| old.get("job_id")) {
            Some(AttributeValue::S(job_id)) => Ok(ClaimOutcome::AlreadyStarted {
                job_id: job_id.clone(),
            }),
            Some(other) => Err(StoreError::corrupt(format!(
                "the claim on {}/{} has a job_id that is not a string: {other:?}",
                claim.bucket, claim.key
            ))),
            None => Ok(ClaimOutcome::Held),
        }
    }

    async fn record_job(&self, claim: &Claim, job_id: &str) -> Result<(), StoreError> {
        // Written even if the claim vanished, so that a redelivery still finds the job.
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(claim_key(claim)))
            .update_expression(
                "SET job_id = :job, expires_at = if_not_exists(expires_at, :expires)",
            )
            .expression_attribute_values(":job", s(job_id))
            .expression_attribute_values(":expires", n((Utc::now() + CLAIM_TTL).timestamp()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(claim_key(claim)))
            // A claim whose job started stays: it is what stops a second job.
            .condition_expression("attribute_not_exists(job_id)")
            .send()
            .await;
        // Gone already, or kept because its job started: either way not ours to give back.
        conditional(delete).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use aws_config::{BehaviorVersion, Region};

    use super::*;

    fn sdk() -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::from_static("eu-west-1"))
            .build()
    }

    #[test]
    fn configuration_from_the_environment() {
        let store = DynamoStore::from_env(&sdk(), &[("TABLE_NAME", " messages ")]).unwrap();
        assert_eq!(store.table(), "messages");
        assert_eq!(store.message_ttl, TimeDelta::days(30));
        let store = DynamoStore::from_env(
            &sdk(),
            &[("TABLE_NAME", "messages"), ("MESSAGE_TTL_DAYS", "3650")],
        )
        .unwrap();
        assert_eq!(store.message_ttl, TimeDelta::days(3650));
    }

    #[test]
    fn bad_configuration_names_the_variable() {
        assert_eq!(
            DynamoStore::from_env(&sdk(), &[]).unwrap_err(),
            ConfigError::Missing { name: "TABLE_NAME" }
        );
        for days in ["0", "3651", "-1", "a month"] {
            let err = DynamoStore::from_env(
                &sdk(),
                &[("TABLE_NAME", "messages"), ("MESSAGE_TTL_DAYS", days)],
            )
            .unwrap_err();
            assert!(
                err.to_string().starts_with("MESSAGE_TTL_DAYS='"),
                "{days}: {err}"
            );
        }
    }

    #[test]
    fn a_cursor_round_trips_for_its_owner_and_listing_only() {
        let cursor = Cursor {
            pk: "USER#alice".into(),
            sk: "MSG#job-1".into(),
            index_pk: "USER#alice".into(),
            index_sk: "2026-11-23T08:00:00.123Z#job-1".into(),
        };
        let text = cursor.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text} is not URL-safe"
        );
        assert_eq!(
            Cursor::decode(&text, "USER#alice", &UNREAD).unwrap(),
            cursor
        );
        assert!(matches!(
            Cursor::decode(&text, "USER#bob", &UNREAD),
            Err(StoreError::BadCursor)
        ));
        // A message cursor does not page through uploads, nor the other way round.
        assert!(matches!(
            Cursor::decode(&text, "USER#alice", &UPLOADS),
            Err(StoreError::BadCursor)
        ));
        let uploads = Cursor {
            sk: "UPLOAD#u1".into(),
            ..cursor
        };
        assert_eq!(
            Cursor::decode(&uploads.encode(), "USER#alice", &UPLOADS).unwrap(),
            uploads
        );
        assert_eq!(
            uploads
                .into_key(&UPLOADS)
                .keys()
                .collect::<std::collections::BTreeSet<_>>(),
            ["pk", "sk", "upload_pk", "upload_sk"]
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .iter()
                .collect()
        );
        // Someone else's partition behind one's own index key is refused too.
        let forged = Cursor {
            pk: "USER#bob".into(),
            sk: "MSG#job-1".into(),
            index_pk: "USER#alice".into(),
            index_sk: "2026-11-23T08:00:00.123Z#job-1".into(),
        };
        assert!(matches!(
            Cursor::decode(&forged.encode(), "USER#alice", &UNREAD),
            Err(StoreError::BadCursor)
        ));
    }

    #[test]
    fn listing_keys_sort_by_time_to_the_millisecond() {
        let mut message = transcoder_testkit::contract::message("alice", "job-1", 0);
        assert_eq!(
            time_sk(message.created_at, &message.id.0),
            "2026-11-23T08:00:00.123Z#job-1"
        );
        message.created_at += TimeDelta::hours(3);
        assert_eq!(
            time_sk(message.created_at, &message.id.0),
            "2026-11-23T11:00:00.123Z#job-1"
        );
    }
}
