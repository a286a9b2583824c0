//! `template.yaml` against the code it deploys: uploads under the input prefix, and only those,
//! reach start-transcode (through the intake queue), and each function is told exactly the variables its code reads.
//!
//! Every check runs on the real template and on the stack each backend deploys (nothing wrong),
//! and on copies broken the ways that matter (the check objects), so no check can pass by looking
//! at nothing. `make check-template` runs `sam validate --lint`, cfn-lint and checkov; these
//! checks are what those tools cannot know: the names the code reads.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use system_tests::template::{
    Case, assert_passes_deployed, assert_refuses, events, queue_notifications, r#ref, remove,
    resource, set, template,
};
use transcode_audio::WorkerConfig;
use transcoder_api::{ApiConfig, PageConfig};
use transcoder_aws::{CloudTranscoder, DynamoStore};
use transcoder_core::{RecordConfig, StartConfig};

/// A function of the template and the code it runs.
struct Function {
    logical_id: &'static str,
    binary: &'static str,
    /// Every variable its code reads (the configurations' `VARIABLES`).
    reads: Vec<&'static str>,
    /// Variables it cannot start without, or that the deployment must not leave to a default.
    requires: &'static [&'static str],
    /// Deployed only with the Lambda backend (`UseLambda`): absent from a stack whose
    /// start-transcode sends its jobs elsewhere.
    lambda_only: bool,
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
            lambda_only: false,
        },
        Function {
            logical_id: "RecordCompletionFunction",
            binary: "record-completion",
            reads: [RecordConfig::VARIABLES, DynamoStore::VARIABLES].concat(),
            requires: &["TABLE_NAME", "TOPIC_ARN"],
            lambda_only: false,
        },
        Function {
            logical_id: "TranscodeAudioFunction",
            binary: "transcode-audio",
            reads: WorkerConfig::VARIABLES.to_vec(),
            requires: &["TOPIC_ARN", "INPUT_PREFIX", "OUTPUT_PREFIX"],
            lambda_only: true,
        },
        Function {
            logical_id: "MessagesApiFunction",
            binary: "messages-api",
            reads: [
                ApiConfig::VARIABLES,
                PageConfig::VARIABLES,
                DynamoStore::VARIABLES,
            ]
            .concat(),
            requires: &[
                "TABLE_NAME",
                "BUCKET_NAME",
                "INPUT_PREFIX",
                "COGNITO_URL",
                "USER_POOL_CLIENT_ID",
                "BUCKET_URL",
            ],
            lambda_only: false,
        },
    ]
}

