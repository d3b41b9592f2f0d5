//! The three-way match of one business day: what the processor captured and refunded, what
//! we recorded as payments and refunds, and what we posted to the ledger (and exported).
//! Pure: the caller gathers each side and turns every `Difference` into an exception.
//!
//! Matching is by the processor's payment id (Stripe's `payment_intent`), which we record
//! on every captured payment. The processor side of a day is read over a wider window than
//! the day itself (a capture at 16:59:59 may be recorded by us at 17:00:01, on the next
//! business day), so:
//! - a capture *of the day* with no payment of ours anywhere is missing on our side;
//! - a payment *of the day* with no capture in the wider window is missing at the processor.
//!
//! Each difference carries a key that names the fact (`capture:<payment intent>`,
//! `payment:<id>`, ...), the same key the webhook path uses, so one fact is one exception
//! however often the day is reconciled.

use std::collections::{BTreeMap, BTreeSet};

/// A capture at the processor (a succeeded charge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub charge_id: String,
    pub payment_intent: String,
    pub amount_cents: i64,
    /// Unix seconds.
    pub created: i64,
    /// The checkout session's `client_reference_id` (our payment id), when the session
    /// is known.
    pub client_reference_id: Option<String>,
    pub session_id: Option<String>,
}

/// A refund at the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorRefund {
    pub id: String,
    pub payment_intent: Option<String>,
    pub amount_cents: i64,
    /// Stripe's status: only `succeeded` (and `pending`) moved money.
    pub status: String,
    pub created: i64,
}

/// One of our captured payments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurPayment {
    pub id: String,
    pub payment_intent: Option<String>,
    pub amount_cents: i64,
    /// Its succeeded moment falls in the day being reconciled.
    pub in_day: bool,
    /// Sum of its postings (`payment` kind).
    pub posted_cents: i64,
}

/// One of our refunds that the processor made (a payment refund, or an exception refunded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurRefund {
    pub id: String,
    pub processor_refund_id: String,
    pub amount_cents: i64,
    pub in_day: bool,
}

/// Everything known about one business day.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Captures in the wider window, with `in_day` telling which belong to the day.
    pub captures: Vec<(Capture, bool)>,
    pub refunds: Vec<(ProcessorRefund, bool)>,
    /// Our captured payments of the day, and any other payment of ours whose intent the
    /// processor's captures name (so a capture recorded on another day still matches).
    pub payments: Vec<OurPayment>,
    pub our_refunds: Vec<OurRefund>,
    /// Payment intents that an exception already accounts for (attached, refunded or
    /// explained): their captures are not "missing on our side" again.
    pub accounted_intents: BTreeSet<String>,
    /// The day was exported: every posting of the day must be in an export.
    pub postings_not_exported: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DifferenceKind {
    MissingOurs,
    MissingAtProcessor,
    DifferentAmount,
    Duplicate,
    NotPosted,
    RefundDifference,
}

/// One thing that does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub kind: DifferenceKind,
    /// Names the fact; equal keys are one exception.
    pub key: String,
    pub payment_id: Option<String>,
    /// The processor's id (charge, refund) when the processor has it.
    pub processor_ref: Option<String>,
    /// What the processor holds (captures) or the amount in question.
    pub amount_cents: Option<i64>,
    /// Plain words for the evidence.
    pub detail: String,
}

/// Totals of each side of the day (cents), for the reconciliation page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub processor_captures: i64,
    pub processor_capture_count: i64,
    pub processor_refunds: i64,
    pub our_payments: i64,
    pub our_payment_count: i64,
    pub our_refunds: i64,
    pub posted: i64,
}

