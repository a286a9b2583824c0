//! The OpenAPI document describes exactly the routes the router serves, and the limits it applies.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;
use transcoder_api::config::{DEFAULT_MAX_UPLOAD_BYTES, S3_MAX_PUT_BYTES};
use transcoder_api::filename::{MAX_FILENAME_BYTES, safe_filename};
use transcoder_api::router::{DEFAULT_LIMIT, MAX_LIMIT};
use transcoder_api::upload::CONTENT_TYPES;
use transcoder_api::{MAX_BODY_BYTES, ROUTES};
use transcoder_core::AUDIO_EXTENSIONS;

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_document_names_every_route_the_router_serves_and_no_other() {
    let doc = document();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let mut documented = BTreeSet::new();
    for (path, operations) in doc["paths"].as_mapping().unwrap() {
        for (method, _) in operations.as_mapping().unwrap() {
            let method = method.as_str().unwrap().to_ascii_uppercase();
            if method != "PARAMETERS" {
                documented.insert((method, path.as_str().unwrap().to_owned()));
            }
        }
    }
    let served: BTreeSet<_> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);
}

#[test]
fn every_operation_documents_401_and_405_and_the_body_limit_is_stated() {
    let doc = document();
    for (path, operations) in doc["paths"].as_mapping().unwrap() {
        for (method, operation) in operations.as_mapping().unwrap() {
            for status in ["401", "405"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{method:?} {path:?} does not document {status}"
                );
            }
        }
    }
    let description = doc["info"]["description"].as_str().unwrap();
    assert!(
        description.contains(&format!("{MAX_BODY_BYTES} bytes")),
        "{description}"
    );
    for listing in LISTINGS {
        let limit = &resolve(&doc, &doc["paths"][listing]["get"]["parameters"][0])["schema"];
        assert_eq!(limit["minimum"].as_u64(), Some(1), "{listing}");
        assert_eq!(limit["maximum"].as_u64(), Some(MAX_LIMIT as u64));
        assert_eq!(limit["default"].as_u64(), Some(DEFAULT_LIMIT as u64));
    }
}

/// The routes that list a page at a time, with the same `limit` and `cursor`.
const LISTINGS: [&str; 2] = ["/messages", "/uploads"];

