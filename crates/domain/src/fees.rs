//! Fee schedules of building permits and business licences, late penalties, and the card
//! networks' rules for fees charged to people who pay by card.
//!
//! Everything is integer cents. The rounding rule, stated once:
//!
//! - a bracket's "per step" fee is charged for each started step (US building codes say
//!   "for each additional $1,000 or fraction thereof"), so a valuation $1 over a bound
//!   pays one more step;
//! - a percentage (basis points: 1 % = 100) and a per-100-square-feet rate are rounded to
//!   the nearest cent, halves up.
//!
//! Pure functions of their inputs: dates are parameters, there is no clock here.

use serde::{Deserialize, Serialize};
use time::{Date, Month};

/// Why a fee schedule or a card-fee rule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    #[error("{0}")]
    Schedule(String),
    #[error("the fee is too large to compute")]
    Overflow,
}

/// `n * num / den` rounded to the nearest cent, halves up. `n`, `num` >= 0, `den` > 0.
pub fn mul_div_round(n: i64, num: i64, den: i64) -> Result<i64, FeeError> {
    if n < 0 || num < 0 || den <= 0 {
        return Err(FeeError::Schedule(
            "amounts and rates must not be negative".into(),
        ));
    }
    let p = i128::from(n) * i128::from(num);
    let q = (2 * p + i128::from(den)) / (2 * i128::from(den));
    i64::try_from(q).map_err(|_| FeeError::Overflow)
}

fn add(a: i64, b: i64) -> Result<i64, FeeError> {
    a.checked_add(b).ok_or(FeeError::Overflow)
}

/// One row of a bracket table: for a measure above `over_cents` (and up to the next row's
/// bound), `base_cents` plus `per_step_cents` for each started `step_cents` above
/// `over_cents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bracket {
    pub over_cents: i64,
    pub base_cents: i64,
    #[serde(default)]
    pub per_step_cents: i64,
    #[serde(default = "one_dollar")]
    pub step_cents: i64,
}

fn one_dollar() -> i64 {
    100
}

/// Checks a bracket table: it starts at 0, bounds rise, steps are positive, nothing is
/// negative.
pub fn check_brackets(table: &[Bracket], what: &str) -> Result<(), FeeError> {
    let Some(first) = table.first() else {
        return Err(FeeError::Schedule(format!("{what}: the table has no rows")));
    };
    if first.over_cents != 0 {
        return Err(FeeError::Schedule(format!(
            "{what}: the first row must start at 0"
        )));
    }
    for (i, b) in table.iter().enumerate() {
        if b.base_cents < 0 || b.per_step_cents < 0 || b.over_cents < 0 {
            return Err(FeeError::Schedule(format!(
                "{what}: row {} has a negative amount",
                i + 1
            )));
        }
        if b.step_cents <= 0 {
            return Err(FeeError::Schedule(format!(
                "{what}: row {} needs a step of at least one cent",
                i + 1
            )));
        }
        if i > 0 && table[i - 1].over_cents >= b.over_cents {
            return Err(FeeError::Schedule(format!(
                "{what}: row {} must start above row {}",
                i + 1,
                i
            )));
        }
    }
    Ok(())
}

/// The fee a bracket table gives a measure (a valuation, gross receipts) in cents.
pub fn bracket_fee(table: &[Bracket], measure_cents: i64) -> Result<i64, FeeError> {
    if measure_cents < 0 {
        return Err(FeeError::Schedule("the amount must not be negative".into()));
    }
    let Some(b) = table
        .iter()
        .rev()
        .find(|b| measure_cents > b.over_cents)
        .or(table.first())
    else {
        return Ok(0);
    };
    let above = measure_cents - b.over_cents;
    let steps = if above <= 0 {
        0
    } else {
        (above + b.step_cents - 1) / b.step_cents
    };
    let per = steps
        .checked_mul(b.per_step_cents)
        .ok_or(FeeError::Overflow)?;
    add(b.base_cents, per)
}

