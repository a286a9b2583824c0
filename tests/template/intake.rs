//! `template.yaml`: a burst of uploads waits in the intake queue instead of failing.
//!
//! The bucket notifies an encrypted SQS queue that only this bucket, in this account, may send to;
//! start-transcode consumes it in batches, reporting the messages it could not start, at a bounded
//! concurrency; a message still not started after an hour of receives moves to an encrypted
//! dead-letter queue that raises an alarm; and the old direct S3 → Lambda path is gone. Every check
//! runs on the real template and on the stack each backend deploys (nothing wrong), and on copies
//! broken the ways that matter (the check objects).

use serde_json::{Value, json};
use system_tests::template::{
    CONSUME, Case, arn_of, assert_passes_deployed, assert_refuses, bucket_arn_by_name, events,
    grants, number, policies_of, queue_notifications, r#ref, remove, resource, resources_of_type,
    set, strings, template,
};

const QUEUE: &str = "IntakeQueue";
const DEAD_LETTERS: &str = "IntakeDeadLetterQueue";
const START: &str = "StartTranscodeFunction";
/// How long a throttled transcoder or DynamoDB must be ridden out before an upload is handed to
/// an operator.
const AN_HOUR_SECONDS: u64 = 3600;

/// The receives a message needs to still be received an hour after the first, one every
/// visibility timeout: the first at 0 s, the n-th at (n - 1) × timeout.
fn receives_in_an_hour(visibility_timeout: u64) -> u64 {
    AN_HOUR_SECONDS.div_ceil(visibility_timeout.max(1)) + 1
}

