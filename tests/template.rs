//! `template.yaml` against the code: what the deployed system must never lose.
//!
//! Each check returns what is wrong with a template, in words. Every test runs its check on the
//! real template (nothing wrong) and on copies broken the ways that matter (the check objects),
//! so no check can pass by looking at nothing. `make test` also runs `sam validate --lint`,
//! cfn-lint and checkov on the template; these checks are what those tools cannot know: the
//! names the code reads, and this project's rules.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use system_tests::template::{assert_objects, broken, from_yaml, remove, set, template};
use transcoder_api::{ApiConfig, ROUTES};
use transcoder_aws::mediaconvert::JOB_TAG_KEY;
use transcoder_aws::{CloudTranscoder, DynamoStore};
use transcoder_core::store::CLAIM_LEASE;
use transcoder_core::{RecordConfig, StartConfig};

/// A function of the template and the code it runs.
struct Function {
    logical_id: &'static str,
    binary: &'static str,
    /// Every variable its code reads (the configurations' `VARIABLES`).
    reads: Vec<&'static str>,
    /// Variables it cannot start without, or that the deployment must not leave to a default.
    requires: &'static [&'static str],
}

fn functions() -> Vec<Function> {
    vec![
        Function {
            logical_id: "StartTranscodeFunction",
            binary: "start-transcode",
            reads: [
                StartConfig::VARIABLES,
                CloudTranscoder::VARIABLES,
                DynamoStore::VARIABLES,
            ]
            .concat(),
            requires: &["TABLE_NAME", "INPUT_PREFIX", "OUTPUT_PREFIX"],
        },
        Function {
            logical_id: "RecordCompletionFunction",
            binary: "record-completion",
            reads: [RecordConfig::VARIABLES, DynamoStore::VARIABLES].concat(),
            requires: &["TABLE_NAME", "TOPIC_ARN"],
        },
        Function {
            logical_id: "MessagesApiFunction",
            binary: "messages-api",
            reads: [ApiConfig::VARIABLES, DynamoStore::VARIABLES].concat(),
            requires: &["TABLE_NAME", "BUCKET_NAME", "INPUT_PREFIX"],
        },
    ]
}

/// The functions invoked asynchronously (by S3 and by SNS): Lambda retries them, then keeps the
/// event in their failure queue.
const ASYNCHRONOUS: &[&str] = &["StartTranscodeFunction", "RecordCompletionFunction"];

/// Actions that have no resource-level permission, so `Resource: "*"` is the only way to grant
/// them. Nothing else may be granted on "*".
const NO_RESOURCE_LEVEL_PERMISSION: &[&str] = &[
    "elastictranscoder:ListPipelines",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
];

/// The values of the `TranscoderBackend` parameter, and the `TRANSCODER` each one must set.
const BACKENDS: [(&str, &str); 2] = [
    ("MediaConvert", "mediaconvert"),
    ("ElasticTranscoder", "elastictranscoder"),
];

/// The MediaConvert states that end a job, which `record-completion` turns into a message.
const MEDIACONVERT_FINAL_STATES: [&str; 3] = ["COMPLETE", "ERROR", "CANCELED"];

/// Methods a client may send to a path no route names: each reaches the router (404 or 405).
/// OPTIONS is left to API Gateway's CORS preflight handling.
const CATCH_ALL_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
const CATCH_ALL_PATH: &str = "/{proxy+}";

/// The pattern of both prefix parameters: one folder name and '/', with no '*' (a wildcard in the
/// policies' ARNs) and no other '/'.
const SINGLE_FOLDER: &str = r"^[0-9A-Za-z][0-9A-Za-z_.-]*/$";

fn r#ref(name: &str) -> Value {
    json!({ "Ref": name })
}

fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    &t["Resources"][id]
}

fn resources_of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

fn events<'a>(function: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    function["Properties"]["Events"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, e)| e["Type"] == kind)
        .map(|(name, e)| (name.as_str(), &e["Properties"]))
        .collect()
}

/// A string, or the strings of a list.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// The statements of a policy's `Statement`, with both branches of an `Fn::If` and without the
/// `AWS::NoValue` it may leave.
fn expand(statement: &Value) -> Vec<&Value> {
    match statement {
        Value::Array(items) => items.iter().flat_map(expand).collect(),
        Value::Object(map) if map.contains_key("Fn::If") => map["Fn::If"]
            .as_array()
            .map(|args| args.iter().skip(1).flat_map(expand).collect())
            .unwrap_or_default(),
        v if *v == r#ref("AWS::NoValue") => Vec::new(),
        v => vec![v],
    }
}