pub fn totals(i: &Inputs) -> Totals {
    let mut t = Totals::default();
    for (c, in_day) in &i.captures {
        if *in_day {
            t.processor_captures = t.processor_captures.saturating_add(c.amount_cents);
            t.processor_capture_count += 1;
        }
    }
    for (r, in_day) in &i.refunds {
        if *in_day && moved_money(r) {
            t.processor_refunds = t.processor_refunds.saturating_add(r.amount_cents);
        }
    }
    for p in i.payments.iter().filter(|p| p.in_day) {
        t.our_payments = t.our_payments.saturating_add(p.amount_cents);
        t.our_payment_count += 1;
        t.posted = t.posted.saturating_add(p.posted_cents);
    }
    for r in i.our_refunds.iter().filter(|r| r.in_day) {
        t.our_refunds = t.our_refunds.saturating_add(r.amount_cents);
    }
    t
}

fn moved_money(r: &ProcessorRefund) -> bool {
    matches!(r.status.as_str(), "succeeded" | "pending")
}

/// Every difference of the day, in a stable order.
pub fn reconcile(i: &Inputs) -> Vec<Difference> {
    let mut out = Vec::new();
    let by_intent: BTreeMap<&str, &OurPayment> = i
        .payments
        .iter()
        .filter_map(|p| p.payment_intent.as_deref().map(|k| (k, p)))
        .collect();
    let by_id: BTreeMap<&str, &OurPayment> =
        i.payments.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut seen_intents = BTreeSet::new();

    for (c, in_day) in &i.captures {
        seen_intents.insert(c.payment_intent.as_str());
        if !*in_day {
            continue;
        }
        let key = format!("capture:{}", c.payment_intent);
        match by_intent.get(c.payment_intent.as_str()) {
            Some(p) => {
                if p.amount_cents != c.amount_cents {
                    out.push(Difference {
                        kind: DifferenceKind::DifferentAmount,
                        key,
                        payment_id: Some(p.id.clone()),
                        processor_ref: Some(c.charge_id.clone()),
                        amount_cents: Some(c.amount_cents),
                        detail: format!(
                            "processor captured {} cents, our payment is {} cents",
                            c.amount_cents, p.amount_cents
                        ),
                    });
                }
            }
            None if i.accounted_intents.contains(&c.payment_intent) => {}
            None => {
                // A second capture for a payment of ours that has another intent is a
                // duplicate; otherwise the capture is simply missing on our side.
                let dup = c
                    .client_reference_id
                    .as_deref()
                    .and_then(|r| by_id.get(r))
                    .filter(|p| p.payment_intent.as_deref() != Some(c.payment_intent.as_str()));
                out.push(match dup {
                    Some(p) => Difference {
                        kind: DifferenceKind::Duplicate,
                        key,
                        payment_id: Some(p.id.clone()),
                        processor_ref: Some(c.charge_id.clone()),
                        amount_cents: Some(c.amount_cents),
                        detail: format!(
                            "a second capture of {} cents for a payment already captured",
                            c.amount_cents
                        ),
                    },
                    None => Difference {
                        kind: DifferenceKind::MissingOurs,
                        key,
                        payment_id: c.client_reference_id.clone(),
                        processor_ref: Some(c.charge_id.clone()),
                        amount_cents: Some(c.amount_cents),
                        detail: format!(
                            "processor captured {} cents that no payment of ours records",
                            c.amount_cents
                        ),
                    },
                });
            }
        }
    }

    for p in i.payments.iter().filter(|p| p.in_day) {
        let at_processor = p
            .payment_intent
            .as_deref()
            .is_some_and(|k| seen_intents.contains(k));
        if !at_processor {
            out.push(Difference {
                kind: DifferenceKind::MissingAtProcessor,
                key: format!("payment:{}:missing", p.id),
                payment_id: Some(p.id.clone()),
                processor_ref: p.payment_intent.clone(),
                amount_cents: Some(p.amount_cents),
                detail: format!(
                    "our payment of {} cents has no capture at the processor",
                    p.amount_cents
                ),
            });
        }
        if p.posted_cents != p.amount_cents {
            out.push(Difference {
                kind: DifferenceKind::NotPosted,
                key: format!("payment:{}:posting", p.id),
                payment_id: Some(p.id.clone()),
                processor_ref: None,
                amount_cents: Some(p.amount_cents),
                detail: format!(
                    "payment of {} cents, postings of {} cents",
                    p.amount_cents, p.posted_cents
                ),
            });
        }
    }

    for posting in &i.postings_not_exported {
        out.push(Difference {
            kind: DifferenceKind::NotPosted,
            key: format!("posting:{posting}:export"),
            payment_id: None,
            processor_ref: None,
            amount_cents: None,
            detail: format!("posting {posting} is not in the day's export"),
        });
    }

    let ours: BTreeMap<&str, &OurRefund> = i
        .our_refunds
        .iter()
        .map(|r| (r.processor_refund_id.as_str(), r))
        .collect();
    let mut seen_refunds = BTreeSet::new();
    for (r, in_day) in &i.refunds {
        seen_refunds.insert(r.id.as_str());
        if !*in_day || !moved_money(r) {
            continue;
        }
        match ours.get(r.id.as_str()) {
            Some(o) if o.amount_cents != r.amount_cents => out.push(Difference {
                kind: DifferenceKind::RefundDifference,
                key: format!("refund:{}", r.id),
                payment_id: None,
                processor_ref: Some(r.id.clone()),
                amount_cents: Some(r.amount_cents),
                detail: format!(
                    "processor refunded {} cents, we recorded {} cents",
                    r.amount_cents, o.amount_cents
                ),
            }),
            Some(_) => {}
            None => out.push(Difference {
                kind: DifferenceKind::RefundDifference,
                key: format!("refund:{}", r.id),
                payment_id: None,
                processor_ref: Some(r.id.clone()),
                amount_cents: Some(r.amount_cents),
                detail: format!(
                    "processor refunded {} cents that no refund of ours records",
                    r.amount_cents
                ),
            }),
        }
    }
    for o in i.our_refunds.iter().filter(|o| o.in_day) {
        if !seen_refunds.contains(o.processor_refund_id.as_str()) {
            out.push(Difference {
                kind: DifferenceKind::RefundDifference,
                key: format!("refund:{}", o.processor_refund_id),
                payment_id: None,
                processor_ref: Some(o.processor_refund_id.clone()),
                amount_cents: Some(o.amount_cents),
                detail: format!(
                    "our refund {} of {} cents is unknown to the processor",
                    o.id, o.amount_cents
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cap(intent: &str, cents: i64, reference: Option<&str>) -> (Capture, bool) {
        (
            Capture {
                charge_id: format!("ch_{intent}"),
                payment_intent: intent.into(),
                amount_cents: cents,
                created: 100,
                client_reference_id: reference.map(str::to_owned),
                session_id: None,
            },
            true,
        )
    }

    fn pay(id: &str, intent: &str, cents: i64) -> OurPayment {
        OurPayment {
            id: id.into(),
            payment_intent: Some(intent.into()),
            amount_cents: cents,
            in_day: true,
            posted_cents: cents,
        }
    }

    #[test]
    fn a_matching_day_has_no_differences() {
        let i = Inputs {
            captures: vec![cap("pi_1", 500, Some("pay_1")), cap("pi_2", 700, None)],
            payments: vec![pay("pay_1", "pi_1", 500), pay("pay_2", "pi_2", 700)],
            ..Inputs::default()
        };
        assert!(reconcile(&i).is_empty());
        let t = totals(&i);
        assert_eq!(
            (t.processor_captures, t.our_payments, t.posted),
            (1200, 1200, 1200)
        );
    }

    #[test]
    fn each_kind_of_difference_is_found_once() {
        let mut late = cap("pi_late", 300, None);
        late.1 = false; // captured the day before, recorded by us today
        let i = Inputs {
            captures: vec![
                cap("pi_1", 500, Some("pay_1")),
                cap("pi_x", 900, None),           // unknown to us
                cap("pi_1b", 500, Some("pay_1")), // second capture of pay_1
                cap("pi_3", 650, Some("pay_3")),  // amount differs
                cap("pi_ok", 100, None),          // accounted for by an exception
                late,
            ],
            payments: vec![
                pay("pay_1", "pi_1", 500),
                pay("pay_2", "pi_2", 400), // not at the processor
                pay("pay_3", "pi_3", 600),
                OurPayment {
                    posted_cents: 0,
                    ..pay("pay_late", "pi_late", 300)
                }, // not posted
            ],
            accounted_intents: ["pi_ok".to_owned()].into_iter().collect(),
            ..Inputs::default()
        };
        let d = reconcile(&i);
        let kinds: Vec<(DifferenceKind, &str)> =
            d.iter().map(|d| (d.kind, d.key.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (DifferenceKind::MissingOurs, "capture:pi_x"),
                (DifferenceKind::Duplicate, "capture:pi_1b"),
                (DifferenceKind::DifferentAmount, "capture:pi_3"),
                (DifferenceKind::MissingAtProcessor, "payment:pay_2:missing"),
                (DifferenceKind::NotPosted, "payment:pay_late:posting"),
            ]
        );
    }

    #[test]
    fn refunds_are_matched_by_the_processors_refund_id() {
        let r = |id: &str, cents: i64, status: &str| {
            (
                ProcessorRefund {
                    id: id.into(),
                    payment_intent: Some("pi_1".into()),
                    amount_cents: cents,
                    status: status.into(),
                    created: 5,
                },
                true,
            )
        };
        let o = |id: &str, re: &str, cents: i64| OurRefund {
            id: id.into(),
            processor_refund_id: re.into(),
            amount_cents: cents,
            in_day: true,
        };
        let i = Inputs {
            refunds: vec![
                r("re_1", 100, "succeeded"),
                r("re_2", 200, "succeeded"),
                r("re_3", 50, "failed"),
                r("re_4", 75, "succeeded"),
            ],
            our_refunds: vec![
                o("rf_1", "re_1", 100),
                o("rf_2", "re_2", 250),
                o("rf_9", "re_9", 10),
            ],
            accounted_intents: BTreeSet::new(),
            ..Inputs::default()
        };
        let keys: Vec<String> = reconcile(&i).into_iter().map(|d| d.key).collect();
        assert_eq!(keys, vec!["refund:re_2", "refund:re_4", "refund:re_9"]);
        assert_eq!(totals(&i).processor_refunds, 375);
    }
}

/// The bills a payment pays off, oldest bills being paid first: `bills` newest first as
/// (id, cents); the account owed `before` and owes `after` (ledger balances, cents). A bill
/// is unpaid while the newest bills summing to the balance include it, so the bills paid
/// now are those unpaid before and not after.
pub fn newly_paid(bills: &[(String, i64)], before: i64, after: i64) -> Vec<&str> {
    let unpaid = |owed: i64| -> usize {
        // How many of the newest bills the balance reaches into.
        let mut left = owed;
        let mut n = 0;
        for (_, cents) in bills {
            if left <= 0 {
                break;
            }
            left -= cents;
            n += 1;
        }
        n
    };
    let (b, a) = (unpaid(before), unpaid(after));
    bills[a.min(b)..b]
        .iter()
        .map(|(id, _)| id.as_str())
        .collect()
}

#[cfg(test)]
mod paid_tests {
    use super::newly_paid;

    #[test]
    fn oldest_bills_are_paid_first() {
        let bills: Vec<(String, i64)> =
            vec![("c".into(), 100), ("b".into(), 100), ("a".into(), 100)];
        // Owes the two newest; pays 150: the older of them (b) is paid, c in part.
        assert_eq!(newly_paid(&bills, 200, 50), vec!["b"]);
        // Pays the rest: c.
        assert_eq!(newly_paid(&bills, 50, 0), vec!["c"]);
        // Owes nothing before: nothing to pay off.
        assert!(newly_paid(&bills, 0, -10).is_empty());
        // Pays everything owed at once.
        assert_eq!(newly_paid(&bills, 300, 0), vec!["c", "b", "a"]);
        // A partial payment that covers no whole bill.
        assert!(newly_paid(&bills, 250, 220).is_empty());
    }
}