/// The queue's policy documents.
fn policies_of_queue<'a>(t: &'a Value, queue: &str) -> Vec<&'a Value> {
    resources_of_type(t, "AWS::SQS::QueuePolicy")
        .into_iter()
        .filter(|(_, p)| {
            p["Properties"]["Queues"]
                .as_array()
                .is_some_and(|queues| queues.contains(&r#ref(queue)))
        })
        .map(|(_, p)| &p["Properties"]["PolicyDocument"])
        .collect()
}

// ------------------------------------------------------------------------------------------ checks

/// Uploads under the input prefix are announced to the intake queue, and to nothing else: no
/// Lambda target, no S3 event on start-transcode, no asynchronous retries, no permission for S3
/// to invoke a function. The bucket waits for the queue's policy, which S3 checks when the
/// notification is set.
fn notification_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let notifications = queue_notifications(t);
    if notifications.len() != 1 {
        problems.push(format!(
            "MediaBucket notifies {} queues, not the intake queue alone",
            notifications.len()
        ));
    }
    for notification in notifications {
        if notification["Queue"] != arn_of(QUEUE) {
            problems.push(format!(
                "MediaBucket notifies {}, not {QUEUE}",
                notification["Queue"]
            ));
        }
        if notification["Event"] != "s3:ObjectCreated:*" {
            problems.push(format!(
                "MediaBucket notifies {}, not s3:ObjectCreated:*",
                notification["Event"]
            ));
        }
        let rules = &notification["Filter"]["S3Key"]["Rules"];
        if *rules != json!([{"Name": "prefix", "Value": r#ref("InputPrefix")}]) {
            problems.push(format!(
                "the notification's filter is {rules}, not the prefix InputPrefix alone"
            ));
        }
    }
    let configuration = &resource(t, "MediaBucket")["Properties"]["NotificationConfiguration"];
    for other in [
        "LambdaConfigurations",
        "TopicConfigurations",
        "EventBridgeConfiguration",
    ] {
        if !configuration[other].is_null() {
            problems.push(format!("MediaBucket also has {other}"));
        }
    }
    if !strings(&resource(t, "MediaBucket")["DependsOn"]).contains(&"IntakeQueuePolicy") {
        problems.push(
            "MediaBucket does not depend on IntakeQueuePolicy: S3 may refuse the notification"
                .into(),
        );
    }
    let start = resource(t, START);
    let direct = events(start, "S3");
    if !direct.is_empty() {
        problems.push(format!(
            "start-transcode still has the S3 events {:?}",
            direct.iter().map(|(name, _)| name).collect::<Vec<_>>()
        ));
    }
    if !start["Properties"]["EventInvokeConfig"].is_null() {
        problems.push("start-transcode still has an EventInvokeConfig for S3's invocations".into());
    }
    for (id, permission) in resources_of_type(t, "AWS::Lambda::Permission") {
        if permission["Properties"]["Principal"] == "s3.amazonaws.com" {
            problems.push(format!("{id} still lets S3 invoke a function"));
        }
    }
    problems
}

/// Only this stack's bucket, in this account, may send to the intake queue, and nothing else is
/// allowed; plain HTTP is refused.
fn queue_policy_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let policies = policies_of_queue(t, QUEUE);
    if policies.len() != 1 {
        problems.push(format!(
            "{} queue policies name {QUEUE}, not one",
            policies.len()
        ));
    }
    let bucket = bucket_arn_by_name(t);
    if bucket.is_null() {
        problems.push("MediaBucket's BucketName is not a name a policy can spell".into());
    }
    let expected = json!({
        "ArnEquals": {"aws:SourceArn": bucket},
        "StringEquals": {"aws:SourceAccount": r#ref("AWS::AccountId")}
    });
    for document in policies {
        let statements = document["Statement"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let allowed: Vec<&Value> = statements
            .iter()
            .filter(|s| s["Effect"] == "Allow")
            .collect();
        let from_the_bucket = |s: &&Value| {
            s["Principal"] == json!({"Service": "s3.amazonaws.com"})
                && strings(&s["Action"]) == ["sqs:SendMessage"]
                && s["Resource"] == arn_of(QUEUE)
                && s["Condition"] == expected
        };
        if allowed.is_empty() || !allowed.iter().all(from_the_bucket) {
            problems.push(format!(
                "{QUEUE}'s policy allows {allowed:?}: it must let s3.amazonaws.com send for \
                 MediaBucket (aws:SourceArn) in this account (aws:SourceAccount) and allow \
                 nothing else"
            ));
        }
        let denies_plain_http = statements.iter().any(|s| {
            s["Effect"] == "Deny"
                && s["Condition"] == json!({"Bool": {"aws:SecureTransport": "false"}})
        });
        if !denies_plain_http {
            problems.push(format!("{QUEUE}'s policy does not refuse plain HTTP"));
        }
    }
    problems
}

/// Both queues are encrypted at rest; the intake queue with SQS-managed keys, the one encryption S3
/// can send to without a key policy of the stack's (the AWS managed key serves only principals of
/// the account).
fn encryption_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let intake = &resource(t, QUEUE)["Properties"];
    if intake["SqsManagedSseEnabled"] != true || !intake["KmsMasterKeyId"].is_null() {
        problems.push(format!(
            "{QUEUE} is not encrypted with SQS-managed keys (SqsManagedSseEnabled {}, \
             KmsMasterKeyId {}): S3 could not send to it, or it is not encrypted",
            intake["SqsManagedSseEnabled"], intake["KmsMasterKeyId"]
        ));
    }
    let dead_letters = &resource(t, DEAD_LETTERS)["Properties"];
    if dead_letters["KmsMasterKeyId"].is_null() && dead_letters["SqsManagedSseEnabled"] != true {
        problems.push(format!("{DEAD_LETTERS} is not encrypted"));
    }
    problems
}

/// A message is received at least an hour's worth of times, one receive every visibility
/// timeout (six times start-transcode's timeout or more, as AWS advises for an event source),
/// then moves to the dead-letter queue, which keeps it longer than the intake queue would and
/// raises an alarm while anything waits in it.
fn redrive_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let queue = &resource(t, QUEUE)["Properties"];
    let timeout = number(&resource(t, START)["Properties"]["Timeout"]).unwrap_or(u64::MAX);
    let visibility = number(&queue["VisibilityTimeout"]).unwrap_or(0);
    if visibility < timeout.saturating_mul(6) {
        problems.push(format!(
            "{QUEUE}'s visibility timeout {} is under six times start-transcode's timeout ({timeout} s)",
            queue["VisibilityTimeout"]
        ));
    }
    let redrive = &queue["RedrivePolicy"];
    if redrive["deadLetterTargetArn"] != arn_of(DEAD_LETTERS) {
        problems.push(format!(
            "{QUEUE} redrives to {}, not {DEAD_LETTERS}",
            redrive["deadLetterTargetArn"]
        ));
    }
    let needed = receives_in_an_hour(visibility);
    let count = &redrive["maxReceiveCount"];
    // A parameter's default and its least allowed value both; a number as it is.
    let bounds: Vec<(String, Option<u64>)> = match count["Ref"].as_str() {
        Some(name) => ["Default", "MinValue"]
            .into_iter()
            .map(|bound| {
                let value = &t["Parameters"][name][bound];
                (format!("parameter {name}'s {bound}"), number(value))
            })
            .collect(),
        None => vec![(format!("maxReceiveCount {count}"), number(count))],
    };
    for (what, value) in bounds {
        if value.is_none_or(|v| v < needed) {
            problems.push(format!(
                "{what} is {value:?}: under the {needed} receives an hour takes at \
                 {visibility} s a receive"
            ));
        }
    }
    let kept = |id: &str| number(&resource(t, id)["Properties"]["MessageRetentionPeriod"]);
    // A moved message keeps its first enqueue time, so the dead-letter queue must keep longer.
    if kept(DEAD_LETTERS).unwrap_or(0) <= kept(QUEUE).unwrap_or(345_600) {
        problems.push(format!(
            "{DEAD_LETTERS} keeps messages {:?} s, not longer than {QUEUE} ({:?} s)",
            kept(DEAD_LETTERS),
            kept(QUEUE)
        ));
    }
    let watched = resources_of_type(t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .any(|(_, alarm)| {
            let alarm = &alarm["Properties"];
            alarm["Namespace"] == "AWS/SQS"
                && alarm["MetricName"] == "NumberOfMessagesReceived"
                && alarm["Statistic"] == "Sum"
                && alarm["Dimensions"]
                    == json!([{"Name": "QueueName",
                               "Value": {"Fn::GetAtt": [DEAD_LETTERS, "QueueName"]}}])
                && alarm["Threshold"] == 0
                && alarm["ComparisonOperator"] == "GreaterThanThreshold"
        });
    if !watched {
        problems.push(format!(
            "no alarm goes off when a message reaches {DEAD_LETTERS} (start-transcode takes it at once)"
        ));
    }
    problems
}

/// start-transcode takes the intake queue in batches gathered for a few seconds, reports the
/// messages it could not start (so the others are not redelivered), and runs at most
/// StartMaxConcurrency at once.
fn mapping_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let start = resource(t, START);
    let all = start["Properties"]["Events"]
        .as_object()
        .map(|e| e.len())
        .unwrap_or(0);
    let sqs = events(start, "SQS");
    if all != 2 || sqs.len() != 2 {
        problems.push(format!(
            "start-transcode has {all} events, {} on SQS: not the intake queue and its dead-letter queue",
            sqs.len()
        ));
    }
    let told = &start["Properties"]["Environment"]["Variables"]["INTAKE_DEAD_LETTER_QUEUE_ARN"];
    if *told != arn_of(DEAD_LETTERS) {
        problems.push(format!(
            "start-transcode is told INTAKE_DEAD_LETTER_QUEUE_ARN {told}, not {DEAD_LETTERS}'s: \
             its owners would never hear of an upload that could not be started"
        ));
    }
    let last = &start["Properties"]["Environment"]["Variables"]["INTAKE_MAX_RECEIVES"];
    if *last != json!({"Ref": "IntakeMaxReceives"}) {
        problems.push(format!(
            "start-transcode is told INTAKE_MAX_RECEIVES {last}, not the redrive's IntakeMaxReceives: \
             the last error of an upload that could not start would not reach its owner"
        ));
    }
    let share = &start["Properties"]["Environment"]["Variables"]["START_MAX_CONCURRENCY"];
    if *share != json!({"Ref": "StartMaxConcurrency"}) {
        problems.push(format!(
            "start-transcode is told START_MAX_CONCURRENCY {share}, not the mapping's StartMaxConcurrency: \
             its instances together would pace their jobs above or below TranscoderJobsPerSecond"
        ));
    }
    let dead = sqs
        .iter()
        .filter(|(_, e)| e["Queue"] == arn_of(DEAD_LETTERS));
    if dead.clone().count() != 1 {
        problems.push(format!("start-transcode does not read {DEAD_LETTERS}"));
    }
    for (name, event) in dead {
        if strings(&event["FunctionResponseTypes"]) != ["ReportBatchItemFailures"] {
            problems.push(format!("{name} does not ReportBatchItemFailures"));
        }
    }
    let intake = sqs
        .iter()
        .filter(|(_, e)| e["Queue"] != arn_of(DEAD_LETTERS));
    let others = intake.clone().count();
    if others != 1 {
        problems.push(format!(
            "start-transcode reads {others} queues besides {DEAD_LETTERS}: not {QUEUE} once"
        ));
    }
    for (name, event) in intake {
        if event["Queue"] != arn_of(QUEUE) {
            problems.push(format!("{name} consumes {}, not {QUEUE}", event["Queue"]));
        }
        if number(&event["BatchSize"]).is_none_or(|n| !(2..=10).contains(&n)) {
            problems.push(format!(
                "{name} takes {} messages at a time, not a batch of up to 10",
                event["BatchSize"]
            ));
        }
        if number(&event["MaximumBatchingWindowInSeconds"]).is_none_or(|s| !(1..=10).contains(&s)) {
            problems.push(format!(
                "{name}'s batching window is {} s, not a few seconds",
                event["MaximumBatchingWindowInSeconds"]
            ));
        }
        if strings(&event["FunctionResponseTypes"]) != ["ReportBatchItemFailures"] {
            problems.push(format!(
                "{name} does not ReportBatchItemFailures: one throttled start would redeliver \
                 the batch"
            ));
        }
        if event["ScalingConfig"]["MaximumConcurrency"] != r#ref("StartMaxConcurrency") {
            problems.push(format!(
                "{name} runs at most {} at once, not the parameter StartMaxConcurrency",
                event["ScalingConfig"]["MaximumConcurrency"]
            ));
        }
    }
    let parameter = &t["Parameters"]["StartMaxConcurrency"];
    // SQS's MaximumConcurrency is 2 at least.
    if number(&parameter["MinValue"]).is_none_or(|n| n < 2)
        || number(&parameter["Default"]).is_none_or(|n| n < 2)
    {
        problems.push(format!(
            "parameter StartMaxConcurrency allows {} and defaults to {}: SQS's least is 2",
            parameter["MinValue"], parameter["Default"]
        ));
    }
    problems
}

