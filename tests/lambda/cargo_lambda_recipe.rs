//! The `cargo lambda watch` recipe of docs/local.md ("Running a function locally"), run as written:
//! `local-aws` started on `events/local-aws.env`, the three functions started with that file's
//! variables (the Runtime API harness plays `cargo lambda watch --env-file`), and each
//! `cargo lambda invoke` of the recipe answered as the document shows.
//!
//! The document's answers are read from it: each `cargo lambda invoke FUNCTION --data-file FILE`
//! is followed by a ```json block, the answer expected, where `…` in a string stands for any text
//! (a signature, a timestamp). The only change made to the env file is its three ports, swapped
//! for free ones so that the test never meets another program on 8000, 9001 or 9002; the answers
//! are compared with the documented ports put back.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use system_tests::workspace_root;
use system_tests::{Function, env_file};

const ENV_FILE: &str = "events/local-aws.env";
const ENDPOINTS: [&str; 3] = [
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_MEDIACONVERT",
];

/// One `cargo lambda invoke` of the document and the answer it shows.
#[derive(Debug)]
struct Step {
    function: String,
    data_file: String,
    expected: Value,
}

/// The recipe's section of docs/local.md: its shell lines and its invocations.
fn recipe() -> (Vec<String>, Vec<Step>) {
    let path = workspace_root().join("docs/local.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Running a function locally"))
        .expect("docs/local.md has a section \"Running a function locally\"");
    let (mut commands, mut steps) = (Vec::new(), Vec::new());
    let mut pending: Option<(String, String)> = None;
    let mut block: Option<(String, String)> = None;
    for line in section.lines() {
        match (&mut block, line.trim_end()) {
            (None, fence) if fence.starts_with("```") => {
                block = Some((fence.trim_start_matches('`').to_owned(), String::new()));
            }
            (Some((kind, body)), "```") => {
                if kind == "json" {
                    let (function, data_file) = pending
                        .take()
                        .unwrap_or_else(|| panic!("a json block follows no invocation: {body}"));
                    let expected = serde_json::from_str(body)
                        .unwrap_or_else(|e| panic!("{function}'s answer in the docs: {e}"));
                    steps.push(Step {
                        function,
                        data_file,
                        expected,
                    });
                }
                block = None;
            }
            (Some((kind, body)), line) => {
                if kind == "sh" {
                    let command = line.split(" #").next().unwrap().trim().to_owned();
                    if let Some(rest) = command.strip_prefix("cargo lambda invoke ") {
                        let words: Vec<_> = rest.split_whitespace().collect();
                        let [function, "--data-file", data_file] = words[..] else {
                            panic!("`{command}`: expected `cargo lambda invoke F --data-file E`");
                        };
                        assert!(pending.is_none(), "no answer shown before `{command}`");
                        pending = Some((function.to_owned(), data_file.to_owned()));
                    }
                    commands.push(command);
                }
                body.push_str(line);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(pending.is_none(), "the last invocation shows no answer");
    (commands, steps)
}

/// Whether `actual` is what `expected` shows: the same shape and values, where a string with `…`
/// matches any string that starts with the text before the first `…`, ends with the text after
/// the last, and has the pieces between in order.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av)))
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| matches(e, a))
        }
        (Value::String(e), Value::String(a)) => elided(e, a),
        _ => expected == actual,
    }
}

