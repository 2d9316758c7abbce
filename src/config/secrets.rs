//! Values that must never be printed.
//!
//! This module owns [`Secret`], the one wrapper for a configuration value
//! that may carry a credential (today a database URL with a password). Its
//! `Debug` shows a placeholder and it has no `Display`, so a secret cannot
//! reach a log line or an error message by accident: the one place that needs
//! it (a connection) asks for it by name with [`Secret::expose`].

use std::fmt;

/// A value that must never be printed: `Debug` shows a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that needs it (a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_debugs_as_a_placeholder_and_exposes_its_value_only_when_asked() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
