//! `Notification::parse` on any text, and `record_completion` on any bytes taken for an SNS event
//! (seeded with `events/sns-*.json`): never a panic, every record recorded, a duplicate, progress
//! or rejected exactly once, and a redelivery writes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transcoder_core::{Notification, RawSnsEvent, RecordConfig, memory::MemoryStore, record_completion};

const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:audio-transcoder-completions";

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Notification::parse(text);
    }
    let Ok(event) = serde_json::from_slice::<RawSnsEvent>(data) else {
        return;
    };
    let count = event.records.len();
    let config = RecordConfig::from_env(&[("TOPIC_ARN", TOPIC)]).unwrap();
    let store = MemoryStore::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let again = RawSnsEvent {
        records: event.records.clone(),
    };
    let first = runtime
        .block_on(record_completion(event, &config, &store))
        .expect("the in-memory store never fails");
    let outcomes =
        first.recorded.len() + first.duplicates.len() + first.progress + first.rejected.len();
    assert_eq!(outcomes, count);
    let second = runtime
        .block_on(record_completion(again, &config, &store))
        .expect("the in-memory store never fails");
    assert!(second.recorded.is_empty());
});
