//! `template.yaml` as each value of `TranscoderBackend` deploys it: `TRANSCODER` names the
//! backend and nothing of the others is there; Lambda is the default; with MediaConvert, jobs get
//! their role and their final states and progress reach record-completion's topic (the Lambda
//! backend's own checks are in tests/template_lambda.rs).
//!
//! Also the reading all the template tests stand on: short forms become long forms, and a
//! condition the deployment cannot evaluate fails rather than passing unseen. Every check runs
//! on the real template (nothing wrong) and on copies broken the ways that matter (the check
//! objects).

use std::collections::BTreeSet;

use serde_json::{Value, json};
use system_tests::template::{
    BACKENDS, Case, Check, assert_refuses, broken, deployed_with, expand, from_yaml, r#ref, remove,
    resource, resources_of_type, set, statements, strings, template,
};
use transcoder_aws::JOB_TAG_KEY;

/// The MediaConvert states the rule forwards: those that end a job, which `record-completion` turns
/// into a message, and the progress that moves the upload's record (`INPUT_INFORMATION` says
/// nothing a user sees, so it is not paid for).
const MEDIACONVERT_FORWARDED_STATES: [&str; 5] = [
    "COMPLETE",
    "ERROR",
    "CANCELED",
    "PROGRESSING",
    "STATUS_UPDATE",
];

