//! `template.yaml`: no event is lost on its way, and the services that carry one act for this
//! stack only.
//!
//! A failed completion event is retried twice, then kept in an encrypted queue (uploads wait in
//! the intake queue instead: tests/template_intake.rs), and start-transcode ends before another
//! invocation may take over its claims. EventBridge delivers
//! each MediaConvert job state once: the rule's target retries, then keeps what it could not
//! deliver in a dead-letter queue that only this rule may write to; the topic's key serves
//! EventBridge for this topic alone; record-completion is told the output prefix, so that its
//! messages link only to files in the owner's folder. Every check runs on the real template
//! (nothing wrong) and on copies broken the ways that matter (the check objects).

use serde_json::{Value, json};
use system_tests::template::{
    Case, arn_of, assert_passes_deployed, assert_refuses, r#ref, remove, resource, set, statements,
    strings, template,
};
use transcoder_core::CLAIM_LEASE;

/// The functions invoked asynchronously (by SNS): Lambda retries them, then keeps the event in
/// their failure queue. start-transcode is not one: its intake queue's mapping invokes it.
const ASYNCHRONOUS: &[&str] = &["RecordCompletionFunction"];

const RULE: &str = "MediaConvertJobStates";
const TARGET: &str = "/Resources/MediaConvertJobStates/Properties/Targets/0";
/// A job state is worth a day of retries: EventBridge's maximum event age.
const MAXIMUM_EVENT_AGE_SECONDS: u64 = 86_400;
/// EventBridge's maximum retry count, so that the age, not the count, ends the retries.
const MAXIMUM_RETRY_ATTEMPTS: u64 = 185;
/// SQS's maximum retention, as the other failure queues keep their events.
const FOURTEEN_DAYS_SECONDS: u64 = 1_209_600;
const EVENTS: &str = "events.amazonaws.com";

/// The allowing statements of a policy document, for one service principal.
fn allowed_for<'a>(document: &'a Value, service: &str) -> Vec<&'a Value> {
    document["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["Effect"] == "Allow" && s["Principal"] == json!({"Service": service}))
        .collect()
}

// ------------------------------------------------------------------------------------------ checks

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

/// Every target of the rule retries for a day and then keeps the event in a 14-day, encrypted
/// queue of the stack's, which exists exactly when the rule does and whose URL is an output.
fn retry_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let rule = resource(t, RULE);
    let targets = rule["Properties"]["Targets"].as_array();
    if targets.is_none_or(|targets| targets.is_empty()) {
        problems.push(format!("{RULE} has no targets"));
    }
    for target in targets.into_iter().flatten() {
        let id = target["Id"].as_str().unwrap_or_default();
        let retry = &target["RetryPolicy"];
        if retry["MaximumEventAgeInSeconds"] != MAXIMUM_EVENT_AGE_SECONDS
            || retry["MaximumRetryAttempts"] != MAXIMUM_RETRY_ATTEMPTS
        {
            problems.push(format!(
                "{RULE}'s target {id} retries with {retry}, not for {MAXIMUM_EVENT_AGE_SECONDS} s \
                 and up to {MAXIMUM_RETRY_ATTEMPTS} times"
            ));
        }
        let dead_letters = &target["DeadLetterConfig"]["Arn"];
        let queue_id = dead_letters["Fn::GetAtt"][0].as_str().unwrap_or_default();
        let queue = resource(t, queue_id);
        if queue["Type"] != "AWS::SQS::Queue" || *dead_letters != arn_of(queue_id) {
            problems.push(format!(
                "{RULE}'s target {id} has no dead-letter queue of the stack ({dead_letters})"
            ));
            continue;
        }
        let properties = &queue["Properties"];
        if properties["MessageRetentionPeriod"] != FOURTEEN_DAYS_SECONDS {
            problems.push(format!(
                "{queue_id} keeps events {} s, not 14 days",
                properties["MessageRetentionPeriod"]
            ));
        }
        if properties["KmsMasterKeyId"].is_null() && properties["SqsManagedSseEnabled"] != true {
            problems.push(format!("{queue_id} is not encrypted"));
        }
        if queue["Condition"] != rule["Condition"] {
            problems.push(format!(
                "{queue_id} exists under {}, {RULE} under {}",
                queue["Condition"], rule["Condition"]
            ));
        }
        let outputs = t["Outputs"].as_object().into_iter().flatten();
        if !outputs
            .into_iter()
            .any(|(_, output)| output["Value"] == r#ref(queue_id))
        {
            problems.push(format!("no output gives {queue_id}'s URL"));
        }
    }
    problems
}

