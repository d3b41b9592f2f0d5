//! Money is an integer count of minor units (cents) with a currency. No floats, no `Default`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Currency {
    #[serde(rename = "usd")]
    Usd,
}

impl Currency {
    pub fn code(self) -> &'static str {
        match self {
            Currency::Usd => "usd",
        }
    }
    pub fn parse(s: &str) -> Option<Currency> {
        match s.to_ascii_lowercase().as_str() {
            "usd" => Some(Currency::Usd),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount overflow")]
    Overflow,
    #[error("currencies differ")]
    CurrencyMismatch,
    #[error("not a valid amount: use dollars and cents, like 12.34")]
    Malformed,
    #[error("amount must not be negative")]
    Negative,
}

/// An amount in minor units. Constructed explicitly; there is no `Default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    cents: i64,
    currency: Currency,
}

impl Money {
    pub const fn from_cents(cents: i64, currency: Currency) -> Money {
        Money { cents, currency }
    }
    pub const fn usd(cents: i64) -> Money {
        Money::from_cents(cents, Currency::Usd)
    }
    pub const fn zero(currency: Currency) -> Money {
        Money::from_cents(0, currency)
    }
    pub const fn cents(self) -> i64 {
        self.cents
    }
    pub const fn currency(self) -> Currency {
        self.currency
    }
    pub fn is_positive(self) -> bool {
        self.cents > 0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch);
        }
        self.cents
            .checked_add(other.cents)
            .map(|c| Money::from_cents(c, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch);
        }
        self.cents
            .checked_sub(other.cents)
            .map(|c| Money::from_cents(c, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// Sum of amounts in one currency.
    pub fn sum<I: IntoIterator<Item = Money>>(
        currency: Currency,
        items: I,
    ) -> Result<Money, MoneyError> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
    }

    /// Parses a user-typed dollar amount such as `12`, `12.3`, `12.34`, `$1,234.50`.
    /// Exact decimal parsing: never goes through a float.
    pub fn parse_dollars(input: &str, currency: Currency) -> Result<Money, MoneyError> {
        let s: String = input
            .trim()
            .trim_start_matches('$')
            .chars()
            .filter(|c| *c != ',')
            .collect();
        if s.starts_with('-') {
            return Err(MoneyError::Negative);
        }
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s.as_str(), ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(MoneyError::Malformed);
        }
        if !whole.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
            || frac.len() > 2
            || whole.len() > 15
        {
            return Err(MoneyError::Malformed);
        }
        let whole_v: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| MoneyError::Malformed)?
        };
        let frac_v: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| MoneyError::Malformed)? * 10,
            _ => frac.parse().map_err(|_| MoneyError::Malformed)?,
        };
        whole_v
            .checked_mul(100)
            .and_then(|c| c.checked_add(frac_v))
            .map(|c| Money::from_cents(c, currency))
            .ok_or(MoneyError::Overflow)
    }

    /// `12.34` (no symbol, no grouping): the value for an input field.
    pub fn to_plain(self) -> String {
        let sign = if self.cents < 0 { "-" } else { "" };
        let abs = self.cents.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl fmt::Display for Money {
    /// `$1,234.56`, `-$5.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.cents < 0 { "-" } else { "" };
        let abs = self.cents.unsigned_abs();
        let whole = (abs / 100).to_string();
        let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
        for (i, ch) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        let symbol = match self.currency {
            Currency::Usd => "$",
        };
        write!(f, "{sign}{symbol}{grouped}.{:02}", abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_groups_thousands() {
        assert_eq!(Money::usd(123456789).to_string(), "$1,234,567.89");
        assert_eq!(Money::usd(5).to_string(), "$0.05");
        assert_eq!(Money::usd(-500).to_string(), "-$5.00");
    }

    #[test]
    fn parse_accepts_usual_forms() {
        assert_eq!(
            Money::parse_dollars("12", Currency::Usd),
            Ok(Money::usd(1200))
        );
        assert_eq!(
            Money::parse_dollars("12.3", Currency::Usd),
            Ok(Money::usd(1230))
        );
        assert_eq!(
            Money::parse_dollars("$1,234.05", Currency::Usd),
            Ok(Money::usd(123405))
        );
        assert_eq!(
            Money::parse_dollars(".5", Currency::Usd),
            Ok(Money::usd(50))
        );
    }

    #[test]
    fn parse_refuses_garbage() {
        for bad in [
            "",
            "abc",
            "1.234",
            "1e3",
            "-5",
            "12.3.4",
            "NaN",
            "1 000",
            "99999999999999999999",
        ] {
            assert!(Money::parse_dollars(bad, Currency::Usd).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn plain_round_trips(c in 0i64..=9_000_000_000_000) {
            let m = Money::usd(c);
            prop_assert_eq!(Money::parse_dollars(&m.to_plain(), Currency::Usd), Ok(m));
            prop_assert_eq!(Money::parse_dollars(&m.to_string(), Currency::Usd), Ok(m));
        }

        #[test]
        fn add_is_checked(a in any::<i64>(), b in any::<i64>()) {
            let r = Money::usd(a).checked_add(Money::usd(b));
            match a.checked_add(b) {
                Some(s) => prop_assert_eq!(r, Ok(Money::usd(s))),
                None => prop_assert_eq!(r, Err(MoneyError::Overflow)),
            }
        }

        #[test]
        fn sub_then_add_is_identity(a in -1_000_000_000i64..1_000_000_000, b in -1_000_000_000i64..1_000_000_000) {
            let m = Money::usd(a).checked_sub(Money::usd(b)).and_then(|d| d.checked_add(Money::usd(b)));
            prop_assert_eq!(m, Ok(Money::usd(a)));
        }
    }
}
