//! `template.yaml` against what `start-transcode` does since it reads uploads' first bytes: its
//! role may read uploads, and nothing else in the bucket, without a circular dependency between
//! the bucket's notification and the function.

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
fn the_read_is_granted_outside_the_role_so_the_bucket_can_name_the_function() {
    let t = template();
    // The bucket's notification needs the function, the function its role: the role itself must
    // not name the bucket, or CloudFormation finds a cycle.
    let role = t["Resources"]["StartTranscodeRole"].to_string();
    assert!(!role.contains("MediaBucket"), "{role}");
    let function = t["Resources"]["StartTranscodeFunction"].to_string();
    assert!(
        !function.contains("StartTranscodeReadsUploads"),
        "{function}"
    );
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
