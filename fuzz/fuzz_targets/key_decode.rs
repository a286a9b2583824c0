//! `ObjectKey::from_s3_event_key` on any text: it never panics, a key it accepts is not empty, and
//! a key form-URL-encoded as S3 encodes it decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transcoder_core::{KeyError, ObjectKey};

fuzz_target!(|raw: &str| {
    match ObjectKey::from_s3_event_key(raw) {
        Ok(key) => assert!(!key.as_str().is_empty()),
        Err(KeyError::Empty) => assert!(raw.is_empty()),
        Err(KeyError::NotUtf8 { raw: shown }) => assert_eq!(shown, raw),
    }
    if !raw.is_empty() {
        let encoded: String = form_urlencoded::byte_serialize(raw.as_bytes()).collect();
        let decoded = ObjectKey::from_s3_event_key(&encoded).expect("an encoded key decodes");
        assert_eq!(decoded.as_str(), raw);
    }
});
