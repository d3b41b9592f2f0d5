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

/// The longest query word [`search_words`] keeps; longer runs are cut (a name word is never
/// this long, and the cut keeps index rows small).
pub const MAX_SEARCH_WORD: usize = 64;

/// The words staff can find an account by, normalised: split on anything that is not a
/// letter or digit, lower-cased, each word once, in first-seen order. The same function
/// normalises what is indexed and what is searched, so whole words match whatever their case
/// or punctuation ("O'Brien" gives "o" and "brien"; "MAIN St." gives "main" and "st").
pub fn search_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        if w.is_empty() {
            continue;
        }
        let w: String = w.to_lowercase().chars().take(MAX_SEARCH_WORD).collect();
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

#[cfg(test)]
mod search_words_tests {
    use super::search_words;

    #[test]
    fn words_are_lower_cased_split_on_punctuation_and_unique() {
        assert_eq!(search_words("  MAIN St. main "), vec!["main", "st"]);
        assert_eq!(search_words("O'Brien-Núñez"), vec!["o", "brien", "núñez"]);
        assert_eq!(search_words("1200 Elm Ave"), vec!["1200", "elm", "ave"]);
        assert!(search_words(" .,- ").is_empty());
    }
}

/// Allocates an account's credits (what has been paid toward its bills, net of refunds) to
/// its bills oldest first: returns, per bill in the order given (oldest first), how many
/// cents of it are covered. A bill of zero or less takes nothing.
pub fn allocate_credits(bill_amounts: &[i64], credits: i64) -> Vec<i64> {
    let mut left = credits.max(0);
    bill_amounts
        .iter()
        .map(|&a| {
            let take = a.max(0).min(left);
            left -= take;
            take
        })
        .collect()
}

/// The bills (indexes into `bill_amounts`, oldest first) that are fully covered with
/// `after` credits but were not with `before`: those a payment has just paid off.
pub fn newly_paid_bills(bill_amounts: &[i64], before: i64, after: i64) -> Vec<usize> {
    let was = allocate_credits(bill_amounts, before);
    let now = allocate_credits(bill_amounts, after);
    bill_amounts
        .iter()
        .enumerate()
        .filter(|(i, &a)| a > 0 && now[*i] == a && was[*i] < a)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod allocation_tests {
    use super::{allocate_credits, newly_paid_bills};

    #[test]
    fn credits_cover_the_oldest_bills_first() {
        assert_eq!(allocate_credits(&[100, 200, 300], 250), vec![100, 150, 0]);
        assert_eq!(allocate_credits(&[100, 200], 1000), vec![100, 200]);
        assert_eq!(allocate_credits(&[100, 0, 50], -5), vec![0, 0, 0]);
    }

    #[test]
    fn a_payment_pays_off_the_bills_it_completes() {
        assert_eq!(newly_paid_bills(&[100, 200, 300], 50, 300), vec![0, 1]);
        assert_eq!(
            newly_paid_bills(&[100, 200, 300], 100, 250),
            Vec::<usize>::new()
        );
        assert_eq!(newly_paid_bills(&[100, 200, 300], 0, 600), vec![0, 1, 2]);
        // A zero bill is never "paid" by a payment.
        assert_eq!(newly_paid_bills(&[0, 100], 0, 100), vec![1]);
    }
}
