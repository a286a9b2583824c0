//! The message store's checks: stored once, listed newest first in pages, each owner's alone.

use transcoder_core::{Message, MessageId, MessageStore, Owner, StoreError};

use super::fixtures::*;

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
