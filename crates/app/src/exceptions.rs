//! The exceptions queue: money the processor captured that our ledger does not account for
//! (a capture for a checkout session we do not know, a captured amount that differs from
//! the payment, a capture after we closed the payment) and every difference reconciliation
//! finds. Nothing is acknowledged silently: each exception is raised in the same
//! transaction that saw it, with the processor's evidence, stays `open` until a supervisor
//! or administrator resolves it, and every step is audited.
//!
//! Resolutions: **attach** the captured amount to a utility account (posted to its ledger
//! once, keyed by the exception), **refund** it at the processor (idempotency key = the
//! exception id, so a retry after a crash never refunds twice), or **explain** it with a
//! reason. A resolution is a compare-and-set on the exception's status: of two people
//! resolving one exception at once, exactly one acts.

use crate::ids::random_id;
use crate::staff::{Role, StaffUser};
use crate::{App, AppError, FieldProblem};
use domain::{AccountNumber, Money};
use processor::{CheckoutSession, CreateRefund};
use store::exceptions::{self as exc, ExceptionRow};
use store::{accounts, Conn, StoreError};

/// Longest resolution note.
pub const MAX_NOTE: usize = 500;

/// What kind of difference an exception records. The string forms are stored and are the
/// keys of the message catalog (`exception.kind.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExceptionKind {
    /// The processor captured a checkout session we have no payment for.
    UnknownSession,
    /// The processor captured another amount (or currency) than the payment's.
    AmountMismatch,
    /// The processor captured a payment we had already closed (expired, canceled, failed).
    CaptureAfterClose,
    /// Reconciliation: a capture at the processor with no succeeded payment of ours.
    MissingOurs,
    /// Reconciliation: a succeeded payment of ours the processor has no capture for.
    MissingAtProcessor,
    /// Reconciliation: both sides know the payment, with different amounts.
    DifferentAmount,
    /// Reconciliation: more than one capture for one payment of ours.
    Duplicate,
    /// Reconciliation: a succeeded payment with no posting, or a posting not exported.
    NotPosted,
    /// Reconciliation: refunds differ between the processor and us.
    RefundDifference,
}

impl ExceptionKind {
    pub const ALL: [ExceptionKind; 9] = [
        ExceptionKind::UnknownSession,
        ExceptionKind::AmountMismatch,
        ExceptionKind::CaptureAfterClose,
        ExceptionKind::MissingOurs,
        ExceptionKind::MissingAtProcessor,
        ExceptionKind::DifferentAmount,
        ExceptionKind::Duplicate,
        ExceptionKind::NotPosted,
        ExceptionKind::RefundDifference,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionKind::UnknownSession => "unknown_session",
            ExceptionKind::AmountMismatch => "amount_mismatch",
            ExceptionKind::CaptureAfterClose => "capture_after_close",
            ExceptionKind::MissingOurs => "missing_ours",
            ExceptionKind::MissingAtProcessor => "missing_at_processor",
            ExceptionKind::DifferentAmount => "different_amount",
            ExceptionKind::Duplicate => "duplicate",
            ExceptionKind::NotPosted => "not_posted",
            ExceptionKind::RefundDifference => "refund_difference",
        }
    }

    pub fn parse(s: &str) -> Option<ExceptionKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Money was captured at the processor and is in no account of ours: it can be
    /// attached to an account or refunded.
    pub fn holds_money(self) -> bool {
        matches!(
            self,
            ExceptionKind::UnknownSession
                | ExceptionKind::AmountMismatch
                | ExceptionKind::CaptureAfterClose
                | ExceptionKind::MissingOurs
                | ExceptionKind::Duplicate
        )
    }
}

/// A new exception, before it is stored.
#[derive(Debug, Clone)]
pub struct NewException {
    pub kind: ExceptionKind,
    /// One exception per fact, e.g. `session:cs_...`: raising it again changes nothing.
    pub dedupe_key: String,
    pub payment_id: Option<String>,
    /// The processor's id of what it holds (a checkout session, a charge, a refund).
    pub processor_ref: Option<String>,
    /// What the processor holds, when it is money.
    pub amount: Option<Money>,
    pub business_date: Option<String>,
    pub evidence: serde_json::Value,
}

