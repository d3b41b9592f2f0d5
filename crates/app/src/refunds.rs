//! Refunds: a supervisor or administrator gives money back on one item (utility account)
//! of a captured payment, partly or in full, with a reason.
//!
//! Exactly once, in three steps: (1) one transaction reserves the amount on the payment
//! (a compare-and-set on `refunded_cents`, so concurrent refunds can never together pass
//! what was paid), checks the item's own remainder, records the refund as `requested`
//! and audits `payment.refund_requested`; (2) the processor is asked, with the refund's
//! id as idempotency key; (3) one transaction records the answer: on success the refund
//! is `succeeded`, the amount is posted back to the account's ledger (the balance is owed
//! again), the payment moves to `partially_refunded` or `refunded`, a timeline entry, the
//! payer's email and `payment.refunded` are written; on refusal the refund is `failed`,
//! the reservation released and `payment.refunded` audited as a failure. Clerks and
//! auditors cannot refund (`payment.refund_requested` failure `role too low`).

use crate::ids::random_id;
use crate::staff::{Role, StaffUser};
use crate::{App, AppError};
use domain::payment::{PaymentEvent, PaymentStatus};
use domain::Money;
use processor::CreateRefund;
use store::accounts::{self, LedgerRow};
use store::payments as pay_store;
use store::refunds::{self as rf, RefundRow};
use store::StoreError;

/// A refund still `requested` this long after it was made is finished by the worker.
pub const STUCK_SECS: i64 = 5 * 60;

/// Longest refund reason.
pub const MAX_REASON: usize = 200;

/// Who may ask for a refund (clerks' requests always wait for approval).
pub fn may_refund(role: Role) -> bool {
    matches!(role, Role::Clerk | Role::Supervisor | Role::Administrator)
}

/// Who may approve or reject another's refund request.
pub fn may_approve(role: Role) -> bool {
    matches!(role, Role::Supervisor | Role::Administrator)
}

/// A refund request needs a second person: above the city's threshold, or asked by a
/// clerk.
pub fn needs_approval(role: Role, cents: i64, threshold_cents: i64) -> bool {
    cents > threshold_cents || !may_approve(role)
}

/// One refund as staff see it.
#[derive(Debug, Clone)]
pub struct RefundView {
    pub id: String,
    pub payment_id: String,
    pub account_number: String,
    pub amount: Money,
    pub reason: String,
    pub staff_id: String,
    pub status: String,
    pub created_at: i64,
}

