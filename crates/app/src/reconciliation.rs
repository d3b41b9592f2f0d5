//! Reconciliation of a business day with the processor, the source of truth: the day's
//! captures, refunds and payouts are read from the processor's list endpoints (Stripe's
//! list format, every page), our payments, refunds and postings from the store, and
//! `domain::reconcile` matches the three. Every difference becomes an exception (one per
//! fact, whatever the number of runs); the run itself is kept with its totals and audited.
//!
//! The processor side is read over the business day widened by `SLACK_SECS` on each side:
//! a capture a second before the cut-off may be recorded by us a second after it.

use crate::exceptions::{ExceptionKind, NewException};
use crate::ids::random_id;
use crate::{App, AppError, FieldProblem};
use domain::reconcile::{self, Capture, DifferenceKind, Inputs, OurPayment, OurRefund};
use domain::Money;
use std::collections::{BTreeMap, BTreeSet};
use store::reconciliation::{self as rec, RunRow};
use store::StoreError;

/// How far around the business day the processor's records are read; the daily job
/// reconciles a day this long after its cut-off, once late webhooks have landed.
pub const SLACK_SECS: i64 = 3600;

/// How many closed days back the daily job looks for days not yet reconciled.
pub const CATCH_UP_DAYS: i64 = 7;

/// One run, as staff see it.
#[derive(Debug, Clone)]
pub struct RunView {
    pub id: String,
    pub business_date: String,
    pub ran_at: i64,
    pub ran_by: String,
    pub processor_capture_count: i64,
    pub processor_captures: Money,
    pub processor_refunds: Money,
    pub payouts: Money,
    pub our_payment_count: i64,
    pub our_payments: Money,
    pub our_refunds: Money,
    pub posted: Money,
    pub exported: bool,
    pub differences: Vec<RunDifference>,
    pub new_exceptions: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunDifference {
    pub kind: String,
    pub key: String,
    pub detail: String,
    pub exception_id: Option<String>,
}

fn kind_of(k: DifferenceKind) -> ExceptionKind {
    match k {
        DifferenceKind::MissingOurs => ExceptionKind::MissingOurs,
        DifferenceKind::MissingAtProcessor => ExceptionKind::MissingAtProcessor,
        DifferenceKind::DifferentAmount => ExceptionKind::DifferentAmount,
        DifferenceKind::Duplicate => ExceptionKind::Duplicate,
        DifferenceKind::NotPosted => ExceptionKind::NotPosted,
        DifferenceKind::RefundDifference => ExceptionKind::RefundDifference,
    }
}

impl App {
    fn run_view(&self, r: RunRow) -> RunView {
        let m = |c: i64| Money::from_cents(c, self.config().currency);
        RunView {
            differences: serde_json::from_str(&r.detail).unwrap_or_default(),
            id: r.id,
            business_date: r.business_date,
            ran_at: r.ran_at,
            ran_by: r.ran_by,
            processor_capture_count: r.processor_capture_count,
            processor_captures: m(r.processor_captures_cents),
            processor_refunds: m(r.processor_refunds_cents),
            payouts: m(r.payouts_cents),
            our_payment_count: r.our_payment_count,
            our_payments: m(r.our_payments_cents),
            our_refunds: m(r.our_refunds_cents),
            posted: m(r.posted_cents),
            exported: r.exported != 0,
            new_exceptions: r.new_exceptions,
        }
    }

    /// The newest run of each reconciled day, newest day first.
    pub async fn reconciliations(&self, limit: i64) -> Result<Vec<RunView>, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(rec::latest_runs(&mut conn, limit)
            .await?
            .into_iter()
            .map(|r| self.run_view(r))
            .collect())
    }

