//! `template.yaml` as the default backend, Lambda, deploys it: start-transcode sends each job to
//! an encrypted jobs queue that only it may write to; `transcode-audio` takes them one at a time,
//! with the layer's ffmpeg, sized and bounded by parameters; a job no worker finished moves to a
//! dead-letter queue that the worker also reads (so its owner is told) and that raises an alarm;
//! and the worker's role may read uploads, write outputs, publish to the topic and consume its two
//! queues, nothing else.
//!
//! Every check runs on the stack the Lambda backend deploys (nothing wrong) and on copies broken
//! the ways that matter (the check objects). The worker's environment against the variables its
//! code reads is in tests/template/wiring.rs; what the other backends must not deploy is in
//! tests/template/backends.rs.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use system_tests::template::{
    CONSUME, Case, arn_of, assert_refuses, deployed_with, grants, number, policies_of, r#ref,
    remove, resource, set, statements_of, strings, template,
};
use system_tests::workspace_root;
use transcode_audio::WorkerConfig;
use transcoder_api::config::DEFAULT_MAX_UPLOAD_BYTES;

const WORKER: &str = "TranscodeAudioFunction";
const WORKER_ROLE: &str = "TranscodeAudioRole";
/// Lambda stops a function at 15 minutes; the worker may use all of them.
const LAMBDA_MAX_TIMEOUT: u64 = 900;
/// The Lambda developer guide ("Using Lambda with Amazon SQS"): a queue that is an event source
/// should have a visibility timeout of at least six times the function's timeout.
const VISIBILITY_PER_TIMEOUT: u64 = 6;
/// SQS's maximum retention, as the other queues keep their messages.
const FOURTEEN_DAYS_SECONDS: u64 = 1_209_600;
/// The most bytes a second of audio takes in each of the three outputs (WAV and FLAC at 44.1 kHz,
/// 16 bits, stereo; AAC at 256 kbit/s): the ffmpeg module's `bytes_per_second`.
const OUTPUT_BYTES_PER_SECOND: u64 = 176_400 + 176_400 + 256_000 / 8;

/// The actions one statement allows, and its resources.
type Grant<'a> = (Vec<&'a str>, Value);

// ------------------------------------------------------------------------------------------ checks

/// The parameters that size and bound the worker, with their defaults and the limits AWS sets.
fn parameter_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let params = &t["Parameters"];
    let backend = &params["TranscoderBackend"];
    if backend["Default"] != "Lambda" {
        problems.push(format!(
            "TranscoderBackend defaults to {}, not Lambda",
            backend["Default"]
        ));
    }
    let expected = [
        // (parameter, default, minimum, maximum)
        ("WorkerMemorySize", 2048, 128, 10_240),
        ("WorkerEphemeralStorageMB", 4096, 512, 10_240),
        ("WorkerMaxConcurrency", 10, 2, 1000),
        (
            "JobMaxReceives",
            u64::from(WorkerConfig::DEFAULT_MAX_RECEIVES),
            1,
            1000,
        ),
    ];
    for (name, default, min, max) in expected {
        let p = &params[name];
        let found = (
            number(&p["Default"]),
            number(&p["MinValue"]),
            number(&p["MaxValue"]),
        );
        if p["Type"] != "Number" || found != (Some(default), Some(min), Some(max)) {
            problems.push(format!(
                "parameter {name} is {p}, not a Number defaulting to {default}, from {min} to {max}"
            ));
        }
    }
    let duration = &params["WorkerMaxDurationSeconds"];
    if number(&duration["Default"]) != Some(WorkerConfig::DEFAULT_MAX_DURATION_SECONDS)
        || number(&duration["MinValue"]) != Some(1)
    {
        problems.push(format!(
            "parameter WorkerMaxDurationSeconds is {duration}, not at least 1 defaulting to the \
             worker's {}",
            WorkerConfig::DEFAULT_MAX_DURATION_SECONDS
        ));
    }
    // The default /tmp holds the largest upload and the outputs of the longest file.
    let needed_mb = (DEFAULT_MAX_UPLOAD_BYTES
        + WorkerConfig::DEFAULT_MAX_DURATION_SECONDS * OUTPUT_BYTES_PER_SECOND)
        .div_ceil(1024 * 1024);
    let storage = number(&params["WorkerEphemeralStorageMB"]["Default"]).unwrap_or_default();
    if storage < needed_mb {
        problems.push(format!(
            "WorkerEphemeralStorageMB defaults to {storage} MB, less than an upload and the \
             outputs of the longest file ({needed_mb} MB)"
        ));
    }
    problems
}