/// Every policy statement anywhere in the template, with where it is.
fn statements(t: &Value) -> Vec<(String, &Value)> {
    fn walk<'a>(value: &'a Value, at: &str, found: &mut Vec<(String, &'a Value)>) {
        match value {
            Value::Object(map) => {
                if let Some(statement) = map.get("Statement") {
                    for (i, s) in expand(statement).into_iter().enumerate() {
                        let sid = s["Sid"]
                            .as_str()
                            .map(|s| format!(" ({s})"))
                            .unwrap_or_default();
                        found.push((format!("{at}/Statement/{i}{sid}"), s));
                    }
                }
                for (key, child) in map {
                    walk(child, &format!("{at}/{key}"), found);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{at}/{i}"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(t, "", &mut found);
    found
}

fn is_everyone(principal: &Value) -> bool {
    *principal == "*" || strings(&principal["AWS"]).contains(&"*")
}

// ------------------------------------------------------------------------------------------ checks

/// Uploads under the input prefix, and only those, reach start-transcode: the notification
/// filter is the `InputPrefix` parameter, its default is the code's, the output prefix can never
/// overlap it, and the functions are told the same prefixes.
fn notification_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let params = &t["Parameters"];
    for (param, default) in [
        ("InputPrefix", StartConfig::DEFAULT_INPUT_PREFIX),
        ("OutputPrefix", StartConfig::DEFAULT_OUTPUT_PREFIX),
    ] {
        if params[param]["Default"] != default {
            problems.push(format!(
                "parameter {param} defaults to {}, the code to {default:?}",
                params[param]["Default"]
            ));
        }
        // With both prefixes single folders ("x/"), one contains the other only if they are equal.
        let pattern = &params[param]["AllowedPattern"];
        if *pattern != SINGLE_FOLDER {
            problems.push(format!(
                "parameter {param} allows more than one folder ({pattern}): its overlap with the \
                 other prefix could not be ruled out"
            ));
        }
    }
    let input = params["InputPrefix"]["Default"]
        .as_str()
        .unwrap_or_default();
    let output = params["OutputPrefix"]["Default"]
        .as_str()
        .unwrap_or_default();
    if input.starts_with(output) || output.starts_with(input) {
        problems.push(format!(
            "the default output prefix {output:?} overlaps the input prefix {input:?}"
        ));
    }
    let differ =
        json!({"Fn::Not": [{"Fn::Equals": [r#ref("InputPrefix"), r#ref("OutputPrefix")]}]});
    let rules = t["Rules"].as_object().into_iter().flatten();
    if !rules
        .flat_map(|(_, rule)| rule["Assertions"].as_array().into_iter().flatten())
        .any(|a| a["Assert"] == differ)
    {
        problems.push("no rule asserts that InputPrefix and OutputPrefix differ".into());
    }

    let start = resource(t, "StartTranscodeFunction");
    let uploads = events(start, "S3");
    if uploads.len() != 1 {
        problems.push(format!(
            "start-transcode has {} S3 events, not one",
            uploads.len()
        ));
    }
    for (name, event) in uploads {
        if event["Bucket"] != r#ref("MediaBucket") {
            problems.push(format!("S3 event {name} is not on MediaBucket"));
        }
        // Multipart uploads arrive as ObjectCreated:CompleteMultipartUpload.
        if strings(&event["Events"]) != ["s3:ObjectCreated:*"] {
            problems.push(format!(
                "S3 event {name} is for {}, not s3:ObjectCreated:*",
                event["Events"]
            ));
        }
        let rules = &event["Filter"]["S3Key"]["Rules"];
        if *rules != json!([{"Name": "prefix", "Value": r#ref("InputPrefix")}]) {
            problems.push(format!(
                "S3 event {name}'s filter is {rules}, not the prefix InputPrefix alone"
            ));
        }
    }
    if !resource(t, "MediaBucket")["Properties"]["NotificationConfiguration"].is_null() {
        problems.push("MediaBucket declares notifications besides start-transcode's event".into());
    }

    for (function, variable, param) in [
        ("StartTranscodeFunction", "INPUT_PREFIX", "InputPrefix"),
        ("StartTranscodeFunction", "OUTPUT_PREFIX", "OutputPrefix"),
        ("MessagesApiFunction", "INPUT_PREFIX", "InputPrefix"),
    ] {
        let value = &resource(t, function)["Properties"]["Environment"]["Variables"][variable];
        if *value != r#ref(param) {
            problems.push(format!(
                "{function}'s {variable} is {value}, not the parameter {param}"
            ));
        }
    }
    problems
}

/// Each function is told exactly what its code reads: no name the code ignores (a typo, or a
/// setting that silently does nothing), and everything it needs.
fn environment_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if !t["Globals"]["Function"]["Environment"].is_null() {
        problems.push("Globals gives every function the same Environment".into());
    }
    for f in functions() {
        let function = resource(t, f.logical_id);
        if function["Type"] != "AWS::Serverless::Function" {
            problems.push(format!("{} is not a function", f.logical_id));
            continue;
        }
        let metadata = &function["Metadata"];
        if metadata["BuildMethod"] != "rust-cargolambda"
            || metadata["BuildProperties"]["Binary"] != f.binary
        {
            problems.push(format!(
                "{} does not build the binary {}",
                f.logical_id, f.binary
            ));
        }
        let variables = &function["Properties"]["Environment"]["Variables"];
        let names: BTreeSet<&str> = variables
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, _)| name.as_str())
            .collect();
        for name in &names {
            if !f.reads.contains(name) {
                problems.push(format!(
                    "{} sets {name}, which {} never reads (it reads {:?})",
                    f.logical_id, f.binary, f.reads
                ));
            }
        }
        for name in f.requires {
            if !names.contains(name) {
                problems.push(format!("{} does not set {name}", f.logical_id));
            }
        }
        if !names.is_empty() && variables["TABLE_NAME"] != r#ref("MessagesTable") {
            problems.push(format!(
                "{}'s TABLE_NAME is not MessagesTable",
                f.logical_id
            ));
        }
    }
    let record = resource(t, "RecordCompletionFunction");
    let topic = &record["Properties"]["Environment"]["Variables"]["TOPIC_ARN"];
    let subscribed: Vec<&Value> = events(record, "SNS")
        .iter()
        .map(|(_, e)| &e["Topic"])
        .collect();
    if subscribed != [topic] {
        problems.push(format!(
            "record-completion accepts TOPIC_ARN {topic} but is subscribed to {subscribed:?}"
        ));
    }
    let api_variables =
        &resource(t, "MessagesApiFunction")["Properties"]["Environment"]["Variables"];
    let bucket = &api_variables["BUCKET_NAME"];
    if *bucket != r#ref("MediaBucket") {
        problems.push(format!(
            "messages-api's BUCKET_NAME is {bucket}, not MediaBucket"
        ));
    }
    // TRANSCODER as CloudTranscoder spells the backend.
    if t["Mappings"]["Transcoders"]["ElasticTranscoder"]["Variable"] != "elastictranscoder" {
        problems.push(
            "TranscoderBackend ElasticTranscoder does not map to TRANSCODER=elastictranscoder"
                .into(),
        );
    }
    problems
}

/// Every way into the API carries a Cognito JWT: one HTTP API, whose default authorizer is a JWT
/// authorizer on the stack's user pool; every route on it, none opting out; the routes the code
/// serves, plus a catch-all per method so that unknown paths and wrong methods get the router's
/// 404 and 405.
fn route_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let apis = resources_of_type(t, "AWS::Serverless::HttpApi");
    let api_ids: Vec<Value> = apis.iter().map(|(id, _)| r#ref(id)).collect();
    if apis.len() != 1 {
        problems.push(format!("{} HTTP APIs, not one", apis.len()));
    }
    for (id, api) in &apis {
        let auth = &api["Properties"]["Auth"];
        let default = auth["DefaultAuthorizer"].as_str().unwrap_or_default();
        let jwt = &auth["Authorizers"][default]["JwtConfiguration"];
        let issuer = jwt["issuer"]["Fn::Sub"].as_str().unwrap_or_default();
        if default.is_empty() || default == "NONE" {
            problems.push(format!("{id} has no default authorizer"));
        } else if !(issuer.starts_with("https://cognito-idp.") && issuer.ends_with("/${UserPool}"))
            || jwt["audience"] != json!([r#ref("UserPoolClient")])
        {
            problems.push(format!(
                "{id}'s default authorizer {default} is not a JWT authorizer for UserPool and \
                 UserPoolClient: {jwt}"
            ));
        }
    }
    for kind in [
        "AWS::Serverless::Api",
        "AWS::ApiGateway::RestApi",
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Route",
        "AWS::Lambda::Url",
    ] {
        for (id, _) in resources_of_type(t, kind) {
            problems.push(format!(
                "{id} ({kind}) is a way in that no check here covers"
            ));
        }
    }

    let mut routes = BTreeSet::new();
    for (function_id, function) in resources_of_type(t, "AWS::Serverless::Function") {
        if !function["Properties"]["FunctionUrlConfig"].is_null() {
            problems.push(format!(
                "{function_id} has a function URL, which bypasses the authorizer"
            ));
        }
        for kind in ["Api", "HttpApi"] {
            for (name, event) in events(function, kind) {
                let method = event["Method"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                let path = event["Path"].as_str().unwrap_or_default();
                let at = format!("{function_id} event {name} ({method} {path})");
                if kind == "Api" || !api_ids.contains(&event["ApiId"]) {
                    problems.push(format!("{at} is not on the HTTP API with the authorizer"));
                }
                if !event["Auth"]["Authorizer"].is_null() {
                    problems.push(format!(
                        "{at} sets its own authorizer {}; every route uses the default",
                        event["Auth"]["Authorizer"]
                    ));
                }
                if event["PayloadFormatVersion"] != "2.0" {
                    problems.push(format!("{at} is not payload format 2.0"));
                }
                // ANY and OPTIONS would take browsers' preflights to the authorizer.
                if method == "ANY" || method == "OPTIONS" {
                    problems.push(format!(
                        "{at} catches CORS preflights, which carry no token"
                    ));
                }
                routes.insert((method, path.to_owned()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .chain(
            CATCH_ALL_METHODS
                .iter()
                .map(|m| (m.to_string(), CATCH_ALL_PATH.to_owned())),
        )
        .collect();
    if routes != expected {
        problems.push(format!(
            "routes {:?} missing, {:?} unexpected (the code serves {ROUTES:?})",
            expected.difference(&routes).collect::<Vec<_>>(),
            routes.difference(&expected).collect::<Vec<_>>()
        ));
    }
    problems
}

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

/// Failed asynchronous events are retried twice, then kept in an encrypted queue the function may
/// write to; start-transcode ends before another invocation may take over its claims.
fn failure_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for id in ASYNCHRONOUS {
        let properties = &resource(t, id)["Properties"];
        let config = &properties["EventInvokeConfig"];
        if config["MaximumRetryAttempts"] != 2 {
            problems.push(format!(
                "{id} retries {} times, not 2",
                config["MaximumRetryAttempts"]
            ));
        }
        if !config["MaximumEventAgeInSeconds"].is_u64() {
            problems.push(format!("{id} leaves the event age to Lambda's default"));
        }
        let on_failure = &config["DestinationConfig"]["OnFailure"];
        let queue = on_failure["Destination"]["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_default();
        let queue_properties = &resource(t, queue)["Properties"];
        if on_failure["Type"] != "SQS" || resource(t, queue)["Type"] != "AWS::SQS::Queue" {
            problems.push(format!("{id} has no SQS on-failure destination"));
        } else if queue_properties["KmsMasterKeyId"].is_null()
            && queue_properties["SqsManagedSseEnabled"] != true
        {
            problems.push(format!("{id}'s failure queue {queue} is not encrypted"));
        }
        let role = properties["Role"]["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_default();
        let may_send = statements(resource(t, role)).into_iter().any(|(_, s)| {
            s["Effect"] == "Allow"
                && strings(&s["Action"]).contains(&"sqs:SendMessage")
                && s["Resource"] == json!({"Fn::GetAtt": [queue, "Arn"]})
        });
        if !may_send {
            problems.push(format!(
                "{id}'s role {role:?} may not send to its failure queue {queue:?}"
            ));
        }
    }
    let timeout = &resource(t, "StartTranscodeFunction")["Properties"]["Timeout"];
    if timeout
        .as_i64()
        .is_none_or(|s| s >= CLAIM_LEASE.num_seconds())
    {
        problems.push(format!(
            "start-transcode's timeout {timeout} is not shorter than the claim lease ({}s)",
            CLAIM_LEASE.num_seconds()
        ));
    }
    problems
}

// ------------------------------------------------------------------------------ the two backends

/// The template as CloudFormation deploys it with the parameter `TranscoderBackend` set to
/// `backend` (the others at their defaults): the conditions evaluated, resources and outputs whose
/// condition is false left out, each `Fn::If` replaced by its branch, `AWS::NoValue` dropped, and
/// `Fn::FindInMap` looked up. Everything else stays as written. A condition this cannot evaluate
/// fails the test rather than passing unseen.
fn deployed_with(t: &Value, backend: &str) -> Value {
    let mut parameters: BTreeMap<String, Value> = t["Parameters"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, p)| (name.clone(), p["Default"].clone()))
        .collect();
    parameters.insert("TranscoderBackend".into(), json!(backend));
    let mut deployment = Deployment {
        template: t,
        parameters,
        conditions: BTreeMap::new(),
    };
    for name in t["Conditions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(n, _)| n)
    {
        let holds = deployment.holds(&json!({ "Condition": name }));
        deployment.conditions.insert(name.clone(), holds);
    }
    let mut deployed = deployment.resolve(t).expect("the template is a value");
    for section in ["Resources", "Outputs"] {
        if let Some(items) = deployed[section].as_object_mut() {
            items.retain(|_, item| {
                item["Condition"]
                    .as_str()
                    .is_none_or(|c| deployment.conditions[c])
            });
        }
    }
    deployed
}

struct Deployment<'t> {
    template: &'t Value,
    parameters: BTreeMap<String, Value>,
    conditions: BTreeMap<String, bool>,
}

impl Deployment<'_> {
    /// A parameter's value for a `Ref` to one; anything else as it is.
    fn value(&self, v: &Value) -> Value {
        match v.get("Ref").and_then(Value::as_str) {
            Some(name) => self
                .parameters
                .get(name)
                .cloned()
                .unwrap_or_else(|| v.clone()),
            None => v.clone(),
        }
    }

    /// Whether a condition expression holds.
    fn holds(&self, expr: &Value) -> bool {
        let args = |f: &str| expr[f].as_array().cloned().unwrap_or_default();
        if let Some(name) = expr.get("Condition").and_then(Value::as_str) {
            self.holds(&self.template["Conditions"][name])
        } else if expr.get("Fn::Equals").is_some() {
            let args = args("Fn::Equals");
            self.value(&args[0]) == self.value(&args[1])
        } else if expr.get("Fn::Not").is_some() {
            !self.holds(&args("Fn::Not")[0])
        } else if expr.get("Fn::And").is_some() {
            args("Fn::And").iter().all(|c| self.holds(c))
        } else if expr.get("Fn::Or").is_some() {
            args("Fn::Or").iter().any(|c| self.holds(c))
        } else {
            panic!("cannot evaluate the condition {expr}")
        }
    }

    /// `value` with `Fn::If` and `Fn::FindInMap` resolved; `None` for `AWS::NoValue`.
    fn resolve(&self, value: &Value) -> Option<Value> {
        match value {
            v if *v == r#ref("AWS::NoValue") => None,
            Value::Object(map) if map.contains_key("Fn::If") => {
                let args = map["Fn::If"].as_array().expect("Fn::If takes a list");
                let name = args[0].as_str().expect("Fn::If names a condition");
                let holds = self.conditions.get(name).copied();
                let holds = holds.unwrap_or_else(|| panic!("Fn::If names {name}, no condition"));
                self.resolve(&args[if holds { 1 } else { 2 }])
            }
            Value::Object(map) if map.contains_key("Fn::FindInMap") => {
                let args = map["Fn::FindInMap"]
                    .as_array()
                    .expect("FindInMap takes a list");
                let keys: Vec<Value> = args.iter().map(|a| self.value(a)).collect();
                let found = keys.iter().try_fold(&self.template["Mappings"], |at, key| {
                    key.as_str().map(|k| &at[k])
                });
                Some(
                    found
                        .filter(|v| !v.is_null())
                        .cloned()
                        .unwrap_or_else(|| panic!("Fn::FindInMap {keys:?} finds nothing")),
                )
            }
            Value::Object(map) => Some(Value::Object(
                map.iter()
                    .filter_map(|(k, v)| self.resolve(v).map(|v| (k.clone(), v)))
                    .collect(),
            )),
            Value::Array(items) => Some(Value::Array(
                items.iter().filter_map(|v| self.resolve(v)).collect(),
            )),
            v => Some(v.clone()),
        }
    }
}

/// What each backend's deployment must and must not contain. `t` is deployed with `backend`:
/// `TRANSCODER` names it, and nothing of the other backend is there.
fn backend_problems(t: &Value, backend: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let variables =
        &resource(t, "StartTranscodeFunction")["Properties"]["Environment"]["Variables"];
    let expected = BACKENDS
        .iter()
        .find(|(b, _)| *b == backend)
        .map(|(_, v)| *v);
    if variables["TRANSCODER"].as_str() != expected {
        problems.push(format!(
            "with {backend}, start-transcode gets TRANSCODER={}, not {expected:?}",
            variables["TRANSCODER"]
        ));
    }
    let (own, other): (&[&str], &[&str]) = match backend {
        "MediaConvert" => (
            &["MEDIACONVERT_ROLE_ARN", "JOB_TAG"],
            &["PIPELINE_ID", "PIPELINE_NAME"],
        ),
        _ => (&["PIPELINE_ID"], &["MEDIACONVERT_ROLE_ARN", "JOB_TAG"]),
    };
    for name in own {
        if variables[*name].is_null() {
            problems.push(format!("with {backend}, start-transcode gets no {name}"));
        }
    }
    for name in other {
        if !variables[*name].is_null() {
            problems.push(format!("with {backend}, start-transcode gets {name}"));
        }
    }
    // The other backend's resources and permissions are not deployed.
    let foreign: &[&str] = match backend {
        "MediaConvert" => &["elastictranscoder"],
        _ => &["mediaconvert", "iam:PassRole", "events.amazonaws.com"],
    };
    let text = t["Resources"].to_string();
    for word in foreign {
        if text.contains(word) {
            problems.push(format!("with {backend}, the stack still mentions {word}"));
        }
    }
    if backend != "MediaConvert" {
        for kind in ["AWS::Events::Rule", "AWS::KMS::Key"] {
            for (id, _) in resources_of_type(t, kind) {
                problems.push(format!("with {backend}, the stack still has {id} ({kind})"));
            }
        }
    }
    problems
}

/// With MediaConvert: start-transcode may create jobs and pass MediaConvert exactly its role;
/// that role reads uploads and writes outputs only; the final states of the stack's jobs, and
/// only those, reach the topic through an EventBridge rule that matches the tag start-transcode
/// puts on them; and EventBridge may publish to the topic and use its key.
fn mediaconvert_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let params = &t["Parameters"]["TranscoderBackend"];
    let allowed: BTreeSet<&str> = strings(&params["AllowedValues"]).into_iter().collect();
    if allowed != BACKENDS.iter().map(|(b, _)| *b).collect() {
        problems.push(format!("TranscoderBackend allows {allowed:?}"));
    }
    if params["Default"] != "MediaConvert" {
        problems.push(format!(
            "TranscoderBackend defaults to {}, not MediaConvert, the backend that works today",
            params["Default"]
        ));
    }
    let t = &deployed_with(t, "MediaConvert");
    let start = &resource(t, "StartTranscodeFunction")["Properties"];
    let variables = &start["Environment"]["Variables"];

    // The role: named in the environment, assumed by MediaConvert, S3 on the two prefixes only.
    let role_id = variables["MEDIACONVERT_ROLE_ARN"]["Fn::GetAtt"][0]
        .as_str()
        .unwrap_or_default();
    let role = resource(t, role_id);
    if role["Type"] != "AWS::IAM::Role"
        || variables["MEDIACONVERT_ROLE_ARN"]["Fn::GetAtt"][1] != "Arn"
    {
        problems.push(format!(
            "MEDIACONVERT_ROLE_ARN is {}, not the ARN of a role of the stack",
            variables["MEDIACONVERT_ROLE_ARN"]
        ));
    }
    let trust: Vec<&Value> = expand(&role["Properties"]["AssumeRolePolicyDocument"]["Statement"]);
    if trust.len() != 1 || trust[0]["Principal"] != json!({"Service": "mediaconvert.amazonaws.com"})
    {
        problems.push(format!("{role_id} is not assumed by MediaConvert alone"));
    }
    let allowed_s3 = [
        (
            "s3:GetObject",
            json!({"Fn::Sub": "${MediaBucket.Arn}/${InputPrefix}*"}),
        ),
        (
            "s3:PutObject",
            json!({"Fn::Sub": "${MediaBucket.Arn}/${OutputPrefix}*"}),
        ),
    ];
    let mut granted = BTreeSet::new();
    for (at, s) in statements(&role["Properties"]["Policies"]) {
        for action in strings(&s["Action"]) {
            match allowed_s3.iter().find(|(a, _)| *a == action) {
                Some((_, on)) if s["Resource"] == *on => {
                    granted.insert(action);
                }
                _ => problems.push(format!(
                    "{role_id}{at} allows {action} on {}: MediaConvert needs to read uploads \
                     and write outputs, nothing else",
                    s["Resource"]
                )),
            }
        }
    }
    if granted.len() != allowed_s3.len() {
        problems.push(format!("{role_id} may not read uploads and write outputs"));
    }

    // start-transcode may create jobs and pass that role (how it is passed: policy_problems).
    let start_role = start["Role"]["Fn::GetAtt"][0].as_str().unwrap_or_default();
    let may = |action: &str, on: &dyn Fn(&Value) -> bool| {
        statements(resource(t, start_role))
            .into_iter()
            .any(|(_, s)| {
                s["Effect"] == "Allow"
                    && strings(&s["Action"]).contains(&action)
                    && on(&s["Resource"])
            })
    };
    if !may("mediaconvert:CreateJob", &|_| true) {
        problems.push("start-transcode may not create MediaConvert jobs".into());
    }
    let role_arn = json!({"Fn::GetAtt": [role_id, "Arn"]});
    if !may("iam:PassRole", &|r| *r == role_arn) {
        problems.push(format!(
            "start-transcode may not pass {role_id} to MediaConvert"
        ));
    }

    // The rule: this stack's jobs' final states, to the topic record-completion listens to.
    let topic = &resource(t, "RecordCompletionFunction")["Properties"]["Environment"]["Variables"]
        ["TOPIC_ARN"];
    let rules = resources_of_type(t, "AWS::Events::Rule");
    if rules.len() != 1 {
        problems.push(format!("{} EventBridge rules, not one", rules.len()));
    }
    for (id, rule) in rules {
        let properties = &rule["Properties"];
        let pattern = &properties["EventPattern"];
        if strings(&pattern["source"]) != ["aws.mediaconvert"]
            || strings(&pattern["detail-type"]) != ["MediaConvert Job State Change"]
        {
            problems.push(format!(
                "{id} does not match MediaConvert job state changes"
            ));
        }
        let states: BTreeSet<&str> = strings(&pattern["detail"]["status"]).into_iter().collect();
        if states != MEDIACONVERT_FINAL_STATES.into_iter().collect() {
            problems.push(format!(
                "{id} forwards the states {states:?}, not the final ones {MEDIACONVERT_FINAL_STATES:?}"
            ));
        }
        let tag = &pattern["detail"]["userMetadata"][JOB_TAG_KEY];
        if *tag != json!([variables["JOB_TAG"]]) || variables["JOB_TAG"].is_null() {
            problems.push(format!(
                "{id} matches the user metadata {JOB_TAG_KEY} {tag}, not start-transcode's JOB_TAG {}",
                variables["JOB_TAG"]
            ));
        }
        let targets: Vec<&Value> = properties["Targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|target| &target["Arn"])
            .collect();
        if targets != [topic] {
            problems.push(format!(
                "{id} sends to {targets:?}, not to record-completion's topic {topic}"
            ));
        }
        // The topic's policy lets EventBridge publish for this rule.
        let rule_arn = json!({"Fn::GetAtt": [id, "Arn"]});
        let publishes = resources_of_type(t, "AWS::SNS::TopicPolicy")
            .into_iter()
            .filter(|(_, p)| {
                let topics = p["Properties"]["Topics"].as_array();
                topics.is_some_and(|ts| ts.contains(topic))
            })
            .flat_map(|(_, p)| expand(&p["Properties"]["PolicyDocument"]["Statement"]))
            .any(|s| {
                s["Effect"] == "Allow"
                    && s["Principal"] == json!({"Service": "events.amazonaws.com"})
                    && strings(&s["Action"]) == ["sns:Publish"]
                    && s["Condition"]["ArnEquals"]["aws:SourceArn"] == rule_arn
            });
        if !publishes {
            problems.push(format!(
                "the topic's policy does not let events.amazonaws.com publish for {id} (and only for it)"
            ));
        }
    }

    // The topic's key: EventBridge cannot use an AWS managed key.
    let topic_id = topic["Ref"].as_str().unwrap_or_default();
    let key = &resource(t, topic_id)["Properties"]["KmsMasterKeyId"];
    let key_id = key["Fn::GetAtt"][0]
        .as_str()
        .or_else(|| key["Ref"].as_str())
        .unwrap_or_default();
    let key_statements = expand(&resource(t, key_id)["Properties"]["KeyPolicy"]["Statement"]);
    let events_may = |action: &str| {
        key_statements.iter().any(|s| {
            s["Effect"] == "Allow"
                && s["Principal"] == json!({"Service": "events.amazonaws.com"})
                && strings(&s["Action"]).contains(&action)
        })
    };
    if key.is_null() {
        problems.push(format!("{topic_id} is not encrypted"));
    } else if resource(t, key_id)["Type"] != "AWS::KMS::Key"
        || !events_may("kms:GenerateDataKey")
        || !events_may("kms:Decrypt")
    {
        problems.push(format!(
            "{topic_id}'s key {key} does not let EventBridge publish: an AWS managed key cannot, \
             a key of the stack must allow events.amazonaws.com kms:GenerateDataKey and kms:Decrypt"
        ));
    }
    problems
}

// ------------------------------------------------------------------------------------------- tests

const UPLOAD_EVENT: &str = "/Resources/StartTranscodeFunction/Properties/Events/Upload/Properties";
const START_ENV: &str = "/Resources/StartTranscodeFunction/Properties/Environment/Variables";
const API_EVENTS: &str = "/Resources/MessagesApiFunction/Properties/Events";
const BUCKET: &str = "/Resources/MediaBucket/Properties";

#[test]
fn the_reader_turns_short_forms_into_long_forms() {
    let doc = from_yaml(
        "a: !Ref Bucket\n\
         b: !GetAtt Table.StreamArn\n\
         c: !Sub '${Bucket.Arn}/*'\n\
         d: !If [Cond, !Ref X, !Ref AWS::NoValue]\n\
         e: !GetAtt [Queue, Arn]\n\
         3: 30\n",
    )
    .unwrap();
    assert_eq!(
        doc,
        json!({
            "a": {"Ref": "Bucket"},
            "b": {"Fn::GetAtt": ["Table", "StreamArn"]},
            "c": {"Fn::Sub": "${Bucket.Arn}/*"},
            "d": {"Fn::If": ["Cond", {"Ref": "X"}, {"Ref": "AWS::NoValue"}]},
            "e": {"Fn::GetAtt": ["Queue", "Arn"]},
            "3": 30
        })
    );
}

#[test]
fn only_uploads_under_the_input_prefix_reach_start_transcode() {
    let t = template();
    assert_eq!(notification_problems(&t), Vec::<String>::new());

    let check = notification_problems;
    let filter = format!("{UPLOAD_EVENT}/Filter/S3Key/Rules/0/Value");
    assert_objects(
        check,
        &broken(&t, |t| set(t, &filter, json!("media/"))),
        "filter",
    );
    assert_objects(
        check,
        &broken(&t, |t| set(t, &filter, r#ref("OutputPrefix"))),
        "filter",
    );
    assert_objects(
        check,
        &broken(&t, |t| remove(t, &format!("{UPLOAD_EVENT}/Filter"))),
        "filter",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{UPLOAD_EVENT}/Events"),
                json!("s3:ObjectCreated:Put"),
            )
        }),
        "s3:ObjectCreated:*",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(t, "/Parameters/InputPrefix/Default", json!("uploads/"))
        }),
        "defaults to",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(t, "/Parameters/OutputPrefix/Default", json!("media/out/"))
        }),
        "overlaps",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(t, "/Parameters/OutputPrefix/AllowedPattern", json!("^.+/$"))
        }),
        "more than one folder",
    );
    assert_objects(
        check,
        &broken(&t, |t| remove(t, "/Rules/PrefixesDiffer")),
        "differ",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(t, &format!("{START_ENV}/INPUT_PREFIX"), json!("media/"))
        }),
        "INPUT_PREFIX",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let path =
                "/Resources/MessagesApiFunction/Properties/Environment/Variables/INPUT_PREFIX";
            set(t, path, r#ref("OutputPrefix"))
        }),
        "MessagesApiFunction's INPUT_PREFIX",
    );
}