/// How a person resolves an exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Post the captured amount to this utility account.
    Attach(String),
    /// Give the captured amount back to the payer at the processor.
    Refund,
    /// Nothing to move: the note says why.
    Explain,
}

impl Resolution {
    pub fn as_str(&self) -> &'static str {
        match self {
            Resolution::Attach(_) => "attached",
            Resolution::Refund => "refunded",
            Resolution::Explain => "explained",
        }
    }
}

/// An exception as staff see it.
#[derive(Debug, Clone)]
pub struct ExceptionView {
    pub id: String,
    pub kind: ExceptionKind,
    pub payment_id: Option<String>,
    pub processor_ref: Option<String>,
    pub amount: Option<Money>,
    pub business_date: Option<String>,
    /// The evidence, pretty-printed.
    pub evidence: String,
    pub status: String,
    pub resolution: Option<String>,
    pub resolution_account: Option<String>,
    pub resolution_note: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
    pub processor_refund_id: Option<String>,
    pub created_at: i64,
}

impl ExceptionView {
    pub fn is_open(&self) -> bool {
        self.status == "open" || self.status == "refunding"
    }

    /// Whether attaching or refunding is offered (money is held).
    pub fn holds_money(&self) -> bool {
        self.kind.holds_money() && self.amount.is_some_and(|a| a.is_positive())
    }
}

/// Who may resolve exceptions (everyone on staff may read them).
pub fn may_resolve(role: Role) -> bool {
    matches!(role, Role::Supervisor | Role::Administrator)
}

/// The processor's evidence of a checkout session: ids, status, amount, times. Never the
/// payer's email or anything of the card but what we keep anyway (brand, last four).
pub fn session_evidence(s: &CheckoutSession) -> serde_json::Value {
    serde_json::json!({
        "checkout_session": s.id,
        "status": s.status.as_str(),
        "payment_status": s.payment_status.as_str(),
        "amount_total": s.amount_total,
        "currency": s.currency,
        "payment_intent": s.payment_intent_id,
        "client_reference_id": s.client_reference_id,
        "card_brand": s.card.as_ref().map(|c| c.brand.clone()),
        "card_last4": s.card.as_ref().map(|c| c.last4.clone()),
    })
}

impl App {
    fn exception_view(&self, r: ExceptionRow) -> Result<ExceptionView, AppError> {
        let kind = ExceptionKind::parse(&r.kind)
            .ok_or_else(|| AppError::Internal(format!("stored exception kind {:?}", r.kind)))?;
        let evidence = serde_json::from_str::<serde_json::Value>(&r.evidence)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(r.evidence);
        let currency = r
            .currency
            .as_deref()
            .and_then(domain::Currency::parse)
            .unwrap_or(self.config().currency);
        Ok(ExceptionView {
            id: r.id,
            kind,
            payment_id: r.payment_id,
            processor_ref: r.processor_ref,
            amount: r.amount_cents.map(|c| Money::from_cents(c, currency)),
            business_date: r.business_date,
            evidence,
            status: r.status,
            resolution: r.resolution,
            resolution_account: r.resolution_account,
            resolution_note: r.resolution_note,
            resolved_by: r.resolved_by,
            resolved_at: r.resolved_at,
            processor_refund_id: r.processor_refund_id,
            created_at: r.created_at,
        })
    }

    /// Records an exception in the caller's transaction (with its audit entry), unless the
    /// same fact was recorded before. True if it is new.
    pub async fn raise_exception(
        &self,
        tx: &mut Conn,
        actor: &str,
        e: NewException,
    ) -> Result<bool, AppError> {
        let id = format!("exc_{}", random_id());
        let row = ExceptionRow {
            id: id.clone(),
            dedupe_key: e.dedupe_key.clone(),
            kind: e.kind.as_str().into(),
            payment_id: e.payment_id.clone(),
            processor_ref: e.processor_ref.clone(),
            amount_cents: e.amount.map(|m| m.cents()),
            currency: e.amount.map(|m| m.currency().code().to_owned()),
            business_date: e.business_date.clone(),
            evidence: e.evidence.to_string(),
            status: "open".into(),
            resolution: None,
            resolution_account: None,
            resolution_note: None,
            resolved_by: None,
            resolved_at: None,
            processor_refund_id: None,
            created_at: self.now_unix(),
        };
        if !exc::insert_once(tx, &row).await? {
            return Ok(false);
        }
        let detail = match e.amount {
            Some(a) => format!("{} {a}", e.kind.as_str()),
            None => e.kind.as_str().to_owned(),
        };
        self.audit(tx, actor, "exception.raised", &id, "success", "-", &detail)
            .await?;
        tracing::warn!(exception_id = %id, kind = e.kind.as_str(), "payment exception raised");
        Ok(true)
    }

