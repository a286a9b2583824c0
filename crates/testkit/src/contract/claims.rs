//! The claim store's checks: one job per upload version, and a stale claim taken over.

use chrono::TimeDelta;
use transcoder_core::{CLAIM_LEASE, Claim, ClaimOutcome, ClaimStore};

use super::fixtures::*;

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