#[test]
fn each_function_gets_exactly_the_variables_its_code_reads() {
    let t = template();
    assert_eq!(environment_problems(&t), Vec::<String>::new());

    let check = environment_problems;
    // A name the code does not read: a typo, or a variable of another function.
    assert_objects(
        check,
        &broken(&t, |t| set(t, &format!("{START_ENV}/PIPELINE"), json!("x"))),
        "sets PIPELINE,",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let record = &mut t["Resources"]["RecordCompletionFunction"]["Properties"];
            record["Environment"]["Variables"]["BUCKET_NAME"] = r#ref("MediaBucket");
        }),
        "sets BUCKET_NAME",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            t["Globals"]["Function"]["Environment"] =
                json!({"Variables": {"TABLE_NAME": r#ref("MessagesTable")}})
        }),
        "Globals",
    );
    for (function, variable) in [
        ("StartTranscodeFunction", "TABLE_NAME"),
        ("RecordCompletionFunction", "TOPIC_ARN"),
        ("MessagesApiFunction", "BUCKET_NAME"),
    ] {
        let path = format!("/Resources/{function}/Properties/Environment/Variables/{variable}");
        assert_objects(
            check,
            &broken(&t, |t| remove(t, &path)),
            &format!("{function} does not set {variable}"),
        );
    }
    assert_objects(
        check,
        &broken(&t, |t| {
            let path =
                "/Resources/RecordCompletionFunction/Properties/Environment/Variables/TOPIC_ARN";
            set(t, path, json!("arn:aws:sns:eu-west-1:123456789012:other"))
        }),
        "subscribed to",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let path = "/Resources/MessagesApiFunction/Metadata/BuildProperties/Binary";
            set(t, path, json!("messages"))
        }),
        "binary messages-api",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                "/Mappings/Transcoders/ElasticTranscoder/Variable",
                json!("ElasticTranscoder"),
            )
        }),
        "TRANSCODER=elastictranscoder",
    );
}

