//! `template.yaml`: least privilege, and a private bucket.
//!
//! Every allowed action is named and granted on named resources to named principals, a role is
//! passed only by name to one service, and no policy hides where this cannot read it; the bucket
//! is private, encrypted and refuses plain HTTP. Every check runs on the real template and on the
//! stack each backend deploys (nothing wrong), and on copies broken the ways that matter (the
//! check objects). checkov (`make check-template`) knows the general rules; these are this
//! project's.

use serde_json::{Value, json};
use system_tests::template::{
    Case, assert_passes_deployed, assert_refuses, expand, r#ref, remove, resource,
    resources_of_type, set, statements, strings, template,
};

/// Actions that have no resource-level permission, so `Resource: "*"` is the only way to grant
/// them. Nothing else may be granted on "*".
const NO_RESOURCE_LEVEL_PERMISSION: &[&str] = &[
    "elastictranscoder:ListPipelines",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
];

fn is_everyone(principal: &Value) -> bool {
    *principal == "*" || strings(&principal["AWS"]).contains(&"*")
}

// ------------------------------------------------------------------------------------------ checks

/// Least privilege: every allowed action is named (no `*`, no `service:*`, no pattern), granted
/// on named resources (`*` only where the service offers nothing narrower), to named principals;
/// a role is passed only by name and only to a named service; and no policy hides elsewhere
/// (SAM-generated roles and managed policies carry `Resource: "*"`).
///
/// A KMS key policy is the one place with two exceptions, both AWS's own form: its `Resource` can
/// only be `*`, meaning the key itself, and the account's root may be allowed `kms:*`, which only
/// delegates the key to the account's IAM policies, which are checked here.
fn policy_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let found = statements(t);
    if found.is_empty() {
        problems.push("no policy statements found".into());
    }
    let key_policies: Vec<String> = resources_of_type(t, "AWS::KMS::Key")
        .into_iter()
        .map(|(id, _)| format!("/Resources/{id}/Properties/KeyPolicy/"))
        .collect();
    for (at, statement) in found {
        if statement["Effect"] != "Allow" {
            continue;
        }
        for key in ["NotAction", "NotResource", "NotPrincipal"] {
            if !statement[key].is_null() {
                problems.push(format!("{at} allows with {key}"));
            }
        }
        let actions = strings(&statement["Action"]);
        let in_key_policy = key_policies.iter().any(|p| at.starts_with(p));
        let delegates_to_iam = in_key_policy
            && statement["Principal"]["AWS"] == account_root()
            && actions == ["kms:*"];
        for action in &actions {
            if action.contains('*') && !delegates_to_iam {
                problems.push(format!("{at} allows the wildcard action {action}"));
            }
        }
        if actions.contains(&"iam:PassRole") {
            problems.extend(pass_role_problems(t, &at, statement));
        }
        if strings(&statement["Resource"]).contains(&"*") && !in_key_policy {
            for action in &actions {
                if !NO_RESOURCE_LEVEL_PERMISSION.contains(action) {
                    problems.push(format!(
                        "{at} allows {action} on Resource \"*\", though {action} has \
                         resource-level permissions"
                    ));
                }
            }
        }
        if is_everyone(&statement["Principal"]) {
            problems.push(format!("{at} allows everyone"));
        }
    }
    for (id, function) in resources_of_type(t, "AWS::Serverless::Function") {
        let properties = &function["Properties"];
        if properties["Role"].is_null() || !properties["Policies"].is_null() {
            problems.push(format!(
                "{id} lets SAM generate its role, with AWSLambdaBasicExecutionRole (Resource \"*\")"
            ));
        }
    }
    for (id, role) in resources_of_type(t, "AWS::IAM::Role") {
        if !role["Properties"]["ManagedPolicyArns"].is_null() {
            problems.push(format!(
                "{id} attaches managed policies, which this file cannot check"
            ));
        }
    }
    problems
}

