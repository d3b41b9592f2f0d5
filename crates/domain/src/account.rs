//! Utility account numbers, service ZIP codes, and what may be shown of a holder.

use std::fmt;

/// A utility account number: 4 to 12 digits.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct AccountNumber(String);

impl AccountNumber {
    pub fn parse(input: &str) -> Option<AccountNumber> {
        let s = input.trim();
        (4..=12)
            .contains(&s.len())
            .then_some(())
            .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
            .map(|_| AccountNumber(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A five-digit US ZIP code (ZIP+4 input is accepted and reduced to five digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PostalCode(String);

impl PostalCode {
    pub fn parse(input: &str) -> Option<PostalCode> {
        let s = input.trim();
        let five = match s.split_once('-') {
            Some((a, b)) if b.len() == 4 && b.bytes().all(|c| c.is_ascii_digit()) => a,
            Some(_) => return None,
            None => s,
        };
        (five.len() == 5 && five.bytes().all(|b| b.is_ascii_digit()))
            .then(|| PostalCode(five.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PostalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shows the first letter of each word of a name: `Maria Lopez` -> `M**** L****`.
pub fn mask_name(name: &str) -> String {
    name.split_whitespace()
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => {
                    let rest = chars.count().max(3);
                    format!("{first}{}", "*".repeat(rest))
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_numbers() {
        assert!(AccountNumber::parse(" 100001 ").is_some());
        assert!(AccountNumber::parse("12").is_none());
        assert!(AccountNumber::parse("10000a").is_none());
        assert!(AccountNumber::parse("1234567890123").is_none());
    }

    #[test]
    fn postal_codes() {
        assert_eq!(
            PostalCode::parse("93301").map(|p| p.0),
            Some("93301".into())
        );
        assert_eq!(
            PostalCode::parse("93301-1234").map(|p| p.0),
            Some("93301".into())
        );
        assert!(PostalCode::parse("9330").is_none());
        assert!(PostalCode::parse("93301-12").is_none());
    }

    #[test]
    fn masks_names() {
        assert_eq!(mask_name("Maria Lopez"), "M**** L****");
        assert_eq!(mask_name("Al  Wu"), "A*** W***");
    }
}
