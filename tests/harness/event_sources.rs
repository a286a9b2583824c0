//! Lambda's event sources, played by the harness against moto: queues and a topic subscribed to
//! one, and the SQS event-source mapping (receive a batch, invoke the function through the
//! Runtime API with the event Lambda builds, delete what succeeded, leave what the function
//! reported in `batchItemFailures` to come back after its visibility timeout, as Lambda does).

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};

use crate::Function;
use crate::moto::Moto;

/// An SQS queue of moto's.
#[derive(Debug, Clone)]
pub struct Queue {
    pub url: String,
    pub arn: String,
}

/// What one delivery of a batch came to.
#[derive(Debug, Default, PartialEq)]
pub struct Delivered {
    /// Messages handed to the function.
    pub received: usize,
    /// Message ids the function reported as failed: left on the queue.
    pub failed: Vec<String>,
    /// The function failed as a whole: nothing was deleted.
    pub error: Option<(String, String)>,
    /// Messages the function took whose delete SQS refused (their receipt outlived).
    pub undeleted: usize,
}

impl Moto {
    /// A queue whose messages come back `visibility` after a receive that did not delete them,
    /// and go to `dead_letter` after `max_receives` receives, if given.
    pub async fn queue(
        &self,
        name: &str,
        visibility: Duration,
        dead_letter: Option<(&Queue, u32)>,
    ) -> Queue {
        let sqs = self.sqs();
        let mut create = sqs.create_queue().queue_name(name).attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility.as_secs().to_string(),
        );
        if let Some((dlq, max_receives)) = dead_letter {
            let policy = json!({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receives});
            create = create.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        let url = create
            .send()
            .await
            .expect("moto creates the queue")
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        let arn = self.queue_arn(&url).await;
        Queue { url, arn }
    }

    /// The ARN of the queue at `url`.
    pub async fn queue_arn(&self, url: &str) -> String {
        let attributes = self
            .sqs()
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("moto has the queue's ARN");
        attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .expect("a queue has an ARN")
            .clone()
    }

    /// A topic named `name` whose every notification lands in `queue`, in SNS's envelope (as
    /// SNS delivers to SQS); returns the topic's ARN.
    pub async fn topic_into(&self, name: &str, queue: &Queue) -> String {
        let sns = aws_sdk_sns::Client::new(&self.sdk_config());
        let topic = sns
            .create_topic()
            .name(name)
            .send()
            .await
            .expect("moto creates the topic")
            .topic_arn()
            .unwrap_or_default()
            .to_owned();
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(&queue.arn)
            .send()
            .await
            .expect("moto subscribes the queue");
        topic
    }

    /// Receives up to `batch` messages of `queue` (waiting up to `wait` for the first) and plays
    /// the event-source mapping with them: one invocation of `function`, then the successes
    /// deleted. Returns what was delivered; an empty receive invokes nothing.
    pub async fn deliver(
        &self,
        function: &mut Function,
        queue: &Queue,
        batch: i32,
        wait: Duration,
    ) -> Delivered {
        let sqs = self.sqs();
        let deadline = Instant::now() + wait;
        let messages = loop {
            let received = sqs
                .receive_message()
                .queue_url(&queue.url)
                .max_number_of_messages(batch)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("moto receives");
            let messages = received.messages().to_vec();
            if !messages.is_empty() || Instant::now() >= deadline {
                break messages;
            }
        };
        let mut delivered = Delivered {
            received: messages.len(),
            ..Delivered::default()
        };
        if messages.is_empty() {
            return delivered;
        }
        let event = sqs_event(&queue.arn, &messages);
        match function.invoke(&event).await {
            crate::Outcome::Response(response) => {
                delivered.failed = response["batchItemFailures"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                    .collect();
            }
            crate::Outcome::Error {
                error_type,
                error_message,
            } => {
                delivered.error = Some((error_type, error_message));
                return delivered;
            }
        }
        for message in &messages {
            let id = message.message_id().unwrap_or_default();
            if delivered.failed.iter().any(|f| f == id) {
                continue;
            }
            // A receive handle outlived by its visibility timeout (a slow invocation, and another
            // consumer received the message since) is refused: the message comes back, as on SQS.
            let deleted = sqs
                .delete_message()
                .queue_url(&queue.url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await;
            if deleted.is_err() {
                delivered.undeleted += 1;
            }
        }
        delivered
    }

    /// Takes every SNS notification that `queue` (subscribed to a topic) receives within
    /// `wait`, until `done` says they are enough, each as the SNS event Lambda would give
    /// `record-completion`, in arrival order.
    pub async fn take_notifications(
        &self,
        queue: &Queue,
        wait: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        // Each body is SNS's envelope, as SNS delivers to SQS.
        let as_events = |bodies: &[Value]| bodies.iter().map(sns_event).collect::<Vec<_>>();
        let bodies = self
            .take_until(&queue.url, wait, |bodies| done(&as_events(bodies)))
            .await;
        as_events(&bodies)
    }
}

/// The event Lambda's SQS event-source mapping gives a function for `messages` of the queue
/// `arn` (the shape of events/sqs-job.json).
pub fn sqs_event(arn: &str, messages: &[Message]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                .collect();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "eu-west-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The SNS event Lambda gives a subscribed function for the notification whose envelope (as SNS
/// delivers it to SQS) is `envelope`: the same fields, some spelt differently.
pub fn sns_event(envelope: &Value) -> Value {
    let topic = envelope["TopicArn"].as_str().unwrap_or_default();
    json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic}:00000000-0000-4000-8000-000000000000"),
        "Sns": {
            "Type": envelope["Type"],
            "MessageId": envelope["MessageId"],
            "TopicArn": topic,
            "Subject": envelope.get("Subject").cloned().unwrap_or(Value::Null),
            "Message": envelope["Message"],
            "Timestamp": envelope["Timestamp"],
            "SignatureVersion": envelope["SignatureVersion"],
            "Signature": envelope["Signature"],
            "SigningCertUrl": envelope["SigningCertURL"],
            "UnsubscribeUrl": envelope["UnsubscribeURL"],
            "MessageAttributes": envelope.get("MessageAttributes").cloned().unwrap_or(json!({})),
        }
    }]})
}

/// The message (a transcoder's notification) an SNS event carries, parsed.
pub fn notification(event: &Value) -> Value {
    let message = event["Records"][0]["Sns"]["Message"]
        .as_str()
        .unwrap_or_default();
    serde_json::from_str(message).unwrap_or(Value::Null)
}