#[test]
fn every_route_requires_a_cognito_token() {
    let t = template();
    assert_eq!(route_problems(&t), Vec::<String>::new());

    let check = route_problems;
    let list = format!("{API_EVENTS}/ListMessages/Properties");
    assert_objects(
        check,
        &broken(&t, |t| {
            set(t, &format!("{list}/Auth"), json!({"Authorizer": "NONE"}))
        }),
        "sets its own authorizer",
    );
    assert_objects(
        check,
        &broken(&t, |t| remove(t, &format!("{list}/ApiId"))),
        "not on the HTTP API",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            remove(
                t,
                "/Resources/MessagesHttpApi/Properties/Auth/DefaultAuthorizer",
            )
        }),
        "no default authorizer",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let jwt = &mut t["Resources"]["MessagesHttpApi"]["Properties"]["Auth"]["Authorizers"];
            jwt["CognitoJwt"]["JwtConfiguration"]["audience"] = json!(["some-other-client"]);
        }),
        "not a JWT authorizer",
    );
    assert_objects(
        check,
        &broken(&t, |t| set(t, &format!("{list}/Method"), json!("ANY"))),
        "preflights",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(t, &format!("{list}/PayloadFormatVersion"), json!("1.0"))
        }),
        "payload format 2.0",
    );
    assert_objects(
        check,
        &broken(&t, |t| remove(t, &format!("{API_EVENTS}/OtherDelete"))),
        "missing",
    );
    assert_objects(
        check,
        &broken(&t, |t| set(t, &format!("{list}/Path"), json!("/message"))),
        "missing",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let api = &mut t["Resources"]["MessagesApiFunction"]["Properties"];
            api["FunctionUrlConfig"] = json!({"AuthType": "NONE"});
        }),
        "function URL",
    );
}

