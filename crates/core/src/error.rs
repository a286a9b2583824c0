//! What the errors here share: the error beneath one, kept as its source rather than copied
//! into its text, and the one way a chain of them is written out. An error's own text says what
//! went wrong in our words; its source says why, in the words of the library that failed.

use std::error::Error;
use std::fmt;

use crate::key::Escaped;

/// The error beneath one of ours: a SQLite, SDK or file-system error.
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// An error and every error beneath it, on one line (`what: why: why`), control characters
/// escaped: what a log line or an error report writes, where `{err}` alone would drop the causes.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Escaped(&self.0.to_string()))?;
        let mut beneath = self.0.source();
        while let Some(err) = beneath {
            write!(f, ": {}", Escaped(&err.to_string()))?;
            beneath = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the store is unavailable")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_chain_writes_every_cause_once_in_order() {
        let inner = std::io::Error::other("disk\nfull");
        let outer = Outer(inner);
        assert_eq!(
            Chain(&outer).to_string(),
            "the store is unavailable: disk\\nfull"
        );
    }

    #[test]
    fn an_error_with_no_cause_is_its_own_text() {
        let alone = std::io::Error::other("refused");
        assert_eq!(Chain(&alone).to_string(), "refused");
    }
}
