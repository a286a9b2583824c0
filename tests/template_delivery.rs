//! `template.yaml`: a MediaConvert job's final state is never lost on its way to the owner, and
//! the services that carry it act for this stack only.
//!
//! EventBridge delivers each job state once: the rule's target retries, then keeps what it could
//! not deliver in a dead-letter queue that only this rule may write to; the topic's key serves
//! EventBridge for this topic alone; record-completion is told the output prefix, so that its
//! messages link only to files in the owner's folder. Every check runs on the real template
//! (nothing wrong) and on copies broken the ways that matter (the check objects).

use serde_json::{Value, json};
use system_tests::template::{assert_objects, broken, remove, set, template};

const RULE: &str = "MediaConvertJobStates";
const TARGET: &str = "/Resources/MediaConvertJobStates/Properties/Targets/0";
/// A job state is worth a day of retries: EventBridge's maximum event age.
const MAXIMUM_EVENT_AGE_SECONDS: u64 = 86_400;
/// EventBridge's maximum retry count, so that the age, not the count, ends the retries.
const MAXIMUM_RETRY_ATTEMPTS: u64 = 185;
/// SQS's maximum retention, as the other failure queues keep their events.
const FOURTEEN_DAYS_SECONDS: u64 = 1_209_600;
const EVENTS: &str = "events.amazonaws.com";

fn r#ref(name: &str) -> Value {
    json!({ "Ref": name })
}

fn arn_of(id: &str) -> Value {
    json!({ "Fn::GetAtt": [id, "Arn"] })
}

fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    &t["Resources"][id]
}

/// A string, or the strings of a list.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

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

#[test]
fn undelivered_job_states_are_retried_for_a_day_then_kept() {
    let t = template();
    assert_eq!(retry_problems(&t), Vec::<String>::new());
    let check = retry_problems;
    assert_objects(
        check,
        &broken(&t, |t| remove(t, &format!("{TARGET}/RetryPolicy"))),
        "retries with null",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{TARGET}/RetryPolicy/MaximumRetryAttempts"),
                json!(3),
            )
        }),
        "up to 185 times",
    );
    assert_objects(
        check,
        &broken(&t, |t| remove(t, &format!("{TARGET}/DeadLetterConfig"))),
        "no dead-letter queue",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{TARGET}/DeadLetterConfig/Arn"),
                json!("arn:aws:sqs:eu-west-1:123456789012:elsewhere"),
            )
        }),
        "no dead-letter queue",
    );
    let queue = "/Resources/MediaConvertJobStatesFailures";
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{queue}/Properties/MessageRetentionPeriod"),
                json!(345_600),
            )
        }),
        "not 14 days",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            remove(t, &format!("{queue}/Properties/SqsManagedSseEnabled"))
        }),
        "is not encrypted",
    );
    assert_objects(
        check,
        &broken(&t, |t| remove(t, &format!("{queue}/Condition"))),
        "exists under null",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            remove(t, "/Outputs/MediaConvertJobStatesFailuresQueueUrl")
        }),
        "no output gives",
    );
}

#[test]
fn only_the_rule_may_send_to_its_dead_letter_queue() {
    let t = template();
    assert_eq!(dead_letter_policy_problems(&t), Vec::<String>::new());
    let check = dead_letter_policy_problems;
    let policy = "/Resources/MediaConvertJobStatesFailuresPolicy";
    let statement = format!("{policy}/Properties/PolicyDocument/Statement/1");
    assert_objects(
        check,
        &broken(&t, |t| remove(t, policy)),
        "0 queue policies",
    );
    assert_objects(
        check,
        &broken(&t, |t| remove(t, &format!("{statement}/Condition"))),
        "(aws:SourceArn)",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{statement}/Condition"),
                json!({"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}),
            )
        }),
        "(aws:SourceArn)",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{statement}/Principal"),
                json!({"Service": "sns.amazonaws.com"}),
            )
        }),
        "allow nothing else",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(t, &format!("{statement}/Action"), json!("sqs:*"))
        }),
        "allow nothing else",
    );
}

#[test]
fn the_topic_key_serves_eventbridge_for_this_topic_only() {
    let t = template();
    assert_eq!(key_problems(&t), Vec::<String>::new());
    let check = key_problems;
    let statement = "/Resources/CompletionTopicKey/Properties/KeyPolicy/Statement/1";
    assert_objects(
        check,
        &broken(&t, |t| remove(t, &format!("{statement}/Condition"))),
        "for any topic",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            let other = "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:other";
            set(
                t,
                &format!(
                    "{statement}/Condition/StringEquals/kms:EncryptionContext:aws:sns:topicArn"
                ),
                json!({"Fn::Sub": other}),
            )
        }),
        "for any topic",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            remove(t, "/Resources/CompletionTopic/Properties/TopicName")
        }),
        "no TopicName",
    );
    assert_objects(
        check,
        &broken(&t, |t| {
            set(
                t,
                &format!("{statement}/Principal"),
                json!({"Service": "sns.amazonaws.com"}),
            )
        }),
        "does not let events.amazonaws.com use it",
    );
}

#[test]
fn record_completion_is_told_the_output_prefix() {
    let t = template();
    assert_eq!(output_prefix_problems(&t), Vec::<String>::new());
    let record = "/Resources/RecordCompletionFunction/Properties/Environment/Variables";
    assert_objects(
        output_prefix_problems,
        &broken(&t, |t| remove(t, &format!("{record}/OUTPUT_PREFIX"))),
        "RecordCompletionFunction's OUTPUT_PREFIX is null",
    );
    assert_objects(
        output_prefix_problems,
        &broken(&t, |t| {
            set(t, &format!("{record}/OUTPUT_PREFIX"), json!("transcoded/"))
        }),
        "not the parameter OutputPrefix",
    );
}