#[test]
fn policies_name_their_actions_resources_and_principals() {
    let t = template();
    assert_eq!(policy_problems(&t), Vec::<String>::new());

    let check = policy_problems;
    let claims = "/Resources/StartTranscodeRole/Properties/Policies/0/PolicyDocument/Statement/1";
    for action in ["*", "dynamodb:*", "dynamodb:Put*"] {
        assert_objects(
            check,
            &broken(&t, |t| set(t, &format!("{claims}/Action"), json!(action))),
            "wildcard action",
        );
    }
    assert_objects(
        check,
        &broken(&t, |t| set(t, &format!("{claims}/Resource"), json!("*"))),
        "resource-level permissions",
    );
    // Inside an Fn::If branch too.
    assert_objects(
        check,
        &broken(&t, |t| {
            let statement = t.pointer(claims).unwrap().clone();
            let mut wild = statement.clone();
            wild["Action"] = json!("s3:*");
            set(
                t,
                claims,
                json!({"Fn::If": ["Cond", wild, r#ref("AWS::NoValue")]}),
            );
        }),
        "wildcard action s3:*",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let topic = "/Resources/CompletionTopicPolicy/Properties/PolicyDocument/Statement/1/\
                         Fn::If/1/Principal";
            set(t, topic, json!({"AWS": "*"}))
        }),
        "allows everyone",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let role = &mut t["Resources"]["RecordCompletionRole"]["Properties"];
            role["ManagedPolicyArns"] = json!([]);
        }),
        "managed policies",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            remove(t, "/Resources/MessagesApiFunction/Properties/Role")
        }),
        "lets SAM generate its role",
    );
    // The key policy's exceptions hold for the account's root and for the key itself only.
    let key = "/Resources/CompletionTopicKey/Properties/KeyPolicy/Statement";
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{key}/0/Principal"),
                json!({"Service": "events.amazonaws.com"}),
            )
        }),
        "wildcard action kms:*",
    );
    assert_objects(
        check,
        &broken(&t, |t| set(t, &format!("{key}/1/Action"), json!("kms:*"))),
        "wildcard action kms:*",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let queue = "/Resources/MediaConvertRole/Properties/Policies/0/PolicyDocument/\
                         Statement/0/Resource";
            set(t, queue, json!("*"))
        }),
        "allows s3:GetObject on Resource \"*\"",
    );
    // A role is passed by name, to one service.
    let pass = "/Resources/StartTranscodeRole/Properties/Policies/0/PolicyDocument/Statement/4/\
                Fn::If/1";
    assert_objects(
        check,
        &broken(&t, |t| set(t, &format!("{pass}/Resource"), json!("*"))),
        "not a role of this template",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{pass}/Resource"),
                json!({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*"}),
            )
        }),
        "not a role of this template",
    );
    assert_objects(
        check,
        &broken(&t, |t| remove(t, &format!("{pass}/Condition"))),
        "passes a role to any service",
    );
}