/// start-transcode's role consumes the intake queue and no other; nothing more of it.
fn consumer_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let policies = policies_of(t, "StartTranscodeRole");
    let mut consumed = Vec::new();
    for (actions, resource) in grants(&policies, "sqs:") {
        let consumes = actions
            .iter()
            .any(|a| CONSUME.contains(a) || a.contains('*'));
        if !consumes {
            continue;
        }
        let mut sorted = actions.clone();
        sorted.sort_unstable();
        let mut expected = CONSUME.to_vec();
        expected.sort_unstable();
        let queue = [QUEUE, DEAD_LETTERS]
            .into_iter()
            .find(|q| *resource == arn_of(q));
        match queue {
            Some(queue) if sorted == expected => consumed.push(queue),
            _ => problems.push(format!(
                "start-transcode's role is granted {actions:?} on {resource}: it may consume \
                 {QUEUE} only (and {DEAD_LETTERS}), with {CONSUME:?}"
            )),
        }
    }
    for queue in [QUEUE, DEAD_LETTERS] {
        if !consumed.contains(&queue) {
            problems.push(format!("start-transcode's role may not consume {queue}"));
        }
    }
    problems
}

// ------------------------------------------------------------------------------------------- tests

const NOTIFICATION: &str =
    "/Resources/MediaBucket/Properties/NotificationConfiguration/QueueConfigurations/0";
