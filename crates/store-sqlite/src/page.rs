//! Newest-first listings of one owner's rows, a page at a time. A page cursor is the last listed
//! row's owner, `created_at` and id, as URL-safe base64; it is refused for any owner but its own.
//! What a listing holds is for `messages` and `uploads` to say.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::de::DeserializeOwned;
use transcoder_core::{Owner, StoreError};

use crate::failed;

/// One table's listing: its rows are `(created_at, id, body)`, newest first, with the owner as
/// `?1` and the page size as the last parameter.
pub(crate) struct Listing {
    /// The first page.
    pub(crate) first: &'static str,
    /// A page after a cursor, given as `?2` (`created_at`) and `?3` (id).
    pub(crate) after: &'static str,
    /// What a row's `body` is, for errors.
    pub(crate) what: &'static str,
}

/// One page of `owner`'s rows in `listing`, each row's `body` parsed as a `T`, and the cursor of
/// the next page if there is one.
pub(crate) fn read_page<T: DeserializeOwned>(
    connection: &Connection,
    listing: &Listing,
    owner: &Owner,
    limit: usize,
    cursor: Option<&str>,
) -> Result<(Vec<T>, Option<String>), StoreError> {
    let after = cursor.map(|c| Cursor::decode(c, owner)).transpose()?;
    if limit == 0 {
        return Ok((Vec::new(), None));
    }
    // One more than asked tells whether there is a next page, so the last page says so.
    let wanted = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let read = |row: &rusqlite::Row<'_>| -> rusqlite::Result<(Cursor, String)> {
        let cursor = Cursor {
            created_at: row.get(0)?,
            id: row.get(1)?,
        };
        Ok((cursor, row.get(2)?))
    };
    let mut rows = match &after {
        None => connection
            .prepare_cached(listing.first)
            .and_then(|mut list| {
                list.query_map(params![owner.as_str(), wanted], read)?
                    .collect::<Result<Vec<_>, _>>()
            }),
        Some(after) => connection
            .prepare_cached(listing.after)
            .and_then(|mut list| {
                list.query_map(
                    params![owner.as_str(), after.created_at, after.id, wanted],
                    read,
                )?
                .collect::<Result<Vec<_>, _>>()
            }),
    }
    .map_err(failed)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = match rows.last() {
        Some((last, _)) if more => Some(last.encode(owner)),
        _ => None,
    };
    let items = rows
        .into_iter()
        .map(|(row, body)| {
            serde_json::from_str(&body).map_err(|e| {
                StoreError::corrupt(format!("{} {} of {owner}", listing.what, row.id)).caused_by(e)
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((items, next_cursor))
}

/// A row's time as it sorts: fixed width, to the ms, as DynamoDB's indexes have it, so that text
/// order is time order.
pub(crate) fn sort_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Where the next page starts: the last listed row, strictly older rows come next.
#[derive(Debug, PartialEq, Eq)]
struct Cursor {
    created_at: String,
    id: String,
}

impl Cursor {
    fn encode(&self, owner: &Owner) -> String {
        URL_SAFE_NO_PAD.encode(format!("{owner}\n{}\n{}", self.created_at, self.id))
    }

    /// Reads a cursor handed back by `owner`. Owners hold no control characters, and a sort time
    /// none, so the id is everything after the second line break.
    fn decode(text: &str, owner: &Owner) -> Result<Self, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| StoreError::BadCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| StoreError::BadCursor)?;
        let mut parts = text.splitn(3, '\n');
        let (Some(cursor_owner), Some(created_at), Some(id)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(StoreError::BadCursor);
        };
        let well_formed = DateTime::parse_from_rfc3339(created_at)
            .is_ok_and(|at| sort_time(at.to_utc()) == created_at);
        if cursor_owner != owner.as_str() || !well_formed {
            return Err(StoreError::BadCursor);
        }
        Ok(Self {
            created_at: created_at.to_owned(),
            id: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use transcoder_testkit::contract;

    use super::*;

    #[test]
    fn a_cursor_round_trips_for_its_owner_only() {
        let alice = contract::owner("alice");
        let cursor = Cursor {
            created_at: "2026-11-23T08:00:00.123Z".into(),
            id: "job\n1".into(),
        };
        let text = cursor.encode(&alice);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text} is not URL-safe"
        );
        assert_eq!(Cursor::decode(&text, &alice).unwrap(), cursor);
        assert!(matches!(
            Cursor::decode(&text, &contract::owner("bob")),
            Err(StoreError::BadCursor)
        ));
        // A time that would not sort among the stored ones is refused.
        for at in ["2026-11-23T08:00:00Z", "2026-11-23T09:00:00.123+01:00", "x"] {
            let forged = URL_SAFE_NO_PAD.encode(format!("alice\n{at}\njob-1"));
            assert!(
                matches!(Cursor::decode(&forged, &alice), Err(StoreError::BadCursor)),
                "{at}"
            );
        }
    }

    #[test]
    fn sort_times_are_fixed_width_to_the_millisecond() {
        let message = contract::message("alice", "job-1", 0);
        assert_eq!(sort_time(message.created_at), "2026-11-23T08:00:00.123Z");
    }
}