/// The worker: arm64 on provided.al2023 with the layer, Lambda's longest timeout, its size from
/// the parameters, its own log group, its environment, and the two queues as its only events.
fn worker_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let worker = resource(t, WORKER);
    let properties = &worker["Properties"];
    let globals = &t["Globals"]["Function"];
    let setting = |key: &str| {
        if properties[key].is_null() {
            globals[key].clone()
        } else {
            properties[key].clone()
        }
    };
    if worker["Type"] != "AWS::Serverless::Function"
        || worker["Metadata"]["BuildMethod"] != "rust-cargolambda"
        || worker["Metadata"]["BuildProperties"]["Binary"] != "transcode-audio"
    {
        problems.push(format!(
            "{WORKER} does not build the binary transcode-audio"
        ));
    }
    if setting("Architectures") != json!(["arm64"]) || setting("Runtime") != "provided.al2023" {
        problems.push(format!("{WORKER} is not arm64 on provided.al2023"));
    }
    if properties["Layers"] != json!([r#ref("FfmpegLayer")]) {
        problems.push(format!(
            "{WORKER}'s layers are {}, not FfmpegLayer",
            properties["Layers"]
        ));
    }
    if number(&properties["Timeout"]) != Some(LAMBDA_MAX_TIMEOUT) {
        problems.push(format!(
            "{WORKER}'s Timeout is {}, not Lambda's {LAMBDA_MAX_TIMEOUT} s",
            properties["Timeout"]
        ));
    }
    if properties["MemorySize"] != r#ref("WorkerMemorySize") {
        problems.push(format!("{WORKER}'s MemorySize is not WorkerMemorySize"));
    }
    if properties["EphemeralStorage"] != json!({"Size": r#ref("WorkerEphemeralStorageMB")}) {
        problems.push(format!(
            "{WORKER}'s EphemeralStorage is not WorkerEphemeralStorageMB"
        ));
    }
    let log_group = &properties["LoggingConfig"]["LogGroup"];
    let log_group_id = log_group["Ref"].as_str().unwrap_or_default();
    let shared = t["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(id, r)| {
            id.as_str() != WORKER && r["Properties"]["LoggingConfig"]["LogGroup"] == *log_group
        })
        .count();
    if resource(t, log_group_id)["Type"] != "AWS::Logs::LogGroup"
        || resource(t, log_group_id)["Properties"]["RetentionInDays"] != r#ref("LogRetentionDays")
        || shared > 0
    {
        problems.push(format!(
            "{WORKER} logs to {log_group}, not a log group of its own kept LogRetentionDays"
        ));
    }
    let variables = &properties["Environment"]["Variables"];
    for (name, value) in [
        ("TOPIC_ARN", r#ref("CompletionTopic")),
        ("INPUT_PREFIX", r#ref("InputPrefix")),
        ("OUTPUT_PREFIX", r#ref("OutputPrefix")),
        ("MAX_DURATION_SECONDS", r#ref("WorkerMaxDurationSeconds")),
        ("MAX_RECEIVES", r#ref("JobMaxReceives")),
        ("DEAD_LETTER_QUEUE_ARN", arn_of("JobsDeadLetterQueue")),
    ] {
        if variables[name] != value {
            problems.push(format!(
                "{WORKER}'s {name} is {}, not {value}",
                variables[name]
            ));
        }
    }

    let events = properties["Events"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let expected = [
        // (queue, batch size, maximum concurrency)
        ("JobsQueue", json!(1), r#ref("WorkerMaxConcurrency")),
        ("JobsDeadLetterQueue", json!(10), json!(2)),
    ];
    if events.len() != expected.len() || events.values().any(|e| e["Type"] != "SQS") {
        problems.push(format!(
            "{WORKER} has the events {:?}, not one SQS event per queue",
            events.keys().collect::<Vec<_>>()
        ));
    }
    for (queue, batch, concurrency) in expected {
        let Some(event) = events
            .values()
            .map(|e| &e["Properties"])
            .find(|e| e["Queue"] == arn_of(queue))
        else {
            problems.push(format!("{WORKER} does not consume {queue}"));
            continue;
        };
        if event["BatchSize"] != batch {
            problems.push(format!(
                "{WORKER} takes {queue}'s messages {} at a time, not {batch}",
                event["BatchSize"]
            ));
        }
        if strings(&event["FunctionResponseTypes"]) != ["ReportBatchItemFailures"] {
            problems.push(format!(
                "{WORKER}'s {queue} event does not ReportBatchItemFailures: one failed job \
                 would redeliver the batch"
            ));
        }
        if event["ScalingConfig"]["MaximumConcurrency"] != concurrency {
            problems.push(format!(
                "{WORKER}'s {queue} event runs at most {} at once, not {concurrency}",
                event["ScalingConfig"]["MaximumConcurrency"]
            ));
        }
    }
    problems
}

/// The two queues: encrypted like the template's other queues, kept 14 days, hidden while a
/// worker may still run, the jobs queue redriving to the dead-letter queue after JobMaxReceives;
/// both refuse plain HTTP, only start-transcode may send jobs, and the dead-letter queue raises an
/// alarm on anything it receives.
fn queue_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let timeout = number(&resource(t, WORKER)["Properties"]["Timeout"]).unwrap_or(u64::MAX);
    let key = &resource(t, "RecordCompletionFailures")["Properties"]["KmsMasterKeyId"];
    for id in ["JobsQueue", "JobsDeadLetterQueue"] {
        let queue = resource(t, id);
        let properties = &queue["Properties"];
        if queue["Type"] != "AWS::SQS::Queue" {
            problems.push(format!("{id} is not a queue"));
        }
        if key.is_null() || properties["KmsMasterKeyId"] != *key {
            problems.push(format!(
                "{id} is encrypted with {}, not {key} as the other queues are",
                properties["KmsMasterKeyId"]
            ));
        }
        if number(&properties["MessageRetentionPeriod"]) != Some(FOURTEEN_DAYS_SECONDS) {
            problems.push(format!("{id} does not keep its messages 14 days"));
        }
        let visibility = number(&properties["VisibilityTimeout"]).unwrap_or_default();
        if visibility < VISIBILITY_PER_TIMEOUT.saturating_mul(timeout) {
            problems.push(format!(
                "{id}'s VisibilityTimeout is {visibility} s, less than six times the worker's \
                 Timeout ({timeout} s)"
            ));
        }
        problems.extend(tls_problems(t, id));
    }
    let redrive = &resource(t, "JobsQueue")["Properties"]["RedrivePolicy"];
    if *redrive
        != json!({"deadLetterTargetArn": arn_of("JobsDeadLetterQueue"),
                  "maxReceiveCount": r#ref("JobMaxReceives")})
    {
        problems.push(format!(
            "JobsQueue's RedrivePolicy is {redrive}, not JobsDeadLetterQueue after JobMaxReceives"
        ));
    }
    if !resource(t, "JobsDeadLetterQueue")["Properties"]["RedrivePolicy"].is_null() {
        problems.push("JobsDeadLetterQueue redrives its dead jobs elsewhere".into());
    }

    // Only start-transcode may send jobs: every other principal is denied SendMessage.
    let starter_role = &resource(t, "StartTranscodeFunction")["Properties"]["Role"];
    let only_starter = queue_policy_statements(t, "JobsQueue")
        .into_iter()
        .any(|s| {
            s["Effect"] == "Deny"
                && s["Principal"] == "*"
                && strings(&s["Action"]).contains(&"sqs:SendMessage")
                && s["Condition"] == json!({"ArnNotEquals": {"aws:PrincipalArn": starter_role}})
        });
    if !only_starter {
        problems.push(format!(
            "JobsQueue's policy does not deny SendMessage to every principal but {starter_role}"
        ));
    }

    let alarms: Vec<&Value> = t["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, r)| r)
        .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|r| &r["Properties"])
        .filter(|a| {
            a["Dimensions"]
                == json!([{"Name": "QueueName",
                           "Value": {"Fn::GetAtt": ["JobsDeadLetterQueue", "QueueName"]}}])
        })
        .collect();
    let raised = alarms.iter().any(|a| {
        a["Namespace"] == "AWS/SQS"
            && a["MetricName"] == "NumberOfMessagesReceived"
            && a["Statistic"] == "Sum"
            && number(&a["Threshold"]) == Some(0)
            && a["ComparisonOperator"] == "GreaterThanThreshold"
    });
    if !raised {
        problems.push(format!(
            "no alarm on JobsDeadLetterQueue's NumberOfMessagesReceived > 0 (a dead job is not \
             counted in NumberOfMessagesSent): {alarms:?}"
        ));
    }
    problems
}

/// The statements of every queue policy on the queue `id`.
fn queue_policy_statements<'a>(t: &'a Value, id: &str) -> Vec<&'a Value> {
    let policies: Vec<&Value> = t["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, r)| r)
        .filter(|r| {
            r["Type"] == "AWS::SQS::QueuePolicy"
                && r["Properties"]["Queues"]
                    .as_array()
                    .is_some_and(|q| q.contains(&r#ref(id)))
        })
        .map(|r| &r["Properties"])
        .collect();
    statements_of(&policies)
}

/// The queue `id` refuses every request over plain HTTP.
fn tls_problems(t: &Value, id: &str) -> Vec<String> {
    let refuses = queue_policy_statements(t, id).into_iter().any(|s| {
        s["Effect"] == "Deny"
            && s["Principal"] == "*"
            && strings(&s["Action"]) == ["sqs:*"]
            && s["Resource"] == arn_of(id)
            && s["Condition"] == json!({"Bool": {"aws:SecureTransport": "false"}})
    });
    if refuses {
        Vec::new()
    } else {
        vec![format!("{id}'s policy does not refuse plain HTTP")]
    }
}

/// Least privilege for the worker, statement by statement: read uploads, write outputs, publish
/// to the topic, consume the two queues, write its logs; nothing else, and no KMS grant, which
/// the AWS managed keys of the topic and the queues do not need (so they must be those).
fn role_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let worker = &resource(t, WORKER)["Properties"];
    if worker["Role"] != arn_of(WORKER_ROLE) || !worker["Policies"].is_null() {
        problems.push(format!("{WORKER} does not run as {WORKER_ROLE}"));
    }
    let role = &resource(t, WORKER_ROLE)["Properties"];
    let assumed = &role["AssumeRolePolicyDocument"]["Statement"];
    if *assumed
        != json!([{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole"}])
    {
        problems.push(format!(
            "{WORKER_ROLE} is not assumed by Lambda alone: {assumed}"
        ));
    }
    let policies = policies_of(t, WORKER_ROLE);
    let bucket_path =
        |prefix: &str| json!({"Fn::Sub": format!("${{MediaBucket.Arn}}/${{{prefix}}}*")});
    let expected: [(&str, Vec<Grant>); 4] = [
        (
            "s3:",
            vec![
                (vec!["s3:GetObject"], bucket_path("InputPrefix")),
                (vec!["s3:PutObject"], bucket_path("OutputPrefix")),
            ],
        ),
        (
            "sns:",
            vec![(vec!["sns:Publish"], r#ref("CompletionTopic"))],
        ),
        (
            "sqs:",
            vec![(
                CONSUME.to_vec(),
                json!([arn_of("JobsQueue"), arn_of("JobsDeadLetterQueue")]),
            )],
        ),
        (
            "logs:",
            vec![(
                vec!["logs:CreateLogStream", "logs:PutLogEvents"],
                arn_of("TranscodeAudioLogGroup"),
            )],
        ),
    ];
    for (service, allowed) in &expected {
        let found: Vec<Grant> = grants(&policies, service)
            .into_iter()
            .map(|(actions, resource)| (actions, resource.clone()))
            .collect();
        if found != *allowed {
            problems.push(format!(
                "{WORKER_ROLE} is granted {found:?} in {service}, not exactly {allowed:?}"
            ));
        }
    }
    for statement in statements_of(&policies) {
        let services: BTreeSet<&str> = strings(&statement["Action"])
            .into_iter()
            .map(|a| a.split(':').next().unwrap_or_default())
            .collect();
        let other: Vec<&&str> = services
            .iter()
            .filter(|s| !expected.iter().any(|(e, _)| e.trim_end_matches(':') == **s))
            .collect();
        if !other.is_empty() || statement["Effect"] != "Allow" || !statement["NotAction"].is_null()
        {
            problems.push(format!("{WORKER_ROLE} has the statement {statement}"));
        }
    }
    if !role["ManagedPolicyArns"].is_null() {
        problems.push(format!("{WORKER_ROLE} attaches managed policies"));
    }
    let topic_key = &resource(t, "CompletionTopic")["Properties"]["KmsMasterKeyId"];
    if *topic_key != "alias/aws/sns" {
        problems.push(format!(
            "the topic is encrypted with {topic_key}: {WORKER_ROLE} has no grant for any key but \
             the AWS managed alias/aws/sns"
        ));
    }
    for queue in ["JobsQueue", "JobsDeadLetterQueue"] {
        let key = &resource(t, queue)["Properties"]["KmsMasterKeyId"];
        if *key != "alias/aws/sqs" {
            problems.push(format!(
                "{queue} is encrypted with {key}: its consumer and sender have no grant for any \
                 key but the AWS managed alias/aws/sqs"
            ));
        }
    }
    // The topic names every publisher; the worker is one.
    let topic_policy = &resource(t, "CompletionTopicPolicy")["Properties"];
    let publishes = statements_of(&[topic_policy]).into_iter().any(|s| {
        s["Effect"] == "Allow"
            && s["Principal"] == json!({"AWS": arn_of(WORKER_ROLE)})
            && strings(&s["Action"]) == ["sns:Publish"]
            && s["Resource"] == r#ref("CompletionTopic")
    });
    if !publishes {
        problems.push(format!(
            "the topic's policy does not name {WORKER_ROLE} as a publisher"
        ));
    }
    problems
}

/// start-transcode is told the jobs queue and may send to it, and to no other queue; it consumes
/// its intake queue only.
fn starter_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let variables =
        &resource(t, "StartTranscodeFunction")["Properties"]["Environment"]["Variables"];
    if variables["JOBS_QUEUE_URL"] != r#ref("JobsQueue") {
        problems.push(format!(
            "start-transcode's JOBS_QUEUE_URL is {}, not JobsQueue",
            variables["JOBS_QUEUE_URL"]
        ));
    }
    let sqs: Vec<Grant> = grants(&policies_of(t, "StartTranscodeRole"), "sqs:")
        .into_iter()
        .map(|(actions, resource)| (actions, resource.clone()))
        .collect();
    let expected = vec![
        (vec!["sqs:SendMessage"], arn_of("JobsQueue")),
        (CONSUME.to_vec(), arn_of("IntakeQueue")),
        (CONSUME.to_vec(), arn_of("IntakeDeadLetterQueue")),
    ];
    if sqs != expected {
        problems.push(format!(
            "start-transcode is granted {sqs:?} in sqs:, not exactly {expected:?}"
        ));
    }
    problems
}

/// The layer: `make layer`'s folder (the Makefile's LAYER), for arm64 and provided.al2023, its
/// GPL licence stated, deleted with the stack; `make build` fills it first.
fn layer_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let makefile = std::fs::read_to_string(workspace_root().join("Makefile")).unwrap_or_default();
    let folder = makefile
        .lines()
        .find_map(|l| l.strip_prefix("LAYER := "))
        .unwrap_or("(no LAYER in the Makefile)");
    let layer = resource(t, "FfmpegLayer");
    let properties = &layer["Properties"];
    if layer["Type"] != "AWS::Serverless::LayerVersion" {
        problems.push("FfmpegLayer is not an AWS::Serverless::LayerVersion".into());
    }
    if properties["ContentUri"] != folder {
        problems.push(format!(
            "FfmpegLayer's ContentUri is {}, not {folder}, the folder `make layer` fills",
            properties["ContentUri"]
        ));
    }
    if strings(&properties["CompatibleArchitectures"]) != ["arm64"]
        || strings(&properties["CompatibleRuntimes"]) != ["provided.al2023"]
    {
        problems.push("FfmpegLayer is not for arm64 on provided.al2023".into());
    }
    if properties["LicenseInfo"] != "GPL-3.0-or-later" {
        problems.push(format!(
            "FfmpegLayer's LicenseInfo is {}, not the build's GPL-3.0-or-later",
            properties["LicenseInfo"]
        ));
    }
    if properties["RetentionPolicy"] != "Delete" {
        problems.push("FfmpegLayer's versions outlive the stack".into());
    }
    let build_needs_layer = makefile
        .lines()
        .find_map(|l| l.strip_prefix("build:"))
        .is_some_and(|deps| deps.split_whitespace().any(|d| d == "layer"));
    if !build_needs_layer {
        problems.push("`make build` does not run `make layer` first".into());
    }
    problems
}

fn lambda_problems(t: &Value) -> Vec<String> {
    let deployed = deployed_with(t, "Lambda");
    [
        parameter_problems(t),
        worker_problems(&deployed),
        queue_problems(&deployed),
        role_problems(&deployed),
        starter_problems(&deployed),
        layer_problems(&deployed),
    ]
    .concat()
}

// ------------------------------------------------------------------------------------------- tests

const WORKER_PROPERTIES: &str = "/Resources/TranscodeAudioFunction/Properties";
const WORKER_ENV: &str = "/Resources/TranscodeAudioFunction/Properties/Environment/Variables";
const JOB_EVENT: &str = "/Resources/TranscodeAudioFunction/Properties/Events/Job/Properties";
const DEAD_JOB_EVENT: &str =
    "/Resources/TranscodeAudioFunction/Properties/Events/DeadJob/Properties";
const JOBS_QUEUE: &str = "/Resources/JobsQueue/Properties";
const JOBS_POLICY: &str = "/Resources/JobsQueuePolicy/Properties/PolicyDocument/Statement";
const WORKER_STATEMENTS: &str =
    "/Resources/TranscodeAudioRole/Properties/Policies/0/PolicyDocument/Statement";
const LAYER: &str = "/Resources/FfmpegLayer/Properties";

#[test]
fn the_default_backend_is_the_lambda_worker_and_its_parameters_bound_it() {
    let t = template();
    assert_eq!(parameter_problems(&t), Vec::<String>::new());
    let cases: &[Case] = &[
        (
            "MediaConvert is still the default",
            |t| {
                set(
                    t,
                    "/Parameters/TranscoderBackend/Default",
                    json!("MediaConvert"),
                )
            },
            "not Lambda",
        ),
        (
            "the worker may be given more concurrency than SQS allows",
            |t| set(t, "/Parameters/WorkerMaxConcurrency/MaxValue", json!(5000)),
            "WorkerMaxConcurrency",
        ),
        (
            "the worker may be given one at a time, under SQS's minimum of 2",
            |t| set(t, "/Parameters/WorkerMaxConcurrency/MinValue", json!(1)),
            "WorkerMaxConcurrency",
        ),
        (
            "the dead-letter queue after another count than the worker's default",
            |t| set(t, "/Parameters/JobMaxReceives/Default", json!(5)),
            "JobMaxReceives",
        ),
        (
            "the longest file differs from the worker's default",
            |t| {
                set(
                    t,
                    "/Parameters/WorkerMaxDurationSeconds/Default",
                    json!(600),
                )
            },
            "WorkerMaxDurationSeconds",
        ),
        (
            "/tmp defaults to less than an upload and its outputs",
            |t| {
                set(
                    t,
                    "/Parameters/WorkerEphemeralStorageMB/Default",
                    json!(512),
                )
            },
            "less than an upload",
        ),
        (
            "/tmp may be larger than Lambda allows",
            |t| {
                set(
                    t,
                    "/Parameters/WorkerEphemeralStorageMB/MaxValue",
                    json!(20480),
                )
            },
            "WorkerEphemeralStorageMB",
        ),
        (
            "no memory parameter",
            |t| remove(t, "/Parameters/WorkerMemorySize"),
            "WorkerMemorySize",
        ),
    ];
    assert_refuses(parameter_problems, &t, cases);
}

#[test]
fn the_worker_is_the_arm64_function_with_the_layer_on_the_jobs_queue() {
    let t = template();
    assert_eq!(lambda_problems(&t), Vec::<String>::new());
    let cases: &[Case] = &[
        (
            "the worker has no layer",
            |t| remove(t, &format!("{WORKER_PROPERTIES}/Layers")),
            "not FfmpegLayer",
        ),
        (
            "the worker is x86_64",
            |t| {
                set(
                    t,
                    &format!("{WORKER_PROPERTIES}/Architectures"),
                    json!(["x86_64"]),
                )
            },
            "not arm64",
        ),
        (
            "the worker stops at 5 minutes",
            |t| set(t, &format!("{WORKER_PROPERTIES}/Timeout"), json!(300)),
            "Timeout is 300",
        ),
        (
            "a fixed memory size",
            |t| set(t, &format!("{WORKER_PROPERTIES}/MemorySize"), json!(1024)),
            "not WorkerMemorySize",
        ),
        (
            "Lambda's default /tmp",
            |t| remove(t, &format!("{WORKER_PROPERTIES}/EphemeralStorage")),
            "not WorkerEphemeralStorageMB",
        ),
        (
            "the worker logs to start-transcode's group",
            |t| {
                let group = r#ref("StartTranscodeLogGroup");
                set(
                    t,
                    &format!("{WORKER_PROPERTIES}/LoggingConfig/LogGroup"),
                    group,
                )
            },
            "of its own",
        ),
        (
            "the worker publishes to another topic",
            |t| {
                set(
                    t,
                    &format!("{WORKER_ENV}/TOPIC_ARN"),
                    json!("arn:aws:sns:eu-west-1:1:x"),
                )
            },
            "TOPIC_ARN",
        ),
        (
            "the worker's MAX_RECEIVES is not the queue's count",
            |t| set(t, &format!("{WORKER_ENV}/MAX_RECEIVES"), json!("3")),
            "MAX_RECEIVES",
        ),
        (
            "the worker does not know its dead-letter queue",
            |t| remove(t, &format!("{WORKER_ENV}/DEAD_LETTER_QUEUE_ARN")),
            "DEAD_LETTER_QUEUE_ARN",
        ),
        (
            "the worker's longest file is not the parameter",
            |t| {
                set(
                    t,
                    &format!("{WORKER_ENV}/MAX_DURATION_SECONDS"),
                    json!("7200"),
                )
            },
            "MAX_DURATION_SECONDS",
        ),
        (
            "ten jobs per invocation",
            |t| set(t, &format!("{JOB_EVENT}/BatchSize"), json!(10)),
            "at a time",
        ),
        (
            "a failed job fails the batch",
            |t| remove(t, &format!("{JOB_EVENT}/FunctionResponseTypes")),
            "ReportBatchItemFailures",
        ),
        (
            "no bound on concurrent jobs",
            |t| remove(t, &format!("{JOB_EVENT}/ScalingConfig")),
            "at most null at once",
        ),
        (
            "the dead jobs are never read, so never reported to their owners",
            |t| {
                remove(
                    t,
                    "/Resources/TranscodeAudioFunction/Properties/Events/DeadJob",
                )
            },
            "does not consume JobsDeadLetterQueue",
        ),
        (
            "a failed dead job fails its batch",
            |t| remove(t, &format!("{DEAD_JOB_EVENT}/FunctionResponseTypes")),
            "ReportBatchItemFailures",
        ),
        (
            "the worker also runs on a schedule",
            |t| {
                let event = json!({"Type": "Schedule", "Properties": {"Schedule": "rate(1 hour)"}});
                set(t, &format!("{WORKER_PROPERTIES}/Events/Tick"), event)
            },
            "not one SQS event per queue",
        ),
    ];
    assert_refuses(lambda_problems, &t, cases);
}

#[test]
fn the_jobs_queue_is_encrypted_redrives_to_a_watched_dead_letter_queue_and_takes_jobs_from_start_transcode_only()
 {
    let t = template();
    assert_eq!(lambda_problems(&t), Vec::<String>::new());
    let cases: &[Case] = &[
        (
            "the jobs queue is not encrypted",
            |t| remove(t, &format!("{JOBS_QUEUE}/KmsMasterKeyId")),
            "JobsQueue is encrypted with null",
        ),
        (
            "the dead-letter queue is not encrypted",
            |t| {
                remove(
                    t,
                    "/Resources/JobsDeadLetterQueue/Properties/KmsMasterKeyId",
                )
            },
            "JobsDeadLetterQueue is encrypted with null",
        ),
        (
            "a job becomes visible again while its worker may still run",
            |t| set(t, &format!("{JOBS_QUEUE}/VisibilityTimeout"), json!(900)),
            "less than six times",
        ),
        (
            "the dead-letter queue keeps jobs 4 days",
            |t| {
                let p = "/Resources/JobsDeadLetterQueue/Properties/MessageRetentionPeriod";
                set(t, p, json!(345_600))
            },
            "14 days",
        ),
        (
            "no dead-letter queue",
            |t| remove(t, &format!("{JOBS_QUEUE}/RedrivePolicy")),
            "RedrivePolicy",
        ),
        (
            "a fixed receive count",
            |t| {
                set(
                    t,
                    &format!("{JOBS_QUEUE}/RedrivePolicy/maxReceiveCount"),
                    json!(5),
                )
            },
            "after JobMaxReceives",
        ),
        (
            "the jobs queue takes plain HTTP",
            |t| remove(t, "/Resources/JobsQueuePolicy"),
            "JobsQueue's policy does not refuse plain HTTP",
        ),
        (
            "the dead-letter queue takes plain HTTP",
            |t| remove(t, "/Resources/JobsDeadLetterQueuePolicy"),
            "JobsDeadLetterQueue's policy does not refuse plain HTTP",
        ),
        (
            "any role of the account may send jobs",
            |t| {
                let items = t.pointer_mut(JOBS_POLICY).and_then(Value::as_array_mut);
                items
                    .expect("the jobs queue policy's statements")
                    .retain(|s| s["Sid"] != "OnlyStartTranscodeSendsJobs");
            },
            "does not deny SendMessage",
        ),
        (
            "the worker's role may send jobs too",
            |t| {
                let p = format!("{JOBS_POLICY}/1/Condition/ArnNotEquals/aws:PrincipalArn");
                set(t, &p, arn_of("TranscodeAudioRole"))
            },
            "does not deny SendMessage",
        ),
        (
            "no alarm on dead jobs",
            |t| remove(t, "/Resources/JobsDeadLetterAlarm"),
            "no alarm",
        ),
        (
            "the alarm counts what is sent, which a redrive never is",
            |t| {
                let p = "/Resources/JobsDeadLetterAlarm/Properties/MetricName";
                set(t, p, json!("NumberOfMessagesSent"))
            },
            "no alarm",
        ),
        (
            "start-transcode is not told the jobs queue",
            |t| {
                let p = "/Resources/StartTranscodeFunction/Properties/Environment/Variables/\
                         JOBS_QUEUE_URL";
                remove(t, p)
            },
            "JOBS_QUEUE_URL",
        ),
        (
            "start-transcode may not send jobs",
            |t| {
                let statements = "/Resources/StartTranscodeRole/Properties/Policies/0/\
                                  PolicyDocument/Statement";
                let items = t.pointer_mut(statements).and_then(Value::as_array_mut);
                items
                    .expect("start-transcode's statements")
                    .retain(|s| !s.to_string().contains("SendJobs"));
            },
            "start-transcode is granted",
        ),
    ];
    assert_refuses(lambda_problems, &t, cases);
}

#[test]
fn the_worker_may_read_uploads_write_outputs_publish_and_consume_its_queues_and_nothing_else() {
    let t = template();
    assert_eq!(lambda_problems(&t), Vec::<String>::new());
    let cases: &[Case] = &[
        (
            "the worker reads the whole bucket",
            |t| {
                let all = json!({"Fn::Sub": "${MediaBucket.Arn}/*"});
                set(t, &format!("{WORKER_STATEMENTS}/1/Resource"), all)
            },
            "in s3:",
        ),
        (
            "the worker may overwrite uploads",
            |t| {
                let uploads = json!({"Fn::Sub": "${MediaBucket.Arn}/${InputPrefix}*"});
                set(t, &format!("{WORKER_STATEMENTS}/2/Resource"), uploads)
            },
            "in s3:",
        ),
        (
            "the worker may delete outputs",
            |t| {
                let actions = json!(["s3:PutObject", "s3:DeleteObject"]);
                set(t, &format!("{WORKER_STATEMENTS}/2/Action"), actions)
            },
            "in s3:",
        ),
        (
            "the worker lists the bucket",
            |t| {
                let list = json!({"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket",
                                  "Resource": arn_of("MediaBucket")});
                let items = t
                    .pointer_mut(WORKER_STATEMENTS)
                    .and_then(Value::as_array_mut);
                items.expect("the worker's statements").push(list);
            },
            "in s3:",
        ),
        (
            "the worker publishes to every topic",
            |t| set(t, &format!("{WORKER_STATEMENTS}/3/Resource"), json!("*")),
            "in sns:",
        ),
        (
            "the worker may send jobs",
            |t| {
                let mut actions = CONSUME.to_vec();
                actions.push("sqs:SendMessage");
                let actions = json!(actions);
                set(t, &format!("{WORKER_STATEMENTS}/4/Action"), actions)
            },
            "in sqs:",
        ),
        (
            "the worker consumes start-transcode's intake queue",
            |t| {
                let queues = json!([arn_of("JobsQueue"), arn_of("IntakeQueue")]);
                set(t, &format!("{WORKER_STATEMENTS}/4/Resource"), queues)
            },
            "in sqs:",
        ),
        (
            "the worker writes the messages table",
            |t| {
                let write = json!({"Sid": "Write", "Effect": "Allow",
                                   "Action": "dynamodb:PutItem",
                                   "Resource": arn_of("MessagesTable")});
                let items = t
                    .pointer_mut(WORKER_STATEMENTS)
                    .and_then(Value::as_array_mut);
                items.expect("the worker's statements").push(write);
            },
            "has the statement",
        ),
        (
            "the worker writes every log group",
            |t| set(t, &format!("{WORKER_STATEMENTS}/0/Resource"), json!("*")),
            "in logs:",
        ),
        (
            "the worker's role is SAM's, with AWSLambdaBasicExecutionRole",
            |t| {
                let managed =
                    json!(["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]);
                set(
                    t,
                    "/Resources/TranscodeAudioRole/Properties/ManagedPolicyArns",
                    managed,
                )
            },
            "managed policies",
        ),
        (
            "the jobs queue has a key of its own, which the roles may not use",
            |t| {
                let key = json!({"Fn::GetAtt": ["JobsKey", "Arn"]});
                set(t, &format!("{JOBS_QUEUE}/KmsMasterKeyId"), key)
            },
            "no grant for any key",
        ),
        (
            "the topic's key is MediaConvert's with every backend",
            |t| {
                let key = arn_of("CompletionTopicKey");
                set(
                    t,
                    "/Resources/CompletionTopic/Properties/KmsMasterKeyId",
                    key,
                )
            },
            "alias/aws/sns",
        ),
        (
            "the topic's policy does not name the worker",
            |t| {
                let statements =
                    "/Resources/CompletionTopicPolicy/Properties/PolicyDocument/Statement";
                let items = t.pointer_mut(statements).and_then(Value::as_array_mut);
                items
                    .expect("the topic policy's statements")
                    .retain(|s| !s.to_string().contains("TranscodeAudioPublishes"));
            },
            "as a publisher",
        ),
    ];
    assert_refuses(lambda_problems, &t, cases);
}

#[test]
fn the_layer_is_the_pinned_gpl_ffmpeg_that_make_layer_unpacks() {
    let t = template();
    assert_eq!(lambda_problems(&t), Vec::<String>::new());
    let cases: &[Case] = &[
        (
            "another folder than `make layer` fills",
            |t| set(t, &format!("{LAYER}/ContentUri"), json!("layer/")),
            "ContentUri",
        ),
        (
            "an x86_64 layer",
            |t| {
                set(
                    t,
                    &format!("{LAYER}/CompatibleArchitectures"),
                    json!(["x86_64"]),
                )
            },
            "not for arm64",
        ),
        (
            "no licence stated",
            |t| remove(t, &format!("{LAYER}/LicenseInfo")),
            "LicenseInfo",
        ),
        (
            "old versions kept after the stack is gone",
            |t| set(t, &format!("{LAYER}/RetentionPolicy"), json!("Retain")),
            "outlive the stack",
        ),
        (
            "the layer is another type",
            |t| {
                set(
                    t,
                    "/Resources/FfmpegLayer/Type",
                    json!("AWS::Lambda::LayerVersion"),
                )
            },
            "not an AWS::Serverless::LayerVersion",
        ),
    ];
    assert_refuses(lambda_problems, &t, cases);
}
