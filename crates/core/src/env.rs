//! Where configuration comes from ([`Env`]: the process environment, or a list in tests), and how
//! a bad value is refused ([`ConfigError`]). A leaf: every crate's configuration reads through it.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}='{value}' is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "INPUT_PREFIX='{input}' and OUTPUT_PREFIX='{output}' overlap: outputs written under one would \
         trigger the function again; choose two separate prefixes such as 'media/' and 'transcoded/'"
    )]
    OverlappingPrefixes { input: String, output: String },
    #[error("{name} is required")]
    Missing { name: &'static str },
}

impl ConfigError {
    pub fn invalid(name: &'static str, value: &str, reason: impl ToString) -> Self {
        Self::Invalid {
            name,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// A source of configuration values: the process environment in production, a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;

    fn get_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    /// Reads a value and parses it, naming the variable in the error.
    fn parse<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(value) => value
                .trim()
                .parse()
                .map_err(|e| ConfigError::invalid(name, &value, e)),
        }
    }
}

/// The process environment. A value that is not UTF-8 counts as unset.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}