/// A permit type's fee schedule. The permit fee is `flat + valuation table + area rate`,
/// at least `minimum`; plan review is a share of the permit fee plus a flat part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermitFees {
    #[serde(default)]
    pub flat_cents: i64,
    #[serde(default)]
    pub valuation: Vec<Bracket>,
    /// Cents per 100 square feet of the project's area.
    #[serde(default)]
    pub per_100_sq_ft_cents: i64,
    #[serde(default)]
    pub minimum_cents: i64,
    /// Plan review as a share of the permit fee, in basis points (6500 = 65 %).
    #[serde(default)]
    pub plan_review_bps: i64,
    #[serde(default)]
    pub plan_review_flat_cents: i64,
    /// Charged when an inspection fails and a re-inspection is needed.
    #[serde(default)]
    pub reinspection_cents: i64,
}

/// One line of a computed fee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeLine {
    /// A stable code ("permit_fee", "plan_review", "licence_fee", "late_penalty"); pages
    /// show it through the message catalog.
    pub code: String,
    pub amount_cents: i64,
}

impl PermitFees {
    pub fn check(&self) -> Result<(), FeeError> {
        let amounts = [
            self.flat_cents,
            self.per_100_sq_ft_cents,
            self.minimum_cents,
            self.plan_review_bps,
            self.plan_review_flat_cents,
            self.reinspection_cents,
        ];
        if amounts.iter().any(|a| *a < 0) {
            return Err(FeeError::Schedule(
                "fee amounts must not be negative".into(),
            ));
        }
        if self.plan_review_bps > 100_000 {
            return Err(FeeError::Schedule(
                "plan review may be at most 1000 % of the permit fee".into(),
            ));
        }
        if !self.valuation.is_empty() {
            check_brackets(&self.valuation, "valuation table")?;
        }
        Ok(())
    }

    /// The fee lines for a project of this valuation and area.
    pub fn compute(&self, valuation_cents: i64, area_sq_ft: i64) -> Result<Vec<FeeLine>, FeeError> {
        if valuation_cents < 0 || area_sq_ft < 0 {
            return Err(FeeError::Schedule(
                "valuation and area must not be negative".into(),
            ));
        }
        let by_value = if self.valuation.is_empty() {
            0
        } else {
            bracket_fee(&self.valuation, valuation_cents)?
        };
        let by_area = mul_div_round(area_sq_ft, self.per_100_sq_ft_cents, 100)?;
        let permit = add(add(self.flat_cents, by_value)?, by_area)?.max(self.minimum_cents);
        let mut lines = vec![FeeLine {
            code: "permit_fee".into(),
            amount_cents: permit,
        }];
        let review = add(
            mul_div_round(permit, self.plan_review_bps, 10_000)?,
            self.plan_review_flat_cents,
        )?;
        if review > 0 {
            lines.push(FeeLine {
                code: "plan_review".into(),
                amount_cents: review,
            });
        }
        Ok(lines)
    }
}

/// How a licence type's fee is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum LicenceFee {
    Flat {
        amount_cents: i64,
    },
    /// `base` covers `included_employees`; each employee beyond adds `per_employee`.
    PerEmployee {
        base_cents: i64,
        per_employee_cents: i64,
        #[serde(default)]
        included_employees: i64,
    },
    GrossReceipts {
        brackets: Vec<Bracket>,
    },
}

impl LicenceFee {
    pub fn check(&self) -> Result<(), FeeError> {
        match self {
            LicenceFee::Flat { amount_cents } if *amount_cents < 0 => Err(FeeError::Schedule(
                "fee amounts must not be negative".into(),
            )),
            LicenceFee::PerEmployee {
                base_cents,
                per_employee_cents,
                included_employees,
            } if *base_cents < 0 || *per_employee_cents < 0 || *included_employees < 0 => Err(
                FeeError::Schedule("fee amounts must not be negative".into()),
            ),
            LicenceFee::GrossReceipts { brackets } => {
                check_brackets(brackets, "gross receipts table")
            }
            _ => Ok(()),
        }
    }

