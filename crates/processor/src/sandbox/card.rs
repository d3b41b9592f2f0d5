//! Card-number checks for the sandbox's hosted page.
//!
//! Nothing here stores anything: functions take the typed values by reference
//! and return verdicts, the brand and the last four digits.

use time::OffsetDateTime;

/// Strips spaces and dashes; `None` unless what is left is 12 to 19 ASCII digits.
pub(crate) fn normalize_number(input: &str) -> Option<String> {
    let mut digits = String::with_capacity(19);
    for c in input.chars() {
        match c {
            ' ' | '-' => {}
            '0'..='9' => {
                if digits.len() >= 19 {
                    return None;
                }
                digits.push(c);
            }
            _ => return None,
        }
    }
    if digits.len() < 12 {
        return None;
    }
    Some(digits)
}

pub(crate) fn luhn_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// Stripe's brand names, by prefix.
pub(crate) fn brand(digits: &str) -> &'static str {
    let prefix = |n: usize| -> u32 { digits.get(..n).and_then(|p| p.parse().ok()).unwrap_or(0) };
    if digits.starts_with('4') {
        "visa"
    } else if (51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4)) {
        "mastercard"
    } else if prefix(2) == 34 || prefix(2) == 37 {
        "amex"
    } else if prefix(4) == 6011 || prefix(2) == 65 {
        "discover"
    } else {
        "unknown"
    }
}

pub(crate) fn last4(digits: &str) -> String {
    let start = digits.len().saturating_sub(4);
    digits.get(start..).unwrap_or_default().to_owned()
}

/// Parses `MM/YY` (also `M/YY`, `MM/YYYY`, spaces around the slash).
/// Returns (month, full year).
pub(crate) fn parse_expiry(input: &str) -> Option<(u8, i32)> {
    let (m, y) = input.trim().split_once('/')?;
    let (m, y) = (m.trim(), y.trim());
    if m.is_empty() || m.len() > 2 || !m.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !(y.len() == 2 || y.len() == 4) || !y.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let month: u8 = m.parse().ok()?;
    if !(1..=12).contains(&month) {
        return None;
    }
    let mut year: i32 = y.parse().ok()?;
    if y.len() == 2 {
        year += 2000;
    }
    Some((month, year))
}

/// A card is valid through the last day of its expiry month.
pub(crate) fn expiry_not_past(month: u8, year: i32, now_unix: i64) -> bool {
    let Ok(now) = OffsetDateTime::from_unix_timestamp(now_unix) else {
        return false;
    };
    (year, month) >= (now.year(), u8::from(now.month()))
}

/// What the sandbox does with a Luhn-valid number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeed,
    Decline {
        decline_code: &'static str,
        message: &'static str,
    },
}

pub(crate) fn outcome(digits: &str) -> Outcome {
    match digits {
        "4000000000000002" => Outcome::Decline {
            decline_code: "generic_decline",
            message: "Your card was declined.",
        },
        "4000000000009995" => Outcome::Decline {
            decline_code: "insufficient_funds",
            message: "Your card has insufficient funds.",
        },
        _ => Outcome::Succeed,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(
            normalize_number("4242 4242-4242 4242").as_deref(),
            Some("4242424242424242")
        );
        assert!(normalize_number("4242").is_none());
        assert!(normalize_number("4242 4242 4242 424x").is_none());
        assert!(normalize_number("42424242424242424242").is_none());
        assert!(normalize_number("４２４２４２４２４２４２４２４２").is_none());
        assert!(luhn_valid("4242424242424242"));
        assert!(luhn_valid("4000000000000002"));
        assert!(luhn_valid("4000000000009995"));
        assert!(luhn_valid("378282246310005"));
        assert!(!luhn_valid("4242424242424241"));
        assert!(!luhn_valid(""));
    }

    #[test]
    fn brands() {
        assert_eq!(brand("4242424242424242"), "visa");
        assert_eq!(brand("5555555555554444"), "mastercard");
        assert_eq!(brand("2223003122003222"), "mastercard");
        assert_eq!(brand("378282246310005"), "amex");
        assert_eq!(brand("6011111111111117"), "discover");
        assert_eq!(brand("6500000000000002"), "discover");
        assert_eq!(brand("3056930009020004"), "unknown");
        assert_eq!(last4("4242424242424242"), "4242");
    }

    #[test]
    fn expiry() {
        assert_eq!(parse_expiry("12/30"), Some((12, 2030)));
        assert_eq!(parse_expiry(" 1 / 2031 "), Some((1, 2031)));
        assert_eq!(parse_expiry("13/30"), None);
        assert_eq!(parse_expiry("00/30"), None);
        assert_eq!(parse_expiry("1230"), None);
        assert_eq!(parse_expiry("12/3"), None);
        assert_eq!(parse_expiry("+1/30"), None);
        assert_eq!(parse_expiry("１/30"), None);
        // 2023-11-14
        let now = 1_700_000_000;
        assert!(expiry_not_past(11, 2023, now));
        assert!(!expiry_not_past(10, 2023, now));
        assert!(expiry_not_past(1, 2024, now));
        assert!(!expiry_not_past(1, 2024, i64::MAX));
    }
}
