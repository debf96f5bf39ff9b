//! Passwords and tokens, kept out of every printed form.
//!
//! Its own module because both [`crate::config`] (which reads secrets from the environment and
//! option objects) and [`crate::tls`] (an encrypted key's password) hold them, and `config`
//! builds on `tls`: a secret living in either would tie the two into a cycle.

/// A password or token: readable where it is used ([`Secret::expose`]), never in `Debug`
/// output, logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from the environment or an option object, before anything can print
    /// it.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
