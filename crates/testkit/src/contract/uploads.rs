//! The upload store's checks: a state never moves backwards, whatever the order of delivery.

use transcoder_core::{
    Owner, REPLACED, StoreError, UploadId, UploadRecord, UploadState, UploadStore,
};

use super::fixtures::*;

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
