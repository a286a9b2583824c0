//! The contract every store must honour, as checks that run against any implementation of
//! [`MessageStore`], [`UploadStore`] and [`ClaimStore`]: the in-memory store runs them in this crate's tests, the
//! DynamoDB store against DynamoDB Local. Only tests build this module (feature `contract`); it
//! also holds [`UnsignedLinks`], the links every test of the API hands out.
//!
//! Each check uses its own owners, buckets and keys, so they can all share one store; they panic
//! on the first broken promise.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use crate::format::OutputFormat;
use crate::ids::{Claim, JobId, MessageId, Owner, UploadId, UploadRef};
use crate::job::TranscodeJob;
use crate::key::ObjectKey;
use crate::links::{LINK_LIFETIME, Link, LinkError, Links, UPLOAD_LINK_LIFETIME, Upload};
use crate::message::Message;
use crate::outcome::{MessageOutput, Outcome};
use crate::queue::{JobQueue, local_job_id};
use crate::store::{CLAIM_LEASE, ClaimOutcome, ClaimStore, MessageStore, StoreError, UploadStore};
use crate::upload::{REPLACED, UploadRecord, UploadState};

/// Runs every check, one after the other, on one store.
pub async fn all<S: MessageStore + UploadStore + ClaimStore>(store: &S) {
    inserting_twice_stores_once(store).await;
    unread_messages_are_listed_newest_first(store).await;
    pages_list_each_unread_message_once(store).await;
    other_owners_messages_are_never_listed(store).await;
    a_cursor_is_only_valid_for_its_owner(store).await;
    a_garbage_cursor_is_refused(store).await;
    dismissed_messages_leave_the_unread_list(store).await;
    only_the_owner_can_dismiss_a_message(store).await;
    a_claim_starts_one_job(store).await;
    a_released_claim_can_be_taken_again(store).await;
    a_stale_claim_without_a_job_is_taken_over(store).await;
    versions_of_one_key_are_claimed_independently(store).await;
    an_upload_only_moves_forward(store).await;
    progress_before_the_upload_was_seen_creates_its_record(store).await;
    a_rejected_upload_stays_rejected(store).await;
    a_superseded_upload_is_never_completed_by_a_late_notification(store).await;
    a_completed_upload_is_never_superseded(store).await;
    uploads_are_listed_newest_first_in_pages(store).await;
    other_owners_uploads_do_not_exist(store).await;
    an_upload_cursor_is_only_valid_for_its_owner(store).await;
}

/// Runs every check of the local job queue, one after the other, on one queue.
pub async fn queue<Q: JobQueue + UploadStore>(queue: &Q) {
    enqueueing_an_upload_twice_adds_one_job(queue).await;
    jobs_are_taken_oldest_first_and_each_once(queue).await;
    a_finished_job_waits_for_delivery_and_is_then_done(queue).await;
    a_newer_upload_of_a_key_supersedes_the_older_jobs(queue).await;
    a_job_whose_input_was_replaced_ends_untold(queue).await;
    every_superseded_upload_ends_superseded(queue).await;
    running_jobs_are_queued_again_after_a_stop(queue).await;
    assert_eq!(
        queue.waiting().await.unwrap(),
        0,
        "every check left its jobs done"
    );
    assert!(queue.undelivered().await.unwrap().is_empty());
}

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

/// Takes and finishes whatever is queued, delivering it, so that a check leaves nothing behind.
async fn drain<Q: JobQueue>(queue: &Q) {
    while let Some(taken) = queue.take().await.unwrap() {
        assert!(queue.finish(&taken.id, "{}").await.unwrap());
    }
    for (id, _) in queue.undelivered().await.unwrap() {
        queue.delivered(&id).await.unwrap();
    }
}

pub async fn enqueueing_an_upload_twice_adds_one_job<Q: JobQueue>(queue: &Q) {
    let job = job("q-twice", "song.mp3", "1");
    let first = queue.enqueue(&job).await.unwrap();
    let again = queue.enqueue(&job).await.unwrap();
    assert!(first.new && !again.new);
    assert_eq!(first.id, again.id);
    assert_eq!(first.id, local_job_id(&job));
    assert_eq!(queue.waiting().await.unwrap(), 1);
    let taken = queue.take().await.unwrap().unwrap();
    assert_eq!(
        (taken.id.clone(), taken.job, taken.runs),
        (first.id, job.clone(), 1)
    );
    assert!(queue.take().await.unwrap().is_none());
    // Enqueued again while it runs, or once it is done: still the one job, not run twice.
    assert!(!queue.enqueue(&job).await.unwrap().new);
    assert!(queue.finish(&taken.id, "{}").await.unwrap());
    queue.delivered(&taken.id).await.unwrap();
    assert!(!queue.enqueue(&job).await.unwrap().new);
    assert!(queue.take().await.unwrap().is_none());
}

