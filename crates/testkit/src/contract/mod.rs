//! The contract every store must honour, as checks that run against any implementation of
//! [`MessageStore`], [`UploadStore`], [`ClaimStore`] and [`JobQueue`]: the in-memory store runs
//! them in this crate's tests, the SQLite store in its own, the DynamoDB store against DynamoDB
//! Local.
//!
//! Each check uses its own owners, buckets and keys, so they can all share one store; they panic
//! on the first broken promise.

mod claims;
mod fixtures;
mod job_queue;
mod messages;
mod uploads;

use transcoder_core::{ClaimStore, JobQueue, MessageStore, UploadStore};

pub use claims::*;
pub use fixtures::*;
pub use job_queue::*;
pub use messages::*;
pub use uploads::*;

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

#[cfg(test)]
mod tests {
    use crate::MemoryStore;

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
            end in proptest::sample::select(transcoder_core::UploadState::ALL.iter().copied().filter(|s| s.is_final()).collect::<Vec<_>>()),
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