    /// Exceptions, newest first: open ones (`open` and `refunding`) or all.
    pub async fn exceptions(&self, only_open: bool) -> Result<Vec<ExceptionView>, AppError> {
        let mut conn = self.store.conn().await?;
        let rows = if only_open {
            let mut rows = exc::list(&mut conn, Some("open"), 500).await?;
            rows.extend(exc::list(&mut conn, Some("refunding"), 500).await?);
            rows.sort_by(|a, b| {
                b.created_at
                    .cmp(&a.created_at)
                    .then_with(|| a.id.cmp(&b.id))
            });
            rows
        } else {
            exc::list(&mut conn, None, 500).await?
        };
        rows.into_iter().map(|r| self.exception_view(r)).collect()
    }

    pub async fn open_exception_count(&self) -> Result<i64, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(exc::count_open(&mut conn).await?)
    }

    pub async fn exception(&self, id: &str) -> Result<ExceptionView, AppError> {
        let mut conn = self.store.conn().await?;
        let row = exc::get(&mut conn, id)
            .await?
            .ok_or(AppError::NotFound("exception"))?;
        self.exception_view(row)
    }

    /// Resolves an exception; see the module documentation.
    pub async fn resolve_exception(
        &self,
        staff: &StaffUser,
        id: &str,
        resolution: Resolution,
        note: &str,
        source_ip: &str,
    ) -> Result<ExceptionView, AppError> {
        let actor = format!("staff:{}", staff.id);
        if !may_resolve(staff.role) {
            let mut tx = self.store.begin().await?;
            self.audit(
                &mut tx,
                &actor,
                "exception.resolved",
                id,
                "failure",
                source_ip,
                "role too low",
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Err(AppError::Forbidden);
        }
        // Every error a person can fix, at once.
        let note = note.trim();
        let mut problems: Vec<FieldProblem> = Vec::new();
        if note.is_empty() {
            problems.push(FieldProblem::new(
                "note",
                "reason_required",
                "give a reason",
            ));
        } else if note.chars().count() > MAX_NOTE {
            problems.push(FieldProblem::new(
                "note",
                "reason_too_long",
                format!("a reason of at most {MAX_NOTE} characters"),
            ));
        } else if note.chars().any(char::is_control) {
            problems.push(FieldProblem::new(
                "note",
                "reason_control",
                "a reason cannot contain control characters",
            ));
        }
        let current = self.exception(id).await?;
        let mut target: Option<String> = None;
        if let Resolution::Attach(account) = &resolution {
            match AccountNumber::parse(account) {
                None => problems.push(FieldProblem::new(
                    "account_number",
                    "account_number_shape",
                    "enter the utility account number (4 to 12 digits)",
                )),
                Some(a) => {
                    let mut conn = self.store.conn().await?;
                    if accounts::get(&mut conn, a.as_str()).await?.is_none() {
                        problems.push(FieldProblem::new(
                            "account_number",
                            "account_unknown",
                            "no utility account has this number",
                        ));
                    } else {
                        target = Some(a.to_string());
                    }
                }
            }
        }
        if matches!(resolution, Resolution::Attach(_) | Resolution::Refund)
            && !current.holds_money()
        {
            problems.push(FieldProblem::new(
                "resolution",
                "exception_holds_no_money",
                "this exception holds no captured money: explain it instead",
            ));
        }
        if !problems.is_empty() {
            return Err(AppError::Fields(problems));
        }
        if !current.is_open() {
            return Err(AppError::invalid("resolution", "already resolved"));
        }
        match resolution {
            Resolution::Refund => {
                self.refund_exception(&actor, staff, current, note, source_ip)
                    .await
            }
            other => {
                let now = self.now_unix();
                let mut tx = self.store.begin().await?;
                if !exc::transition(
                    &mut tx,
                    id,
                    "open",
                    "resolved",
                    other.as_str(),
                    target.as_deref(),
                    note,
                    &staff.id,
                    now,
                )
                .await?
                {
                    return Err(AppError::invalid("resolution", "already resolved"));
                }
                if let (Some(account), Some(amount)) = (&target, current.amount) {
                    accounts::post_ledger(
                        &mut tx,
                        &accounts::LedgerRow {
                            id: random_id(),
                            account_number: account.clone(),
                            kind: "exception".into(),
                            reference: id.to_owned(),
                            amount_cents: -amount.cents(),
                            description: format!("Payment received (exception {id})"),
                            posted_at: now,
                        },
                    )
                    .await?;
                }
                if let (Some(account), Some(amount)) = (&target, current.amount) {
                    // Money received: a posting like a payment's, on today's business day.
                    let brand = serde_json::from_str::<serde_json::Value>(&current.evidence)
                        .ok()
                        .and_then(|v| v.get("card_brand")?.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "unknown".into());
                    self.post_lines(
                        &mut tx,
                        "exception",
                        id,
                        id,
                        &brand,
                        &[("utility".into(), account.clone(), amount.cents())],
                    )
                    .await?;
                }
                let detail = match (&target, current.amount) {
                    (Some(a), Some(m)) => format!("attached {m} to account {a}: {note}"),
                    _ => format!("explained: {note}"),
                };
                self.audit(
                    &mut tx,
                    &actor,
                    "exception.resolved",
                    id,
                    "success",
                    source_ip,
                    &detail,
                )
                .await?;
                tx.commit().await.map_err(StoreError::from)?;
                self.exception(id).await
            }
        }
    }

    /// Refunds the money an exception holds: `open -> refunding` (compare-and-set), the
    /// processor call with the exception id as idempotency key, then `refunding ->
    /// resolved`. A crash in between leaves it `refunding`; refunding again repeats the same
    /// call, which the processor answers with the same refund.
    async fn refund_exception(
        &self,
        actor: &str,
        staff: &StaffUser,
        current: ExceptionView,
        note: &str,
        source_ip: &str,
    ) -> Result<ExceptionView, AppError> {
        let id = current.id.clone();
        let Some(intent) = serde_json::from_str::<serde_json::Value>(&current.evidence)
            .ok()
            .and_then(|v| v.get("payment_intent")?.as_str().map(str::to_owned))
        else {
            return Err(AppError::invalid(
                "resolution",
                "the processor's evidence names no payment to refund: explain it instead",
            ));
        };
        let now = self.now_unix();
        if current.status == "open" {
            let mut tx = self.store.begin().await?;
            if !exc::transition(
                &mut tx,
                &id,
                "open",
                "refunding",
                "refunded",
                None,
                note,
                &staff.id,
                now,
            )
            .await?
            {
                return Err(AppError::invalid("resolution", "already resolved"));
            }
            self.audit(
                &mut tx,
                actor,
                "exception.refund_requested",
                &id,
                "success",
                source_ip,
                note,
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
        }
        let req = CreateRefund {
            payment_intent: intent,
            amount: current.amount.map(|m| m.cents()),
            metadata: vec![("exception_id".into(), id.clone())],
        };
        let refund = match self.processor.create_refund(&req, &id).await {
            Ok(r) => r,
            Err(e) => {
                let mut tx = self.store.begin().await?;
                exc::reopen(&mut tx, &id).await?;
                self.audit(
                    &mut tx,
                    actor,
                    "exception.resolved",
                    &id,
                    "failure",
                    source_ip,
                    &format!("refund refused by the processor: {e}"),
                )
                .await?;
                tx.commit().await.map_err(StoreError::from)?;
                return Err(AppError::Processor(e));
            }
        };
        let mut tx = self.store.begin().await?;
        if exc::transition(
            &mut tx,
            &id,
            "refunding",
            "resolved",
            "refunded",
            None,
            note,
            &staff.id,
            self.now_unix(),
        )
        .await?
        {
            exc::set_refund_id(&mut tx, &id, &refund.id).await?;
            self.audit(
                &mut tx,
                actor,
                "exception.resolved",
                &id,
                "success",
                source_ip,
                &format!(
                    "refunded {} ({}): {note}",
                    Money::from_cents(refund.amount, self.config().currency),
                    refund.id
                ),
            )
            .await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        self.exception(&id).await
    }
}