// ------------------------------------------------------------------------------------------ checks

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
        "Lambda" => (
            &["JOBS_QUEUE_URL"],
            &[
                "PIPELINE_ID",
                "PIPELINE_NAME",
                "MEDIACONVERT_ROLE_ARN",
                "JOB_TAG",
            ],
        ),
        "MediaConvert" => (
            &["MEDIACONVERT_ROLE_ARN", "JOB_TAG"],
            &["PIPELINE_ID", "PIPELINE_NAME", "JOBS_QUEUE_URL"],
        ),
        _ => (
            &["PIPELINE_ID"],
            &["MEDIACONVERT_ROLE_ARN", "JOB_TAG", "JOBS_QUEUE_URL"],
        ),
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
    // The other backends' resources and permissions are not deployed.
    const LAMBDA: [&str; 4] = [
        "JobsQueue",
        "JobsDeadLetterQueue",
        "FfmpegLayer",
        "TranscodeAudio",
    ];
    const MEDIACONVERT: [&str; 3] = ["mediaconvert", "iam:PassRole", "events.amazonaws.com"];
    let foreign: Vec<&str> = match backend {
        "Lambda" => [&MEDIACONVERT[..], &["elastictranscoder"]].concat(),
        "MediaConvert" => [&LAMBDA[..], &["elastictranscoder"]].concat(),
        _ => [&LAMBDA[..], &MEDIACONVERT[..]].concat(),
    };
    let text = t["Resources"].to_string();
    for word in &foreign {
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

    // The rule: this stack's jobs' final states and progress, to the topic record-completion
    // listens to.
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
        if states != MEDIACONVERT_FORWARDED_STATES.into_iter().collect() {
            problems.push(format!(
                "{id} forwards the states {states:?}, not the final ones and progress \
                 {MEDIACONVERT_FORWARDED_STATES:?}"
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

const START_ENV: &str = "/Resources/StartTranscodeFunction/Properties/Environment/Variables";

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

/// The other checks of the template run on each backend's deployment in their own files
/// (`assert_passes_deployed`); this one is what differs between them.
#[test]
fn each_backend_deploys_a_checked_stack_with_nothing_of_the_other() {
    let t = template();
    for (backend, _) in BACKENDS {
        assert_eq!(
            backend_problems(&deployed_with(&t, backend), backend),
            Vec::<String>::new(),
            "{backend}"
        );
    }

    let elastic: Check =
        |t| backend_problems(&deployed_with(t, "ElasticTranscoder"), "ElasticTranscoder");
    let elastic_cases: &[Case] = &[
        (
            "the topic's key is deployed with either backend",
            |t| remove(t, "/Resources/CompletionTopicKey/Condition"),
            "still has CompletionTopicKey",
        ),
        (
            "MediaConvert's role is deployed with either backend",
            |t| remove(t, "/Resources/MediaConvertRole/Condition"),
            "still mentions mediaconvert",
        ),
        (
            "start-transcode gets JOB_TAG with Elastic Transcoder",
            |t| {
                let tag = json!({"Fn::If": ["UseElasticTranscoder", "x", r#ref("AWS::NoValue")]});
                set(t, &format!("{START_ENV}/JOB_TAG"), tag)
            },
            "gets JOB_TAG",
        ),
    ];
    assert_refuses(elastic, &t, elastic_cases);

    let mediaconvert: Check =
        |t| backend_problems(&deployed_with(t, "MediaConvert"), "MediaConvert");
    let mediaconvert_cases: &[Case] = &[
        (
            "Elastic Transcoder's pipeline role is deployed with either backend",
            |t| remove(t, "/Resources/TranscoderPipelineRole/Condition"),
            "still mentions elastictranscoder",
        ),
        (
            "start-transcode gets PIPELINE_ID with MediaConvert",
            |t| set(t, &format!("{START_ENV}/PIPELINE_ID"), r#ref("PipelineId")),
            "gets PIPELINE_ID",
        ),
        (
            "start-transcode gets no MEDIACONVERT_ROLE_ARN",
            |t| remove(t, &format!("{START_ENV}/MEDIACONVERT_ROLE_ARN")),
            "gets no MEDIACONVERT_ROLE_ARN",
        ),
        (
            "MediaConvert maps to a TRANSCODER the code does not know",
            |t| {
                set(
                    t,
                    "/Mappings/Transcoders/MediaConvert/Variable",
                    json!("MediaConvert"),
                )
            },
            "TRANSCODER=",
        ),
    ];
    assert_refuses(mediaconvert, &t, mediaconvert_cases);

    let lambda: Check = |t| backend_problems(&deployed_with(t, "Lambda"), "Lambda");
    let lambda_cases: &[Case] = &[
        (
            "start-transcode gets no JOBS_QUEUE_URL",
            |t| remove(t, &format!("{START_ENV}/JOBS_QUEUE_URL")),
            "gets no JOBS_QUEUE_URL",
        ),
        (
            "Lambda maps to a TRANSCODER the code does not know",
            |t| set(t, "/Mappings/Transcoders/Lambda/Variable", json!("Lambda")),
            "TRANSCODER=",
        ),
        (
            "MediaConvert's job-state rule is deployed with every backend",
            |t| remove(t, "/Resources/MediaConvertJobStates/Condition"),
            "still mentions mediaconvert",
        ),
    ];
    assert_refuses(lambda, &t, lambda_cases);

    // The Lambda backend's resources exist only with it.
    let others: Check = |t| {
        ["MediaConvert", "ElasticTranscoder"]
            .into_iter()
            .flat_map(|backend| backend_problems(&deployed_with(t, backend), backend))
            .collect()
    };
    let others_cases: &[Case] = &[
        (
            "the jobs queue is deployed with every backend",
            |t| remove(t, "/Resources/JobsQueue/Condition"),
            "still mentions JobsQueue",
        ),
        (
            "the worker is deployed with every backend",
            |t| remove(t, "/Resources/TranscodeAudioFunction/Condition"),
            "still mentions TranscodeAudio",
        ),
        (
            "the layer is deployed with every backend",
            |t| remove(t, "/Resources/FfmpegLayer/Condition"),
            "still mentions FfmpegLayer",
        ),
        (
            "start-transcode gets JOBS_QUEUE_URL with every backend",
            |t| {
                set(
                    t,
                    &format!("{START_ENV}/JOBS_QUEUE_URL"),
                    r#ref("JobsQueue"),
                )
            },
            "gets JOBS_QUEUE_URL",
        ),
    ];
    assert_refuses(others, &t, others_cases);

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

const PATTERN: &str = "/Resources/MediaConvertJobStates/Properties/EventPattern";
const MEDIACONVERT_ROLE: &str = "/Resources/MediaConvertRole/Properties";
const MEDIACONVERT_S3: &str =
    "/Resources/MediaConvertRole/Properties/Policies/0/PolicyDocument/Statement";

#[test]
fn mediaconvert_jobs_get_their_role_and_their_final_states_reach_the_topic() {
    let t = template();
    assert_eq!(mediaconvert_problems(&t), Vec::<String>::new());

    let cases: &[Case] = &[
        (
            "TranscoderBackend does not allow MediaConvert",
            |t| {
                set(
                    t,
                    "/Parameters/TranscoderBackend/AllowedValues",
                    json!(["Lambda", "ElasticTranscoder"]),
                )
            },
            "TranscoderBackend allows",
        ),
        (
            "the rule forgets CANCELED",
            |t| {
                set(
                    t,
                    &format!("{PATTERN}/detail/status"),
                    json!(["COMPLETE", "ERROR", "PROGRESSING", "STATUS_UPDATE"]),
                )
            },
            "not the final ones",
        ),
        (
            "the rule forgets the progress updates",
            |t| {
                set(
                    t,
                    &format!("{PATTERN}/detail/status"),
                    json!(["COMPLETE", "ERROR", "CANCELED", "PROGRESSING"]),
                )
            },
            "not the final ones",
        ),
        (
            "the rule forwards input information nobody sees, and pays for it",
            |t| {
                set(
                    t,
                    &format!("{PATTERN}/detail/status"),
                    json!([
                        "COMPLETE",
                        "ERROR",
                        "CANCELED",
                        "PROGRESSING",
                        "STATUS_UPDATE",
                        "INPUT_INFORMATION"
                    ]),
                )
            },
            "not the final ones",
        ),
        (
            "the rule matches another tag",
            |t| {
                set(
                    t,
                    &format!("{PATTERN}/detail/userMetadata"),
                    json!({"app": ["audio-transcoder"]}),
                )
            },
            "not start-transcode's JOB_TAG",
        ),
        (
            "the rule matches every job of the account",
            |t| remove(t, &format!("{PATTERN}/detail/userMetadata")),
            "not start-transcode's JOB_TAG",
        ),
        (
            "start-transcode tags its jobs with another value",
            |t| {
                let tag = json!(
                    {"Fn::If": ["UseMediaConvert", "audio-transcoder", r#ref("AWS::NoValue")]}
                );
                set(t, &format!("{START_ENV}/JOB_TAG"), tag)
            },
            "not start-transcode's JOB_TAG",
        ),
        (
            "the rule matches another service's events",
            |t| set(t, &format!("{PATTERN}/source"), json!(["aws.mediapackage"])),
            "does not match MediaConvert job state changes",
        ),
        (
            "the rule sends to the function, not the topic",
            |t| {
                let target = "/Resources/MediaConvertJobStates/Properties/Targets/0/Arn";
                set(
                    t,
                    target,
                    json!({"Fn::GetAtt": ["RecordCompletionFunction", "Arn"]}),
                )
            },
            "not to record-completion's topic",
        ),
        (
            "the topic lets EventBridge publish for any rule",
            |t| {
                let statement = "/Resources/CompletionTopicPolicy/Properties/PolicyDocument/\
                                 Statement/2/Fn::If/1";
                remove(t, &format!("{statement}/Condition"))
            },
            "does not let events.amazonaws.com publish",
        ),
        (
            "the topic is encrypted with the AWS managed key",
            |t| {
                let key = "/Resources/CompletionTopic/Properties/KmsMasterKeyId";
                set(t, key, json!("alias/aws/sns"))
            },
            "AWS managed key cannot",
        ),
        (
            "EventBridge may not generate data keys with the topic's key",
            |t| {
                let events =
                    "/Resources/CompletionTopicKey/Properties/KeyPolicy/Statement/1/Action";
                set(t, events, json!("kms:Decrypt"))
            },
            "AWS managed key cannot",
        ),
        (
            "MediaConvert may write anywhere in the bucket",
            |t| {
                let anywhere = json!({"Fn::Sub": "${MediaBucket.Arn}/*"});
                set(t, &format!("{MEDIACONVERT_S3}/1/Resource"), anywhere)
            },
            "nothing else",
        ),
        (
            "MediaConvert may delete uploads",
            |t| {
                let delete = json!(["s3:GetObject", "s3:DeleteObject"]);
                set(t, &format!("{MEDIACONVERT_S3}/0/Action"), delete)
            },
            "allows s3:DeleteObject",
        ),
        (
            "MediaConvert's role is assumed by Lambda",
            |t| {
                let trust =
                    format!("{MEDIACONVERT_ROLE}/AssumeRolePolicyDocument/Statement/0/Principal");
                set(t, &trust, json!({"Service": "lambda.amazonaws.com"}))
            },
            "not assumed by MediaConvert",
        ),
        (
            "start-transcode passes its own role, not MediaConvert's",
            |t| {
                let pass = "/Resources/StartTranscodeRole/Properties/Policies/0/PolicyDocument/\
                            Statement/4/Fn::If/1/Resource";
                set(
                    t,
                    pass,
                    json!({"Fn::GetAtt": ["StartTranscodeRole", "Arn"]}),
                )
            },
            "may not pass MediaConvertRole",
        ),
    ];
    assert_refuses(mediaconvert_problems, &t, cases);
}