/// The account itself as a principal: `arn:...:iam::ACCOUNT:root`.
fn account_root() -> Value {
    json!({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"})
}

/// `iam:PassRole` lets its holder hand a role to a service: only the template's own roles, by
/// name, and only to the one service named in `iam:PassedToService`.
fn pass_role_problems(t: &Value, at: &str, statement: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let resources = match &statement["Resource"] {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    for resource in resources {
        let role = resource["Fn::GetAtt"][0].as_str().unwrap_or_default();
        if resource["Fn::GetAtt"][1] != "Arn" || self::resource(t, role)["Type"] != "AWS::IAM::Role"
        {
            problems.push(format!(
                "{at} passes {resource}, not a role of this template by name"
            ));
        }
    }
    let service = &statement["Condition"]["StringEquals"]["iam:PassedToService"];
    if !service
        .as_str()
        .is_some_and(|s| s.ends_with(".amazonaws.com"))
    {
        problems.push(format!(
            "{at} passes a role to any service: no iam:PassedToService condition names one"
        ));
    }
    problems
}

/// The bucket is private, encrypted, and refuses plain HTTP.
fn bucket_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let bucket = &resource(t, "MediaBucket")["Properties"];
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        if bucket["PublicAccessBlockConfiguration"][setting] != true {
            problems.push(format!("MediaBucket does not set {setting}"));
        }
    }
    if !bucket["AccessControl"].is_null() || !bucket["WebsiteConfiguration"].is_null() {
        problems.push("MediaBucket has a canned ACL or a website".into());
    }
    let encryption = &bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"];
    let algorithms: Vec<&Value> = encryption
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| &rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"])
        .collect();
    if algorithms.is_empty()
        || !algorithms.iter().all(|a| {
            ["AES256", "aws:kms", "aws:kms:dsse"]
                .iter()
                .any(|x| *a == x)
        })
    {
        problems.push(format!(
            "MediaBucket is not encrypted at rest: {encryption}"
        ));
    }

    let arn = json!({"Fn::GetAtt": ["MediaBucket", "Arn"]});
    let objects = json!({"Fn::Sub": "${MediaBucket.Arn}/*"});
    let denies_plain_http = resources_of_type(t, "AWS::S3::BucketPolicy")
        .into_iter()
        .filter(|(_, p)| p["Properties"]["Bucket"] == r#ref("MediaBucket"))
        .flat_map(|(_, p)| expand(&p["Properties"]["PolicyDocument"]["Statement"]))
        .any(|s| {
            let resources = &s["Resource"];
            s["Effect"] == "Deny"
                && is_everyone(&s["Principal"])
                && strings(&s["Action"]) == ["s3:*"]
                && ["false", "False"]
                    .iter()
                    .any(|f| s["Condition"]["Bool"]["aws:SecureTransport"] == *f)
                && resources
                    .as_array()
                    .is_some_and(|r| r.contains(&arn) && r.contains(&objects))
        });
    if !denies_plain_http {
        problems.push("no policy on MediaBucket denies every request without TLS".into());
    }
    problems
}

// ------------------------------------------------------------------------------------------- tests

/// start-transcode's statement on its claims in the table.
const CLAIMS: &str =
    "/Resources/StartTranscodeRole/Properties/Policies/0/PolicyDocument/Statement/1";
/// The key policy of the topic's key: its exceptions hold for the account's root and for the key
/// itself only.
const KEY: &str = "/Resources/CompletionTopicKey/Properties/KeyPolicy/Statement";
/// start-transcode passing MediaConvert its role: by name, to one service.
const PASS: &str =
    "/Resources/StartTranscodeRole/Properties/Policies/0/PolicyDocument/Statement/4/Fn::If/1";
const BUCKET: &str = "/Resources/MediaBucket/Properties";
const DENY: &str = "/Resources/MediaBucketPolicy/Properties/PolicyDocument/Statement/0";

#[test]
fn policies_name_their_actions_resources_and_principals() {
    let t = template();
    assert_eq!(policy_problems(&t), Vec::<String>::new());
    assert_passes_deployed(policy_problems, &t);

    let cases: &[Case] = &[
        (
            "an action is *",
            |t| set(t, &format!("{CLAIMS}/Action"), json!("*")),
            "wildcard action",
        ),
        (
            "an action is a whole service",
            |t| set(t, &format!("{CLAIMS}/Action"), json!("dynamodb:*")),
            "wildcard action",
        ),
        (
            "an action is a pattern",
            |t| set(t, &format!("{CLAIMS}/Action"), json!("dynamodb:Put*")),
            "wildcard action",
        ),
        (
            "an action with resource-level permissions on Resource *",
            |t| set(t, &format!("{CLAIMS}/Resource"), json!("*")),
            "resource-level permissions",
        ),
        (
            "a wildcard action inside an Fn::If branch",
            |t| {
                let statement = t.pointer(CLAIMS).unwrap().clone();
                let mut wild = statement.clone();
                wild["Action"] = json!("s3:*");
                set(
                    t,
                    CLAIMS,
                    json!({"Fn::If": ["Cond", wild, r#ref("AWS::NoValue")]}),
                );
            },
            "wildcard action s3:*",
        ),
        (
            "the topic's policy allows everyone",
            |t| {
                let topic = "/Resources/CompletionTopicPolicy/Properties/PolicyDocument/\
                             Statement/1/Fn::If/1/Principal";
                set(t, topic, json!({"AWS": "*"}))
            },
            "allows everyone",
        ),
        (
            "a role attaches managed policies",
            |t| {
                let role = &mut t["Resources"]["RecordCompletionRole"]["Properties"];
                role["ManagedPolicyArns"] = json!([]);
            },
            "managed policies",
        ),
        (
            "a function lets SAM generate its role",
            |t| remove(t, "/Resources/MessagesApiFunction/Properties/Role"),
            "lets SAM generate its role",
        ),
        (
            "the key delegates kms:* to a service, not the account",
            |t| {
                set(
                    t,
                    &format!("{KEY}/0/Principal"),
                    json!({"Service": "events.amazonaws.com"}),
                )
            },
            "wildcard action kms:*",
        ),
        (
            "the key allows EventBridge kms:*",
            |t| set(t, &format!("{KEY}/1/Action"), json!("kms:*")),
            "wildcard action kms:*",
        ),
        (
            "MediaConvert's role reads every object of every bucket",
            |t| {
                let queue = "/Resources/MediaConvertRole/Properties/Policies/0/PolicyDocument/\
                             Statement/0/Resource";
                set(t, queue, json!("*"))
            },
            "allows s3:GetObject on Resource \"*\"",
        ),
        (
            "start-transcode may pass any role",
            |t| set(t, &format!("{PASS}/Resource"), json!("*")),
            "not a role of this template",
        ),
        (
            "start-transcode may pass any role of the account",
            |t| {
                set(
                    t,
                    &format!("{PASS}/Resource"),
                    json!({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*"}),
                )
            },
            "not a role of this template",
        ),
        (
            "start-transcode may pass its role to any service",
            |t| remove(t, &format!("{PASS}/Condition")),
            "passes a role to any service",
        ),
    ];
    assert_refuses(policy_problems, &t, cases);
}

#[test]
fn the_bucket_is_private_encrypted_and_tls_only() {
    let t = template();
    assert_eq!(bucket_problems(&t), Vec::<String>::new());
    assert_passes_deployed(bucket_problems, &t);

    let cases: &[Case] = &[
        (
            "public bucket policies are not restricted",
            |t| {
                set(
                    t,
                    &format!("{BUCKET}/PublicAccessBlockConfiguration/RestrictPublicBuckets"),
                    json!(false),
                )
            },
            "RestrictPublicBuckets",
        ),
        (
            "no public access block",
            |t| remove(t, &format!("{BUCKET}/PublicAccessBlockConfiguration")),
            "BlockPublicAcls",
        ),
        (
            "no encryption at rest",
            |t| remove(t, &format!("{BUCKET}/BucketEncryption")),
            "encrypted",
        ),
        (
            "a public-read canned ACL",
            |t| t["Resources"]["MediaBucket"]["Properties"]["AccessControl"] = json!("PublicRead"),
            "canned ACL",
        ),
        (
            "the policy denies requests with TLS instead",
            |t| {
                set(
                    t,
                    &format!("{DENY}/Condition/Bool/aws:SecureTransport"),
                    json!("true"),
                )
            },
            "without TLS",
        ),
        (
            "the policy denies plain HTTP to the bucket, not its objects",
            |t| {
                set(
                    t,
                    &format!("{DENY}/Resource"),
                    json!([{"Fn::GetAtt": ["MediaBucket", "Arn"]}]),
                )
            },
            "without TLS",
        ),
        (
            "no bucket policy",
            |t| remove(t, "/Resources/MediaBucketPolicy"),
            "without TLS",
        ),
    ];
    assert_refuses(bucket_problems, &t, cases);
}
