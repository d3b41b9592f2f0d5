//! Secrets held in a redacting type: `Debug` and `Display` print `***`, so a secret cannot
//! reach a log line or an error message by accident, and equality is constant-time.

use subtle::ConstantTimeEq;

/// A secret string (an API key, a webhook signing secret). Read it only where it is used,
/// through [`Secret::expose`].
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret's value, for the one place that needs it (signing, an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

/// Compares two strings in time that depends only on their lengths, not on where they
/// first differ (tokens, signatures).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::from("whsec_abc123");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "whsec_abc123");
    }

    #[test]
    fn equality() {
        assert_eq!(
            Secret::from("sk_test_1"),
            Secret::from("sk_test_1".to_owned())
        );
        assert_ne!(Secret::from("sk_test_1"), Secret::from("sk_test_2"));
        assert_ne!(Secret::from("sk_test_1"), Secret::from("sk_test_10"));
        assert_ne!(Secret::from(""), Secret::from("x"));
        assert!(constant_time_eq("", ""));
        assert!(!constant_time_eq("abc", "abd"));
    }
}