    /// The annual fee of a business with this many employees and these gross receipts.
    pub fn compute(&self, employees: i64, gross_receipts_cents: i64) -> Result<i64, FeeError> {
        if employees < 0 || gross_receipts_cents < 0 {
            return Err(FeeError::Schedule(
                "employees and gross receipts must not be negative".into(),
            ));
        }
        match self {
            LicenceFee::Flat { amount_cents } => Ok(*amount_cents),
            LicenceFee::PerEmployee {
                base_cents,
                per_employee_cents,
                included_employees,
            } => {
                let extra = (employees - included_employees).max(0);
                add(
                    *base_cents,
                    extra
                        .checked_mul(*per_employee_cents)
                        .ok_or(FeeError::Overflow)?,
                )
            }
            LicenceFee::GrossReceipts { brackets } => bracket_fee(brackets, gross_receipts_cents),
        }
    }
}

/// When a licence expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expiry {
    /// Every licence of the type expires on the same day of the year.
    FixedDate { month: u8, day: u8 },
    /// A year after it was issued (or last renewed).
    Anniversary,
}

/// The same day a year later (29 February becomes 28 February).
pub fn one_year_after(d: Date) -> Date {
    let y = d.year() + 1;
    Date::from_calendar_date(y, d.month(), d.day())
        .or_else(|_| Date::from_calendar_date(y, d.month(), 28))
        .unwrap_or(d)
}

impl Expiry {
    pub fn check(&self) -> Result<(), FeeError> {
        if let Expiry::FixedDate { month, day } = self {
            let ok = Month::try_from(*month)
                .ok()
                .is_some_and(|m| Date::from_calendar_date(2025, m, *day).is_ok());
            if !ok {
                return Err(FeeError::Schedule(
                    "the fixed expiry date is not a day of the year (29 February is not allowed)"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The expiry of a licence first issued on `issued`.
    pub fn first(&self, issued: Date) -> Date {
        match *self {
            Expiry::Anniversary => one_year_after(issued),
            Expiry::FixedDate { month, day } => {
                let this_year = Month::try_from(month)
                    .ok()
                    .and_then(|m| Date::from_calendar_date(issued.year(), m, day).ok());
                match this_year {
                    Some(d) if d > issued => d,
                    Some(d) => one_year_after(d),
                    None => one_year_after(issued),
                }
            }
        }
    }

    /// The expiry after a renewal of a licence that expired (or expires) on `previous`:
    /// a year on from the previous expiry, so a late renewal does not buy extra time.
    pub fn renewed(&self, previous: Date) -> Date {
        one_year_after(previous)
    }
}

/// A late-renewal penalty: a share of the fee for each started month after expiry,
/// capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatePenalty {
    /// Basis points of the fee per started month (1000 = 10 %).
    pub per_month_bps: i64,
    /// The most the penalty may reach, in basis points of the fee.
    pub cap_bps: i64,
}

/// Started months between an expiry and `today`: 0 on or before the expiry day, 1 from
/// the day after it until the same day of the next month, and so on.
pub fn months_late(expiry: Date, today: Date) -> i64 {
    if today <= expiry {
        return 0;
    }
    let months = (i64::from(today.year()) - i64::from(expiry.year())) * 12
        + i64::from(u8::from(today.month()))
        - i64::from(u8::from(expiry.month()));
    // A whole month has passed on the same day of the month (or the month's last day
    // when it has no such day); any day after that starts another.
    let whole_at = add_months(expiry, months);
    if today > whole_at {
        months + 1
    } else {
        months
    }
}

/// `d` plus `n` calendar months, the day clamped to the month's length.
pub fn add_months(d: Date, n: i64) -> Date {
    let total = i64::from(d.year()) * 12 + i64::from(u8::from(d.month())) - 1 + n;
    let (y, m) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let (Ok(y), Ok(m)) = (i32::try_from(y), u8::try_from(m)) else {
        return d;
    };
    let Ok(month) = Month::try_from(m) else {
        return d;
    };
    let last = month.length(y);
    Date::from_calendar_date(y, month, d.day().min(last)).unwrap_or(d)
}

impl LatePenalty {
    pub fn check(&self) -> Result<(), FeeError> {
        if self.per_month_bps < 0 || self.cap_bps < 0 {
            return Err(FeeError::Schedule(
                "penalty rates must not be negative".into(),
            ));
        }
        Ok(())
    }

    /// The penalty on `fee_cents` for a renewal on `today` of a licence that expired on
    /// `expiry`.
    pub fn compute(&self, fee_cents: i64, expiry: Date, today: Date) -> Result<i64, FeeError> {
        let months = months_late(expiry, today);
        let by_month = mul_div_round(
            fee_cents,
            self.per_month_bps
                .checked_mul(months)
                .ok_or(FeeError::Overflow)?,
            10_000,
        )?;
        let cap = mul_div_round(fee_cents, self.cap_bps, 10_000)?;
        Ok(by_month.min(cap))
    }
}

/// Who bears a card fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargedTo {
    /// Added to what the payer pays, as its own line.
    Payer,
    /// The city pays it; the payer sees no fee.
    Absorbed,
}

/// The two kinds of card fee the networks know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardFeeKind {
    /// For the convenience of paying in an alternative channel (online rather than at the
    /// counter).
    Convenience,
    /// A government or utility service fee (Visa's government and higher-education and
    /// utility programmes).
    Service,
}

/// A city's rule for a fee on one item type paid by one method in one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardFeeRule {
    pub item_type: String,
    #[serde(default = "card")]
    pub method: String,
    #[serde(default = "web")]
    pub channel: String,
    pub kind: CardFeeKind,
    #[serde(default)]
    pub flat_cents: i64,
    #[serde(default)]
    pub percent_bps: i64,
    pub charged_to: ChargedTo,
    /// Whether the fee is also charged on recurring (scheduled, automatic) payments.
    #[serde(default)]
    pub on_recurring: bool,
    /// Charged as its own card transaction rather than added to the payment's.
    #[serde(default)]
    pub separate_transaction: bool,
}

fn card() -> String {
    "card".into()
}
fn web() -> String {
    "web".into()
}

/// A card-fee rule the networks' rules forbid, with the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeRuleViolation {
    /// A stable code: the catalog key of the message is `fee_rule.<code>`.
    pub code: &'static str,
    /// The network rule broken, as the city's acquirer would cite it.
    pub citation: &'static str,
    /// Which configured rule (item type, channel).
    pub subject: String,
    pub message: String,
}