#[test]
fn the_upload_request_states_the_size_limit_and_every_accepted_content_type() {
    let doc = document();
    let schema =
        &doc["paths"]["/uploads"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let required: BTreeSet<_> = schema["required"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        required,
        BTreeSet::from(["filename", "size", "content_type"])
    );
    let size = &schema["properties"]["size"];
    assert_eq!(size["minimum"].as_u64(), Some(1));
    assert_eq!(size["maximum"].as_u64(), Some(DEFAULT_MAX_UPLOAD_BYTES));
    let documented: BTreeSet<_> = schema["properties"]["content_type"]["enum"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let accepted: BTreeSet<_> = CONTENT_TYPES
        .iter()
        .flat_map(|(_, types)| types.iter().copied())
        .collect();
    assert_eq!(documented, accepted);
    let codes =
        &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"];
    for code in ["bad_size", "bad_content_type", "file_too_large"] {
        assert!(
            codes
                .as_sequence()
                .unwrap()
                .iter()
                .any(|c| c.as_str() == Some(code)),
            "{code}"
        );
    }
}

/// The upload request's schema.
fn upload_schema(doc: &Value) -> &Value {
    &doc["paths"]["/uploads"]["post"]["requestBody"]["content"]["application/json"]["schema"]
}

/// `mp3` as a case-insensitive pattern: `[mM][pP]3`.
fn any_case(extension: &str) -> String {
    extension
        .chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("not a list: {value:?}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn the_file_name_schema_states_the_limits_safe_filename_enforces() {
    let doc = document();
    let filename = &upload_schema(&doc)["properties"]["filename"];
    assert_eq!(filename["minLength"].as_u64(), Some(1));
    assert_eq!(
        filename["maxLength"].as_u64(),
        Some(MAX_FILENAME_BYTES as u64)
    );
    // No `..` anywhere; no `/`, `\` or control character (what `char::is_control` is: Unicode's
    // Cc, U+0000 to U+001F and U+007F to U+009F); at least one character, then `.` and an audio
    // extension in any case.
    let extensions: Vec<_> = AUDIO_EXTENSIONS.iter().map(|e| any_case(e)).collect();
    let expected = format!(
        r"^(?!\.)(?!.*\.\.)[^/\\\u0000-\u001F\u007F-\u009F]+\.({})$",
        extensions.join("|")
    );
    assert_eq!(filename["pattern"].as_str(), Some(expected.as_str()));
    assert!(('\u{0}'..='\u{1f}').all(char::is_control));
    assert!(('\u{7f}'..='\u{9f}').all(char::is_control));
    assert!(!char::is_control('\u{20}') && !char::is_control('\u{a0}'));
    // What the pattern cannot say.
    let description = filename["description"].as_str().unwrap();
    for stated in [
        &format!("{MAX_FILENAME_BYTES} bytes"),
        "trimmed",
        "`/`",
        "`\\`",
        "`..`",
        "control character",
        "NFC",
        "not start with `.`",
        &AUDIO_EXTENSIONS.join(", ").replace(", oga", " or oga"),
        "bad_filename",
    ] {
        assert!(description.contains(stated), "{stated}: {description}");
    }
    // The examples hold.
    assert_eq!(
        safe_filename(filename["example"].as_str().unwrap()),
        Ok("song.mp3")
    );
    for refused in [
        "a/b.mp3",
        "a\\b.mp3",
        "a..b.mp3",
        "a\u{85}.mp3",
        ".mp3",
        ".hidden.mp3",
        "a.txt",
    ] {
        assert!(safe_filename(refused).is_err(), "{refused}");
    }
}

#[test]
fn the_content_types_fit_the_extensions_as_the_router_checks_them() {
    let doc = document();
    let schema = upload_schema(&doc);
    let extensions: Vec<_> = CONTENT_TYPES.iter().map(|(ext, _)| *ext).collect();
    assert_eq!(extensions, AUDIO_EXTENSIONS);
    let branches = schema["anyOf"].as_sequence().unwrap();
    assert_eq!(branches.len(), CONTENT_TYPES.len());
    for (branch, (ext, types)) in branches.iter().zip(CONTENT_TYPES) {
        let properties = &branch["properties"];
        let pattern = format!(r"\.{}$", any_case(ext));
        assert_eq!(properties["filename"]["pattern"].as_str(), Some(&*pattern));
        assert_eq!(
            strings(&properties["content_type"]["enum"]),
            *types,
            "{ext}"
        );
    }
    let content_type = &schema["properties"]["content_type"];
    let description = content_type["description"].as_str().unwrap();
    for (ext, types) in CONTENT_TYPES {
        assert!(description.contains(ext), "{ext}: {description}");
        for t in *types {
            assert!(description.contains(t), "{t}: {description}");
        }
    }
    for stated in ["case", "bad_content_type"] {
        assert!(description.contains(stated), "{stated}: {description}");
    }
    let size = &schema["properties"]["size"]["description"]
        .as_str()
        .unwrap();
    for stated in ["MAX_UPLOAD_BYTES", "bad_size", "file_too_large", "5 GiB"] {
        assert!(size.contains(stated), "{stated}: {size}");
    }
    assert_eq!(S3_MAX_PUT_BYTES, 5 << 30);
}

#[test]
fn the_page_parameters_state_the_limits_and_an_opaque_cursor() {
    let doc = document();
    for listing in LISTINGS {
        let list = &doc["paths"][listing]["get"];
        let parameters: Vec<_> = list["parameters"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| resolve(&doc, p))
            .collect();
        let limit = parameters.iter().find(|p| p["name"] == "limit").unwrap();
        let description = limit["description"].as_str().unwrap();
        assert!(
            description.contains(&format!("from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})")),
            "{description}"
        );
        let cursor = parameters.iter().find(|p| p["name"] == "cursor").unwrap();
        let description = cursor["description"].as_str().unwrap();
        for stated in ["Opaque", "`next_cursor` this API returned", "bad_cursor"] {
            assert!(description.contains(stated), "{stated}: {description}");
        }
        let codes = response_codes(&doc, &list["responses"]["400"]);
        assert_eq!(
            codes,
            BTreeSet::from(["bad_limit", "bad_cursor", "bad_query"]),
            "{listing}"
        );
    }
    for (path, method, code) in [
        ("/messages/{id}/dismiss", "post", "message_not_found"),
        ("/uploads/{id}", "get", "upload_not_found"),
    ] {
        let operation = &doc["paths"][path][method];
        let id = &operation["parameters"][0];
        assert_eq!(id["schema"]["minLength"].as_u64(), Some(1));
        let description = id["description"].as_str().unwrap();
        assert!(description.contains(code), "{path}");
        assert!(description.contains("400 `bad_id`"), "{path}");
        let codes = response_codes(&doc, &operation["responses"]["400"]);
        assert_eq!(codes, BTreeSet::from(["bad_id"]), "{path}");
    }
}

#[test]
fn an_upload_states_what_the_router_answers_with() {
    let doc = document();
    let upload = &doc["components"]["schemas"]["Upload"];
    let mut required = strings(&upload["required"]);
    required.sort();
    let mut fields: Vec<String> = upload["properties"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    fields.sort();
    assert_eq!(required, fields);
    // Every field the router sends, and no other.
    let view = transcoder_api::router::UploadView {
        id: transcoder_core::UploadId("u1".into()),
        file: "song.mp3".into(),
        key: "media/alice/song.mp3".into(),
        state: transcoder_core::UploadState::Received,
        percent: None,
        reason: None,
        outputs: Vec::new(),
        analysis: None,
        created_at: String::new(),
        updated_at: String::new(),
    };
    let view = serde_json::to_value(view).unwrap();
    let mut keys: Vec<&String> = view.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, fields.iter().collect::<Vec<_>>());
    let sent = serde_json::to_value(transcoder_core::UploadState::ALL).unwrap();
    let sent: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(strings(&upload["properties"]["state"]["enum"]), sent);
    assert_eq!(
        upload["properties"]["percent"]["maximum"].as_u64(),
        Some(100)
    );
}

/// `#/components/...` resolved.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .trim_start_matches("#/")
            .split('/')
            .fold(doc, |v, part| &v[part]),
        None => value,
    }
}

/// The error codes a response states: its schema's `allOf` narrowing of `Error`'s code.
fn response_codes<'a>(doc: &'a Value, response: &'a Value) -> BTreeSet<&'a str> {
    let schema = &resolve(doc, response)["content"]["application/json"]["schema"];
    let parts = schema["allOf"]
        .as_sequence()
        .unwrap_or_else(|| panic!("no allOf narrowing the codes: {schema:?}"));
    assert_eq!(
        parts[0]["$ref"].as_str(),
        Some("#/components/schemas/Error")
    );
    strings(&parts[1]["properties"]["error"]["properties"]["code"]["enum"])
        .into_iter()
        .collect()
}

/// The status each error code is answered with, read from the crate's sources: the
/// `StatusCode::…, "code"` pairs of error.rs and the `bad_request("code", …)` calls (400).
fn codes_in_source() -> BTreeMap<String, u16> {
    let mut codes = BTreeMap::new();
    for file in ["error.rs", "router.rs", "upload.rs"] {
        let path = format!("{}/src/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let literal = |rest: &str| {
            let rest = rest.trim_start().strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_owned())
        };
        for (at, _) in text.match_indices("bad_request(") {
            if let Some(code) = literal(&text[at + "bad_request(".len()..]) {
                codes.insert(code, 400);
            }
        }
        for (at, _) in text.match_indices("StatusCode::") {
            let rest = &text[at + "StatusCode::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            let Some(code) = rest[name.len()..].strip_prefix(',').and_then(literal) else {
                continue;
            };
            let status = match name.as_str() {
                "BAD_REQUEST" => 400,
                "UNAUTHORIZED" => 401,
                "FORBIDDEN" => 403,
                "NOT_FOUND" => 404,
                "METHOD_NOT_ALLOWED" => 405,
                "PAYLOAD_TOO_LARGE" => 413,
                "MISDIRECTED_REQUEST" => 421,
                "RANGE_NOT_SATISFIABLE" => 416,
                "INTERNAL_SERVER_ERROR" => 500,
                "SERVICE_UNAVAILABLE" => 503,
                "INSUFFICIENT_STORAGE" => 507,
                other => panic!("{file}: {other} for {code}: add it here"),
            };
            codes.insert(code, status);
        }
    }
    codes
}