fn elided(expected: &str, actual: &str) -> bool {
    let pieces: Vec<_> = expected.split('…').collect();
    let [first, middle @ .., last] = &pieces[..] else {
        return expected == actual;
    };
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    for piece in middle {
        let Some(at) = rest.find(piece) else {
            return false;
        };
        rest = &rest[at + piece.len()..];
    }
    rest.ends_with(last)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// The env file with its endpoints' ports swapped for free ones, and the swaps made.
fn with_free_ports(vars: &[(String, String)]) -> (Vec<(String, String)>, HashMap<String, String>) {
    let mut swapped = HashMap::new();
    let vars = vars
        .iter()
        .map(|(key, value)| {
            if !ENDPOINTS.contains(&key.as_str()) {
                return (key.clone(), value.clone());
            }
            let port = value
                .strip_prefix("http://127.0.0.1:")
                .unwrap_or_else(|| panic!("{key}={value}: not http://127.0.0.1:PORT"));
            let free = format!("127.0.0.1:{}", free_port());
            swapped.insert(free.clone(), format!("127.0.0.1:{port}"));
            (key.clone(), format!("http://{free}"))
        })
        .collect();
    (vars, swapped)
}

#[tokio::test]
async fn the_documented_recipe_answers_as_documented() {
    let (commands, steps) = recipe();
    for command in [
        "target/debug/local-aws events/local-aws.env &",
        "cargo lambda watch --env-file events/local-aws.env &",
    ] {
        assert!(
            commands.iter().any(|c| c == command),
            "the recipe runs `{command}`: {commands:#?}"
        );
    }
    let functions: Vec<_> = steps.iter().map(|s| s.function.as_str()).collect();
    for function in ["start-transcode", "record-completion", "messages-api"] {
        assert!(functions.contains(&function), "{functions:?}");
    }

    let vars = env_file::read(&workspace_root().join(ENV_FILE)).unwrap();
    assert_eq!(env_file::get(&vars, "TRANSCODER"), Some("mediaconvert"));
    let (vars, swapped) = with_free_ports(&vars);
    let dir = system_tests::local::scratch();
    let env_path = dir.join("local-aws.env");
    let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&env_path, text).unwrap();
    let (_services, ready, logged) = system_tests::local_aws(&env_path).await;
    assert!(
        ready.contains("(table audio-transcoder-messages)"),
        "{ready}"
    );

    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut functions: HashMap<String, Function> = HashMap::new();
    let mut failures = Vec::new();
    for step in &steps {
        if !functions.contains_key(&step.function) {
            let function = Function::start(&step.function, &env).await;
            functions.insert(step.function.clone(), function);
        }
        let function = functions.get_mut(&step.function).unwrap();
        let file = step.data_file.strip_prefix("events/").unwrap();
        let answer = function.invoke_sample(file).await.response();
        let mut text = answer.to_string();
        for (free, documented) in &swapped {
            text = text.replace(free, documented);
        }
        let answer: Value = serde_json::from_str(&text).unwrap();
        if !matches(&step.expected, &answer) {
            failures.push(format!(
                "cargo lambda invoke {} --data-file {}\n  documented: {}\n  answered:   {}",
                step.function, step.data_file, step.expected, answer
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // What the page says local-aws prints for the one CreateJob (it prints every 200 ms).
    let create_job = "MediaConvert: POST /2017-08-29/jobs (CreateJob for \
                      s3://audio-transcoder-media/media/alice/song.mp3)";
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logged = logged.lock().unwrap().clone();
    let jobs: Vec<_> = logged
        .iter()
        .filter(|l| l.starts_with("MediaConvert:"))
        .collect();
    assert_eq!(jobs, [create_job], "{logged:#?}");
    let page = std::fs::read_to_string(workspace_root().join("docs/local.md")).unwrap();
    assert!(page.contains(&format!("`{create_job}`")));
}

#[test]
fn the_answer_matcher_and_the_env_file_reader_do_what_they_say() {
    assert!(elided("abc", "abc"));
    assert!(!elided("abc", "abcd"));
    assert!(elided("a…d", "abcd"));
    assert!(elided("a…c…e", "abcde"));
    assert!(!elided("a…c…e", "aXe"));
    assert!(elided("…", "anything"));
    let e = serde_json::json!({"a": ["x…"], "b": 1});
    assert!(matches(&e, &serde_json::json!({"a": ["xyz"], "b": 1})));
    assert!(!matches(
        &e,
        &serde_json::json!({"a": ["xyz"], "b": 1, "c": 2})
    ));
    assert!(!matches(
        &e,
        &serde_json::json!({"a": ["xyz", "x"], "b": 1})
    ));

    let vars = env_file::parse("# c\n\nA=1\n B=http://127.0.0.1:8000 \nA=2\n").unwrap();
    assert_eq!(env_file::get(&vars, "A"), Some("2"));
    assert_eq!(env_file::get(&vars, "B"), Some("http://127.0.0.1:8000"));
    for bad in ["A='1'", "export A=1", "A=1 # one", "A", "=1", "A=", "A B=1"] {
        assert!(env_file::parse(bad).is_err(), "{bad}");
    }
}
