//! Typed identifiers. Random ids are generated outside `domain` (no I/O here) and wrapped.

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            /// Wraps a stored or generated id; refuses anything that is not `PREFIX` + 1..64 `[A-Za-z0-9]`.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                (!rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
                    .then(|| Self(s.to_owned()))
            }
            /// Builds an id from random alphanumeric characters.
            pub fn from_random(random: &str) -> Self {
                Self(format!("{}{}", $prefix, random))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A payment (one checkout that may cover several accounts).
    PaymentId, "pay_"
);
string_id!(ResidentId, "res_");
string_id!(StaffId, "stf_");
string_id!(BillId, "bill_");
string_id!(EmailId, "eml_");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_prefix_and_charset() {
        assert!(PaymentId::parse("pay_abc123").is_some());
        assert!(PaymentId::parse("res_abc123").is_none());
        assert!(PaymentId::parse("pay_").is_none());
        assert!(PaymentId::parse("pay_../etc").is_none());
        assert!(PaymentId::parse("pay_a b").is_none());
    }
}
