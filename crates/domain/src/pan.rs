//! Detection and masking of primary account numbers (card numbers) and secret-shaped strings.
//!
//! A "card number" is 13 to 19 digits with a card network's prefix passing the Luhn check,
//! written plain or with single spaces or dashes between groups of three or more digits. Every 13 to 19 digit window of a digit group is
//! checked, so a card number glued to other digits is still found.

use std::borrow::Cow;

/// Luhn checksum over ASCII digits.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// Card-network prefixes (IIN ranges) of cards in use in the US: Visa, Mastercard,
/// American Express, Discover, JCB, Diners Club, UnionPay. Checking the prefix as well as
/// Luhn keeps dates, ids and packed database records from looking like cards.
fn known_prefix(d: &[u8]) -> bool {
    let n = |k: usize| -> u32 {
        d.iter()
            .take(k)
            .fold(0, |acc, c| acc * 10 + u32::from(c - b'0'))
    };
    match d.first() {
        Some(b'4') => true,
        Some(b'5') => (51..=55).contains(&n(2)),
        Some(b'2') => (2221..=2720).contains(&n(4)),
        Some(b'3') => {
            matches!(n(2), 34 | 36 | 37 | 38 | 39)
                || (300..=305).contains(&n(3))
                || (3528..=3589).contains(&n(4))
        }
        Some(b'6') => n(4) == 6011 || (644..=649).contains(&n(3)) || matches!(n(2), 62 | 65),
        _ => false,
    }
}

fn digits_look_like_pan(digits: &[u8]) -> bool {
    match digits.len() {
        0..=12 => false,
        13..=19 => known_prefix(digits) && luhn_valid(digits),
        // A card number glued into a longer run of digits: look at every window.
        _ => (13..=19).any(|w| {
            digits
                .windows(w)
                .any(|win| known_prefix(win) && luhn_valid(win))
        }),
    }
}

/// A group of digits with separators: `starts` are the offsets in `digits` where each
/// separated part begins. Besides the whole group, every run of whole parts is checked, so
/// a card number followed by a short group (`4242 4242 4242 4242 123`, a CVV) is found.
fn group_looks_like_pan(digits: &[u8], starts: &[usize]) -> bool {
    if digits_look_like_pan(digits) {
        return true;
    }
    starts.iter().enumerate().any(|(k, &a)| {
        starts[k + 1..]
            .iter()
            .chain(std::iter::once(&digits.len()))
            .any(|&e| (13..=19).contains(&(e - a)) && digits_look_like_pan(&digits[a..e]))
    })
}

/// Length of the run of digits ending just before `i`.
fn seg_len(b: &[u8], i: usize) -> usize {
    b[..i]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .count()
}

/// Byte spans `[start, end)` of digit groups (digits joined by single spaces or dashes)
/// that contain a card number.
fn pan_spans(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = Vec::with_capacity(24);
        let mut starts = vec![0];
        let mut end = i;
        while i < b.len() {
            if b[i].is_ascii_digit() {
                digits.push(b[i]);
                i += 1;
                end = i;
            } else if (b[i] == b' ' || b[i] == b'-')
                && seg_len(b, i) >= 3
                && i + 1 < b.len()
                && b[i + 1].is_ascii_digit()
                && b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count() >= 3
            {
                // Separators join groups of three or more digits (4242 4242 ..., 3782 822463
                // 10005), not the two-digit parts of dates.
                starts.push(digits.len());
                i += 1;
            } else {
                break;
            }
        }
        if group_looks_like_pan(&digits, &starts) {
            spans.push((start, end));
        }
        i = end.max(i);
    }
    spans
}

/// True when `s` contains something that looks like a card number.
pub fn contains_pan(s: &str) -> bool {
    !pan_spans(s).is_empty()
}

/// Replaces every digit of each card-number-like group with `*`.
pub fn mask_pans(s: &str) -> Cow<'_, str> {
    let spans = pan_spans(s);
    if spans.is_empty() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (a, e) in spans {
        out.push_str(&s[last..a]);
        out.extend(
            s[a..e]
                .chars()
                .map(|c| if c.is_ascii_digit() { '*' } else { c }),
        );
        last = e;
    }
    out.push_str(&s[last..]);
    Cow::Owned(out)
}

/// Prefixes of secrets that must never appear in logs (processor keys, webhook secrets,
/// our own session and API tokens).
const SECRET_PREFIXES: &[&str] = &[
    "sk_test_", "sk_live_", "rk_test_", "rk_live_", "whsec_", "srk_", "srs_", "sr_live_",
];