/// The pattern of both prefix parameters: one folder name and '/', with no '*' (a wildcard in the
/// policies' ARNs) and no other '/'.
const SINGLE_FOLDER: &str = r"^[0-9A-Za-z][0-9A-Za-z_.-]*/$";

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

    // The bucket announces uploads to the intake queue, which start-transcode consumes
    // (tests/template/intake.rs checks the queue and the mapping).
    let uploads = queue_notifications(t);
    if uploads.len() != 1 {
        problems.push(format!(
            "MediaBucket has {} queue notifications, not one",
            uploads.len()
        ));
    }
    for notification in uploads {
        // Multipart uploads arrive as ObjectCreated:CompleteMultipartUpload.
        if notification["Event"] != "s3:ObjectCreated:*" {
            problems.push(format!(
                "the bucket's notification is for {}, not s3:ObjectCreated:*",
                notification["Event"]
            ));
        }
        let rules = &notification["Filter"]["S3Key"]["Rules"];
        if *rules != json!([{"Name": "prefix", "Value": r#ref("InputPrefix")}]) {
            problems.push(format!(
                "the bucket's notification filter is {rules}, not the prefix InputPrefix alone"
            ));
        }
    }
    let start = resource(t, "StartTranscodeFunction");
    if !events(start, "S3").is_empty() {
        problems.push("start-transcode is still invoked by S3 directly".into());
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
    let start = &resource(t, "StartTranscodeFunction")["Properties"]["Environment"]["Variables"];
    // In the template as written TRANSCODER is a lookup, so every function must be there.
    let sends_elsewhere = start["TRANSCODER"]
        .as_str()
        .is_some_and(|backend| backend != "lambda");
    for f in functions() {
        let function = resource(t, f.logical_id);
        if function.is_null() && f.lambda_only && sends_elsewhere {
            continue;
        }
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
        if names.contains("TABLE_NAME") && variables["TABLE_NAME"] != r#ref("MessagesTable") {
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
    // MediaBucket's name spelled as its BucketName is: a !Ref would close a dependency cycle
    // through the bucket's CORS origin (the HTTP API, which needs this function).
    let bucket = &api_variables["BUCKET_NAME"];
    let name = &resource(t, "MediaBucket")["Properties"]["BucketName"];
    if name.is_null() || bucket != name {
        problems.push(format!(
            "messages-api's BUCKET_NAME is {bucket}, not MediaBucket's name {name}"
        ));
    }
    // The page's links and its Content-Security-Policy name the same bucket, at S3's regional
    // host, which is where S3Links signs them.
    let bucket_url = &api_variables["BUCKET_URL"];
    let expected_url = json!({"Fn::Sub": [
        name["Fn::Sub"][0]
            .as_str()
            .map(|n| format!("https://{n}.s3.${{AWS::Region}}.${{AWS::URLSuffix}}")),
        name["Fn::Sub"][1]
    ]});
    if name["Fn::Sub"].is_null() || *bucket_url != expected_url {
        problems.push(format!(
            "messages-api's BUCKET_URL is {bucket_url}, not MediaBucket's origin {expected_url}"
        ));
    }
    if api_variables["USER_POOL_CLIENT_ID"] != r#ref("UserPoolClient") {
        problems.push("messages-api's USER_POOL_CLIENT_ID is not UserPoolClient".into());
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

// ------------------------------------------------------------------------------------------- tests

const UPLOAD_EVENT: &str =
    "/Resources/MediaBucket/Properties/NotificationConfiguration/QueueConfigurations/0";
const START_ENV: &str = "/Resources/StartTranscodeFunction/Properties/Environment/Variables";
const RECORD_ENV: &str = "/Resources/RecordCompletionFunction/Properties/Environment/Variables";
const API_ENV: &str = "/Resources/MessagesApiFunction/Properties/Environment/Variables";
const WORKER_ENV: &str = "/Resources/TranscodeAudioFunction/Properties/Environment/Variables";

#[test]
fn only_uploads_under_the_input_prefix_reach_start_transcode() {
    let t = template();
    assert_eq!(notification_problems(&t), Vec::<String>::new());
    assert_passes_deployed(notification_problems, &t);

    fn filter(t: &mut Value, value: Value) {
        set(
            t,
            &format!("{UPLOAD_EVENT}/Filter/S3Key/Rules/0/Value"),
            value,
        )
    }
    let cases: &[Case] = &[
        (
            "the filter is another folder",
            |t| filter(t, json!("media/")),
            "filter",
        ),
        (
            "the filter is the output prefix",
            |t| filter(t, r#ref("OutputPrefix")),
            "filter",
        ),
        (
            "no filter",
            |t| remove(t, &format!("{UPLOAD_EVENT}/Filter")),
            "filter",
        ),
        (
            "the bucket also announces the transcoder's outputs",
            |t| {
                let outputs = json!({"Event": "s3:ObjectCreated:*",
                                     "Queue": {"Fn::GetAtt": ["IntakeQueue", "Arn"]},
                                     "Filter": {"S3Key": {"Rules": [
                                         {"Name": "prefix", "Value": r#ref("OutputPrefix")}]}}});
                let (parent, _) = UPLOAD_EVENT.rsplit_once('/').expect("a list");
                let items = t.pointer_mut(parent).and_then(Value::as_array_mut);
                items
                    .expect("the bucket's queue notifications")
                    .push(outputs);
            },
            "2 queue notifications",
        ),
        (
            "plain PUTs only, no multipart uploads",
            |t| {
                set(
                    t,
                    &format!("{UPLOAD_EVENT}/Event"),
                    json!("s3:ObjectCreated:Put"),
                )
            },
            "s3:ObjectCreated:*",
        ),
        (
            "the input prefix defaults to another folder than the code's",
            |t| set(t, "/Parameters/InputPrefix/Default", json!("uploads/")),
            "defaults to",
        ),
        (
            "the output prefix defaults to a folder inside the input prefix",
            |t| set(t, "/Parameters/OutputPrefix/Default", json!("media/out/")),
            "overlaps",
        ),
        (
            "the output prefix may be several folders",
            |t| set(t, "/Parameters/OutputPrefix/AllowedPattern", json!("^.+/$")),
            "more than one folder",
        ),
        (
            "no rule keeps the prefixes apart",
            |t| remove(t, "/Rules/PrefixesDiffer"),
            "differ",
        ),
        (
            "start-transcode's INPUT_PREFIX is not the parameter",
            |t| set(t, &format!("{START_ENV}/INPUT_PREFIX"), json!("media/")),
            "INPUT_PREFIX",
        ),
        (
            "messages-api's INPUT_PREFIX is the output prefix",
            |t| set(t, &format!("{API_ENV}/INPUT_PREFIX"), r#ref("OutputPrefix")),
            "MessagesApiFunction's INPUT_PREFIX",
        ),
    ];
    assert_refuses(notification_problems, &t, cases);
}

#[test]
fn each_function_gets_exactly_the_variables_its_code_reads() {
    let t = template();
    assert_eq!(environment_problems(&t), Vec::<String>::new());
    assert_passes_deployed(environment_problems, &t);

    let cases: &[Case] = &[
        // A name the code does not read: a typo, or a variable of another function.
        (
            "start-transcode gets a variable no code reads",
            |t| set(t, &format!("{START_ENV}/PIPELINE"), json!("x")),
            "sets PIPELINE,",
        ),
        (
            "record-completion gets messages-api's BUCKET_NAME",
            |t| {
                set(
                    t,
                    &format!("{RECORD_ENV}/BUCKET_NAME"),
                    r#ref("MediaBucket"),
                )
            },
            "sets BUCKET_NAME",
        ),
        (
            "every function gets the same environment from Globals",
            |t| {
                t["Globals"]["Function"]["Environment"] =
                    json!({"Variables": {"TABLE_NAME": r#ref("MessagesTable")}})
            },
            "Globals",
        ),
        (
            "the worker gets the table, which it never reads",
            |t| {
                set(
                    t,
                    &format!("{WORKER_ENV}/TABLE_NAME"),
                    r#ref("MessagesTable"),
                )
            },
            "TranscodeAudioFunction sets TABLE_NAME",
        ),
        (
            "the worker gets no TOPIC_ARN",
            |t| remove(t, &format!("{WORKER_ENV}/TOPIC_ARN")),
            "TranscodeAudioFunction does not set TOPIC_ARN",
        ),
        (
            "the worker is left to the default output prefix",
            |t| remove(t, &format!("{WORKER_ENV}/OUTPUT_PREFIX")),
            "TranscodeAudioFunction does not set OUTPUT_PREFIX",
        ),
        (
            "the worker builds start-transcode's binary",
            |t| {
                let path = "/Resources/TranscodeAudioFunction/Metadata/BuildProperties/Binary";
                set(t, path, json!("start-transcode"))
            },
            "binary transcode-audio",
        ),
        (
            "there is no worker",
            |t| remove(t, "/Resources/TranscodeAudioFunction"),
            "TranscodeAudioFunction is not a function",
        ),
        (
            "start-transcode gets no TABLE_NAME",
            |t| remove(t, &format!("{START_ENV}/TABLE_NAME")),
            "StartTranscodeFunction does not set TABLE_NAME",
        ),
        (
            "record-completion gets no TOPIC_ARN",
            |t| remove(t, &format!("{RECORD_ENV}/TOPIC_ARN")),
            "RecordCompletionFunction does not set TOPIC_ARN",
        ),
        (
            "messages-api gets no BUCKET_NAME",
            |t| remove(t, &format!("{API_ENV}/BUCKET_NAME")),
            "MessagesApiFunction does not set BUCKET_NAME",
        ),
        (
            "messages-api signs links for another bucket than MediaBucket",
            |t| {
                let other = json!("audio-transcoder-media-other");
                set(t, &format!("{API_ENV}/BUCKET_NAME"), other)
            },
            "not MediaBucket's name",
        ),
        (
            "the page's CSP names another bucket than its links",
            |t| {
                let other = json!("https://other.s3.eu-west-1.amazonaws.com");
                set(t, &format!("{API_ENV}/BUCKET_URL"), other)
            },
            "not MediaBucket's origin",
        ),
        (
            "the page signs in with another app client",
            |t| set(t, &format!("{API_ENV}/USER_POOL_CLIENT_ID"), json!("abc")),
            "not UserPoolClient",
        ),
        (
            "messages-api gets no USER_POOL_CLIENT_ID",
            |t| remove(t, &format!("{API_ENV}/USER_POOL_CLIENT_ID")),
            "MessagesApiFunction does not set USER_POOL_CLIENT_ID",
        ),
        (
            "record-completion accepts another topic than it is subscribed to",
            |t| {
                let other = json!("arn:aws:sns:eu-west-1:123456789012:other");
                set(t, &format!("{RECORD_ENV}/TOPIC_ARN"), other)
            },
            "subscribed to",
        ),
        (
            "messages-api builds another binary",
            |t| {
                let path = "/Resources/MessagesApiFunction/Metadata/BuildProperties/Binary";
                set(t, path, json!("messages"))
            },
            "binary messages-api",
        ),
        (
            "ElasticTranscoder maps to a TRANSCODER the code does not know",
            |t| {
                set(
                    t,
                    "/Mappings/Transcoders/ElasticTranscoder/Variable",
                    json!("ElasticTranscoder"),
                )
            },
            "TRANSCODER=elastictranscoder",
        ),
    ];
    assert_refuses(environment_problems, &t, cases);
}
