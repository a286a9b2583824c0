//! The owners' messages. `messages` keeps each message as JSON in `body`, keyed by `(owner, id)`,
//! beside `created_at` (a sort time) and `unread`. The partial index `messages_unread` on
//! `(owner, created_at DESC, id DESC) WHERE unread = 1` plays the part of DynamoDB's sparse index:
//! a listing reads one owner's unread messages, newest first, and costs the same however much
//! other owners or dismissed history the file holds.

use rusqlite::params;
use transcoder_core::{Message, MessageId, MessageStore, Owner, Page, StoreError};

use crate::page::{Listing, read_page, sort_time};
use crate::{SqliteStore, failed};

/// One owner's unread messages. `unread = 1` is spelled out so that SQLite can use the partial
/// index.
pub(crate) const UNREAD: Listing = Listing {
    first: "SELECT created_at, id, body FROM messages
    WHERE owner = ?1 AND unread = 1
    ORDER BY created_at DESC, id DESC LIMIT ?2",
    after: "SELECT created_at, id, body FROM messages
    WHERE owner = ?1 AND unread = 1 AND (created_at, id) < (?2, ?3)
    ORDER BY created_at DESC, id DESC LIMIT ?4",
    what: "message",
};

impl MessageStore for SqliteStore {
    async fn insert(&self, message: &Message) -> Result<bool, StoreError> {
        let body = serde_json::to_string(message).map_err(|e| {
            StoreError::corrupt(format!("message {} cannot be written", message.id)).caused_by(e)
        })?;
        let (owner, id) = (message.owner.clone(), message.id.clone());
        let created_at = sort_time(message.created_at);
        self.run(move |connection| {
            let inserted = connection
                .prepare_cached(
                    "INSERT INTO messages (owner, id, created_at, unread, body)
                     VALUES (?1, ?2, ?3, 1, ?4) ON CONFLICT (owner, id) DO NOTHING",
                )
                .and_then(|mut insert| {
                    insert.execute(params![owner.as_str(), id.0, created_at, body])
                })
                .map_err(failed)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn list_unread(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let (owner, cursor) = (owner.clone(), cursor.map(str::to_owned));
        let (messages, next_cursor) = self
            .run(move |connection| read_page(connection, &UNREAD, &owner, limit, cursor.as_deref()))
            .await?;
        Ok(Page {
            messages,
            next_cursor,
        })
    }

    async fn dismiss(&self, owner: &Owner, id: &MessageId) -> Result<bool, StoreError> {
        let (owner, id) = (owner.clone(), id.clone());
        self.run(move |connection| {
            // SQLite counts a matched row as changed even when it was already read.
            let matched = connection
                .prepare_cached("UPDATE messages SET unread = 0 WHERE owner = ?1 AND id = ?2")
                .and_then(|mut dismiss| dismiss.execute(params![owner.as_str(), id.0]))
                .map_err(failed)?;
            Ok(matched > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use transcoder_testkit::contract;

    use super::*;

    #[tokio::test]
    async fn a_message_that_cannot_be_read_is_corrupt() {
        let store = SqliteStore::in_memory().unwrap();
        let message = contract::message("alice", "job-1", 0);
        assert!(store.insert(&message).await.unwrap());
        crate::lock(&store.connection)
            .execute("UPDATE messages SET body = '{\"id\": 1}'", [])
            .unwrap();
        let listed = store.list_unread(&message.owner, 10, None).await;
        assert!(
            matches!(listed, Err(StoreError::Corrupt { .. })),
            "{listed:?}"
        );
    }
}
