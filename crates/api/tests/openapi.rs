//! The OpenAPI document describes exactly the routes the router serves, and the limits it applies.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;
use transcoder_api::config::DEFAULT_MAX_UPLOAD_BYTES;
use transcoder_api::router::{DEFAULT_LIMIT, MAX_LIMIT};
use transcoder_api::upload::CONTENT_TYPES;
use transcoder_api::{MAX_BODY_BYTES, ROUTES};

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
    let limit = &doc["paths"]["/messages"]["get"]["parameters"][0]["schema"];
    assert_eq!(limit["minimum"].as_u64(), Some(1));
    assert_eq!(limit["maximum"].as_u64(), Some(MAX_LIMIT as u64));
    assert_eq!(limit["default"].as_u64(), Some(DEFAULT_LIMIT as u64));
}

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
