//! `template.yaml` as plain JSON, for tests that check it against the code.
//!
//! CloudFormation's short-form tags become their long forms (`!Ref X` is `{"Ref": "X"}`,
//! `!GetAtt A.B` is `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` is `{"Fn::Sub": s}`, and so on), so a
//! test compares one shape whichever form the template uses. Nothing is resolved or evaluated,
//! except by [`deployed_with`], which deploys the template with one `TranscoderBackend`.
//!
//! The checks of `tests/template/` each return what is wrong with a template, in words. The
//! helpers at the end change a copy, so that every check can be shown to object: [`assert_refuses`]
//! runs a table of [`Case`]s and names every one the check lets through.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Map, Value, json};
use serde_yaml_ng::Value as Yaml;

use transcoder_testkit::workspace_root;

/// The repository's `template.yaml`.
pub fn template() -> Value {
    let path = workspace_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A CloudFormation YAML document in the long form of its intrinsic functions.
pub fn from_yaml(text: &str) -> Result<Value, serde_yaml_ng::Error> {
    let yaml: Yaml = serde_yaml_ng::from_str(text)?;
    Ok(long_form(yaml))
}

fn long_form(yaml: Yaml) -> Value {
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(items.into_iter().map(long_form).collect()),
        Yaml::Mapping(mapping) => Value::Object(
            mapping
                .into_iter()
                .map(|(key, value)| (key_string(key), long_form(value)))
                .collect(),
        ),
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = long_form(tagged.value);
            let (function, argument) = match (name, value) {
                ("Ref" | "Condition", value) => (name.to_owned(), value),
                // `!GetAtt Resource.Attribute`: the attribute may itself contain dots.
                ("GetAtt", Value::String(target)) => {
                    let argument = match target.split_once('.') {
                        Some((resource, attribute)) => Value::from(vec![resource, attribute]),
                        None => Value::String(target),
                    };
                    ("Fn::GetAtt".to_owned(), argument)
                }
                (_, value) => (format!("Fn::{name}"), value),
            };
            Value::Object(Map::from_iter([(function, argument)]))
        }
    }
}

fn key_string(key: Yaml) -> String {
    match key {
        Yaml::String(s) => s,
        other => serde_yaml_ng::to_string(&other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default(),
    }
}

// ------------------------------------------------------------------------- reading a template

/// `{"Ref": name}`.
pub fn r#ref(name: &str) -> Value {
    json!({ "Ref": name })
}

/// `{"Fn::GetAtt": [id, "Arn"]}`.
pub fn arn_of(id: &str) -> Value {
    json!({ "Fn::GetAtt": [id, "Arn"] })
}

/// The resource `id` (`Null` if there is none).
pub fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    &t["Resources"][id]
}

/// Every resource of type `kind`, with its logical id.
pub fn resources_of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

/// The events of type `kind` of a SAM function, by name, with their properties.
pub fn events<'a>(function: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    function["Properties"]["Events"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, e)| e["Type"] == kind)
        .map(|(name, e)| (name.as_str(), &e["Properties"]))
        .collect()
}

/// The bucket's notifications to SQS queues (`QueueConfigurations`), as the template writes them.
pub fn queue_notifications(t: &Value) -> Vec<&Value> {
    resource(t, "MediaBucket")["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
        .as_array()
        .into_iter()
        .flatten()
        .collect()
}

/// The ARN of `MediaBucket` spelled from its `BucketName` (an `Fn::Sub` with variables), as a
/// policy must name it when the bucket depends on that policy; `Null` if the name is not one.
pub fn bucket_arn_by_name(t: &Value) -> Value {
    let name = &resource(t, "MediaBucket")["Properties"]["BucketName"]["Fn::Sub"];
    match (name[0].as_str(), &name[1]) {
        (Some(pattern), variables) if variables.is_object() => json!({"Fn::Sub": [
            format!("arn:${{AWS::Partition}}:s3:::{pattern}"),
            variables
        ]}),
        _ => Value::Null,
    }
}

/// A number in the template, as written or as a string (CloudFormation takes both).
pub fn number(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// What consuming a queue takes, as Lambda's event source mapping does it with the function's
/// role, and nothing more.
pub const CONSUME: [&str; 4] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
];

/// A string, or the strings of a list.
pub fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// The statements of a policy's `Statement`, with both branches of an `Fn::If` and without the
/// `AWS::NoValue` it may leave.
pub fn expand(statement: &Value) -> Vec<&Value> {
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

/// Every policy statement anywhere in `value`, with where it is.
pub fn statements(value: &Value) -> Vec<(String, &Value)> {
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
    walk(value, "", &mut found);
    found
}

// ---------------------------------------------------------------------------------- the backends

/// Every policy that attaches to `role`: its inline policies, and policy resources naming it.
pub fn policies_of<'a>(t: &'a Value, role: &str) -> Vec<&'a Value> {
    let resources = t["Resources"].as_object().into_iter().flatten();
    let attached = resources
        .filter(|(_, r)| {
            let kind = r["Type"].as_str().unwrap_or_default();
            let target = r#ref(role);
            (kind == "AWS::IAM::RolePolicy" && r["Properties"]["RoleName"] == target)
                || (kind == "AWS::IAM::Policy"
                    && r["Properties"]["Roles"]
                        .as_array()
                        .is_some_and(|roles| roles.contains(&target)))
        })
        .map(|(_, r)| &r["Properties"]);
    let inline = t["Resources"][role]["Properties"]["Policies"]
        .as_array()
        .into_iter()
        .flatten();
    inline.chain(attached).collect()
}