#[test]
fn the_bucket_is_private_encrypted_and_tls_only() {
    let t = template();
    assert_eq!(bucket_problems(&t), Vec::<String>::new());

    let check = bucket_problems;
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{BUCKET}/PublicAccessBlockConfiguration/RestrictPublicBuckets"),
                json!(false),
            )
        }),
        "RestrictPublicBuckets",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            remove(t, &format!("{BUCKET}/PublicAccessBlockConfiguration"))
        }),
        "BlockPublicAcls",
    );
    assert_objects(
        check,
        &broken(&t, |t| remove(t, &format!("{BUCKET}/BucketEncryption"))),
        "encrypted",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            t["Resources"]["MediaBucket"]["Properties"]["AccessControl"] = json!("PublicRead")
        }),
        "canned ACL",
    );
    let deny = "/Resources/MediaBucketPolicy/Properties/PolicyDocument/Statement/0";
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{deny}/Condition/Bool/aws:SecureTransport"),
                json!("true"),
            )
        }),
        "without TLS",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{deny}/Resource"),
                json!([{"Fn::GetAtt": ["MediaBucket", "Arn"]}]),
            )
        }),
        "without TLS",
    );
    assert_objects(
        check,
        &broken(&t, |t| remove(t, "/Resources/MediaBucketPolicy")),
        "without TLS",
    );
}