const CITE_CONV_FLAT: &str =
    "Visa Core Rules 5.6.3.2 / Mastercard Rules 5.12.2: a convenience fee must be a flat or fixed amount, regardless of the value of the payment due";
const CITE_CONV_ALL: &str =
    "Visa Core Rules 5.6.3.2: a convenience fee must be assessed on all transactions in the same payment channel";
const CITE_CONV_RECURRING: &str =
    "Visa Core Rules 5.6.3.2: a convenience fee must not be charged on a recurring transaction";
const CITE_SERVICE_SEPARATE: &str =
    "Visa Government and Higher Education Payment Program: the service fee must be processed as a separate transaction";
const CITE_NOT_BOTH: &str =
    "Visa Core Rules 5.6.3.2: a merchant that assesses a service fee may not also assess a convenience fee";

/// Item types whose fees may be set.
pub const ITEM_TYPES: &[&str] = &["utility", "permit", "licence"];
/// Payment methods and channels the portal has.
pub const METHODS: &[&str] = &["card"];
pub const CHANNELS: &[&str] = &["web"];

/// Checks a city's card-fee rules against the networks' rules. Every violation is
/// reported, not only the first.
pub fn check_card_fees(rules: &[CardFeeRule]) -> Vec<FeeRuleViolation> {
    let mut out = Vec::new();
    let subject = |r: &CardFeeRule| format!("{} / {} / {}", r.item_type, r.method, r.channel);
    let mut seen = std::collections::HashSet::new();
    for r in rules {
        let s = subject(r);
        if !ITEM_TYPES.contains(&r.item_type.as_str())
            || !METHODS.contains(&r.method.as_str())
            || !CHANNELS.contains(&r.channel.as_str())
        {
            out.push(FeeRuleViolation {
                code: "unknown_subject",
                citation: "",
                subject: s.clone(),
                message: format!(
                    "item type must be one of {ITEM_TYPES:?}, method one of {METHODS:?}, channel one of {CHANNELS:?}"
                ),
            });
            continue;
        }
        if !seen.insert((
            r.item_type.clone(),
            r.method.clone(),
            r.channel.clone(),
            r.kind,
        )) {
            out.push(FeeRuleViolation {
                code: "duplicate",
                citation: "",
                subject: s.clone(),
                message: "two rules of the same kind for the same item type, method and channel"
                    .into(),
            });
        }
        if r.flat_cents < 0 || r.percent_bps < 0 || r.percent_bps > 10_000 {
            out.push(FeeRuleViolation {
                code: "amount",
                citation: "",
                subject: s.clone(),
                message: "the fee must not be negative and a percentage at most 100 %".into(),
            });
        }
        if r.charged_to == ChargedTo::Absorbed {
            continue;
        }
        match r.kind {
            CardFeeKind::Convenience => {
                if r.percent_bps != 0 {
                    out.push(FeeRuleViolation {
                        code: "convenience_flat",
                        citation: CITE_CONV_FLAT,
                        subject: s.clone(),
                        message: "a convenience fee must be a flat amount, not a percentage".into(),
                    });
                }
                if r.on_recurring {
                    out.push(FeeRuleViolation {
                        code: "convenience_recurring",
                        citation: CITE_CONV_RECURRING,
                        subject: s.clone(),
                        message: "a convenience fee may never be charged on recurring payments"
                            .into(),
                    });
                }
                // Every item type paid in this channel and method must carry the same fee.
                for other in ITEM_TYPES {
                    let same = rules.iter().any(|o| {
                        o.item_type == *other
                            && o.method == r.method
                            && o.channel == r.channel
                            && o.kind == CardFeeKind::Convenience
                            && o.charged_to == ChargedTo::Payer
                            && o.flat_cents == r.flat_cents
                            && o.percent_bps == r.percent_bps
                    });
                    if !same {
                        out.push(FeeRuleViolation {
                            code: "convenience_all_payments",
                            citation: CITE_CONV_ALL,
                            subject: s.clone(),
                            message: format!(
                                "a convenience fee must apply, at the same amount, to every payment in the {} channel; {} payments differ",
                                r.channel, other
                            ),
                        });
                        break;
                    }
                }
            }
            CardFeeKind::Service => {
                if !r.separate_transaction {
                    out.push(FeeRuleViolation {
                        code: "service_separate",
                        citation: CITE_SERVICE_SEPARATE,
                        subject: s.clone(),
                        message: "a service fee must be charged as its own card transaction".into(),
                    });
                }
                let also_convenience = rules.iter().any(|o| {
                    o.item_type == r.item_type
                        && o.channel == r.channel
                        && o.method == r.method
                        && o.kind == CardFeeKind::Convenience
                        && o.charged_to == ChargedTo::Payer
                });
                if also_convenience {
                    out.push(FeeRuleViolation {
                        code: "service_and_convenience",
                        citation: CITE_NOT_BOTH,
                        subject: s.clone(),
                        message: "a service fee and a convenience fee may not both be charged"
                            .into(),
                    });
                }
            }
        }
    }
    out
}

