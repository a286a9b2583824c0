//! Env files such as `events/local-aws.env`, which `cargo lambda watch --env-file` hands to the
//! functions and `local-aws` reads to know where to listen.
//!
//! Only what both readers take the same way: `KEY=value` lines, blank lines and whole-line `#`
//! comments. Anything else (quotes, `export`, a comment after a value, a line without `=`) is
//! refused, so that the file cannot mean one thing to cargo-lambda and another here.

use std::path::Path;

/// The variables of the env file at `path`, in order.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The variables of an env file's text, in order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut variables = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let plain = line.split_once('=').filter(|(key, value)| {
            !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !value.is_empty()
                && !value.contains(['"', '\'', '#', ' ', '$', '\\'])
        });
        let Some((key, value)) = plain else {
            return Err(format!(
                "line {}: `{line}`: write plain KEY=value lines (no spaces, quotes or comments \
                 after a value)",
                n + 1
            ));
        };
        variables.push((key.to_owned(), value.to_owned()));
    }
    Ok(variables)
}

/// The value of `key` in `variables`.
pub fn get<'a>(variables: &'a [(String, String)], key: &str) -> Option<&'a str> {
    variables
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