    /// Every run of one day, newest first.
    pub async fn reconciliation_runs(&self, day: time::Date) -> Result<Vec<RunView>, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(rec::runs_of_day(&mut conn, &day.to_string())
            .await?
            .into_iter()
            .map(|r| self.run_view(r))
            .collect())
    }

    /// The daily job: reconciles each closed business day of the last `CATCH_UP_DAYS` (from
    /// the city's first day with postings on) that has no run yet, an hour after its
    /// cut-off. Returns how many days it reconciled.
    pub async fn reconcile_due_days(&self) -> Result<usize, AppError> {
        let now = self.now_unix();
        let today = self.business_date(now)?;
        let first = {
            let mut conn = self.store.conn().await?;
            rec::first_posting_day(&mut conn).await?
        };
        let Some(first) = first else {
            return Ok(0);
        };
        let mut done = 0;
        for back in (1..=CATCH_UP_DAYS).rev() {
            let day = today - time::Duration::days(back);
            if day.to_string() < first {
                continue;
            }
            let (_, to) = self.business_day_bounds(day)?;
            if now < to + SLACK_SECS {
                continue;
            }
            let ran = {
                let mut conn = self.store.conn().await?;
                rec::has_run(&mut conn, &day.to_string()).await?
            };
            if !ran {
                self.reconcile_day(day, "system").await?;
                done += 1;
            }
        }
        Ok(done)
    }

    /// Reconciles one closed business day; see the module documentation. `actor` is who
    /// asked (`system` for the daily job, `staff:<id>`).
    pub async fn reconcile_day(&self, day: time::Date, actor: &str) -> Result<RunView, AppError> {
        let (from, to) = self.business_day_bounds(day)?;
        if self.now_unix() < to {
            return Err(AppError::Fields(vec![FieldProblem::new(
                "business_date",
                "business_day_open",
                "this business day is still open; reconcile it after its cut-off",
            )]));
        }
        let (wide_from, wide_to) = (from - SLACK_SECS, to + SLACK_SECS);
        let in_day = |t: i64| t >= from && t < to;

        // The processor's side, outside any transaction.
        let charges = self.processor.list_charges(wide_from, wide_to).await?;
        let sessions = self
            .processor
            .list_checkout_sessions(wide_from - 86_400, wide_to)
            .await?;
        let refunds = self.processor.list_refunds(wide_from, wide_to).await?;
        let payouts = self.processor.list_payouts(from, to).await?;
        let session_of: BTreeMap<&str, &processor::CheckoutSession> = sessions
            .iter()
            .filter_map(|s| s.payment_intent_id.as_deref().map(|pi| (pi, s)))
            .collect();
        let captures: Vec<(Capture, bool)> = charges
            .iter()
            .filter(|c| c.paid && c.status == "succeeded")
            .filter_map(|c| {
                let pi = c.payment_intent.clone()?;
                let s = session_of.get(pi.as_str());
                Some((
                    Capture {
                        charge_id: c.id.clone(),
                        payment_intent: pi,
                        amount_cents: c.amount_captured,
                        created: c.created,
                        client_reference_id: s.and_then(|s| s.client_reference_id.clone()),
                        session_id: s.map(|s| s.id.clone()),
                    },
                    in_day(c.created),
                ))
            })
            .collect();
        let processor_refunds: Vec<(reconcile::ProcessorRefund, bool)> = refunds
            .iter()
            .map(|r| {
                (
                    reconcile::ProcessorRefund {
                        id: r.id.clone(),
                        payment_intent: Some(r.payment_intent.clone()),
                        amount_cents: r.amount,
                        status: r.status.clone(),
                        created: r.created,
                    },
                    in_day(r.created),
                )
            })
            .collect();

        // Our side.
        let mut conn = self.store.conn().await?;
        let mut payments: Vec<OurPayment> = Vec::new();
        let mut known: BTreeSet<String> = BTreeSet::new();
        for (id, intent, amount, _) in rec::captured_between(&mut conn, from, to).await? {
            let posted = self.posted_cents_of_payment(&mut conn, &id).await?;
            known.insert(id.clone());
            payments.push(OurPayment {
                id,
                payment_intent: intent,
                amount_cents: amount,
                in_day: true,
                posted_cents: posted,
            });
        }
        // Captures of the day that we recorded on another day still match.
        for (c, _) in &captures {
            if let Some(p) =
                store::payments::by_payment_intent(&mut conn, &c.payment_intent).await?
            {
                if known.insert(p.id.clone()) {
                    payments.push(OurPayment {
                        id: p.id,
                        payment_intent: p.processor_payment_intent,
                        amount_cents: p.amount_cents,
                        in_day: false,
                        posted_cents: p.amount_cents,
                    });
                }
            }
        }
        // A second capture naming one of our payments (by reference) is a duplicate: the
        // payment it names must be known to the match.
        for (c, _) in &captures {
            if let Some(r) = c.client_reference_id.as_deref() {
                if !known.contains(r) {
                    if let Some(p) = store::payments::get(&mut conn, r).await? {
                        known.insert(p.id.clone());
                        payments.push(OurPayment {
                            id: p.id,
                            payment_intent: p.processor_payment_intent,
                            amount_cents: p.amount_cents,
                            in_day: false,
                            posted_cents: p.amount_cents,
                        });
                    }
                }
            }
        }
        let mut our_refunds: Vec<OurRefund> = rec::refunds_between(&mut conn, from, to)
            .await?
            .into_iter()
            .map(|(id, re, cents)| OurRefund {
                id,
                processor_refund_id: re,
                amount_cents: cents,
                in_day: true,
            })
            .collect();
        for (r, _) in &processor_refunds {
            if our_refunds.iter().any(|o| o.processor_refund_id == r.id) {
                continue;
            }
            if let Some((id, cents)) = rec::refund_known(&mut conn, &r.id).await? {
                our_refunds.push(OurRefund {
                    id,
                    processor_refund_id: r.id.clone(),
                    amount_cents: cents,
                    in_day: false,
                });
            }
        }
        let accounted = rec::accounted_intents(&mut conn)
            .await?
            .into_iter()
            .collect();
        let (exported, not_exported) = self.export_state_of_day(&mut conn, day).await?;
        drop(conn);

        let inputs = Inputs {
            captures,
            refunds: processor_refunds,
            payments,
            our_refunds,
            accounted_intents: accounted,
            postings_not_exported: not_exported,
        };
        let differences = reconcile::reconcile(&inputs);
        let totals = reconcile::totals(&inputs);
        let payouts_cents = payouts
            .iter()
            .filter(|p| p.status != "failed" && p.status != "canceled")
            .fold(0i64, |acc, p| acc.saturating_add(p.amount));

        // Exceptions, the run and its audit entry in one transaction.
        let mut tx = self.store.begin().await?;
        let mut listed = Vec::with_capacity(differences.len());
        let mut new_exceptions = 0;
        for d in &differences {
            let raised = self
                .raise_exception(
                    &mut tx,
                    "reconciliation",
                    NewException {
                        kind: kind_of(d.kind),
                        dedupe_key: d.key.clone(),
                        payment_id: d.payment_id.clone(),
                        processor_ref: d.processor_ref.clone(),
                        amount: d
                            .amount_cents
                            .map(|c| Money::from_cents(c, self.config().currency)),
                        business_date: Some(day.to_string()),
                        evidence: serde_json::json!({
                            "business_date": day.to_string(),
                            "difference": d.detail,
                            "payment_id": d.payment_id,
                            "processor_ref": d.processor_ref,
                            "payment_intent": d.key.strip_prefix("capture:"),
                            "amount_cents": d.amount_cents,
                        }),
                    },
                )
                .await?;
            if raised {
                new_exceptions += 1;
            }
            let exception_id = store::exceptions::by_dedupe_key(&mut tx, &d.key)
                .await?
                .map(|e| e.id);
            listed.push(RunDifference {
                kind: kind_of(d.kind).as_str().to_owned(),
                key: d.key.clone(),
                detail: d.detail.clone(),
                exception_id,
            });
        }
        let run = RunRow {
            id: format!("rec_{}", random_id()),
            business_date: day.to_string(),
            ran_at: self.now_unix(),
            ran_by: actor.to_owned(),
            processor_capture_count: totals.processor_capture_count,
            processor_captures_cents: totals.processor_captures,
            processor_refunds_cents: totals.processor_refunds,
            payouts_cents,
            our_payment_count: totals.our_payment_count,
            our_payments_cents: totals.our_payments,
            our_refunds_cents: totals.our_refunds,
            posted_cents: totals.posted,
            exported: i64::from(exported),
            differences: listed.len() as i64,
            new_exceptions,
            detail: serde_json::to_string(&listed)
                .map_err(|e| AppError::Internal(format!("run detail: {e}")))?,
        };
        rec::insert_run(&mut tx, &run).await?;
        self.audit(
            &mut tx,
            actor,
            "reconciliation.run",
            &day.to_string(),
            if listed.is_empty() { "success" } else { "failure" },
            "-",
            &format!(
                "{} difference(s), {} new exception(s); processor {} cents, ours {} cents, posted {} cents",
                listed.len(),
                new_exceptions,
                totals.processor_captures,
                totals.our_payments,
                totals.posted
            ),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(self.run_view(run))
    }
}
