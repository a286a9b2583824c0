//! What a caller asks to upload — a file name, its size and its content type — checked against
//! the limits before any link is signed. The link then binds all three, so the bucket refuses a
//! larger file or another type however the link is used.

use serde::Deserialize;
use transcoder_core::{
    Choice, ChoiceError, Escaped, ObjectKey, OutputChoice, Outputs, Owner, Upload, nfc,
};

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::filename::safe_filename;

/// The content types accepted for each audio extension, the usual one first. Browsers disagree on
/// some names (`audio/x-m4a`, `audio/x-wav`), so each spelling in use is accepted as sent.
pub const CONTENT_TYPES: &[(&str, &[&str])] = &[
    ("mp3", &["audio/mpeg", "audio/mp3"]),
    ("m4a", &["audio/mp4", "audio/x-m4a"]),
    ("aac", &["audio/aac", "audio/x-aac"]),
    (
        "wav",
        &["audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"],
    ),
    ("flac", &["audio/flac", "audio/x-flac"]),
    ("ogg", &["audio/ogg"]),
    ("oga", &["audio/ogg"]),
];

/// The body of `POST /uploads`, as `openapi.yaml`'s `UploadRequest` schema.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UploadRequest {
    pub filename: String,
    pub size: u64,
    pub content_type: String,
    /// The outputs wanted; the deployment's defaults when absent.
    #[serde(default)]
    pub outputs: Option<Vec<OutputRequest>>,
    /// `podcast` or `broadcast`; no normalization when absent.
    #[serde(default)]
    pub loudness: Option<String>,
}

/// One output asked for in `POST /uploads`. The format is read as text, so that an unknown one
/// is refused with the formats there are rather than as bad JSON.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OutputRequest {
    pub format: String,
    #[serde(default)]
    pub bitrate_kbps: Option<u32>,
}

const EXPECTED: &str =
    r#"expected {"filename": "song.mp3", "size": <bytes>, "content_type": "audio/mpeg"}"#;

impl UploadRequest {
    /// The request in `body`, or a 400 that shows what was expected. Any `Content-Type` is
    /// taken: the body says whether it is JSON.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request("bad_json", format!("{EXPECTED}: {e}")))
    }

    /// The upload this asks for, in the caller's own folder, or the reason it is refused. The
    /// name is normalized to NFC, so `café` typed either way is one key.
    pub fn upload(&self, caller: &Owner, config: &ApiConfig) -> Result<Upload, ApiError> {
        if caller.as_str().starts_with('.') {
            // Its folder would be hidden: the link would lead nowhere and nothing be transcoded.
            return Err(ApiError::bad_request(
                "bad_user",
                format!(
                    "the user name '{}' starts with '.', which makes its folder hidden and its files never transcoded; sign in with a name that does not",
                    Escaped(caller.as_str())
                ),
            ));
        }
        let normalized = nfc(&self.filename);
        let name = safe_filename(&normalized)
            .map_err(|e| ApiError::bad_request("bad_filename", e.to_string()))?;
        if self.size == 0 {
            return Err(ApiError::bad_request(
                "bad_size",
                "size is the file's length in bytes, and an empty file is not audio",
            ));
        }
        if self.size > config.max_upload_bytes {
            return Err(ApiError::file_too_large(self.size, config.max_upload_bytes));
        }
        let key = ObjectKey::new(format!("{}{caller}/{name}", config.input_prefix))
            .map_err(|_| ApiError::internal())?;
        let content_type = content_type_for(&key, &self.content_type)?;
        Ok(Upload {
            key,
            size: self.size,
            content_type: content_type.to_owned(),
            choice: self.choice(config)?,
        })
    }

    /// The outputs and loudness asked for, if the deployed backend can honour them: a link is
    /// never signed for an upload that would half-work.
    fn choice(&self, config: &ApiConfig) -> Result<Choice, ApiError> {
        let outputs = self
            .outputs
            .as_ref()
            .map(|asked| {
                let outputs = asked
                    .iter()
                    .map(|o| OutputChoice::new(o.format.parse()?, o.bitrate_kbps))
                    .collect::<Result<Vec<_>, ChoiceError>>()?;
                Outputs::new(outputs)
            })
            .transpose()
            .map_err(refused)?;
        let loudness = self
            .loudness
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| refused(ChoiceError::from(e)))?;
        if let Some(outputs) = &outputs {
            config.backend.honours(outputs, None).map_err(refused)?;
        }
        if let Some(loudness) = loudness {
            config.backend.normalizes(loudness).map_err(refused)?;
        }
        Ok(Choice { outputs, loudness })
    }
}

