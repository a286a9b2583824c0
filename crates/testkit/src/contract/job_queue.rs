//! The local job queue's checks: each upload queued once, taken once, finished, delivered, and
//! superseded by a newer upload of its key.

use transcoder_core::{
    JobId, JobQueue, REPLACED, TranscodeJob, UploadRecord, UploadState, UploadStore, local_job_id,
};

use super::fixtures::*;

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