impl App {
    /// A payment's refunds, oldest first.
    pub async fn refunds(&self, payment_id: &str) -> Result<Vec<RefundView>, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(rf::for_payment(&mut conn, payment_id)
            .await?
            .into_iter()
            .map(|r| RefundView {
                amount: Money::from_cents(r.amount_cents, self.config().currency),
                payment_id: r.payment_id,
                id: r.id,
                account_number: r.account_number,
                reason: r.reason,
                staff_id: r.staff_id,
                status: r.status,
                created_at: r.created_at,
            })
            .collect())
    }

    /// Refunds `amount` (dollars, as typed) of the item for `account_number` of payment
    /// `payment_id`. See the module documentation.
    pub async fn refund_payment(
        &self,
        staff: &StaffUser,
        payment_id: &str,
        account_number: &str,
        amount: &str,
        reason: &str,
        source_ip: &str,
    ) -> Result<RefundView, AppError> {
        let actor = format!("staff:{}", staff.id);
        if !may_refund(staff.role) {
            let mut tx = self.store.begin().await?;
            self.audit(
                &mut tx,
                &actor,
                "payment.refund_requested",
                payment_id,
                "failure",
                source_ip,
                "role too low",
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Err(AppError::Forbidden);
        }
        let currency = self.config().currency;
        // The form's own checks, every problem at once.
        let mut problems = Vec::new();
        let amount = match Money::parse_dollars(amount.trim().trim_start_matches('$'), currency) {
            Ok(m) if m.is_positive() => Some(m),
            Ok(_) => {
                problems.push(crate::FieldProblem::new(
                    "amount",
                    "amount_positive",
                    "enter an amount above zero",
                ));
                None
            }
            Err(e) => {
                problems.push(crate::FieldProblem::new(
                    "amount",
                    "amount_shape",
                    e.to_string(),
                ));
                None
            }
        };
        let reason = reason.trim();
        if reason.is_empty() {
            problems.push(crate::FieldProblem::new(
                "reason",
                "reason_required",
                "give a reason",
            ));
        } else if reason.chars().count() > MAX_REASON {
            problems.push(crate::FieldProblem::new(
                "reason",
                "reason_too_long",
                format!("give a reason of 1 to {MAX_REASON} characters"),
            ));
        } else if reason.chars().any(char::is_control) {
            problems.push(crate::FieldProblem::new(
                "reason",
                "reason_control",
                "a reason cannot contain control characters",
            ));
        }
        let Some(amount) = amount.filter(|_| problems.is_empty()) else {
            return Err(AppError::Fields(problems));
        };
        let now = self.now_unix();
        let refund_id = format!("rf_{}", random_id());
        // The threshold as stored now, not as this node last read it: an administrator may
        // have lowered it on another node a moment ago.
        self.load_settings().await?;

        // (1) Reserve and record.
        let mut tx = self.store.begin().await?;
        let p = pay_store::get(&mut tx, payment_id)
            .await?
            .ok_or(AppError::NotFound("payment"))?;
        let status = PaymentStatus::parse(&p.status)
            .ok_or_else(|| AppError::Internal(format!("unknown payment status {}", p.status)))?;
        let intent = match (&p.processor_payment_intent, status) {
            (Some(i), PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded) => i.clone(),
            _ => {
                return Err(AppError::Fields(vec![crate::FieldProblem::new(
                    "amount",
                    "refund_not_completed",
                    "only a completed payment can be refunded",
                )]))
            }
        };
        let items = pay_store::items(&mut tx, payment_id).await?;
        let item_cents: i64 = items
            .iter()
            .filter(|i| i.account_number == account_number)
            .map(|i| i.amount_cents)
            .sum();
        if item_cents == 0 {
            return Err(AppError::Fields(vec![crate::FieldProblem::new(
                "account",
                "refund_account_unknown",
                "that account is not part of this payment",
            )]));
        }
        if !rf::reserve(&mut tx, payment_id, amount.cents(), now).await? {
            return Err(AppError::Fields(vec![crate::FieldProblem::new(
                "amount",
                "refund_over_payment",
                "that is more than is left to refund on this payment",
            )]));
        }
        let item_refunded: i64 = rf::for_payment(&mut tx, payment_id)
            .await?
            .iter()
            .filter(|r| {
                r.account_number == account_number && r.status != "failed" && r.status != "rejected"
            })
            .map(|r| r.amount_cents)
            .sum();
        let left = item_cents - item_refunded;
        if amount.cents() > left {
            // Dropping the transaction undoes the reservation.
            return Err(AppError::Fields(vec![crate::FieldProblem::new(
                "amount",
                "refund_over_item",
                format!(
                    "at most {} is left to refund on account {account_number}",
                    Money::from_cents(left, currency)
                ),
            )]));
        }
        let wait = needs_approval(staff.role, amount.cents(), self.refund_threshold_cents());
        let row = RefundRow {
            id: refund_id.clone(),
            payment_id: payment_id.to_owned(),
            account_number: account_number.to_owned(),
            amount_cents: amount.cents(),
            reason: reason.to_owned(),
            staff_id: staff.id.clone(),
            status: if wait {
                "awaiting_approval"
            } else {
                "requested"
            }
            .into(),
            processor_refund_id: None,
            created_at: now,
            decided_at: None,
        };
        rf::insert(&mut tx, &row).await?;
        self.audit(
            &mut tx,
            &actor,
            "payment.refund_requested",
            payment_id,
            "success",
            source_ip,
            &format!(
                "{refund_id}: {amount} to account {account_number}; reason: {reason}{}",
                if wait {
                    "; awaiting a second person's approval"
                } else {
                    ""
                }
            ),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        if wait {
            // The amount stays reserved: nothing else can refund it meanwhile.
            return Ok(self.refund_view(row));
        }
        self.complete_refund(&row, &intent, &actor, source_ip).await
    }

    fn refund_view(&self, r: RefundRow) -> RefundView {
        RefundView {
            amount: Money::from_cents(r.amount_cents, self.config().currency),
            payment_id: r.payment_id,
            id: r.id,
            account_number: r.account_number,
            reason: r.reason,
            staff_id: r.staff_id,
            status: r.status,
            created_at: r.created_at,
        }
    }

    /// Refund requests waiting for a second person, oldest first, with their payments.
    pub async fn refunds_awaiting_approval(&self) -> Result<Vec<(RefundView, String)>, AppError> {
        let mut conn = self.store.conn().await?;
        let rows = rf::awaiting(&mut conn, 200).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let p = r.payment_id.clone();
                (self.refund_view(r), p)
            })
            .collect())
    }

    /// A second staff member (supervisor or administrator, not the requester) approves a
    /// waiting refund: `awaiting_approval -> requested` by compare-and-set (two approvals
    /// racing act once), audited, then the processor is asked as for any refund.
    pub async fn approve_refund(
        &self,
        staff: &StaffUser,
        refund_id: &str,
        source_ip: &str,
    ) -> Result<RefundView, AppError> {
        let actor = format!("staff:{}", staff.id);
        let (row, intent) = self
            .reviewable(staff, refund_id, "payment.refund_approved", source_ip)
            .await?;
        let mut tx = self.store.begin().await?;
        if !rf::approve(&mut tx, refund_id, &staff.id).await? {
            return Err(AppError::invalid(
                "refund",
                "this refund was already approved or rejected",
            ));
        }
        self.audit(
            &mut tx,
            &actor,
            "payment.refund_approved",
            &row.payment_id,
            "success",
            source_ip,
            &format!(
                "{refund_id}: {} to account {} requested by staff:{}",
                Money::from_cents(row.amount_cents, self.config().currency),
                row.account_number,
                row.staff_id
            ),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        let mut row = row;
        row.status = "requested".into();
        self.complete_refund(&row, &intent, &actor, source_ip).await
    }

    /// A second staff member rejects a waiting refund with a reason: the reservation is
    /// given back, audited.
    pub async fn reject_refund(
        &self,
        staff: &StaffUser,
        refund_id: &str,
        note: &str,
        source_ip: &str,
    ) -> Result<RefundView, AppError> {
        let actor = format!("staff:{}", staff.id);
        let note = note.trim();
        if note.is_empty()
            || note.chars().count() > MAX_REASON
            || note.chars().any(char::is_control)
        {
            return Err(AppError::Fields(vec![crate::FieldProblem::new(
                "note",
                "reason_required",
                format!("give a reason of 1 to {MAX_REASON} characters"),
            )]));
        }
        let (row, _) = self
            .reviewable(staff, refund_id, "payment.refund_rejected", source_ip)
            .await?;
        let now = self.now_unix();
        let mut tx = self.store.begin().await?;
        if !rf::reject(&mut tx, refund_id, &staff.id, note, now).await? {
            return Err(AppError::invalid(
                "refund",
                "this refund was already approved or rejected",
            ));
        }
        rf::release(&mut tx, &row.payment_id, row.amount_cents, now).await?;
        self.audit(
            &mut tx,
            &actor,
            "payment.refund_rejected",
            &row.payment_id,
            "success",
            source_ip,
            &format!("{refund_id}: {note}"),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        let mut row = row;
        row.status = "rejected".into();
        Ok(self.refund_view(row))
    }

    /// The waiting refund `refund_id` and its payment's intent, if `staff` may decide it:
    /// a supervisor or administrator who did not ask for it. Refusals are audited.
    async fn reviewable(
        &self,
        staff: &StaffUser,
        refund_id: &str,
        event: &str,
        source_ip: &str,
    ) -> Result<(RefundRow, String), AppError> {
        let mut conn = self.store.conn().await?;
        let row = rf::get(&mut conn, refund_id)
            .await?
            .ok_or(AppError::NotFound("refund"))?;
        let intent = pay_store::get(&mut conn, &row.payment_id)
            .await?
            .and_then(|p| p.processor_payment_intent);
        drop(conn);
        let refusal = if !may_approve(staff.role) {
            Some("role too low")
        } else if row.staff_id == staff.id {
            Some("the requester cannot decide their own refund")
        } else {
            None
        };
        if let Some(why) = refusal {
            let mut tx = self.store.begin().await?;
            self.audit(
                &mut tx,
                &format!("staff:{}", staff.id),
                event,
                &row.payment_id,
                "failure",
                source_ip,
                &format!("{refund_id}: {why}"),
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Err(AppError::Forbidden);
        }
        if row.status != "awaiting_approval" {
            return Err(AppError::invalid(
                "refund",
                "this refund was already approved or rejected",
            ));
        }
        let intent = intent
            .ok_or_else(|| AppError::Internal("refund of a payment without intent".into()))?;
        Ok((row, intent))
    }

    /// Finishes refunds left `requested` for over 5 minutes (the server stopped between
    /// reserving and recording the processor's answer): the processor is asked again with
    /// the same idempotency key, so it answers with the refund it made, if it made one,
    /// and never makes a second. Run by the expiry worker. Returns how many it finished.
    pub async fn resume_stuck_refunds(&self) -> Result<usize, AppError> {
        let stuck = {
            let mut conn = self.store.conn().await?;
            rf::stuck(&mut conn, self.now_unix() - STUCK_SECS, 50).await?
        };
        let mut done = 0;
        for r in stuck {
            let intent = {
                let mut conn = self.store.conn().await?;
                pay_store::get(&mut conn, &r.payment_id)
                    .await?
                    .and_then(|p| p.processor_payment_intent)
            };
            let Some(intent) = intent else { continue };
            match self.complete_refund(&r, &intent, "system", "-").await {
                Ok(_) => done += 1,
                Err(e) => {
                    tracing::warn!(refund_id = %r.id, code = e.code(), "could not finish a refund")
                }
            }
        }
        Ok(done)
    }

    /// Steps (2) and (3) for the `requested` refund `r`: ask the processor (idempotency key
    /// = the refund's id) and record its answer. Only the first to record an answer acts
    /// on it (a compare-and-set on the refund's status).
    async fn complete_refund(
        &self,
        r: &RefundRow,
        intent: &str,
        actor: &str,
        source_ip: &str,
    ) -> Result<RefundView, AppError> {
        let currency = self.config().currency;
        let amount = Money::from_cents(r.amount_cents, currency);
        let (payment_id, refund_id, account_number) = (
            r.payment_id.as_str(),
            r.id.as_str(),
            r.account_number.as_str(),
        );
        let answer = self
            .processor
            .create_refund(
                &CreateRefund {
                    payment_intent: intent.to_owned(),
                    amount: Some(r.amount_cents),
                    metadata: vec![
                        ("payment_id".into(), payment_id.to_owned()),
                        ("refund_id".into(), refund_id.to_owned()),
                    ],
                },
                refund_id,
            )
            .await;
        let now = self.now_unix();
        let mut tx = self.store.begin().await?;
        let refused = match &answer {
            Ok(a) if a.status == "succeeded" || a.status == "pending" => None,
            Ok(a) => Some(format!("processor refund {} is {}", a.id, a.status)),
            Err(e) => Some(e.to_string()),
        };
        let view = RefundView {
            id: r.id.clone(),
            payment_id: r.payment_id.clone(),
            account_number: r.account_number.clone(),
            amount,
            reason: r.reason.clone(),
            staff_id: r.staff_id.clone(),
            status: if refused.is_some() {
                "failed"
            } else {
                "succeeded"
            }
            .into(),
            created_at: r.created_at,
        };
        let processor_refund_id = answer.as_ref().ok().map(|a| a.id.clone());
        if !rf::decide(
            &mut tx,
            refund_id,
            &view.status,
            processor_refund_id.as_deref(),
            now,
        )
        .await?
        {
            // Someone else recorded the answer first.
            return Err(AppError::invalid(
                "amount",
                "this refund was already recorded",
            ));
        }
        if let Some(why) = refused {
            rf::release(&mut tx, payment_id, r.amount_cents, now).await?;
            self.audit(
                &mut tx,
                actor,
                "payment.refunded",
                payment_id,
                "failure",
                source_ip,
                &format!("{refund_id}: {why}"),
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            tracing::warn!(payment_id, refund_id, "refund refused by the processor");
            return match answer {
                Err(e) => Err(AppError::Processor(e)),
                Ok(_) => Err(AppError::invalid(
                    "amount",
                    "the payment processor did not accept this refund",
                )),
            };
        }
        let fresh = pay_store::get(&mut tx, payment_id)
            .await?
            .ok_or(AppError::NotFound("payment"))?;
        let captured = Money::from_cents(fresh.amount_cents, currency);
        // What has really been given back (this refund included): `refunded_cents` also
        // holds amounts reserved by refunds still waiting for approval, which must not
        // make the payment "refunded" before they are.
        let given_back: i64 = rf::for_payment(&mut tx, payment_id)
            .await?
            .iter()
            .filter(|x| x.status == "succeeded")
            .map(|x| x.amount_cents)
            .sum();
        let refunded_after = Money::from_cents(given_back, currency);
        let from = PaymentStatus::parse(&fresh.status).ok_or_else(|| {
            AppError::Internal(format!("unknown payment status {}", fresh.status))
        })?;
        let to = from
            .apply(PaymentEvent::Refund {
                refunded_after,
                captured,
            })
            .map_err(|e| AppError::Internal(e.to_string()))?;
        if from != to {
            rf::set_status(&mut tx, payment_id, from.as_str(), to.as_str(), now).await?;
        }
        let item_type = pay_store::items(&mut tx, payment_id)
            .await?
            .into_iter()
            .find(|i| i.account_number == account_number)
            .map_or_else(|| "utility".to_owned(), |i| i.item_type);
        if item_type == "utility" {
            accounts::post_ledger(
                &mut tx,
                &LedgerRow {
                    id: random_id(),
                    account_number: account_number.to_owned(),
                    kind: "refund".into(),
                    reference: refund_id.to_owned(),
                    amount_cents: r.amount_cents,
                    description: format!("Refund of online payment {}", fresh.confirmation_number),
                    posted_at: now,
                },
            )
            .await?;
        } else if item_type != crate::payments::CARD_FEE {
            // A permit or licence fee given back is owed on its invoice again.
            self.unpost_from_invoice(&mut tx, account_number, r.amount_cents)
                .await?;
        }
        self.enqueue_city_event(
            &mut tx,
            "payment.refunded",
            serde_json::json!({
                "payment_id": payment_id, "refund_id": refund_id,
                "account_number": account_number, "amount_cents": r.amount_cents,
            }),
        )
        .await?;
        // A reversing line in the city's ledger, on today's business day.
        self.post_lines(
            &mut tx,
            "refund",
            refund_id,
            refund_id,
            fresh.card_brand.as_deref().unwrap_or("unknown"),
            &[(item_type, account_number.to_owned(), -r.amount_cents)],
        )
        .await?;
        self.add_payment_event(
            &mut tx,
            payment_id,
            "refunded",
            &format!("{amount} refunded to the card for account {account_number} ({refund_id})"),
        )
        .await?;
        let email = self.open(crate::crypto::columns::PAYMENT_EMAIL, &fresh.email)?;
        let body = format!(
            "{city} refunded {amount} of your payment {conf} (utility account {account_number}) to the card you paid with.\n\nReason: {reason}\n\nRefunds usually reach your card within 5 to 10 business days. The amount is owed on the account again.\n",
            city = self.config().city_name,
            conf = fresh.confirmation_number,
            reason = r.reason,
        );
        self.enqueue_email(
            &mut tx,
            &email,
            &format!("Refund for payment {}", fresh.confirmation_number),
            &body,
            "refund",
        )
        .await?;
        self.audit(
            &mut tx,
            actor,
            "payment.refunded",
            payment_id,
            "success",
            source_ip,
            &format!(
                "{refund_id}: {amount} to account {account_number}; payment {}",
                to.as_str()
            ),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(view)
    }
}