/// The 400 of a choice that is refused: its code says which part.
fn refused(err: ChoiceError) -> ApiError {
    let message = err.to_string();
    match err {
        ChoiceError::UnknownLoudness(_) => ApiError::bad_request("bad_loudness", message),
        ChoiceError::Unsupported { .. } => ApiError::bad_request("unsupported_choice", message),
        _ => ApiError::bad_request("bad_outputs", message),
    }
}

/// The accepted spelling of `asked` if it fits the key's extension.
fn content_type_for(key: &ObjectKey, asked: &str) -> Result<&'static str, ApiError> {
    let extension = key.extension().unwrap_or_default();
    let accepted = CONTENT_TYPES
        .iter()
        .find(|(ext, _)| ext.eq_ignore_ascii_case(extension))
        .map_or(&[][..], |(_, types)| *types);
    accepted
        .iter()
        .find(|t| t.eq_ignore_ascii_case(asked.trim()))
        .copied()
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_content_type",
                format!(
                    "a .{extension} file is uploaded as {}, not '{}'",
                    accepted.join(" or "),
                    transcoder_core::Escaped(asked)
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use transcoder_core::AUDIO_EXTENSIONS;

    use super::*;

    fn config() -> ApiConfig {
        ApiConfig::from_env(&[("BUCKET_NAME", "b"), ("MAX_UPLOAD_BYTES", "1000")]).unwrap()
    }

    fn ask(filename: &str, size: u64, content_type: &str) -> Result<Upload, ApiError> {
        let body =
            serde_json::json!({"filename": filename, "size": size, "content_type": content_type});
        UploadRequest::from_json(body.to_string().as_bytes())?
            .upload(&Owner::new("alice").unwrap(), &config())
    }

    #[test]
    fn every_audio_extension_has_content_types() {
        for ext in AUDIO_EXTENSIONS {
            let types = CONTENT_TYPES.iter().find(|(e, _)| e == ext);
            assert!(types.is_some_and(|(_, t)| !t.is_empty()), "{ext}");
        }
        assert_eq!(CONTENT_TYPES.len(), AUDIO_EXTENSIONS.len());
    }

    #[test]
    fn an_upload_is_the_callers_key_with_its_size_and_type() {
        assert_eq!(
            ask("Song.FLAC", 1000, " Audio/X-FLAC "),
            Ok(Upload {
                key: ObjectKey::new("media/alice/Song.FLAC").unwrap(),
                size: 1000,
                content_type: "audio/x-flac".into(),
                choice: Choice::default(),
            })
        );
    }

    #[test]
    fn a_name_is_one_key_however_its_accents_are_typed() {
        let composed = ask("caf\u{e9}.mp3", 10, "audio/mpeg").unwrap();
        let decomposed = ask("cafe\u{301}.mp3", 10, "audio/mpeg").unwrap();
        assert_eq!(composed.key.as_str(), "media/alice/caf\u{e9}.mp3");
        assert_eq!(decomposed, composed);
    }

    #[test]
    fn hidden_names_and_users_get_no_link() {
        let code = |r: Result<Upload, ApiError>| r.map_err(|e| (e.status.as_u16(), e.code));
        assert_eq!(
            code(ask(".hidden.mp3", 10, "audio/mpeg")),
            Err((400, "bad_filename"))
        );
        let body =
            serde_json::json!({"filename": "a.mp3", "size": 10, "content_type": "audio/mpeg"});
        let request = UploadRequest::from_json(body.to_string().as_bytes()).unwrap();
        for user in [".bob", "...", ".."] {
            let Ok(owner) = Owner::new(user) else {
                continue;
            };
            let refused = request.upload(&owner, &config()).unwrap_err();
            assert_eq!((refused.status.as_u16(), refused.code), (400, "bad_user"));
            assert!(refused.message.contains(user), "{}", refused.message);
        }
    }

    /// A refusal's status, code and message.
    type Refusal = (u16, &'static str, String);

    fn choose(backend: &str, choice: serde_json::Value) -> Result<Vec<(String, String)>, Refusal> {
        let config = ApiConfig::from_env(&[("BUCKET_NAME", "b"), ("TRANSCODER", backend)]).unwrap();
        let mut body =
            serde_json::json!({"filename": "a.mp3", "size": 10, "content_type": "audio/mpeg"});
        body.as_object_mut()
            .unwrap()
            .extend(choice.as_object().unwrap().clone());
        UploadRequest::from_json(body.to_string().as_bytes())
            .and_then(|r| r.upload(&Owner::new("alice").unwrap(), &config))
            .map(|u| u.metadata_headers())
            .map_err(|e| (e.status.as_u16(), e.code, e.message))
    }

    #[test]
    fn a_choice_becomes_the_metadata_the_link_binds() {
        let headers = choose(
            "lambda",
            serde_json::json!({
                "outputs": [{"format": "mp3", "bitrate_kbps": 128}, {"format": "Opus"}, {"format": "flac"}],
                "loudness": "podcast"
            }),
        );
        assert_eq!(
            headers,
            Ok(vec![
                ("x-amz-meta-outputs".into(), "mp3:128,opus,flac".into()),
                ("x-amz-meta-loudness".into(), "podcast".into()),
            ])
        );
        assert_eq!(choose("lambda", serde_json::json!({})), Ok(vec![]));
        assert_eq!(
            choose("mediaconvert", serde_json::json!({"loudness": "broadcast"})),
            Ok(vec![("x-amz-meta-loudness".into(), "broadcast".into())])
        );
    }

    #[test]
    fn each_refused_choice_says_why() {
        let refused = |backend, choice| choose(backend, choice).unwrap_err();
        use serde_json::json;
        assert_eq!(
            refused("lambda", json!({"outputs": [{"format": "ogg"}]})),
            (
                400,
                "bad_outputs",
                "unknown output format 'ogg' (known: wav, flac, aac, mp3, opus)".into()
            )
        );
        assert_eq!(
            refused(
                "lambda",
                json!({"outputs": [{"format": "mp3", "bitrate_kbps": 500}]})
            ),
            (
                400,
                "bad_outputs",
                "mp3 at 500 kb/s is out of range: choose 32 to 320 kb/s".into()
            )
        );
        assert_eq!(
            refused(
                "lambda",
                json!({"outputs": [{"format": "wav", "bitrate_kbps": 128}]})
            )
            .1,
            "bad_outputs"
        );
        assert_eq!(
            refused(
                "lambda",
                json!({"outputs": [{"format": "wav"}, {"format": "WAV"}]})
            )
            .2,
            "wav is asked for twice"
        );
        assert_eq!(
            refused("lambda", json!({"outputs": []})).2,
            "ask for at least one output"
        );
        assert_eq!(
            refused("lambda", json!({"loudness": "loud"})),
            (
                400,
                "bad_loudness",
                "unknown loudness 'loud' (known: podcast, broadcast)".into()
            )
        );
        assert_eq!(
            refused("elastictranscoder", json!({"outputs": [{"format": "opus"}]})),
            (
                400,
                "unsupported_choice",
                "this deployment transcodes with Elastic Transcoder (TRANSCODER=elastictranscoder), which has no system preset for Opus".into()
            )
        );
        assert_eq!(
            refused("elastictranscoder", json!({"loudness": "podcast"})).1,
            "unsupported_choice"
        );
        let (_, code, message) = refused(
            "mediaconvert",
            json!({"outputs": [{"format": "aac", "bitrate_kbps": 150}]}),
        );
        assert_eq!(code, "unsupported_choice");
        assert!(message.contains("MediaConvert"), "{message}");
        assert_eq!(
            refused(
                "lambda",
                json!({"outputs": [{"format": "mp3", "bitrate_kbps": -1}]})
            )
            .1,
            "bad_json"
        );
    }

    #[test]
    fn sizes_and_types_outside_the_limits_are_refused() {
        let code = |r: Result<Upload, ApiError>| r.map_err(|e| (e.status.as_u16(), e.code));
        assert_eq!(
            code(ask("a.mp3", 1001, "audio/mpeg")),
            Err((413, "file_too_large"))
        );
        assert_eq!(code(ask("a.mp3", 0, "audio/mpeg")), Err((400, "bad_size")));
        assert_eq!(
            code(ask("a.mp3", 10, "audio/wav")),
            Err((400, "bad_content_type"))
        );
        assert_eq!(
            code(ask("a.wav", 10, "text/plain")),
            Err((400, "bad_content_type"))
        );
        assert_eq!(
            code(ask("a.mp3", 10, "audio/mpeg; x=1")),
            Err((400, "bad_content_type"))
        );
        let too_large = ask("a.mp3", 1001, "audio/mpeg").unwrap_err();
        assert!(
            too_large.message.contains("1000 bytes"),
            "{}",
            too_large.message
        );
    }
}
