//! Password rules per NIST SP 800-63B: length, no composition rules, a blocklist of common
//! and breached passwords, and no password made of the user's own identifiers.

/// Passwords of 12+ characters from a public breach corpus, lower-cased and byte-sorted.
const COMMON: &str = include_str!("../data/common-passwords.txt");

pub const RESIDENT_MIN_LEN: usize = 15;
pub const STAFF_MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 128;

/// Words of the service itself that no password may contain.
pub const CONTEXT_WORDS: &[&str] = &["strongroom"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("too short")]
    TooShort { min: usize },
    #[error("too long")]
    TooLong,
    #[error("too common")]
    Common,
    #[error("contains your email address")]
    ContainsIdentifier,
    #[error("repetitive or sequential")]
    Repetitive,
}

fn is_common(lower: &str) -> bool {
    // Lines are sorted by byte, so a binary search over the line list works.
    static LINES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    LINES
        .get_or_init(|| COMMON.lines().collect())
        .binary_search(&lower)
        .is_ok()
}

fn repetitive(p: &str) -> bool {
    let chars: Vec<char> = p.chars().collect();
    let distinct = {
        let mut c = chars.clone();
        c.sort_unstable();
        c.dedup();
        c.len()
    };
    if distinct <= 3 {
        return true;
    }
    // Every step +1 or every step -1 (abcdef..., 987654...).
    let steps: Vec<i64> = chars
        .windows(2)
        .map(|w| i64::from(u32::from(w[1])) - i64::from(u32::from(w[0])))
        .collect();
    steps.iter().all(|s| *s == 1) || steps.iter().all(|s| *s == -1)
}

/// Checks a new password. `identifiers` are strings of the user's own (email, name) that
/// must not be the password's substance.
pub fn check(password: &str, min_len: usize, identifiers: &[&str]) -> Result<(), PasswordProblem> {
    let len = password.chars().count();
    if len < min_len {
        return Err(PasswordProblem::TooShort { min: min_len });
    }
    if len > MAX_LEN {
        return Err(PasswordProblem::TooLong);
    }
    let lower = password.to_lowercase();
    if is_common(&lower) || is_common(lower.trim()) {
        return Err(PasswordProblem::Common);
    }
    // Context-specific words (NIST SP 800-63B 3.1.1.2): the service's name, and the user's
    // own identifiers (email, user name) with their words of five letters or more, and the
    // city's name words passed in by the caller.
    let words = CONTEXT_WORDS
        .iter()
        .map(|w| (*w).to_owned())
        .chain(identifiers.iter().flat_map(|id| {
            let id = id.to_lowercase();
            let local = id.split('@').next().unwrap_or_default().to_owned();
            let parts: Vec<String> = id
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.chars().count() >= 5)
                .map(str::to_owned)
                .collect();
            std::iter::once(id.clone())
                .chain(std::iter::once(local).filter(|l| l.chars().count() >= 4))
                .chain(parts)
        }));
    for w in words {
        if !w.is_empty() && lower.contains(&w) {
            return Err(PasswordProblem::ContainsIdentifier);
        }
    }
    if repetitive(password) {
        return Err(PasswordProblem::Repetitive);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_for_binary_search() {
        let lines: Vec<&str> = COMMON.lines().collect();
        assert!(lines.len() > 40_000);
        assert!(lines.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn rules() {
        assert_eq!(
            check("short", 15, &[]),
            Err(PasswordProblem::TooShort { min: 15 })
        );
        assert_eq!(
            check("passwordpassword", 15, &[]),
            Err(PasswordProblem::Common)
        );
        assert_eq!(
            check("123456789012345", 15, &[]),
            Err(PasswordProblem::Common)
        );
        assert_eq!(
            check("aaaaaaaaaaaaaaaaaa", 15, &[]),
            Err(PasswordProblem::Repetitive)
        );
        assert_eq!(
            check("abcdefghijklmnopq", 15, &[]),
            Err(PasswordProblem::Repetitive)
        );
        assert_eq!(
            check("maria.lopez-rocks-2026", 15, &["maria.lopez@example.org"]),
            Err(PasswordProblem::ContainsIdentifier)
        );
        assert_eq!(
            check("correct horse battery staple", 15, &["maria@example.org"]),
            Ok(())
        );
        // No composition rules: lower-case words only are fine; spaces and unicode allowed.
        assert_eq!(check("über grüne äpfel im herbst", 15, &[]), Ok(()));
        assert_eq!(
            check(&"x1".repeat(70), 15, &[]),
            Err(PasswordProblem::TooLong)
        );
    }
}