/// The statements of `policies`, both branches of an `Fn::If` included.
pub fn statements_of<'a>(policies: &[&'a Value]) -> Vec<&'a Value> {
    policies
        .iter()
        .flat_map(|p| statements(p))
        .map(|(_, s)| s)
        .collect()
}

/// Each statement of `policies` whose actions include one of `service:`, with its resources.
pub fn grants<'a>(policies: &[&'a Value], service: &str) -> Vec<(Vec<&'a str>, &'a Value)> {
    statements_of(policies)
        .into_iter()
        .filter_map(|s| {
            let actions = strings(&s["Action"]);
            actions
                .iter()
                .any(|a| a.starts_with(service))
                .then_some((actions, &s["Resource"]))
        })
        .collect()
}

/// The values of the `TranscoderBackend` parameter, and the `TRANSCODER` each one must set; the
/// first is the default.
pub const BACKENDS: [(&str, &str); 3] = [
    ("Lambda", "lambda"),
    ("MediaConvert", "mediaconvert"),
    ("ElasticTranscoder", "elastictranscoder"),
];

/// The template as CloudFormation deploys it with the parameter `TranscoderBackend` set to
/// `backend` (the others at their defaults): the conditions evaluated, resources and outputs whose
/// condition is false left out, each `Fn::If` replaced by its branch, `AWS::NoValue` dropped, and
/// `Fn::FindInMap` looked up. Everything else stays as written. A condition this cannot evaluate
/// panics rather than passing unseen.
pub fn deployed_with(t: &Value, backend: &str) -> Value {
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

// ------------------------------------------------ changing a template, for checks that must object

/// A copy of `template` changed by `change`.
pub fn broken(template: &Value, change: impl FnOnce(&mut Value)) -> Value {
    let mut copy = template.clone();
    change(&mut copy);
    copy
}

/// Sets the value at `pointer`, whose parent must exist: a renamed resource fails here, not
/// silently.
pub fn set(t: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer below the root");
    match t.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(key.to_owned(), value);
        }
        Some(Value::Array(items)) if key.parse::<usize>().is_ok_and(|i| i < items.len()) => {
            items[key.parse::<usize>().unwrap()] = value;
        }
        _ => panic!("the template has nothing at {parent}"),
    }
}

/// Removes the value at `pointer`, which must exist.
pub fn remove(t: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer below the root");
    t.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|map| map.remove(key))
        .unwrap_or_else(|| panic!("the template has nothing at {pointer}"));
}

/// What a check of the template says is wrong with it: nothing, for the real template.
pub type Check = fn(&Value) -> Vec<String>;

/// One way to break the template: a name for the report, the change, and words the check's
/// complaint about the changed copy must contain.
pub type Case = (&'static str, fn(&mut Value), &'static str);

/// Asserts that `check` objects to each case's broken copy of `template` with a problem whose
/// text contains the case's words. Every case runs; the failure names each case the check let
/// through, and each whose change found nothing to change (a renamed resource, say).
#[track_caller]
pub fn assert_refuses(check: Check, template: &Value, cases: &[Case]) {
    let mut failures = Vec::new();
    for (name, change, expected) in cases {
        let problems = catch_unwind(AssertUnwindSafe(|| check(&broken(template, change))));
        match problems {
            Ok(problems) if problems.iter().any(|p| p.contains(expected)) => {}
            Ok(problems) => failures.push(format!(
                "{name}: expected a problem mentioning {expected:?}, got {problems:#?}"
            )),
            Err(_) => failures.push(format!("{name}: panicked (its message is above)")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} broken templates got through:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Asserts that `check` finds nothing wrong with `template` as deployed with each backend.
#[track_caller]
pub fn assert_passes_deployed(check: Check, template: &Value) {
    for (backend, _) in BACKENDS {
        let deployed = deployed_with(template, backend);
        assert_eq!(check(&deployed), Vec::<String>::new(), "{backend}");
    }
}
