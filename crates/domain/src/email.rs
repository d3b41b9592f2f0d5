//! Email addresses, checked for shape only (delivery proves the rest).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Accepts `local@domain.tld`, at most 254 characters, no spaces or control characters.
    /// The domain is lower-cased; the local part is kept as typed.
    pub fn parse(input: &str) -> Option<EmailAddress> {
        let s = input.trim();
        if s.len() > 254
            || s.chars().any(|c| {
                c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == '"' || c == ','
            })
        {
            return None;
        }
        let (local, domain) = s.rsplit_once('@')?;
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return None;
        }
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
        });
        if !labels_ok || !domain.contains('.') {
            return None;
        }
        Some(EmailAddress(format!(
            "{local}@{}",
            domain.to_ascii_lowercase()
        )))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The lower-cased form used to find an account by email.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(
            EmailAddress::parse("a.b@Example.ORG").is_some_and(|e| e.as_str() == "a.b@example.org")
        );
        for bad in [
            "", "a", "a@", "@b.c", "a@b", "a b@c.d", "a@b..c", "a@-b.c", "<a@b.c>",
        ] {
            assert!(EmailAddress::parse(bad).is_none(), "{bad:?}");
        }
    }
}