const ALLOW: &str = "/Resources/IntakeQueuePolicy/Properties/PolicyDocument/Statement/1";
const INTAKE: &str = "/Resources/IntakeQueue/Properties";
const MAPPING: &str = "/Resources/StartTranscodeFunction/Properties/Events/Intake/Properties";
const CONSUMES: &str =
    "/Resources/StartTranscodeRole/Properties/Policies/0/PolicyDocument/Statement/6";

#[test]
fn uploads_are_announced_to_the_intake_queue_and_nothing_else() {
    let t = template();
    assert_eq!(notification_problems(&t), Vec::<String>::new());
    assert_passes_deployed(notification_problems, &t);
    let cases: &[Case] = &[
        (
            "the bucket notifies the dead-letter queue",
            |t| {
                let queue = arn_of(DEAD_LETTERS);
                set(t, &format!("{NOTIFICATION}/Queue"), queue)
            },
            "not IntakeQueue",
        ),
        (
            "the bucket notifies no queue",
            |t| {
                remove(
                    t,
                    "/Resources/MediaBucket/Properties/NotificationConfiguration",
                )
            },
            "0 queues",
        ),
        (
            "plain PUTs only, no multipart uploads",
            |t| {
                let put = json!("s3:ObjectCreated:Put");
                set(t, &format!("{NOTIFICATION}/Event"), put)
            },
            "not s3:ObjectCreated:*",
        ),
        (
            "the filter is the output prefix",
            |t| {
                let rule = format!("{NOTIFICATION}/Filter/S3Key/Rules/0/Value");
                set(t, &rule, r#ref("OutputPrefix"))
            },
            "filter",
        ),
        (
            "the bucket also invokes start-transcode",
            |t| {
                let lambda = json!([{"Event": "s3:ObjectCreated:*",
                                     "Function": arn_of(START)}]);
                let at = "/Resources/MediaBucket/Properties/NotificationConfiguration";
                set(t, &format!("{at}/LambdaConfigurations"), lambda)
            },
            "LambdaConfigurations",
        ),
        (
            "the bucket does not wait for the queue's policy",
            |t| remove(t, "/Resources/MediaBucket/DependsOn"),
            "IntakeQueuePolicy",
        ),
        (
            "start-transcode keeps its S3 event",
            |t| {
                let upload = json!({"Type": "S3", "Properties": {
                    "Bucket": r#ref("MediaBucket"), "Events": "s3:ObjectCreated:*"}});
                let at = "/Resources/StartTranscodeFunction/Properties/Events/Upload";
                set(t, at, upload)
            },
            "S3 events",
        ),
        (
            "start-transcode keeps its asynchronous retries",
            |t| {
                let config = json!({"MaximumRetryAttempts": 2});
                let at = "/Resources/StartTranscodeFunction/Properties/EventInvokeConfig";
                set(t, at, config)
            },
            "EventInvokeConfig",
        ),
        (
            "S3 may still invoke start-transcode",
            |t| {
                let permission = json!({"Type": "AWS::Lambda::Permission", "Properties": {
                    "Action": "lambda:InvokeFunction", "FunctionName": r#ref(START),
                    "Principal": "s3.amazonaws.com"}});
                set(t, "/Resources/UploadPermission", permission)
            },
            "lets S3 invoke",
        ),
    ];
    assert_refuses(notification_problems, &t, cases);
}

#[test]
fn only_this_bucket_in_this_account_may_send_to_the_intake_queue() {
    let t = template();
    assert_eq!(queue_policy_problems(&t), Vec::<String>::new());
    assert_passes_deployed(queue_policy_problems, &t);
    let cases: &[Case] = &[
        (
            "the queue has no policy",
            |t| remove(t, "/Resources/IntakeQueuePolicy"),
            "0 queue policies",
        ),
        (
            "any bucket may send",
            |t| remove(t, &format!("{ALLOW}/Condition/ArnEquals")),
            "(aws:SourceArn)",
        ),
        (
            "another bucket may send",
            |t| {
                let other = json!("arn:aws:s3:::someone-elses-bucket");
                set(
                    t,
                    &format!("{ALLOW}/Condition/ArnEquals/aws:SourceArn"),
                    other,
                )
            },
            "(aws:SourceArn)",
        ),
        (
            "a bucket of the same name in another account may send",
            |t| remove(t, &format!("{ALLOW}/Condition/StringEquals")),
            "(aws:SourceAccount)",
        ),
        (
            "SNS may send",
            |t| {
                let sns = json!({"Service": "sns.amazonaws.com"});
                set(t, &format!("{ALLOW}/Principal"), sns)
            },
            "allow nothing else",
        ),
        (
            "S3 may do anything to the queue",
            |t| set(t, &format!("{ALLOW}/Action"), json!("sqs:*")),
            "allow nothing else",
        ),
        (
            "plain HTTP is allowed",
            |t| {
                let at = "/Resources/IntakeQueuePolicy/Properties/PolicyDocument/Statement/0";
                remove(t, &format!("{at}/Condition"))
            },
            "plain HTTP",
        ),
        (
            "the bucket's name is not one a policy can spell",
            |t| {
                let name = "/Resources/MediaBucket/Properties/BucketName";
                set(
                    t,
                    name,
                    json!({"Fn::Sub": "audio-transcoder-media-${AWS::StackName}"}),
                )
            },
            "can spell",
        ),
    ];
    assert_refuses(queue_policy_problems, &t, cases);
}

#[test]
fn both_intake_queues_are_encrypted() {
    let t = template();
    assert_eq!(encryption_problems(&t), Vec::<String>::new());
    assert_passes_deployed(encryption_problems, &t);
    let cases: &[Case] = &[
        (
            "the intake queue is not encrypted",
            |t| remove(t, &format!("{INTAKE}/SqsManagedSseEnabled")),
            "IntakeQueue is not encrypted",
        ),
        (
            "the intake queue uses the AWS managed key, which S3 cannot",
            |t| {
                remove(t, &format!("{INTAKE}/SqsManagedSseEnabled"));
                set(
                    t,
                    &format!("{INTAKE}/KmsMasterKeyId"),
                    json!("alias/aws/sqs"),
                );
            },
            "S3 could not send",
        ),
        (
            "the dead-letter queue is not encrypted",
            |t| {
                let key = "/Resources/IntakeDeadLetterQueue/Properties/KmsMasterKeyId";
                remove(t, key)
            },
            "IntakeDeadLetterQueue is not encrypted",
        ),
    ];
    assert_refuses(encryption_problems, &t, cases);
}

#[test]
fn an_upload_is_retried_for_an_hour_then_kept_with_an_alarm() {
    let t = template();
    assert_eq!(redrive_problems(&t), Vec::<String>::new());
    assert_passes_deployed(redrive_problems, &t);
    // The arithmetic itself: 185 s a receive, the 21st is the first past an hour.
    assert_eq!(receives_in_an_hour(185), 21);
    assert_eq!(receives_in_an_hour(180), 21);
    let cases: &[Case] = &[
        (
            "no redrive",
            |t| remove(t, &format!("{INTAKE}/RedrivePolicy")),
            "redrives to null",
        ),
        (
            "three receives",
            |t| set(t, "/Parameters/IntakeMaxReceives/Default", json!(3)),
            "IntakeMaxReceives's Default",
        ),
        (
            "a deploy may choose three receives",
            |t| set(t, "/Parameters/IntakeMaxReceives/MinValue", json!(3)),
            "IntakeMaxReceives's MinValue",
        ),
        (
            "a fixed count of five",
            |t| {
                let count = format!("{INTAKE}/RedrivePolicy/maxReceiveCount");
                set(t, &count, json!(5))
            },
            "maxReceiveCount 5",
        ),
        (
            "a visibility timeout of two function timeouts",
            |t| set(t, &format!("{INTAKE}/VisibilityTimeout"), json!(60)),
            "six times",
        ),
        (
            "a slower function outgrows the visibility timeout",
            |t| {
                let timeout = "/Resources/StartTranscodeFunction/Properties/Timeout";
                set(t, timeout, json!(60))
            },
            "six times",
        ),
        (
            "a faster function and a shorter visibility timeout, with the same 21 receives",
            |t| {
                let timeout = "/Resources/StartTranscodeFunction/Properties/Timeout";
                set(t, timeout, json!(10));
                set(t, &format!("{INTAKE}/VisibilityTimeout"), json!(60));
            },
            "under the 61 receives",
        ),
        (
            "the dead-letter queue keeps messages no longer than the intake queue",
            |t| {
                let at = "/Resources/IntakeDeadLetterQueue/Properties/MessageRetentionPeriod";
                set(t, at, json!(345_600))
            },
            "not longer than",
        ),
        (
            "no alarm on the dead-letter queue",
            |t| remove(t, "/Resources/IntakeDeadLetterAlarm"),
            "no alarm",
        ),
    ];
    assert_refuses(redrive_problems, &t, cases);
}

#[test]
fn start_transcode_takes_batches_reports_failures_and_bounds_its_concurrency() {
    let t = template();
    assert_eq!(mapping_problems(&t), Vec::<String>::new());
    assert_passes_deployed(mapping_problems, &t);
    let cases: &[Case] = &[
        (
            "no event source on the intake queue",
            |t| remove(t, "/Resources/StartTranscodeFunction/Properties/Events"),
            "0 events",
        ),
        (
            "the dead-letter queue is not read",
            |t| {
                remove(
                    t,
                    "/Resources/StartTranscodeFunction/Properties/Events/DeadIntake",
                )
            },
            "does not read IntakeDeadLetterQueue",
        ),
        (
            "start-transcode is not told its dead-letter queue",
            |t| {
                remove(
                    t,
                    "/Resources/StartTranscodeFunction/Properties/Environment/Variables/INTAKE_DEAD_LETTER_QUEUE_ARN",
                )
            },
            "never hear of an upload",
        ),
        (
            "start-transcode does not know the last receive",
            |t| {
                set(
                    t,
                    "/Resources/StartTranscodeFunction/Properties/Environment/Variables/INTAKE_MAX_RECEIVES",
                    json!(3),
                )
            },
            "the last error",
        ),
        (
            "the instances do not know how many share the rate",
            |t| {
                remove(
                    t,
                    "/Resources/StartTranscodeFunction/Properties/Environment/Variables/START_MAX_CONCURRENCY",
                )
            },
            "pace their jobs",
        ),
        (
            "the dead-letter queue's failures redeliver the batch",
            |t| {
                remove(
                    t,
                    "/Resources/StartTranscodeFunction/Properties/Events/DeadIntake/Properties/FunctionResponseTypes",
                )
            },
            "DeadIntake does not ReportBatchItemFailures",
        ),
        (
            "the mapping consumes the dead-letter queue",
            |t| set(t, &format!("{MAPPING}/Queue"), arn_of(DEAD_LETTERS)),
            "not IntakeQueue",
        ),
        (
            "one message at a time",
            |t| set(t, &format!("{MAPPING}/BatchSize"), json!(1)),
            "batch of up to 10",
        ),
        (
            "no batching window",
            |t| remove(t, &format!("{MAPPING}/MaximumBatchingWindowInSeconds")),
            "batching window",
        ),
        (
            "a five-minute batching window",
            |t| {
                let window = format!("{MAPPING}/MaximumBatchingWindowInSeconds");
                set(t, &window, json!(300))
            },
            "batching window",
        ),
        (
            "a failed start redelivers the whole batch",
            |t| remove(t, &format!("{MAPPING}/FunctionResponseTypes")),
            "ReportBatchItemFailures",
        ),
        (
            "unbounded concurrency",
            |t| remove(t, &format!("{MAPPING}/ScalingConfig")),
            "StartMaxConcurrency",
        ),
        (
            "a fixed concurrency",
            |t| {
                let at = format!("{MAPPING}/ScalingConfig/MaximumConcurrency");
                set(t, &at, json!(50))
            },
            "StartMaxConcurrency",
        ),
        (
            "the parameter allows one",
            |t| set(t, "/Parameters/StartMaxConcurrency/MinValue", json!(1)),
            "SQS's least is 2",
        ),
    ];
    assert_refuses(mapping_problems, &t, cases);
}

#[test]
fn start_transcodes_role_consumes_the_intake_queue_only() {
    let t = template();
    assert_eq!(consumer_problems(&t), Vec::<String>::new());
    assert_passes_deployed(consumer_problems, &t);
    let cases: &[Case] = &[
        (
            "the role may not consume",
            |t| {
                let statements =
                    "/Resources/StartTranscodeRole/Properties/Policies/0/PolicyDocument/Statement";
                let items = t.pointer_mut(statements).and_then(Value::as_array_mut);
                items.expect("the role's statements").pop();
            },
            "may not consume",
        ),
        (
            "the role consumes every queue",
            |t| set(t, &format!("{CONSUMES}/Resource"), json!("*")),
            "IntakeQueue only",
        ),
        (
            "the role consumes the jobs queue too",
            |t| {
                let queues = json!([arn_of(QUEUE), arn_of("JobsQueue")]);
                set(t, &format!("{CONSUMES}/Resource"), queues)
            },
            "IntakeQueue only",
        ),
        (
            "the role may purge the queue",
            |t| {
                let mut actions = CONSUME.to_vec();
                actions.push("sqs:PurgeQueue");
                set(t, &format!("{CONSUMES}/Action"), json!(actions))
            },
            "IntakeQueue only",
        ),
        (
            "the role may do anything to the queue",
            |t| set(t, &format!("{CONSUMES}/Action"), json!("sqs:*")),
            "IntakeQueue only",
        ),
    ];
    assert_refuses(consumer_problems, &t, cases);
}
