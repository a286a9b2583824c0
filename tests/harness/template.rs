//! `template.yaml` as plain JSON, for tests that check it against the code.
//!
//! CloudFormation's short-form tags become their long forms (`!Ref X` is `{"Ref": "X"}`,
//! `!GetAtt A.B` is `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` is `{"Fn::Sub": s}`, and so on), so a
//! test compares one shape whichever form the template uses. Nothing is resolved or evaluated.

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
