//! `template.yaml` against what `start-transcode` does since it reads uploads' first bytes: its
//! role may read uploads, and nothing else in the bucket, and the bucket, whose notification goes
//! to the intake queue, never waits for the function.

use serde_json::json;
use system_tests::template::{grants, policies_of, statements_of, template};

#[test]
fn start_transcode_may_read_uploads_and_nothing_else_in_the_bucket() {
    let t = template();
    let policies = policies_of(&t, "StartTranscodeRole");
    let s3 = grants(&policies, "s3:");
    assert_eq!(
        s3,
        [(
            vec!["s3:GetObject"],
            &json!({ "Fn::Sub": "${MediaBucket.Arn}/${InputPrefix}*" })
        )],
        "one read of uploads, exactly"
    );
    let statement = statements_of(&policies)
        .into_iter()
        .find(|s| s["Action"] == "s3:GetObject")
        .cloned()
        .unwrap_or_default();
    assert_eq!(statement["Effect"], "Allow");
    assert!(statement.get("NotResource").is_none() && statement.get("NotAction").is_none());
}

#[test]
fn the_bucket_waits_for_the_intake_queue_not_for_start_transcode() {
    let t = template();
    // The bucket's notification names the intake queue, not the function: nothing of the bucket
    // waits for start-transcode, its role or its read of uploads, which names the bucket.
    let bucket = t["Resources"]["MediaBucket"].to_string();
    for id in [
        "StartTranscodeFunction",
        "StartTranscodeRole",
        "StartTranscodeReadsUploads",
    ] {
        assert!(!bucket.contains(id), "MediaBucket names {id}: {bucket}");
    }
    let role = t["Resources"]["StartTranscodeRole"].to_string();
    assert!(!role.contains("MediaBucket"), "{role}");
    let reads = &t["Resources"]["StartTranscodeReadsUploads"];
    assert_eq!(reads["Type"], "AWS::IAM::RolePolicy");
    assert_eq!(
        reads["Properties"]["RoleName"],
        json!({ "Ref": "StartTranscodeRole" })
    );
}

#[test]
fn start_transcode_may_write_the_failed_message_of_a_refused_upload() {
    let t = template();
    let policies = policies_of(&t, "StartTranscodeRole");
    let dynamodb = grants(&policies, "dynamodb:");
    assert_eq!(dynamodb.len(), 1, "{dynamodb:?}");
    let (actions, resource) = &dynamodb[0];
    assert!(actions.contains(&"dynamodb:PutItem"), "{actions:?}");
    assert_eq!(
        **resource,
        json!({ "Fn::GetAtt": ["MessagesTable", "Arn"] })
    );
    let variables =
        &t["Resources"]["StartTranscodeFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(variables["TABLE_NAME"], json!({ "Ref": "MessagesTable" }));
}