/// The fee a payer pays under `rule` on a payment of `amount_cents` (0 when absorbed).
pub fn card_fee(rule: &CardFeeRule, amount_cents: i64) -> Result<i64, FeeError> {
    if rule.charged_to == ChargedTo::Absorbed {
        return Ok(0);
    }
    add(
        rule.flat_cents,
        mul_div_round(amount_cents, rule.percent_bps, 10_000)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    /// A valuation table in the shape of the Uniform Building Code's Table 1-A.
    fn ubc() -> Vec<Bracket> {
        vec![
            Bracket {
                over_cents: 0,
                base_cents: 2_350,
                per_step_cents: 0,
                step_cents: 100,
            },
            Bracket {
                over_cents: 50_000,
                base_cents: 2_350,
                per_step_cents: 305,
                step_cents: 10_000,
            },
            Bracket {
                over_cents: 200_000,
                base_cents: 6_925,
                per_step_cents: 1_400,
                step_cents: 100_000,
            },
            Bracket {
                over_cents: 2_500_000,
                base_cents: 39_125,
                per_step_cents: 1_010,
                step_cents: 100_000,
            },
        ]
    }

    #[test]
    fn brackets() {
        let t = ubc();
        // (valuation in cents, fee in cents)
        let cases = [
            (0, 2_350),
            (50_000, 2_350),             // $500: the first row's flat fee
            (50_001, 2_655),             // one cent over: one started $100 step
            (60_000, 2_655),             // $600: one step
            (60_001, 2_960),             // a fraction of the next step counts
            (200_000, 2_350 + 15 * 305), // $2,000: 15 steps of $100 in row 2
            (200_001, 6_925 + 1_400),
            (1_000_000, 6_925 + 8 * 1_400), // $10,000
            (2_500_000, 6_925 + 23 * 1_400),
            (10_000_000, 39_125 + 75 * 1_010), // $100,000
        ];
        for (v, fee) in cases {
            assert_eq!(bracket_fee(&t, v), Ok(fee), "valuation {v}");
        }
    }

    #[test]
    fn bracket_tables_are_checked() {
        let mut t = ubc();
        t[0].over_cents = 1;
        assert!(check_brackets(&t, "v").is_err());
        let mut t = ubc();
        t.swap(1, 2);
        assert!(check_brackets(&t, "v").is_err());
        let mut t = ubc();
        t[2].step_cents = 0;
        assert!(check_brackets(&t, "v").is_err());
        assert!(check_brackets(&[], "v").is_err());
        assert!(check_brackets(&ubc(), "v").is_ok());
    }

    #[test]
    fn permit_fees() {
        let fees = PermitFees {
            flat_cents: 0,
            valuation: ubc(),
            per_100_sq_ft_cents: 0,
            minimum_cents: 5_000,
            plan_review_bps: 6_500,
            plan_review_flat_cents: 0,
            reinspection_cents: 7_500,
        };
        // (valuation, area, permit fee, plan review)
        let cases = [
            (0, 0, 5_000, 3_250),           // the minimum applies
            (1_000_000, 0, 18_125, 11_781), // 65 % of $181.25 = $117.8125 -> $117.81
            (1_000_100, 0, 19_525, 12_691), // 65 % of $195.25 = $126.9125 -> $126.91
            (200_000, 0, 6_925, 4_501),     // 65 % of $69.25 = $45.0125 -> $45.01
        ];
        for (v, a, permit, review) in cases {
            let lines = fees.compute(v, a).unwrap();
            assert_eq!(
                lines[0],
                FeeLine {
                    code: "permit_fee".into(),
                    amount_cents: permit
                },
                "{v}"
            );
            assert_eq!(lines[1].amount_cents, review, "{v}");
        }
        // Area rate, rounded half up: 1,250 sq ft at $6.50 per 100 = $81.25; 1 sq ft at
        // $0.50 per 100 = 0.5 cent -> 1 cent.
        let area = PermitFees {
            flat_cents: 2_500,
            valuation: vec![],
            per_100_sq_ft_cents: 650,
            minimum_cents: 0,
            plan_review_bps: 0,
            plan_review_flat_cents: 1_000,
            reinspection_cents: 0,
        };
        let l = area.compute(0, 1_250).unwrap();
        assert_eq!(l[0].amount_cents, 2_500 + 8_125);
        assert_eq!(
            l[1],
            FeeLine {
                code: "plan_review".into(),
                amount_cents: 1_000
            }
        );
        let half = PermitFees {
            per_100_sq_ft_cents: 50,
            flat_cents: 0,
            plan_review_flat_cents: 0,
            ..area.clone()
        };
        assert_eq!(half.compute(0, 1).unwrap()[0].amount_cents, 1);
        assert_eq!(
            half.compute(0, 0).unwrap().len(),
            1,
            "no plan review line at 0"
        );
        assert!(fees.compute(-1, 0).is_err());
        let bad = PermitFees {
            minimum_cents: -1,
            ..area
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn rounding_is_half_up() {
        assert_eq!(mul_div_round(1, 1, 2), Ok(1));
        assert_eq!(mul_div_round(1, 1, 3), Ok(0));
        assert_eq!(mul_div_round(2, 1, 3), Ok(1));
        assert_eq!(mul_div_round(12_345, 250, 10_000), Ok(309)); // 308.625
        assert_eq!(mul_div_round(i64::MAX, 2, 1), Err(FeeError::Overflow));
    }

    #[test]
    fn licence_fees() {
        let per = LicenceFee::PerEmployee {
            base_cents: 5_000,
            per_employee_cents: 1_200,
            included_employees: 5,
        };
        assert_eq!(per.compute(3, 0), Ok(5_000));
        assert_eq!(per.compute(5, 0), Ok(5_000));
        assert_eq!(per.compute(12, 0), Ok(5_000 + 7 * 1_200));
        let gross = LicenceFee::GrossReceipts {
            brackets: vec![
                Bracket {
                    over_cents: 0,
                    base_cents: 7_500,
                    per_step_cents: 0,
                    step_cents: 100,
                },
                Bracket {
                    over_cents: 10_000_000,
                    base_cents: 7_500,
                    per_step_cents: 100,
                    step_cents: 100_000,
                },
            ],
        };
        assert_eq!(gross.compute(0, 10_000_000), Ok(7_500)); // $100,000
        assert_eq!(gross.compute(0, 25_000_000), Ok(7_500 + 150 * 100)); // $250,000
        assert_eq!(gross.compute(0, 10_000_001), Ok(7_600));
        assert_eq!(
            LicenceFee::Flat {
                amount_cents: 9_900
            }
            .compute(40, 1),
            Ok(9_900)
        );
        assert!(LicenceFee::Flat { amount_cents: -1 }.check().is_err());
    }

    #[test]
    fn expiry_dates() {
        let fixed = Expiry::FixedDate { month: 12, day: 31 };
        assert_eq!(fixed.first(date!(2026 - 03 - 01)), date!(2026 - 12 - 31));
        assert_eq!(fixed.first(date!(2026 - 12 - 31)), date!(2027 - 12 - 31));
        assert_eq!(
            Expiry::Anniversary.first(date!(2024 - 02 - 29)),
            date!(2025 - 02 - 28)
        );
        assert_eq!(
            Expiry::Anniversary.renewed(date!(2026 - 06 - 30)),
            date!(2027 - 06 - 30)
        );
        assert!(Expiry::FixedDate { month: 2, day: 29 }.check().is_err());
        assert!(Expiry::FixedDate { month: 13, day: 1 }.check().is_err());
    }

    #[test]
    fn late_penalties() {
        let p = LatePenalty {
            per_month_bps: 1_000,
            cap_bps: 2_500,
        };
        let exp = date!(2026 - 01 - 31);
        // (renewed on, started months late, penalty on a $123.45 fee)
        let cases = [
            (date!(2026 - 01 - 31), 0, 0),
            (date!(2026 - 02 - 01), 1, 1_235), // 10 % of 12,345 = 1,234.5 -> 1,235
            (date!(2026 - 02 - 28), 1, 1_235), // the month ends on the 28th
            (date!(2026 - 03 - 01), 2, 2_469),
            (date!(2026 - 03 - 31), 2, 2_469),
            (date!(2026 - 04 - 01), 3, 3_086), // capped at 25 % = 3,086.25 -> 3,086
            (date!(2027 - 01 - 01), 12, 3_086),
        ];
        for (today, months, penalty) in cases {
            assert_eq!(months_late(exp, today), months, "{today}");
            assert_eq!(p.compute(12_345, exp, today), Ok(penalty), "{today}");
        }
        assert_eq!(months_late(date!(2026 - 06 - 15), date!(2026 - 07 - 15)), 1);
        assert_eq!(months_late(date!(2026 - 06 - 15), date!(2026 - 07 - 16)), 2);
    }

    fn rule(item: &str, kind: CardFeeKind, flat: i64, bps: i64) -> CardFeeRule {
        CardFeeRule {
            item_type: item.into(),
            method: "card".into(),
            channel: "web".into(),
            kind,
            flat_cents: flat,
            percent_bps: bps,
            charged_to: ChargedTo::Payer,
            on_recurring: false,
            separate_transaction: kind == CardFeeKind::Service,
        }
    }

    fn all_conv(flat: i64) -> Vec<CardFeeRule> {
        ITEM_TYPES
            .iter()
            .map(|t| rule(t, CardFeeKind::Convenience, flat, 0))
            .collect()
    }

    #[test]
    fn card_fee_rules() {
        use CardFeeKind::*;
        // (rules, the codes refused; every refusal cites its network rule)
        let mut recurring = all_conv(295);
        recurring[0].on_recurring = true;
        let mut not_separate = vec![rule("permit", Service, 0, 250)];
        not_separate[0].separate_transaction = false;
        let mut absorbed_pct = vec![rule("utility", Convenience, 0, 300)];
        absorbed_pct[0].charged_to = ChargedTo::Absorbed;
        let mut mixed = all_conv(295);
        mixed.push(rule("permit", Service, 0, 250));
        let cases: Vec<(Vec<CardFeeRule>, Vec<&str>)> = vec![
            (all_conv(295), vec![]),
            (vec![rule("permit", Service, 0, 250)], vec![]),
            (vec![rule("licence", Service, 100, 250)], vec![]),
            (absorbed_pct, vec![]),
            (
                ITEM_TYPES
                    .iter()
                    .map(|t| rule(t, Convenience, 100, 250))
                    .collect(),
                vec!["convenience_flat", "convenience_flat", "convenience_flat"],
            ),
            (
                vec![rule("utility", Convenience, 295, 0)],
                vec!["convenience_all_payments"],
            ),
            (
                vec![
                    rule("utility", Convenience, 295, 0),
                    rule("permit", Convenience, 195, 0),
                    rule("licence", Convenience, 295, 0),
                ],
                vec![
                    "convenience_all_payments",
                    "convenience_all_payments",
                    "convenience_all_payments",
                ],
            ),
            (recurring, vec!["convenience_recurring"]),
            (not_separate, vec!["service_separate"]),
            (mixed, vec!["service_and_convenience"]),
            (
                vec![rule("parking", Convenience, 1, 0)],
                vec!["unknown_subject"],
            ),
            (vec![rule("permit", Service, -5, 0)], vec!["amount"]),
        ];
        for (rules, want) in cases {
            let got = check_card_fees(&rules);
            let codes: Vec<&str> = got.iter().map(|v| v.code).collect();
            assert_eq!(codes, want, "{rules:?}");
            for v in got {
                if v.code.starts_with("convenience") || v.code.starts_with("service") {
                    assert!(v.citation.starts_with("Visa"), "{v:?} cites its rule");
                }
            }
        }
    }

    #[test]
    fn card_fee_amounts() {
        let conv = rule("utility", CardFeeKind::Convenience, 295, 0);
        assert_eq!(card_fee(&conv, 10_000), Ok(295));
        let svc = rule("permit", CardFeeKind::Service, 100, 250);
        assert_eq!(card_fee(&svc, 12_345), Ok(100 + 309));
        let mut abs = svc.clone();
        abs.charged_to = ChargedTo::Absorbed;
        assert_eq!(card_fee(&abs, 12_345), Ok(0));
    }
}
