//! `template.yaml` against what upload records need: the table's `uploads` index, each
//! function's right to write or read the records, and the transcoders' progress reaching
//! `record-completion` (MediaConvert's rule forwards it; Elastic Transcoder's pipeline, made by the
//! command in docs/deploying.md, announces it). Every check runs on the real template and on
//! copies broken the ways that matter.

use serde_json::{Value, json};
use system_tests::template::{
    Case, assert_refuses, grants, policies_of, resource, set, strings, template,
};
use system_tests::{dynamodb_local::workspace_root, sample_event};

/// The sample MediaConvert events the tests deliver, whose states the rule must forward.
const MEDIACONVERT_SAMPLES: [&str; 5] = [
    "sns-mediaconvert-complete.json",
    "sns-mediaconvert-complete-missing-paths.json",
    "sns-mediaconvert-error.json",
    "sns-mediaconvert-canceled.json",
    "sns-mediaconvert-status-update.json",
];

/// Whether `role` may do `action` on `resource`.
fn may(t: &Value, role: &str, action: &str, on: &Value) -> bool {
    grants(&policies_of(t, role), "dynamodb:")
        .iter()
        .any(|(actions, resource)| actions.contains(&action) && *resource == on)
}

fn upload_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let table = &resource(t, "MessagesTable")["Properties"];
    let index = table["GlobalSecondaryIndexes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["IndexName"] == transcoder_aws::UPLOADS_INDEX);
    let keys = index.map(|i| {
        let schema = i["KeySchema"].as_array().into_iter().flatten();
        schema
            .map(|k| (k["AttributeName"].clone(), k["KeyType"].clone()))
            .collect::<Vec<_>>()
    });
    let expected = vec![
        (json!("upload_pk"), json!("HASH")),
        (json!("upload_sk"), json!("RANGE")),
    ];
    if keys.as_ref() != Some(&expected) {
        problems.push(format!(
            "the table's uploads index is {keys:?}, not keyed by owner and time"
        ));
    }

    let table_arn = json!({"Fn::GetAtt": ["MessagesTable", "Arn"]});
    let uploads_index = json!({"Fn::Sub": "${MessagesTable.Arn}/index/uploads"});
    for (role, action, on) in [
        ("StartTranscodeRole", "dynamodb:UpdateItem", &table_arn),
        ("RecordCompletionRole", "dynamodb:UpdateItem", &table_arn),
        ("MessagesApiRole", "dynamodb:Query", &uploads_index),
        ("MessagesApiRole", "dynamodb:GetItem", &table_arn),
    ] {
        if !may(t, role, action, on) {
            problems.push(format!("{role} may not {action} on {on}"));
        }
    }

    let forwarded = strings(
        &resource(t, "MediaConvertJobStates")["Properties"]["EventPattern"]["detail"]["status"],
    );
    for file in MEDIACONVERT_SAMPLES {
        let event = sample_event(file);
        let message: Value =
            serde_json::from_str(event["Records"][0]["Sns"]["Message"].as_str().unwrap()).unwrap();
        let status = message["detail"]["status"].as_str().unwrap();
        if !forwarded.contains(&status) {
            problems.push(format!(
                "the rule does not forward {status}, the state of {file}"
            ));
        }
    }
    problems
}

#[test]
fn upload_records_are_indexed_writable_readable_and_progress_reaches_them() {
    let t = template();
    let cases: &[Case] = &[
        (
            "the table has no uploads index",
            |t| {
                let indexes = "/Resources/MessagesTable/Properties/GlobalSecondaryIndexes";
                let unread = t.pointer(indexes).unwrap()[0].clone();
                set(t, indexes, json!([unread]))
            },
            "uploads index",
        ),
        (
            "record-completion may only put",
            |t| {
                let statement = "/Resources/RecordCompletionRole/Properties/Policies/0/PolicyDocument/Statement/1/Action";
                set(t, statement, json!("dynamodb:PutItem"))
            },
            "RecordCompletionRole may not dynamodb:UpdateItem",
        ),
        (
            "messages-api may not read one upload",
            |t| {
                let statement = "/Resources/MessagesApiRole/Properties/Policies/0/PolicyDocument/Statement/3/Action";
                set(t, statement, json!("dynamodb:Query"))
            },
            "MessagesApiRole may not dynamodb:GetItem",
        ),
        (
            "messages-api may query only the unread index",
            |t| {
                let statement = "/Resources/MessagesApiRole/Properties/Policies/0/PolicyDocument/Statement/2/Resource";
                set(
                    t,
                    statement,
                    json!({"Fn::Sub": "${MessagesTable.Arn}/index/unread"}),
                )
            },
            "MessagesApiRole may not dynamodb:Query",
        ),
        (
            "the rule forwards only the final states",
            |t| {
                set(
                    t,
                    "/Resources/MediaConvertJobStates/Properties/EventPattern/detail/status",
                    json!(["COMPLETE", "ERROR", "CANCELED"]),
                )
            },
            "does not forward STATUS_UPDATE",
        ),
    ];
    assert_refuses(upload_problems, &t, cases);
}

#[test]
fn the_elastic_transcoder_pipeline_announces_progress_on_the_topic() {
    let text = std::fs::read_to_string(workspace_root().join("docs/deploying.md")).unwrap();
    let command = text
        .lines()
        .find(|l| l.trim_start().starts_with("--notifications"))
        .expect("docs/deploying.md creates the pipeline with its notifications");
    for state in ["Progressing", "Completed", "Warning", "Error"] {
        assert!(
            command.contains(&format!("{state}=$TOPIC")),
            "{state}: {command}"
        );
    }
    // The progressing sample is what such a pipeline sends: an upload record, no message.
    let event = sample_event("sns-et-progressing.json");
    let message = event["Records"][0]["Sns"]["Message"].as_str().unwrap();
    assert!(message.contains(r#""state":"PROGRESSING""#), "{message}");
    assert!(message.contains(r#""upload":""#), "{message}");
}
