//! The handlers and their helpers, driven through the crate's public API with the test kit's
//! in-memory store, bucket and transcoder: what `start-transcode` and `record-completion` do with
//! each event, whatever arrives, in any order.

mod intake;
mod pacing;
mod record;
mod source;
mod start;