pub async fn jobs_are_taken_oldest_first_and_each_once<Q: JobQueue>(queue: &Q) {
    let names = ["c.mp3", "a.mp3", "b.mp3"];
    for name in names {
        queue.enqueue(&job("q-order", name, "1")).await.unwrap();
    }
    let mut taken = Vec::new();
    while let Some(next) = queue.take().await.unwrap() {
        taken.push(next.job.source.file_name().to_owned());
        assert!(queue.finish(&next.id, "{}").await.unwrap());
    }
    assert_eq!(taken, names);
    drain(queue).await;
}

pub async fn a_finished_job_waits_for_delivery_and_is_then_done<Q: JobQueue>(queue: &Q) {
    let job = job("q-finish", "song.mp3", "1");
    let id = queue.enqueue(&job).await.unwrap().id;
    // Only a running job finishes.
    assert!(!queue.finish(&id, "early").await.unwrap());
    assert!(
        !queue
            .finish(&JobId("local-unknown".into()), "{}")
            .await
            .unwrap()
    );
    queue.take().await.unwrap().unwrap();
    assert!(queue.finish(&id, r#"{"state":"COMPLETED"}"#).await.unwrap());
    assert!(!queue.finish(&id, "twice").await.unwrap());
    assert_eq!(queue.waiting().await.unwrap(), 0);
    assert_eq!(
        queue.undelivered().await.unwrap(),
        [(id.clone(), r#"{"state":"COMPLETED"}"#.to_owned())]
    );
    // Kept until delivered, also across a restart.
    assert!(queue.recover().await.unwrap().is_empty());
    assert_eq!(queue.undelivered().await.unwrap().len(), 1);
    queue.delivered(&id).await.unwrap();
    assert!(queue.undelivered().await.unwrap().is_empty());
}

pub async fn a_job_whose_input_was_replaced_ends_untold<Q: JobQueue>(queue: &Q) {
    let job = job("q-replaced", "song.mp3", "1");
    let id = queue.enqueue(&job).await.unwrap().id;
    queue.take().await.unwrap().unwrap();
    queue.replaced(&id).await.unwrap();
    assert!(!queue.finish(&id, "{}").await.unwrap());
    assert_eq!(queue.waiting().await.unwrap(), 0);
    assert!(queue.undelivered().await.unwrap().is_empty());
    assert!(queue.recover().await.unwrap().is_empty());
    // Done: neither a redelivery of the upload nor a restart runs it again.
    assert!(!queue.enqueue(&job).await.unwrap().new);
    assert!(queue.take().await.unwrap().is_none());
}

pub async fn a_newer_upload_of_a_key_supersedes_the_older_jobs<Q: JobQueue>(queue: &Q) {
    let other = queue
        .enqueue(&job("q-newer", "other.mp3", "1"))
        .await
        .unwrap();
    let queued = queue
        .enqueue(&job("q-newer", "song.mp3", "1"))
        .await
        .unwrap();
    // The second version arrives while the first still waits: the first will never run.
    let second = queue
        .enqueue(&job("q-newer", "song.mp3", "2"))
        .await
        .unwrap();
    assert_eq!(second.superseded, std::slice::from_ref(&queued.id));
    let running = queue.take().await.unwrap().unwrap();
    assert_eq!(running.id, other.id, "the other key's job is untouched");
    let running = queue.take().await.unwrap().unwrap();
    assert_eq!(running.id, second.id, "the superseded job is never taken");
    // A third version arrives while the second runs: the second's result is discarded.
    let third = queue
        .enqueue(&job("q-newer", "song.mp3", "3"))
        .await
        .unwrap();
    assert_eq!(third.superseded, std::slice::from_ref(&second.id));
    assert!(!queue.finish(&second.id, "{}").await.unwrap());
    // A finished job not yet told is superseded too: the user hears of the file in the bucket.
    assert!(queue.finish(&other.id, "{}").await.unwrap());
    let other_again = queue
        .enqueue(&job("q-newer", "other.mp3", "2"))
        .await
        .unwrap();
    assert_eq!(other_again.superseded, std::slice::from_ref(&other.id));
    assert!(queue.undelivered().await.unwrap().is_empty());
    // An old version enqueued again (a late redelivery) stays superseded and is not run.
    assert!(
        !queue
            .enqueue(&job("q-newer", "song.mp3", "1"))
            .await
            .unwrap()
            .new
    );
    let mut rest = Vec::new();
    while let Some(next) = queue.take().await.unwrap() {
        rest.push(next.id.clone());
        assert!(queue.finish(&next.id, "{}").await.unwrap());
    }
    assert_eq!(rest, [third.id, other_again.id]);
    drain(queue).await;
}

/// The upload record of `job`, as the starter writes it when it sees the upload (`received`) and
/// when its job starts (`transcoding`), or as progress moves it.
async fn seen<S: UploadStore>(store: &S, job: &TranscodeJob, percent: Option<u8>) {
    let upload = job.upload_ref();
    store
        .advance(&UploadRecord::new(&upload, UploadState::Received, at(0)))
        .await
        .unwrap();
    store
        .advance(&UploadRecord::progress(&upload, percent, at(1)))
        .await
        .unwrap();
}

/// The state and reason of `job`'s upload record.
async fn upload_state<S: UploadStore>(
    store: &S,
    job: &TranscodeJob,
) -> (UploadState, Option<String>) {
    let upload = job.upload_ref();
    let record = store.upload(&upload.owner, &upload.id).await.unwrap();
    let record = record.unwrap_or_else(|| panic!("no record of {}", job.source));
    (record.state, record.reason)
}

pub async fn every_superseded_upload_ends_superseded<Q: JobQueue + UploadStore>(queue: &Q) {
    let replaced = || (UploadState::Superseded, Some(REPLACED.to_owned()));
    let v = |version: &str| job("q-ends", "song.mp3", version);
    // Waiting, running at 10 %, and finished but not yet told: each ends when a newer one comes.
    seen(queue, &v("1"), None).await;
    queue.enqueue(&v("1")).await.unwrap();
    seen(queue, &v("2"), None).await;
    queue.enqueue(&v("2")).await.unwrap();
    assert_eq!(upload_state(queue, &v("1")).await, replaced());
    let running = queue.take().await.unwrap().unwrap();
    assert_eq!(running.job, v("2"));
    seen(queue, &v("2"), Some(10)).await;
    seen(queue, &v("3"), None).await;
    queue.enqueue(&v("3")).await.unwrap();
    assert_eq!(upload_state(queue, &v("2")).await, replaced());
    let finished = queue.take().await.unwrap().unwrap();
    assert!(queue.finish(&finished.id, "{}").await.unwrap());
    seen(queue, &v("4"), None).await;
    queue.enqueue(&v("4")).await.unwrap();
    assert_eq!(upload_state(queue, &v("3")).await, replaced());
    // Its input replaced under a running job: it ends too, before the newer upload is seen.
    let running = queue.take().await.unwrap().unwrap();
    seen(queue, &v("4"), Some(60)).await;
    queue.replaced(&running.id).await.unwrap();
    assert_eq!(upload_state(queue, &v("4")).await, replaced());
    // A restart changes none of that, and nothing superseded runs again.
    assert!(queue.recover().await.unwrap().is_empty());
    for version in ["1", "2", "3", "4"] {
        assert_eq!(
            upload_state(queue, &v(version)).await,
            replaced(),
            "{version}"
        );
    }
    // The newest upload, and one whose job was told before a newer one came, keep their ends.
    seen(queue, &v("5"), None).await;
    queue.enqueue(&v("5")).await.unwrap();
    let newest = queue.take().await.unwrap().unwrap();
    assert!(queue.finish(&newest.id, "{}").await.unwrap());
    queue.delivered(&newest.id).await.unwrap();
    let done = upload("q-ends", "song.mp3", UploadState::Completed, None, 5);
    queue
        .advance(&UploadRecord {
            id: v("5").upload_ref().id,
            ..done
        })
        .await
        .unwrap();
    seen(queue, &v("6"), None).await;
    queue.enqueue(&v("6")).await.unwrap();
    assert_eq!(upload_state(queue, &v("5")).await.0, UploadState::Completed);
    assert_eq!(
        upload_state(queue, &v("6")).await.0,
        UploadState::Transcoding
    );
    drain(queue).await;
}

pub async fn running_jobs_are_queued_again_after_a_stop<Q: JobQueue>(queue: &Q) {
    let job = job("q-recover", "long.mp3", "1");
    let id = queue.enqueue(&job).await.unwrap().id;
    queue.take().await.unwrap().unwrap();
    // The process stops here; the next one recovers the job and runs it again, once.
    let recovered = queue.recover().await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(
        (recovered[0].id.clone(), recovered[0].runs),
        (id.clone(), 1)
    );
    assert!(queue.recover().await.unwrap().is_empty());
    assert_eq!(queue.waiting().await.unwrap(), 1);
    let again = queue.take().await.unwrap().unwrap();
    assert_eq!((again.id.clone(), again.runs), (id.clone(), 2));
    assert!(queue.take().await.unwrap().is_none());
    assert!(queue.finish(&id, "{}").await.unwrap());
    drain(queue).await;
}

/// Links that sign nothing: a readable URL that names the method and the key (and, for an upload,
/// the size and type), so a test can see which object a response points at.
pub struct UnsignedLinks;

impl Links for UnsignedLinks {
    async fn download(&self, key: &ObjectKey, now: DateTime<Utc>) -> Result<Link, LinkError> {
        Ok(Link {
            url: format!("https://links.test/get/{key}"),
            expires_at: now + LINK_LIFETIME,
        })
    }

    async fn upload(&self, upload: &Upload, now: DateTime<Utc>) -> Result<Link, LinkError> {
        Ok(Link {
            url: format!(
                "https://links.test/put/{}?size={}&type={}",
                upload.key, upload.size, upload.content_type
            ),
            expires_at: now + UPLOAD_LINK_LIFETIME,
        })
    }
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

async fn insert_all<S: MessageStore>(store: &S, messages: &[Message]) {
    for m in messages {
        assert!(
            store.insert(m).await.unwrap(),
            "{} was not stored the first time",
            m.id
        );
    }
}

/// Every unread message of `owner`, read `limit` at a time, as the pages' ids.
async fn pages<S: MessageStore>(store: &S, owner: &Owner, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_unread(owner, limit, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.messages.len() <= limit, "a page is longer than asked");
        assert!(
            pages.len() < 100,
            "the listing does not end: {pages:?} and more"
        );
        pages.push(page.messages.iter().map(|m| m.id.0.clone()).collect());
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return pages,
        }
    }
}

async fn unread_ids<S: MessageStore>(store: &S, owner: &Owner) -> Vec<String> {
    pages(store, owner, 100).await.concat()
}

pub async fn inserting_twice_stores_once<S: MessageStore>(store: &S) {
    let first = message("contract-insert", "job-1", 0);
    assert!(store.insert(&first).await.unwrap());
    let mut again = first.clone();
    again.text = "a redelivered notification must not overwrite the message".into();
    assert!(!store.insert(&again).await.unwrap());
    let page = store.list_unread(&first.owner, 10, None).await.unwrap();
    assert_eq!(page.messages, [first]);
    assert_eq!(page.next_cursor, None);
}

pub async fn unread_messages_are_listed_newest_first<S: MessageStore>(store: &S) {
    let o = "contract-order";
    let (old, new, middle) = (message(o, "b", 1), message(o, "a", 3), message(o, "c", 2));
    insert_all(store, &[old.clone(), new.clone(), middle.clone()]).await;
    let page = store.list_unread(&owner(o), 10, None).await.unwrap();
    assert_eq!(page.messages, [new, middle, old]);
    assert_eq!(page.next_cursor, None);
}

pub async fn pages_list_each_unread_message_once<S: MessageStore>(store: &S) {
    let o = "contract-pages";
    let messages: Vec<_> = (0..7).map(|i| message(o, &format!("m{i}"), i)).collect();
    insert_all(store, &messages).await;
    assert_eq!(
        pages(store, &owner(o), 3).await,
        [vec!["m6", "m5", "m4"], vec!["m3", "m2", "m1"], vec!["m0"]]
    );
    // A listing that ends on a full page says so, rather than sending the caller to an empty one.
    assert!(
        store
            .dismiss(&owner(o), &MessageId("m0".into()))
            .await
            .unwrap()
    );
    assert_eq!(
        pages(store, &owner(o), 3).await,
        [vec!["m6", "m5", "m4"], vec!["m3", "m2", "m1"]]
    );
    // A message dismissed between two pages is simply not on the second one.
    let first = store.list_unread(&owner(o), 2, None).await.unwrap();
    assert!(
        store
            .dismiss(&owner(o), &MessageId("m4".into()))
            .await
            .unwrap()
    );
    let second = store
        .list_unread(&owner(o), 2, first.next_cursor.as_deref())
        .await
        .unwrap();
    let ids: Vec<_> = second.messages.iter().map(|m| m.id.0.as_str()).collect();
    assert_eq!(ids, ["m3", "m2"]);
}

pub async fn other_owners_messages_are_never_listed<S: MessageStore>(store: &S) {
    let (a, b) = ("contract-isolation", "contract-isolation#b");
    insert_all(
        store,
        &[
            message(a, "a1", 0),
            message(b, "b1", 1),
            message(a, "a2", 2),
        ],
    )
    .await;
    // The same message id for two owners is two messages.
    insert_all(store, &[message(b, "a2", 3)]).await;
    assert_eq!(unread_ids(store, &owner(a)).await, ["a2", "a1"]);
    assert_eq!(unread_ids(store, &owner(b)).await, ["a2", "b1"]);
    assert_eq!(
        unread_ids(store, &owner("contract-isolation-nobody")).await,
        Vec::<String>::new()
    );
}

pub async fn a_cursor_is_only_valid_for_its_owner<S: MessageStore>(store: &S) {
    let (a, b) = ("contract-cursor-a", "contract-cursor-b");
    insert_all(
        store,
        &[
            message(a, "a1", 0),
            message(a, "a2", 1),
            message(a, "a3", 2),
            message(b, "b1", 3),
            message(b, "b2", 4),
        ],
    )
    .await;
    let page = store.list_unread(&owner(a), 1, None).await.unwrap();
    let cursor = page.next_cursor.expect("a has more than one message");
    let stolen = store.list_unread(&owner(b), 1, Some(&cursor)).await;
    assert!(
        matches!(stolen, Err(StoreError::BadCursor)),
        "b used a's cursor and got {stolen:?}"
    );
    // The cursor still works for its owner.
    let next = store
        .list_unread(&owner(a), 1, Some(&cursor))
        .await
        .unwrap();
    assert_eq!(next.messages[0].id.0, "a2");
}

pub async fn a_garbage_cursor_is_refused<S: MessageStore>(store: &S) {
    let o = owner("contract-garbage");
    insert_all(store, &[message(o.as_str(), "g1", 0)]).await;
    for cursor in ["", "garbage", "eyJub3QiOiJhIGN1cnNvciJ9", "%%%", "\n"] {
        let listed = store.list_unread(&o, 10, Some(cursor)).await;
        assert!(
            matches!(listed, Err(StoreError::BadCursor)),
            "cursor {cursor:?} gave {listed:?}"
        );
    }
}

pub async fn dismissed_messages_leave_the_unread_list<S: MessageStore>(store: &S) {
    let o = "contract-dismiss";
    insert_all(store, &[message(o, "d1", 0), message(o, "d2", 1)]).await;
    let d1 = MessageId("d1".into());
    assert!(store.dismiss(&owner(o), &d1).await.unwrap());
    assert_eq!(unread_ids(store, &owner(o)).await, ["d2"]);
    assert!(
        store.dismiss(&owner(o), &d1).await.unwrap(),
        "dismissing twice is not an error"
    );
    assert_eq!(unread_ids(store, &owner(o)).await, ["d2"]);
    // A redelivered notification does not bring a dismissed message back.
    assert!(!store.insert(&message(o, "d1", 0)).await.unwrap());
    assert_eq!(unread_ids(store, &owner(o)).await, ["d2"]);
}

pub async fn only_the_owner_can_dismiss_a_message<S: MessageStore>(store: &S) {
    let (a, b) = ("contract-foreign-a", "contract-foreign-b");
    insert_all(store, &[message(a, "f1", 0)]).await;
    let f1 = MessageId("f1".into());
    assert!(!store.dismiss(&owner(b), &f1).await.unwrap());
    assert!(
        !store
            .dismiss(&owner(a), &MessageId("no-such-message".into()))
            .await
            .unwrap()
    );
    assert_eq!(unread_ids(store, &owner(a)).await, ["f1"]);
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
fn at(minute: i64) -> DateTime<Utc> {
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

/// Delivers `life` as at-least-once, out-of-order delivery might: `order` (indices into `life`,
/// each taken modulo its length; repeats are redeliveries) first, then every event once more, so
/// nothing is lost. Whatever the order, the upload ends in its last state, as the model says.
pub async fn a_life_delivered_in_any_order_ends_where_it_ended<S: UploadStore>(
    store: &S,
    life: &[UploadRecord],
    order: &[usize],
) {
    let deliveries: Vec<UploadRecord> = order
        .iter()
        .map(|i| life[i % life.len()].clone())
        .chain(life.iter().cloned())
        .collect();
    events_end_as_the_model_says(store, &deliveries).await;
    let end = life.last().unwrap();
    let stored = store.upload(&end.owner, &end.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.percent, &stored.outputs),
        (end.state, end.percent, &end.outputs)
    );
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

/// Writes `events` in order (all of one upload) and checks the store against [`expected_after`]:
/// each write reports whether it moved the record, and the record ends as the model says.
pub async fn events_end_as_the_model_says<S: UploadStore>(store: &S, events: &[UploadRecord]) {
    let mut written: Vec<UploadRecord> = Vec::new();
    for event in events {
        let before = expected_after(&written);
        written.push(event.clone());
        let moved = before.as_ref() != expected_after(&written).as_ref();
        assert_eq!(
            store.advance(event).await.unwrap(),
            moved,
            "writing {:?} {:?} after {:?}",
            event.state,
            event.percent,
            before.map(|b| (b.state, b.percent))
        );
    }
    if let Some(last) = expected_after(events) {
        let stored = store.upload(&last.owner, &last.id).await.unwrap();
        assert_eq!(stored, Some(last));
    }
}

pub async fn an_upload_only_moves_forward<S: UploadStore>(store: &S) {
    let o = "contract-upload-forward";
    let events = [
        upload(o, "u.mp3", UploadState::Received, None, 0),
        upload(o, "u.mp3", UploadState::Received, None, 1),
        upload(o, "u.mp3", UploadState::Transcoding, None, 2),
        upload(o, "u.mp3", UploadState::Transcoding, Some(40), 3),
        // Lower, equal, or no percentage: late or repeated progress.
        upload(o, "u.mp3", UploadState::Transcoding, Some(20), 4),
        upload(o, "u.mp3", UploadState::Transcoding, Some(40), 5),
        upload(o, "u.mp3", UploadState::Transcoding, None, 6),
        upload(o, "u.mp3", UploadState::Completed, None, 7),
        // After the end: a late progress event, a second ending, the upload seen again.
        upload(o, "u.mp3", UploadState::Transcoding, Some(90), 8),
        upload(o, "u.mp3", UploadState::Failed, None, 9),
        upload(o, "u.mp3", UploadState::Received, None, 10),
    ];
    events_end_as_the_model_says(store, &events).await;
    let stored = store
        .upload(&owner(o), &UploadId("u.mp3".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, UploadState::Completed);
    assert_eq!((stored.created_at, stored.updated_at), (at(0), at(7)));
    assert_eq!(stored.outputs.len(), 2);
}

pub async fn progress_before_the_upload_was_seen_creates_its_record<S: UploadStore>(store: &S) {
    let o = "contract-upload-early";
    events_end_as_the_model_says(
        store,
        &[
            upload(o, "e.mp3", UploadState::Transcoding, Some(30), 1),
            upload(o, "e.mp3", UploadState::Received, None, 0),
            upload(o, "e.mp3", UploadState::Transcoding, None, 2),
        ],
    )
    .await;
}

pub async fn a_rejected_upload_stays_rejected<S: UploadStore>(store: &S) {
    let o = "contract-upload-rejected";
    events_end_as_the_model_says(
        store,
        &[
            upload(o, "r.mp3", UploadState::Received, None, 0),
            upload(o, "r.mp3", UploadState::Rejected, None, 1),
            upload(o, "r.mp3", UploadState::Rejected, None, 2),
            upload(o, "r.mp3", UploadState::Transcoding, Some(50), 3),
        ],
    )
    .await;
    let stored = store
        .upload(&owner(o), &UploadId("r.mp3".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.state, stored.reason.as_deref()),
        (UploadState::Rejected, Some("not an audio file"))
    );
}

pub async fn a_superseded_upload_is_never_completed_by_a_late_notification<S: UploadStore>(
    store: &S,
) {
    let o = "contract-upload-superseded";
    events_end_as_the_model_says(
        store,
        &[
            upload(o, "s.mp3", UploadState::Received, None, 0),
            upload(o, "s.mp3", UploadState::Transcoding, Some(10), 1),
            upload(o, "s.mp3", UploadState::Superseded, None, 2),
            upload(o, "s.mp3", UploadState::Superseded, None, 3),
            // The older job's late ending, its progress, the upload seen again.
            upload(o, "s.mp3", UploadState::Completed, None, 4),
            upload(o, "s.mp3", UploadState::Failed, None, 5),
            upload(o, "s.mp3", UploadState::Transcoding, Some(90), 6),
            upload(o, "s.mp3", UploadState::Received, None, 7),
        ],
    )
    .await;
    let stored = store
        .upload(&owner(o), &UploadId("s.mp3".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.state, stored.reason.as_deref(), stored.updated_at),
        (UploadState::Superseded, Some(REPLACED), at(2))
    );
    assert!(stored.outputs.is_empty());
}

pub async fn a_completed_upload_is_never_superseded<S: UploadStore>(store: &S) {
    let o = "contract-upload-done-first";
    events_end_as_the_model_says(
        store,
        &[
            upload(o, "d.mp3", UploadState::Received, None, 0),
            upload(o, "d.mp3", UploadState::Completed, None, 1),
            upload(o, "d.mp3", UploadState::Superseded, None, 2),
        ],
    )
    .await;
    let stored = store
        .upload(&owner(o), &UploadId("d.mp3".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, UploadState::Completed);
}

/// Every upload of `owner`, read `limit` at a time, as the pages' ids.
async fn upload_pages<S: UploadStore>(store: &S, owner: &Owner, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_uploads(owner, limit, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.uploads.len() <= limit, "a page is longer than asked");
        assert!(pages.len() < 100, "the listing does not end: {pages:?}");
        pages.push(page.uploads.iter().map(|u| u.id.0.clone()).collect());
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return pages,
        }
    }
}

pub async fn uploads_are_listed_newest_first_in_pages<S: UploadStore>(store: &S) {
    let o = "contract-upload-pages";
    for i in [3, 0, 6, 1, 5, 2, 4] {
        let u = upload(o, &format!("p{i}"), UploadState::Received, None, i);
        assert!(store.advance(&u).await.unwrap());
    }
    // An old upload that moves on keeps its place: the listing is by when uploads arrived.
    let later = upload(o, "p0", UploadState::Transcoding, Some(10), 60);
    assert!(store.advance(&later).await.unwrap());
    assert_eq!(
        upload_pages(store, &owner(o), 3).await,
        [vec!["p6", "p5", "p4"], vec!["p3", "p2", "p1"], vec!["p0"]]
    );
    // A listing that ends on a full page says so.
    assert_eq!(
        upload_pages(store, &owner(o), 7).await,
        [vec!["p6", "p5", "p4", "p3", "p2", "p1", "p0"]]
    );
    let first = store.list_uploads(&owner(o), 1, None).await.unwrap();
    assert_eq!(
        first.uploads,
        [upload(o, "p6", UploadState::Received, None, 6)]
    );
}

pub async fn other_owners_uploads_do_not_exist<S: UploadStore>(store: &S) {
    let (a, b) = ("contract-upload-a", "contract-upload-a#b");
    for u in [
        upload(a, "a1", UploadState::Received, None, 0),
        upload(b, "b1", UploadState::Received, None, 1),
        // The same upload id for two owners is two uploads.
        upload(b, "a1", UploadState::Rejected, None, 2),
    ] {
        assert!(store.advance(&u).await.unwrap());
    }
    assert_eq!(upload_pages(store, &owner(a), 10).await, [vec!["a1"]]);
    assert_eq!(upload_pages(store, &owner(b), 10).await, [vec!["a1", "b1"]]);
    let a1 = UploadId("a1".into());
    assert_eq!(
        store.upload(&owner(a), &a1).await.unwrap().map(|u| u.state),
        Some(UploadState::Received)
    );
    assert_eq!(
        store
            .upload(&owner(b), &UploadId("b2".into()))
            .await
            .unwrap(),
        None
    );
    let nobody = owner("contract-upload-nobody");
    assert_eq!(store.upload(&nobody, &a1).await.unwrap(), None);
    assert_eq!(
        upload_pages(store, &nobody, 10).await,
        [Vec::<String>::new()]
    );
}

pub async fn an_upload_cursor_is_only_valid_for_its_owner<S: UploadStore>(store: &S) {
    let (a, b) = ("contract-upload-cursor-a", "contract-upload-cursor-b");
    for (o, name, minute) in [(a, "a1", 0), (a, "a2", 1), (b, "b1", 2), (b, "b2", 3)] {
        let u = upload(o, name, UploadState::Received, None, minute);
        assert!(store.advance(&u).await.unwrap());
    }
    let cursor = store
        .list_uploads(&owner(a), 1, None)
        .await
        .unwrap()
        .next_cursor
        .expect("a has two uploads");
    let stolen = store.list_uploads(&owner(b), 1, Some(&cursor)).await;
    assert!(matches!(stolen, Err(StoreError::BadCursor)), "{stolen:?}");
    let next = store
        .list_uploads(&owner(a), 1, Some(&cursor))
        .await
        .unwrap();
    assert_eq!(next.uploads[0].id.0, "a1");
    for garbage in ["", "garbage", "eyJub3QiOiJhIGN1cnNvciJ9", "%%%", "\n"] {
        let listed = store.list_uploads(&owner(a), 10, Some(garbage)).await;
        assert!(
            matches!(listed, Err(StoreError::BadCursor)),
            "{garbage:?}: {listed:?}"
        );
    }
}

/// The claim on upload `version` of `key`, in the checks' bucket.
pub fn claim(key: &str, version: &str) -> Claim {
    Claim {
        bucket: "contract-bucket".into(),
        key: ObjectKey::new(key).unwrap(),
        version: version.into(),
    }
}

pub async fn a_claim_starts_one_job<S: ClaimStore>(store: &S) {
    let c = claim("media/alice/claim one.mp3", "0062E99A88DC407460");
    let now = base_time();
    assert_eq!(store.claim(&c, now).await.unwrap(), ClaimOutcome::Claimed);
    assert_eq!(
        store.claim(&c, now + TimeDelta::seconds(1)).await.unwrap(),
        ClaimOutcome::Held
    );
    store.record_job(&c, "1700000000000-abc001").await.unwrap();
    let started = ClaimOutcome::AlreadyStarted {
        job_id: "1700000000000-abc001".into(),
    };
    assert_eq!(store.claim(&c, now).await.unwrap(), started);
    // Releasing a claim whose job started changes nothing, however late the redelivery.
    store.release(&c).await.unwrap();
    let much_later = now + CLAIM_LEASE + TimeDelta::days(1);
    assert_eq!(store.claim(&c, much_later).await.unwrap(), started);
}

pub async fn a_released_claim_can_be_taken_again<S: ClaimStore>(store: &S) {
    let c = claim("media/alice/claim released.mp3", "1");
    let now = base_time();
    assert_eq!(store.claim(&c, now).await.unwrap(), ClaimOutcome::Claimed);
    store.release(&c).await.unwrap();
    assert_eq!(store.claim(&c, now).await.unwrap(), ClaimOutcome::Claimed);
    assert_eq!(store.claim(&c, now).await.unwrap(), ClaimOutcome::Held);
    // Releasing what nobody holds is not an error.
    store
        .release(&claim("media/alice/never claimed.mp3", "1"))
        .await
        .unwrap();
}

pub async fn a_stale_claim_without_a_job_is_taken_over<S: ClaimStore>(store: &S) {
    let c = claim("media/alice/claim stale.mp3", "1");
    let now = base_time();
    assert_eq!(store.claim(&c, now).await.unwrap(), ClaimOutcome::Claimed);
    let within = now + CLAIM_LEASE - TimeDelta::seconds(1);
    assert_eq!(store.claim(&c, within).await.unwrap(), ClaimOutcome::Held);
    let after = now + CLAIM_LEASE + TimeDelta::seconds(1);
    assert_eq!(store.claim(&c, after).await.unwrap(), ClaimOutcome::Claimed);
    // The new holder has a lease of its own.
    assert_eq!(
        store
            .claim(&c, after + TimeDelta::seconds(1))
            .await
            .unwrap(),
        ClaimOutcome::Held
    );
}

pub async fn versions_of_one_key_are_claimed_independently<S: ClaimStore>(store: &S) {
    let key = "media/alice/claim versions.mp3";
    let (first, second) = (
        claim(key, "0062E99A88DC407460"),
        claim(key, "0062E99A88DC407461"),
    );
    let now = base_time();
    assert_eq!(
        store.claim(&first, now).await.unwrap(),
        ClaimOutcome::Claimed
    );
    store.record_job(&first, "job-first").await.unwrap();
    assert_eq!(
        store.claim(&second, now).await.unwrap(),
        ClaimOutcome::Claimed
    );
    store.release(&second).await.unwrap();
    assert_eq!(
        store.claim(&first, now).await.unwrap(),
        ClaimOutcome::AlreadyStarted {
            job_id: "job-first".into()
        }
    );
    // Another bucket with the same key and version is another upload.
    let elsewhere = Claim {
        bucket: "contract-other-bucket".into(),
        ..first.clone()
    };
    assert_eq!(
        store.claim(&elsewhere, now).await.unwrap(),
        ClaimOutcome::Claimed
    );
}

#[cfg(test)]
mod tests {
    use crate::memory::MemoryStore;

    #[tokio::test]
    async fn the_memory_store_honours_the_contract() {
        super::all(&MemoryStore::default()).await;
    }

    #[tokio::test]
    async fn the_memory_queue_honours_the_contract() {
        super::queue(&MemoryStore::default()).await;
    }

    proptest::proptest! {
        /// Late, repeated and shuffled progress never moves an upload back (the SQLite store runs
        /// the same property; DynamoDB runs the contract's fixed orders).
        #[test]
        fn memory_uploads_end_where_they_ended_whatever_the_order(
            mut percents in proptest::collection::vec(0u8..=100, 0..6),
            end in proptest::sample::select(super::UploadState::ALL.iter().copied().filter(|s| s.is_final()).collect::<Vec<_>>()),
            order in proptest::collection::vec(0usize..64, 0..16),
        ) {
            percents.sort_unstable();
            let life = super::upload_life(&percents, end);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(super::a_life_delivered_in_any_order_ends_where_it_ended(
                &MemoryStore::default(),
                &life,
                &order,
            ));
        }
    }

    /// The stores' checks rely on every field being set, to the nanosecond.
    #[test]
    fn the_full_message_sets_every_field() {
        let message = serde_json::to_value(super::message("alice", "job-1", 3)).unwrap();
        assert_eq!(
            message,
            serde_json::json!({
                "id": "job-1",
                "owner": "alice",
                "state": "completed_with_warnings",
                "text": "Your file job-1.mp3 has been processed, with a warning: upsampled.",
                "file": "job-1.mp3",
                "source_key": "media/alice/job-1.mp3",
                "outputs": [
                    {"format": "wav", "key": "transcoded/alice/job-1.wav", "duration_ms": 6042},
                    {"format": "aac", "key": "transcoded/alice/job-1.m4a"}
                ],
                "created_at": "2026-11-23T08:03:00.123456789Z"
            })
        );
    }
}