/// Codes only the local runner's `/files/` route answers with (docs/local.md); not this API's.
const FILES_ROUTE_CODES: [&str; 5] = [
    "link_refused",
    "incomplete_upload",
    "file_not_found",
    "quota_exceeded",
    "range_not_satisfiable",
];

#[test]
fn every_response_states_its_error_codes_and_they_are_the_codes_the_router_answers_with() {
    let doc = document();
    let in_source = codes_in_source();
    assert!(in_source.len() >= 15, "{in_source:?}");
    let mut stated = BTreeSet::new();
    for (path, operations) in doc["paths"].as_mapping().unwrap() {
        for (method, operation) in operations.as_mapping().unwrap() {
            for (status, response) in operation["responses"].as_mapping().unwrap() {
                let status: u16 = status.as_str().unwrap().parse().unwrap();
                if status < 400 {
                    continue;
                }
                for code in response_codes(&doc, response) {
                    assert_eq!(
                        in_source.get(code),
                        Some(&status),
                        "{method:?} {path:?}: {status} states `{code}`"
                    );
                    stated.insert(code.to_owned());
                }
            }
        }
    }
    // 421 belongs to the local runner's server (described under `servers`), not to a route.
    assert!(
        doc["servers"][1]["description"]
            .as_str()
            .unwrap()
            .contains("421 misdirected_request")
    );
    stated.insert("misdirected_request".into());
    let expected: BTreeSet<_> = in_source
        .keys()
        .filter(|c| !FILES_ROUTE_CODES.contains(&c.as_str()))
        .cloned()
        .collect();
    assert_eq!(stated, expected);
    let all: BTreeSet<_> = strings(
        &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"],
    )
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(all, expected);
    // The local runner's codes are not answered by the router itself.
    for file in ["router.rs", "upload.rs"] {
        let text =
            std::fs::read_to_string(format!("{}/src/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        for code in FILES_ROUTE_CODES {
            assert!(!text.contains(code), "{file} answers {code}");
        }
    }
}
