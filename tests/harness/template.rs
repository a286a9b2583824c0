//! `template.yaml` as plain JSON, for tests that check it against the code.
//!
//! CloudFormation's short-form tags become their long forms (`!Ref X` is `{"Ref": "X"}`,
//! `!GetAtt A.B` is `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` is `{"Fn::Sub": s}`, and so on), so a
//! test compares one shape whichever form the template uses. Nothing is resolved or evaluated.
//! The helpers at the end change a copy, so that every check can be shown to object.

use serde_json::{Map, Value};
use serde_yaml_ng::Value as Yaml;

use crate::dynamodb_local::workspace_root;

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

/// Asserts that `check` finds, in `template`, a problem whose text contains `expected`.
#[track_caller]
pub fn assert_objects(check: fn(&Value) -> Vec<String>, template: &Value, expected: &str) {
    let problems = check(template);
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "expected a problem mentioning {expected:?}, got {problems:#?}"
    );
}