/// The dead-letter queue's policy lets EventBridge send to it for this rule only, and nothing
/// else in.
fn dead_letter_policy_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let queue_id = t
        .pointer(&format!("{TARGET}/DeadLetterConfig/Arn/Fn::GetAtt/0"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let policies: Vec<&Value> = t["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, r)| r)
        .filter(|r| {
            r["Type"] == "AWS::SQS::QueuePolicy"
                && r["Properties"]["Queues"]
                    .as_array()
                    .is_some_and(|queues| queues.contains(&r#ref(queue_id)))
        })
        .collect();
    if policies.len() != 1 {
        problems.push(format!(
            "{} queue policies name the dead-letter queue {queue_id:?}, not one",
            policies.len()
        ));
    }
    for policy in policies {
        let document = &policy["Properties"]["PolicyDocument"];
        let allowed: Vec<&Value> = document["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["Effect"] == "Allow")
            .collect();
        let for_the_rule = |s: &&Value| {
            s["Principal"] == json!({"Service": EVENTS})
                && strings(&s["Action"]) == ["sqs:SendMessage"]
                && s["Resource"] == arn_of(queue_id)
                && s["Condition"] == json!({"ArnEquals": {"aws:SourceArn": arn_of(RULE)}})
        };
        if allowed.is_empty() || !allowed.iter().all(for_the_rule) {
            problems.push(format!(
                "{queue_id}'s policy allows {allowed:?}: it must let {EVENTS} send for {RULE} \
                 (aws:SourceArn) and allow nothing else"
            ));
        }
    }
    problems
}

/// EventBridge may use the topic's key for this stack's topic only. The SNS developer guide says
/// `aws:SourceArn` and `aws:SourceAccount` are not supported in a key policy for
/// EventBridge-to-encrypted topics, so the scope is the encryption context SNS sets: the topic's
/// ARN. A named topic lets the key name it without depending on it.
fn key_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let topic = resource(t, "CompletionTopic");
    let key_id = topic["Properties"]["KmsMasterKeyId"]["Fn::If"][1]["Fn::GetAtt"][0]
        .as_str()
        .unwrap_or_default();
    let Some(name) = topic["Properties"]["TopicName"]["Fn::Sub"].as_str() else {
        problems.push("CompletionTopic has no TopicName the key's policy can name".into());
        return problems;
    };
    let topic_arn = json!({
        "Fn::Sub": format!("arn:${{AWS::Partition}}:sns:${{AWS::Region}}:${{AWS::AccountId}}:{name}")
    });
    let statements = allowed_for(&resource(t, key_id)["Properties"]["KeyPolicy"], EVENTS);
    if statements.is_empty() {
        problems.push(format!("{key_id:?} does not let {EVENTS} use it"));
    }
    for statement in statements {
        let expected =
            json!({"StringEquals": {"kms:EncryptionContext:aws:sns:topicArn": topic_arn}});
        if statement["Condition"] != expected {
            problems.push(format!(
                "{key_id}'s statement for {EVENTS} has the condition {}, not {expected}: \
                 the key would serve EventBridge for any topic",
                statement["Condition"]
            ));
        }
    }
    problems
}

/// record-completion is told the prefix start-transcode writes under.
fn output_prefix_problems(t: &Value) -> Vec<String> {
    let variables =
        &resource(t, "RecordCompletionFunction")["Properties"]["Environment"]["Variables"];
    let start = &resource(t, "StartTranscodeFunction")["Properties"]["Environment"]["Variables"];
    let mut problems = Vec::new();
    for (function, value) in [
        ("RecordCompletionFunction", &variables["OUTPUT_PREFIX"]),
        ("StartTranscodeFunction", &start["OUTPUT_PREFIX"]),
    ] {
        if *value != r#ref("OutputPrefix") {
            problems.push(format!(
                "{function}'s OUTPUT_PREFIX is {value}, not the parameter OutputPrefix"
            ));
        }
    }
    problems
}

// ------------------------------------------------------------------------------------------- tests

const RECORD_CONFIG: &str = "/Resources/RecordCompletionFunction/Properties/EventInvokeConfig";
const QUEUE: &str = "/Resources/MediaConvertJobStatesFailures";
const DEAD_LETTER_POLICY: &str = "/Resources/MediaConvertJobStatesFailuresPolicy";
const DEAD_LETTER_STATEMENT: &str =
    "/Resources/MediaConvertJobStatesFailuresPolicy/Properties/PolicyDocument/Statement/1";
const KEY_STATEMENT: &str = "/Resources/CompletionTopicKey/Properties/KeyPolicy/Statement/1";
const RECORD_ENV: &str = "/Resources/RecordCompletionFunction/Properties/Environment/Variables";

#[test]
fn failed_events_are_retried_twice_then_kept() {
    let t = template();
    assert_eq!(failure_problems(&t), Vec::<String>::new());
    assert_passes_deployed(failure_problems, &t);

    let cases: &[Case] = &[
        (
            "record-completion is not retried",
            |t| {
                set(
                    t,
                    &format!("{RECORD_CONFIG}/MaximumRetryAttempts"),
                    json!(0),
                )
            },
            "retries 0 times",
        ),
        (
            "record-completion's event age is Lambda's default",
            |t| remove(t, &format!("{RECORD_CONFIG}/MaximumEventAgeInSeconds")),
            "event age",
        ),
        (
            "record-completion keeps no failed event",
            |t| remove(t, &format!("{RECORD_CONFIG}/DestinationConfig")),
            "no SQS on-failure destination",
        ),
        (
            "record-completion's failure queue is not encrypted",
            |t| {
                remove(
                    t,
                    "/Resources/RecordCompletionFailures/Properties/KmsMasterKeyId",
                )
            },
            "not encrypted",
        ),
        (
            "record-completion may send to another queue only",
            |t| {
                let policy = "/Resources/RecordCompletionRole/Properties/Policies/0/PolicyDocument";
                let send = format!("{policy}/Statement/2/Resource");
                set(
                    t,
                    &send,
                    json!({"Fn::GetAtt": ["IntakeDeadLetterQueue", "Arn"]}),
                )
            },
            "may not send",
        ),
        (
            "start-transcode outlives its claims",
            |t| {
                set(
                    t,
                    "/Resources/StartTranscodeFunction/Properties/Timeout",
                    json!(90),
                )
            },
            "claim lease",
        ),
    ];
    assert_refuses(failure_problems, &t, cases);
}

#[test]
fn undelivered_job_states_are_retried_for_a_day_then_kept() {
    let t = template();
    assert_eq!(retry_problems(&t), Vec::<String>::new());
    let cases: &[Case] = &[
        (
            "the target has no retry policy",
            |t| remove(t, &format!("{TARGET}/RetryPolicy")),
            "retries with null",
        ),
        (
            "the target gives up after three retries",
            |t| {
                set(
                    t,
                    &format!("{TARGET}/RetryPolicy/MaximumRetryAttempts"),
                    json!(3),
                )
            },
            "up to 185 times",
        ),
        (
            "the target has no dead-letter queue",
            |t| remove(t, &format!("{TARGET}/DeadLetterConfig")),
            "no dead-letter queue",
        ),
        (
            "the dead-letter queue is not the stack's",
            |t| {
                set(
                    t,
                    &format!("{TARGET}/DeadLetterConfig/Arn"),
                    json!("arn:aws:sqs:eu-west-1:123456789012:elsewhere"),
                )
            },
            "no dead-letter queue",
        ),
        (
            "the dead-letter queue keeps events four days",
            |t| {
                set(
                    t,
                    &format!("{QUEUE}/Properties/MessageRetentionPeriod"),
                    json!(345_600),
                )
            },
            "not 14 days",
        ),
        (
            "the dead-letter queue is not encrypted",
            |t| remove(t, &format!("{QUEUE}/Properties/SqsManagedSseEnabled")),
            "is not encrypted",
        ),
        (
            "the dead-letter queue exists without the rule",
            |t| remove(t, &format!("{QUEUE}/Condition")),
            "exists under null",
        ),
        (
            "no output gives the dead-letter queue",
            |t| remove(t, "/Outputs/MediaConvertJobStatesFailuresQueueUrl"),
            "no output gives",
        ),
    ];
    assert_refuses(retry_problems, &t, cases);
}

#[test]
fn only_the_rule_may_send_to_its_dead_letter_queue() {
    let t = template();
    assert_eq!(dead_letter_policy_problems(&t), Vec::<String>::new());
    let cases: &[Case] = &[
        (
            "the queue has no policy",
            |t| remove(t, DEAD_LETTER_POLICY),
            "0 queue policies",
        ),
        (
            "EventBridge may send for any rule",
            |t| remove(t, &format!("{DEAD_LETTER_STATEMENT}/Condition")),
            "(aws:SourceArn)",
        ),
        (
            "EventBridge may send for any rule of the account",
            |t| {
                set(
                    t,
                    &format!("{DEAD_LETTER_STATEMENT}/Condition"),
                    json!({"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}),
                )
            },
            "(aws:SourceArn)",
        ),
        (
            "SNS may send",
            |t| {
                set(
                    t,
                    &format!("{DEAD_LETTER_STATEMENT}/Principal"),
                    json!({"Service": "sns.amazonaws.com"}),
                )
            },
            "allow nothing else",
        ),
        (
            "EventBridge may do anything to the queue",
            |t| {
                set(
                    t,
                    &format!("{DEAD_LETTER_STATEMENT}/Action"),
                    json!("sqs:*"),
                )
            },
            "allow nothing else",
        ),
    ];
    assert_refuses(dead_letter_policy_problems, &t, cases);
}

#[test]
fn the_topic_key_serves_eventbridge_for_this_topic_only() {
    let t = template();
    assert_eq!(key_problems(&t), Vec::<String>::new());
    let cases: &[Case] = &[
        (
            "EventBridge may use the key for any topic",
            |t| remove(t, &format!("{KEY_STATEMENT}/Condition")),
            "for any topic",
        ),
        (
            "EventBridge may use the key for another topic",
            |t| {
                let other = "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:other";
                set(
                    t,
                    &format!(
                        "{KEY_STATEMENT}/Condition/StringEquals/\
                         kms:EncryptionContext:aws:sns:topicArn"
                    ),
                    json!({"Fn::Sub": other}),
                )
            },
            "for any topic",
        ),
        (
            "the topic has no name the key can name",
            |t| remove(t, "/Resources/CompletionTopic/Properties/TopicName"),
            "no TopicName",
        ),
        (
            "SNS, not EventBridge, may use the key",
            |t| {
                set(
                    t,
                    &format!("{KEY_STATEMENT}/Principal"),
                    json!({"Service": "sns.amazonaws.com"}),
                )
            },
            "does not let events.amazonaws.com use it",
        ),
    ];
    assert_refuses(key_problems, &t, cases);
}

#[test]
fn record_completion_is_told_the_output_prefix() {
    let t = template();
    assert_eq!(output_prefix_problems(&t), Vec::<String>::new());
    let cases: &[Case] = &[
        (
            "record-completion gets no OUTPUT_PREFIX",
            |t| remove(t, &format!("{RECORD_ENV}/OUTPUT_PREFIX")),
            "RecordCompletionFunction's OUTPUT_PREFIX is null",
        ),
        (
            "record-completion gets a fixed OUTPUT_PREFIX",
            |t| {
                set(
                    t,
                    &format!("{RECORD_ENV}/OUTPUT_PREFIX"),
                    json!("transcoded/"),
                )
            },
            "not the parameter OutputPrefix",
        ),
    ];
    assert_refuses(output_prefix_problems, &t, cases);
}