/// Masks card numbers and secret-shaped tokens: the last line of defence for log output.
pub fn scrub(s: &str) -> Cow<'_, str> {
    let masked = mask_pans(s);
    if !SECRET_PREFIXES.iter().any(|p| masked.contains(p)) {
        return masked;
    }
    let mut out = masked.into_owned();
    for p in SECRET_PREFIXES {
        let mut from = 0;
        while let Some(pos) = out[from..].find(p) {
            let start = from + pos + p.len();
            let end = out[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CARDS: &[&str] = &[
        "4242424242424242",
        "4000000000000002",
        "4000000000009995",
        "378282246310005",
        "6011111111111117",
        "5555555555554444",
    ];

    #[test]
    fn finds_test_cards_in_all_spellings() {
        for c in CARDS {
            assert!(contains_pan(c), "{c}");
            let spaced: String = c
                .chars()
                .collect::<Vec<_>>()
                .chunks(4)
                .map(|ch| ch.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join(" ");
            assert!(contains_pan(&spaced), "{spaced}");
            assert!(contains_pan(&spaced.replace(' ', "-")), "{spaced}");
            assert!(contains_pan(&format!("card={c}&x=1")), "{c}");
            assert!(contains_pan(&format!("ref{c}x")), "glued {c}");
            assert!(contains_pan(&format!("20261123{c}")), "glued to digits {c}");
        }
    }

    #[test]
    fn ignores_ordinary_numbers() {
        for s in [
            "100001",
            "93301",
            "4242 4242",
            "amount 12.34",
            "2026-11-23",
            "1764000000",
            "424242424241",
            "555-123-4567",
            "bill_100007_202610131000072026-09-132026-10-12",
            "4242-42-42-4242-4242",
        ] {
            assert!(!contains_pan(s), "{s}");
        }
    }

    #[test]
    fn finds_a_card_followed_by_a_short_group() {
        // Found by the `pan_masker` fuzz target: the CVV joined the group, and the
        // 19 digits as a whole are not a card number.
        for s in [
            "4242424242424242 123",
            "4242 4242 4242 4242 123",
            "5555-5555-5555-4444-999",
            "378282246310005 1234",
            "999 4242424242424242",
            "c5-5557-55542462422424",
        ] {
            assert!(contains_pan(s), "{s}");
            assert!(!contains_pan(&mask_pans(s)), "{s}");
        }
        assert_eq!(
            mask_pans("card 4242 4242 4242 4242 123 exp"),
            "card **** **** **** **** *** exp"
        );
    }

    #[test]
    fn masks_only_the_card() {
        assert_eq!(
            mask_pans("pay 4242 4242 4242 4242 now"),
            "pay **** **** **** **** now"
        );
        assert_eq!(mask_pans("acct 100001"), "acct 100001");
    }

    #[test]
    fn scrubs_secrets() {
        assert_eq!(scrub("key=sk_test_abc123 next"), "key=sk_test_*** next");
        assert_eq!(scrub("whsec_ZZZ,sk_live_q"), "whsec_***,sk_live_***");
    }

    fn luhn_complete(prefix: &[u8]) -> Vec<u8> {
        (b'0'..=b'9')
            .map(|d| {
                let mut v = prefix.to_vec();
                v.push(d);
                v
            })
            .find(|v| luhn_valid(v))
            .unwrap_or_default()
    }

    proptest! {
        #[test]
        fn every_luhn_number_is_found_and_masked(body in proptest::collection::vec(0u8..10, 11..=14), sep in prop_oneof![Just(""), Just(" "), Just("-")], pre in "[a-z =:]{0,8}", post in "[a-z =:]{0,8}") {
            let mut prefix = vec![b'4'];
            prefix.extend(body.iter().map(|d| b'0' + d));
            let digits = luhn_complete(&prefix);
            let text: String = digits.chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(sep);
            let text = if text.ends_with(|c: char| c.is_ascii_digit()) && digits.len() % 4 != 0 && digits.len() % 4 < 3 && !sep.is_empty() {
                // a short last group would not be joined; write those without separators
                String::from_utf8_lossy(&digits).into_owned()
            } else {
                text
            };
            let s = format!("{pre}{text}{post}");
            prop_assert!(contains_pan(&s), "{}", s);
            let masked = mask_pans(&s);
            prop_assert!(!contains_pan(&masked));
            prop_assert!(!masked.contains(&text));
        }

        #[test]
        fn never_panics(s in "\\PC{0,64}") {
            let _ = scrub(&s);
        }
    }
}

#[cfg(test)]
mod api_key_tests {
    #[test]
    fn our_api_keys_are_scrubbed_from_logs() {
        let line = "auth with sr_live_ab12cd34ef56_0123456789abcdefABCDEF0123456789 failed";
        let s = super::scrub(line);
        assert!(!s.contains("0123456789abcdef"), "{s}");
        assert!(s.contains("sr_live_***"), "{s}");
    }
}