#[test]
fn failed_events_are_retried_twice_then_kept() {
    let t = template();
    assert_eq!(failure_problems(&t), Vec::<String>::new());

    let check = failure_problems;
    let config = "/Resources/RecordCompletionFunction/Properties/EventInvokeConfig";
    assert_objects(
        check,
        &broken(&t, |t| {
            set(t, &format!("{config}/MaximumRetryAttempts"), json!(0))
        }),
        "retries 0 times",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            remove(t, &format!("{config}/MaximumEventAgeInSeconds"))
        }),
        "event age",
    );
    assert_objects(
        check,
        &broken(&t, |t| remove(t, &format!("{config}/DestinationConfig"))),
        "no SQS on-failure destination",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            remove(
                t,
                "/Resources/StartTranscodeFailures/Properties/KmsMasterKeyId",
            )
        }),
        "not encrypted",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let policy = "/Resources/RecordCompletionRole/Properties/Policies/0/PolicyDocument";
            let send = format!("{policy}/Statement/2/Resource");
            set(
                t,
                &send,
                json!({"Fn::GetAtt": ["StartTranscodeFailures", "Arn"]}),
            )
        }),
        "may not send",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                "/Resources/StartTranscodeFunction/Properties/Timeout",
                json!(90),
            )
        }),
        "claim lease",
    );
}

type Check = fn(&Value) -> Vec<String>;

#[test]
fn each_backend_deploys_a_checked_stack_with_nothing_of_the_other() {
    let t = template();
    let checks: [(&str, Check); 6] = [
        ("notification", notification_problems),
        ("environment", environment_problems),
        ("route", route_problems),
        ("policy", policy_problems),
        ("bucket", bucket_problems),
        ("failure", failure_problems),
    ];
    for (backend, _) in BACKENDS {
        let deployed = deployed_with(&t, backend);
        for (name, check) in checks {
            assert_eq!(check(&deployed), Vec::<String>::new(), "{backend}: {name}");
        }
        assert_eq!(
            backend_problems(&deployed, backend),
            Vec::<String>::new(),
            "{backend}"
        );
    }

    let mediaconvert: Check =
        |t| backend_problems(&deployed_with(t, "MediaConvert"), "MediaConvert");
    let elastic: Check =
        |t| backend_problems(&deployed_with(t, "ElasticTranscoder"), "ElasticTranscoder");
    assert_objects(
        elastic,
        &broken(&t, |t| remove(t, "/Resources/CompletionTopicKey/Condition")),
        "still has CompletionTopicKey",
    );
    assert_objects(
        elastic,
        &broken(&t, |t| {
            remove(t, "/Resources/MediaConvertRole/Condition");
        }),
        "still mentions mediaconvert",
    );
    assert_objects(
        mediaconvert,
        &broken(&t, |t| {
            remove(t, "/Resources/TranscoderPipelineRole/Condition");
        }),
        "still mentions elastictranscoder",
    );
    assert_objects(
        mediaconvert,
        &broken(&t, |t| {
            set(t, &format!("{START_ENV}/PIPELINE_ID"), r#ref("PipelineId"))
        }),
        "gets PIPELINE_ID",
    );
    assert_objects(
        mediaconvert,
        &broken(&t, |t| {
            remove(t, &format!("{START_ENV}/MEDIACONVERT_ROLE_ARN"))
        }),
        "gets no MEDIACONVERT_ROLE_ARN",
    );
    assert_objects(
        elastic,
        &broken(&t, |t| {
            let tag = json!({"Fn::If": ["UseElasticTranscoder", "x", r#ref("AWS::NoValue")]});
            set(t, &format!("{START_ENV}/JOB_TAG"), tag)
        }),
        "gets JOB_TAG",
    );
    assert_objects(
        mediaconvert,
        &broken(&t, |t| {
            set(
                t,
                "/Mappings/Transcoders/MediaConvert/Variable",
                json!("MediaConvert"),
            )
        }),
        "TRANSCODER=",
    );
    // A condition this cannot evaluate is a failure, not a pass.
    let unknown = std::panic::catch_unwind(|| {
        deployed_with(
            &broken(&t, |t| {
                t["Conditions"]["UseMediaConvert"] = json!({"Fn::Contains": [[], "x"]})
            }),
            "MediaConvert",
        )
    });
    assert!(unknown.is_err());
}

#[test]
fn mediaconvert_jobs_get_their_role_and_their_final_states_reach_the_topic() {
    let t = template();
    assert_eq!(mediaconvert_problems(&t), Vec::<String>::new());

    let check = mediaconvert_problems;
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                "/Parameters/TranscoderBackend/Default",
                json!("ElasticTranscoder"),
            )
        }),
        "defaults to",
    );
    let pattern = "/Resources/MediaConvertJobStates/Properties/EventPattern";
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{pattern}/detail/status"),
                json!(["COMPLETE", "ERROR"]),
            )
        }),
        "not the final ones",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{pattern}/detail/status"),
                json!(["COMPLETE", "ERROR", "CANCELED", "STATUS_UPDATE"]),
            )
        }),
        "not the final ones",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{pattern}/detail/userMetadata"),
                json!({"app": ["audio-transcoder"]}),
            )
        }),
        "not start-transcode's JOB_TAG",
    );
    assert_objects(
        check,
        &broken(&t, |t| remove(t, &format!("{pattern}/detail/userMetadata"))),
        "not start-transcode's JOB_TAG",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let tag =
                json!({"Fn::If": ["UseMediaConvert", "audio-transcoder", r#ref("AWS::NoValue")]});
            set(t, &format!("{START_ENV}/JOB_TAG"), tag)
        }),
        "not start-transcode's JOB_TAG",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(t, &format!("{pattern}/source"), json!(["aws.mediapackage"]))
        }),
        "does not match MediaConvert job state changes",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let target = "/Resources/MediaConvertJobStates/Properties/Targets/0/Arn";
            set(
                t,
                target,
                json!({"Fn::GetAtt": ["RecordCompletionFunction", "Arn"]}),
            )
        }),
        "not to record-completion's topic",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let statement =
                "/Resources/CompletionTopicPolicy/Properties/PolicyDocument/Statement/2/Fn::If/1";
            remove(t, &format!("{statement}/Condition"))
        }),
        "does not let events.amazonaws.com publish",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let key = "/Resources/CompletionTopic/Properties/KmsMasterKeyId";
            set(t, key, json!("alias/aws/sns"))
        }),
        "AWS managed key cannot",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let events = "/Resources/CompletionTopicKey/Properties/KeyPolicy/Statement/1/Action";
            set(t, events, json!("kms:Decrypt"))
        }),
        "AWS managed key cannot",
    );
    let role = "/Resources/MediaConvertRole/Properties";
    assert_objects(
        check,
        &broken(&t, |t| {
            let write = format!("{role}/Policies/0/PolicyDocument/Statement/1/Resource");
            set(t, &write, json!({"Fn::Sub": "${MediaBucket.Arn}/*"}))
        }),
        "nothing else",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let read = format!("{role}/Policies/0/PolicyDocument/Statement/0/Action");
            set(t, &read, json!(["s3:GetObject", "s3:DeleteObject"]))
        }),
        "allows s3:DeleteObject",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let trust = format!("{role}/AssumeRolePolicyDocument/Statement/0/Principal");
            set(t, &trust, json!({"Service": "lambda.amazonaws.com"}))
        }),
        "not assumed by MediaConvert",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let pass = "/Resources/StartTranscodeRole/Properties/Policies/0/PolicyDocument/\
                        Statement/4/Fn::If/1/Resource";
            set(
                t,
                pass,
                json!({"Fn::GetAtt": ["StartTranscodeRole", "Arn"]}),
            )
        }),
        "may not pass MediaConvertRole",
    );
}
