//! Starting, settling and expiring payments. Settlement is exactly-once: a payment moves
//! out of `pending` by compare-and-set, and only the winner posts to the ledger, in the
//! same transaction as the audit event and the receipt email.

use crate::exceptions::{session_evidence, ExceptionKind, NewException};
use crate::ids::{confirmation_number, random_id};
use crate::{App, AppError, FieldProblem};
use domain::payment::PaymentEvent;
use domain::{AccountNumber, EmailAddress, Money, PaymentStatus, PostalCode};
use processor::{
    CheckoutSession, CreateCheckoutSession, LineItem, ProcessorError, SessionPaymentStatus,
    SessionStatus,
};
use store::payments::{self as pay_store, PaymentEventRow, PaymentItemRow, PaymentRow};
use store::{accounts, Conn};

/// How the payer proves they may pay an item.
#[derive(Debug, Clone)]
pub enum ItemProof {
    /// Quick pay and the API: the service ZIP of the account.
    PostalCode(PostalCode),
    /// A signed-in resident who has linked the account.
    Linked,
}

#[derive(Debug, Clone)]
pub struct RequestedItem {
    pub account: AccountNumber,
    pub proof: ItemProof,
    pub amount: Money,
}

/// A permit or licence invoice to pay (all of it, or part where the city allows).
#[derive(Debug, Clone)]
pub struct RequestedInvoice {
    pub invoice_id: String,
    pub amount: Money,
    /// What the payer was shown as due: if the invoice now says otherwise (paid meanwhile,
    /// amount changed), the payment is refused before the payer is sent to pay.
    pub expected_due_cents: Option<i64>,
}

/// Item type of the card fee line a payment may carry.
pub const CARD_FEE: &str = "card_fee";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Portal,
    Api,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Portal => "portal",
            Channel::Api => "api",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PaymentRequest {
    pub items: Vec<RequestedItem>,
    /// Permit and licence invoices paid in the same checkout (the cart).
    pub invoices: Vec<RequestedInvoice>,
    pub email: EmailAddress,
    pub resident_id: Option<String>,
    pub channel: Channel,
    pub return_url: Option<String>,
    pub source_ip: String,
    /// The one-time key of the portal form that sent this request (see `FORM_KEY_LEN`):
    /// a form sent twice finds the payment it started instead of starting another.
    pub form_key: Option<String>,
    /// The payer's language (`en`, `es`): the receipt is written in it.
    pub language: Option<String>,
}

/// The (item, cents) a request asks for, sorted: bills by account, fees by invoice.
fn wanted_lines(req: &PaymentRequest) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = req
        .items
        .iter()
        .map(|i| (i.account.to_string(), i.amount.cents()))
        .chain(
            req.invoices
                .iter()
                .map(|i| (i.invoice_id.clone(), i.amount.cents())),
        )
        .collect();
    v.sort();
    v
}

/// The (item, cents) a stored payment was asked for (its card fee line is ours, not the
/// payer's), sorted.
fn requested_lines(items: &[PaymentItemRow]) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = items
        .iter()
        .filter(|i| i.item_type != CARD_FEE)
        .map(|i| (i.account_number.clone(), i.amount_cents))
        .collect();
    v.sort();
    v
}

/// What a portal form's one-time key must look like: 32 lower-case hex digits.
pub fn valid_form_key(k: &str) -> bool {
    k.len() == 32 && k.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A payment as shown to residents, API clients and staff.
#[derive(Debug, Clone)]
pub struct PaymentView {
    pub id: String,
    pub confirmation_number: String,
    pub status: PaymentStatus,
    pub amount: Money,
    pub refunded: Money,
    pub email: String,
    pub resident_id: Option<String>,
    pub channel: String,
    pub items: Vec<PaymentItemView>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub return_url: Option<String>,
    pub processor_session_id: Option<String>,
    pub created_at: i64,
    pub decided_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct PaymentItemView {
    pub item_type: String,
    pub account_number: String,
    pub amount: Money,
}

#[derive(Debug, Clone)]
pub struct StartedPayment {
    pub payment: PaymentView,
    pub checkout_url: String,
}

/// What a webhook delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    Applied,
    Duplicate,
    Ignored(&'static str),
}

/// Why a settlement was attempted (recorded in the timeline).
#[derive(Debug, Clone, Copy)]
pub enum SettleSource {
    Webhook,
    Return,
    Cancel,
    ExpiryJob,
}

impl SettleSource {
    fn as_str(self) -> &'static str {
        match self {
            SettleSource::Webhook => "webhook",
            SettleSource::Return => "resident return",
            SettleSource::Cancel => "resident cancel",
            SettleSource::ExpiryJob => "expiry job",
        }
    }
}

/// The processor holds the money of this session.
fn is_captured(s: &CheckoutSession) -> bool {
    s.status == SessionStatus::Complete && s.payment_status == SessionPaymentStatus::Paid
}

const MAX_ITEMS: usize = 20;
/// Payment starts allowed per client address in 15 minutes.
pub const PAYMENT_STARTS_PER_WINDOW: i64 = 30;

/// Processor look-ups the public return and cancel pages may make per pending payment
/// per 15 minutes.
pub const PROCESSOR_CHECKS: i64 = 10;

/// How long an API idempotency key (and its stored answer) is kept: 24 hours.
pub const IDEMPOTENCY_KEY_SECS: i64 = 24 * 3600;
impl App {
    fn view(&self, p: PaymentRow, items: Vec<PaymentItemRow>) -> Result<PaymentView, AppError> {
        let currency = domain::Currency::parse(&p.currency)
            .ok_or_else(|| AppError::Internal("stored currency unknown".into()))?;
        Ok(PaymentView {
            status: PaymentStatus::parse(&p.status).ok_or_else(|| {
                AppError::Internal(format!("stored status {:?} unknown", p.status))
            })?,
            amount: Money::from_cents(p.amount_cents, currency),
            refunded: Money::from_cents(p.refunded_cents, currency),
            items: items
                .into_iter()
                .map(|i| PaymentItemView {
                    item_type: i.item_type,
                    account_number: i.account_number,
                    amount: Money::from_cents(i.amount_cents, currency),
                })
                .collect(),
            id: p.id,
            confirmation_number: p.confirmation_number,
            email: self.open(crate::crypto::columns::PAYMENT_EMAIL, &p.email)?,
            resident_id: p.resident_id,
            channel: p.channel,
            card_brand: p.card_brand,
            card_last4: p.card_last4,
            failure_code: p.failure_code,
            failure_message: p.failure_message,
            return_url: p.return_url,
            processor_session_id: p.processor_session_id,
            created_at: p.created_at,
            decided_at: p.decided_at,
        })
    }

    pub async fn payment(&self, id: &str) -> Result<PaymentView, AppError> {
        let mut conn = self.store.conn().await?;
        let p = pay_store::get(&mut conn, id)
            .await?
            .ok_or(AppError::NotFound("payment"))?;
        let items = pay_store::items(&mut conn, id).await?;
        self.view(p, items)
    }

    /// A timeline entry (for other use cases on payments: refunds).
    pub(crate) async fn add_payment_event(
        &self,
        conn: &mut Conn,
        payment_id: &str,
        kind: &str,
        detail: &str,
    ) -> Result<(), AppError> {
        self.add_event(conn, payment_id, kind, detail).await
    }

    async fn add_event(
        &self,
        conn: &mut Conn,
        payment_id: &str,
        kind: &str,
        detail: &str,
    ) -> Result<(), AppError> {
        pay_store::add_event(
            conn,
            &PaymentEventRow {
                id: random_id(),
                payment_id: payment_id.to_owned(),
                at: self.now_unix(),
                kind: kind.to_owned(),
                detail: detail.to_owned(),
            },
        )
        .await?;
        Ok(())
    }

    fn check_return_url(&self, url: &str) -> Result<(), AppError> {
        let ok_scheme = url.starts_with("https://") || url.starts_with("http://");
        let origin_ok = std::iter::once(self.config().portal_base_url.as_str())
            .chain(
                self.config()
                    .allowed_return_origins
                    .iter()
                    .map(String::as_str),
            )
            .any(|o| {
                url == o || url.starts_with(&format!("{o}/")) || url.starts_with(&format!("{o}?"))
            });
        if !ok_scheme || url.len() > 2000 || url.chars().any(char::is_control) {
            return Err(AppError::invalid(
                "return_url",
                "must be an http(s) URL of at most 2000 characters",
            ));
        }
        if !origin_ok {
            return Err(AppError::invalid(
                "return_url",
                "this origin is not allowed; ask the city to add it to api.return_url_origins",
            ));
        }
        Ok(())
    }

    /// Validates the request against our own data (amounts are capped by the balance we
    /// hold, never by what the browser thought), records a pending payment, then opens a
    /// checkout session at the processor. Returns where to send the resident.
    pub async fn start_payment(&self, req: PaymentRequest) -> Result<StartedPayment, AppError> {
        if req.items.is_empty() && req.invoices.is_empty() {
            return Err(AppError::invalid(
                "items",
                "choose at least one bill to pay",
            ));
        }
        // Each start opens a checkout at the processor: bounded per client.
        self.rate_limit(
            &format!("pay-ip:{}", req.source_ip),
            PAYMENT_STARTS_PER_WINDOW,
            900,
        )
        .await?;
        if req.items.len() + req.invoices.len() > MAX_ITEMS {
            return Err(AppError::invalid(
                "items",
                format!("at most {MAX_ITEMS} items per payment"),
            ));
        }
        if let Some(u) = &req.return_url {
            self.check_return_url(u)?;
        }
        if let Some(key) = &req.form_key {
            if !valid_form_key(key) {
                return Err(AppError::invalid(
                    "form_key",
                    "this form is out of date; reload the page",
                ));
            }
            let mut conn = self.store.conn().await?;
            if let Some(p) = pay_store::by_form_key(&mut conn, key).await? {
                drop(conn);
                return self.form_sent_again(p, &req).await;
            }
        }
        if req.channel == Channel::Portal {
            if let Some(again) = self.open_duplicate(&req).await? {
                return Ok(again);
            }
        }
        let currency = self.config().currency;
        let now = self.now_unix();
        let payment_id = domain::ids::PaymentId::from_random(&random_id()).to_string();
        let mut tx = self.store.begin().await?;
        let mut seen = std::collections::HashSet::new();
        let mut item_rows = Vec::with_capacity(req.items.len());
        for (i, item) in req.items.iter().enumerate() {
            let field = |f: &str| format!("items[{i}].{f}");
            let refuse = |f: &str, code: &'static str, message: String| {
                AppError::Fields(vec![FieldProblem::new(&field(f), code, message)])
            };
            if !seen.insert(item.account.to_string()) {
                return Err(refuse(
                    "account_number",
                    "item_twice",
                    "the same account appears twice".into(),
                ));
            }
            if item.amount.currency() != currency {
                return Err(refuse(
                    "amount_cents",
                    "amount_shape",
                    "wrong currency".into(),
                ));
            }
            if !item.amount.is_positive() {
                return Err(refuse(
                    "amount_cents",
                    "amount_positive",
                    "the amount must be more than zero".into(),
                ));
            }
            let acct = accounts::get(&mut tx, item.account.as_str()).await?;
            let acct = match (&item.proof, acct) {
                (ItemProof::PostalCode(zip), Some(a)) if a.postal_code == zip.as_str() => a,
                (ItemProof::Linked, Some(a)) => {
                    let rid = req.resident_id.as_deref().ok_or(AppError::Forbidden)?;
                    if !store::residents::has_account(&mut tx, rid, &a.account_number).await? {
                        return Err(AppError::Forbidden);
                    }
                    a
                }
                _ => return Err(AppError::AccountNotFound),
            };
            let balance = accounts::balance_cents(&mut tx, &acct.account_number).await?;
            if balance <= 0 {
                return Err(refuse(
                    "amount_cents",
                    "nothing_due",
                    format!("account {} has nothing to pay", acct.account_number),
                ));
            }
            if item.amount.cents() > balance {
                return Err(refuse(
                    "amount_cents",
                    "amount_over_balance",
                    format!(
                        "the amount is more than the balance due ({})",
                        Money::from_cents(balance, currency)
                    ),
                ));
            }
            if item.amount.cents() != balance && !self.partial_allowed("utility") {
                return Err(refuse(
                    "amount_cents",
                    "partial_not_allowed",
                    format!(
                        "pay the whole balance due ({})",
                        Money::from_cents(balance, currency)
                    ),
                ));
            }
            item_rows.push(PaymentItemRow {
                payment_id: payment_id.clone(),
                line_no: i as i64 + 1,
                item_type: "utility".into(),
                account_number: acct.account_number,
                amount_cents: item.amount.cents(),
            });
        }
        let mut problems = Vec::new();
        for (i, inv) in req.invoices.iter().enumerate() {
            let field = format!("invoice_{}", inv.invoice_id);
            if !seen.insert(inv.invoice_id.clone()) {
                problems.push(FieldProblem::new(
                    &field,
                    "item_twice",
                    "the same item appears twice",
                ));
                continue;
            }
            let Some(row) = store::services::invoice(&mut tx, &inv.invoice_id).await? else {
                problems.push(FieldProblem::new(
                    &field,
                    "invoice_unknown",
                    "no such fee to pay",
                ));
                continue;
            };
            let owner_ok = match (&row.resident_id, &req.resident_id) {
                (Some(owner), Some(r)) => owner == r,
                // Guests pay an invoice they looked up by its number and verifier.
                (_, None) => true,
                (None, Some(_)) => true,
            };
            if !owner_ok {
                return Err(AppError::Forbidden);
            }
            let due = (row.amount_cents - row.paid_cents).max(0);
            if row.status != "open" || due == 0 {
                problems.push(FieldProblem::new(
                    &field,
                    "invoice_paid",
                    "this fee was already paid or is no longer due",
                ));
                continue;
            }
            if inv.expected_due_cents.is_some_and(|e| e != due) {
                problems.push(FieldProblem::new(
                    &field,
                    "invoice_changed",
                    format!(
                        "the amount due changed to {}",
                        Money::from_cents(due, currency)
                    ),
                ));
                continue;
            }
            if inv.amount.currency() != currency
                || !inv.amount.is_positive()
                || inv.amount.cents() > due
            {
                problems.push(FieldProblem::new(
                    &field,
                    "amount_range",
                    format!("pay between 0.01 and {}", Money::from_cents(due, currency)),
                ));
                continue;
            }
            if inv.amount.cents() != due && !self.partial_allowed(&row.item_type) {
                problems.push(FieldProblem::new(
                    &field,
                    "partial_not_allowed",
                    format!(
                        "this fee is paid in full: {}",
                        Money::from_cents(due, currency)
                    ),
                ));
                continue;
            }
            item_rows.push(PaymentItemRow {
                payment_id: payment_id.clone(),
                line_no: (req.items.len() + i) as i64 + 1,
                item_type: row.item_type,
                account_number: row.id,
                amount_cents: inv.amount.cents(),
            });
        }
        if !problems.is_empty() {
            return Err(AppError::Fields(problems));
        }
        if req.channel == Channel::Portal {
            let lines: Vec<(String, i64)> = item_rows
                .iter()
                .map(|r| (r.item_type.clone(), r.amount_cents))
                .collect();
            if let Some(fee) = self.card_fee_for(&lines)? {
                item_rows.push(PaymentItemRow {
                    payment_id: payment_id.clone(),
                    line_no: item_rows.len() as i64 + 1,
                    item_type: CARD_FEE.into(),
                    account_number: CARD_FEE.into(),
                    amount_cents: fee.amount_cents,
                });
            }
        }
        let total = Money::sum(
            currency,
            item_rows
                .iter()
                .map(|i| Money::from_cents(i.amount_cents, currency)),
        )
        .map_err(|_| AppError::invalid("items", "the total is too large"))?;
        let row = PaymentRow {
            id: payment_id.clone(),
            confirmation_number: confirmation_number(),
            status: PaymentStatus::Pending.as_str().into(),
            amount_cents: total.cents(),
            currency: currency.code().into(),
            email: self.seal(crate::crypto::columns::PAYMENT_EMAIL, req.email.as_str())?,
            email_index: Some(self.email_index(req.email.as_str())),
            resident_id: req.resident_id.clone(),
            channel: req.channel.as_str().into(),
            processor_session_id: None,
            processor_payment_intent: None,
            card_brand: None,
            card_last4: None,
            failure_code: None,
            failure_message: None,
            refunded_cents: 0,
            return_url: req.return_url.clone(),
            created_at: now,
            updated_at: now,
            decided_at: None,
        };
        pay_store::insert(&mut tx, &row, &item_rows).await?;
        if let Some(l) = &req.language {
            let lang = crate::mail_text::Lang::parse(l);
            if lang != crate::mail_text::Lang::En {
                pay_store::set_language(&mut tx, &payment_id, lang.code()).await?;
            }
        }
        if let Some(key) = &req.form_key {
            if let Err(e) = pay_store::set_form_key(&mut tx, &payment_id, key).await {
                if store::is_unique_violation(&e) {
                    // The same form, sent twice at once: the other request won the key.
                    drop(tx);
                    let mut conn = self.store.conn().await?;
                    let first = pay_store::by_form_key(&mut conn, key)
                        .await?
                        .ok_or_else(|| AppError::Internal("form key vanished".into()))?;
                    drop(conn);
                    return self.form_sent_again(first, &req).await;
                }
                return Err(e.into());
            }
        }
        let detail = format!(
            "{} for {} item(s) via {}",
            total,
            item_rows.len(),
            req.channel.as_str()
        );
        self.add_event(&mut tx, &payment_id, "created", &detail)
            .await?;
        let actor = req
            .resident_id
            .as_deref()
            .map(|r| format!("resident:{r}"))
            .unwrap_or_else(|| req.channel.as_str().to_owned());
        self.audit(
            &mut tx,
            &actor,
            "payment.created",
            &payment_id,
            "success",
            &req.source_ip,
            &detail,
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;

        // Outside any transaction: never hold the database while waiting on the network.
        self.open_checkout(&row, &item_rows, &req.email).await
    }

    /// Opens (or, for a payment that already asked, finds again) the processor's checkout
    /// session of a pending payment. Everything sent is derived from the stored payment and
    /// the payment id is the idempotency key, so asking twice yields the same session.
    async fn open_checkout(
        &self,
        row: &PaymentRow,
        item_rows: &[PaymentItemRow],
        email: &EmailAddress,
    ) -> Result<StartedPayment, AppError> {
        let payment_id = row.id.clone();
        let currency = self.config().currency;
        let base = &self.config().portal_base_url;
        let language = {
            let mut conn = self.store.conn().await?;
            pay_store::language_of(&mut conn, &payment_id).await?
        };
        let create = CreateCheckoutSession {
            line_items: item_rows
                .iter()
                .map(|i| LineItem {
                    name: match i.item_type.as_str() {
                        "utility" => format!(
                            "{} utility account {}",
                            self.config().city_name,
                            i.account_number
                        ),
                        CARD_FEE => format!("{} card convenience fee", self.config().city_name),
                        t => format!("{} {t} fee {}", self.config().city_name, i.account_number),
                    },
                    unit_amount: i.amount_cents,
                    quantity: 1,
                })
                .collect(),
            currency: currency.code().into(),
            success_url: format!(
                "{base}/payments/{payment_id}/return?session_id={{CHECKOUT_SESSION_ID}}"
            ),
            cancel_url: format!("{base}/payments/{payment_id}/cancel"),
            client_reference_id: payment_id.clone(),
            metadata: vec![
                ("payment_id".into(), payment_id.clone()),
                (
                    "confirmation_number".into(),
                    row.confirmation_number.clone(),
                ),
            ],
            customer_email: Some(email.to_string()),
            expires_at: Some(row.created_at + self.config().payment_ttl_secs.max(1800)),
            // The card page in the payer's language.
            locale: Some(language).filter(|l| l != "en"),
        };
        let session = match self
            .processor
            .create_checkout_session(&create, &payment_id)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                self.fail_unstarted(&payment_id, &e).await?;
                return Err(AppError::Processor(e));
            }
        };
        let url = session.url.clone().ok_or_else(|| {
            AppError::Processor(ProcessorError::Decode("checkout session has no url".into()))
        })?;
        if row.processor_session_id.as_deref() != Some(session.id.as_str()) {
            let mut tx = self.store.begin().await?;
            pay_store::set_session(&mut tx, &payment_id, &session.id, self.now_unix()).await?;
            self.add_event(
                &mut tx,
                &payment_id,
                "checkout_opened",
                &format!("processor session {}", session.id),
            )
            .await?;
            tx.commit().await.map_err(store::StoreError::from)?;
        }
        let payment = self.payment(&payment_id).await?;
        Ok(StartedPayment {
            payment,
            checkout_url: url,
        })
    }

    /// A portal form sent again (a double click, a resubmit after "back", a reload of the
    /// answer): the payment it started is the answer. Still pending: its checkout is opened
    /// again (the same session, by idempotency key). Decided: `FormAlreadyUsed`, whose
    /// page shows that payment. Other amounts under the same key are refused.
    async fn form_sent_again(
        &self,
        p: PaymentRow,
        req: &PaymentRequest,
    ) -> Result<StartedPayment, AppError> {
        let mut conn = self.store.conn().await?;
        let items = pay_store::items(&mut conn, &p.id).await?;
        drop(conn);
        if requested_lines(&items) != wanted_lines(req)
            || p.resident_id != req.resident_id
            || p.email_index.as_deref() != Some(self.email_index(req.email.as_str()).as_str())
        {
            return Err(AppError::IdempotencyMismatch);
        }
        if p.status != PaymentStatus::Pending.as_str() {
            return Err(AppError::FormAlreadyUsed(p.id));
        }
        let started = self.open_checkout(&p, &items, &req.email).await?;
        Ok(started)
    }

    /// The same payer asking again for the same items and amounts (a double click, or back
    /// and "Pay" again) while the first checkout is still open gets that checkout, not a
    /// second one: two open checkouts for one bill could both be paid.
    async fn open_duplicate(
        &self,
        req: &PaymentRequest,
    ) -> Result<Option<StartedPayment>, AppError> {
        let since = self.now_unix() - 30 * 60;
        let wanted = wanted_lines(req);
        let candidates = {
            let mut conn = self.store.conn().await?;
            let ids = pay_store::recent_pending_for_payer(
                &mut conn,
                &self.email_index(req.email.as_str()),
                since,
            )
            .await?;
            let mut found = None;
            for id in ids {
                let Some(p) = pay_store::get(&mut conn, &id).await? else {
                    continue;
                };
                let have = requested_lines(&pay_store::items(&mut conn, &id).await?);
                if have == wanted && p.resident_id == req.resident_id {
                    found = p.processor_session_id.map(|sid| (id, sid));
                    break;
                }
            }
            found
        };
        let Some((id, sid)) = candidates else {
            return Ok(None);
        };
        // Outside any connection: ask the processor whether that checkout is still open.
        match self.processor.retrieve_checkout_session(&sid).await {
            Ok(session) if session.status == SessionStatus::Open => match session.url {
                Some(url) => Ok(Some(StartedPayment {
                    payment: self.payment(&id).await?,
                    checkout_url: url,
                })),
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    async fn fail_unstarted(&self, payment_id: &str, e: &ProcessorError) -> Result<(), AppError> {
        tracing::warn!(payment_id, error = %e, "could not open a checkout session");
        let mut tx = self.store.begin().await?;
        if pay_store::transition(&mut tx, payment_id, "pending", "failed", self.now_unix()).await? {
            pay_store::set_failure(
                &mut tx,
                payment_id,
                "processor_unavailable",
                "The payment processor could not be reached. Nothing was charged.",
                self.now_unix(),
            )
            .await?;
            self.add_event(
                &mut tx,
                payment_id,
                "failed",
                "processor unavailable when opening checkout",
            )
            .await?;
            self.audit(
                &mut tx,
                "system",
                "payment.failed",
                payment_id,
                "failure",
                "-",
                "processor unavailable",
            )
            .await?;
        }
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(())
    }

    /// Applies what the processor says about a checkout session. Safe to call any number
    /// of times, from any number of places at once.
    pub async fn settle(
        &self,
        session: &CheckoutSession,
        source: SettleSource,
        event_id: Option<(&str, &str)>,
    ) -> Result<WebhookOutcome, AppError> {
        let mut tx = self.store.begin().await?;
        if let Some((id, kind)) = event_id {
            if !store::webhooks::mark_processed(&mut tx, id, kind, self.now_unix()).await? {
                return Ok(WebhookOutcome::Duplicate);
            }
        }
        let mut found = pay_store::by_session(&mut tx, &session.id).await?;
        if found.is_none() {
            // The session was opened but recording its id failed (a crash between the two):
            // the processor's reference is our payment id, so the payment is still found and
            // the session id recorded now, rather than a paid checkout being ignored.
            if let Some(reference) = session.client_reference_id.as_deref() {
                if let Some(p) = pay_store::get(&mut tx, reference)
                    .await?
                    .filter(|p| p.processor_session_id.is_none())
                {
                    pay_store::set_session(&mut tx, &p.id, &session.id, self.now_unix()).await?;
                    found = pay_store::get(&mut tx, reference).await?;
                }
            }
        }
        let Some(p) = found else {
            // Money captured for a session we have no payment for (a payment row lost, or
            // a checkout someone opened with our keys): never acknowledged silently.
            let outcome = if is_captured(session) {
                self.raise_session_exception(&mut tx, ExceptionKind::UnknownSession, None, session)
                    .await?;
                WebhookOutcome::Ignored("unknown checkout session; exception raised")
            } else {
                WebhookOutcome::Ignored("unknown checkout session")
            };
            tx.commit().await.map_err(store::StoreError::from)?;
            return Ok(outcome);
        };
        if let Some((id, kind)) = event_id {
            self.add_event(
                &mut tx,
                &p.id,
                "processor_event",
                &format!("{kind} ({id}); session is {}", session.status.as_str()),
            )
            .await?;
        }
        if session
            .client_reference_id
            .as_deref()
            .is_some_and(|r| r != p.id)
        {
            tracing::error!(payment_id = %p.id, "checkout session reference does not match its payment");
            return Err(AppError::Internal(
                "checkout session does not belong to this payment".into(),
            ));
        }
        let status = PaymentStatus::parse(&p.status)
            .ok_or_else(|| AppError::Internal("stored status unknown".into()))?;
        let now = self.now_unix();
        let outcome = match (session.status, session.payment_status) {
            (SessionStatus::Complete, SessionPaymentStatus::Paid) => {
                if session.amount_total != p.amount_cents
                    || !session.currency.eq_ignore_ascii_case(&p.currency)
                {
                    self.add_event(
                        &mut tx,
                        &p.id,
                        "amount_mismatch",
                        &format!(
                            "processor captured {} {}",
                            session.amount_total, session.currency
                        ),
                    )
                    .await?;
                    self.audit(
                        &mut tx,
                        "processor",
                        "payment.amount_mismatch",
                        &p.id,
                        "failure",
                        "-",
                        "captured amount differs from the payment; not posted",
                    )
                    .await?;
                    // Not posted (the ledger would disagree with the processor either way):
                    // the payment is closed as failed and the captured money waits in the
                    // exceptions queue for a person to attach or refund it.
                    if pay_store::transition(&mut tx, &p.id, "pending", "failed", now).await? {
                        pay_store::set_failure(
                            &mut tx,
                            &p.id,
                            "amount_mismatch",
                            "The processor captured a different amount; city staff will review it.",
                            now,
                        )
                        .await?;
                    }
                    self.raise_session_exception(
                        &mut tx,
                        ExceptionKind::AmountMismatch,
                        Some(&p.id),
                        session,
                    )
                    .await?;
                    tx.commit().await.map_err(store::StoreError::from)?;
                    tracing::error!(payment_id = %p.id, "processor captured a different amount");
                    return Ok(WebhookOutcome::Ignored("amount differs; exception raised"));
                }
                if status.apply(PaymentEvent::Succeed).is_ok()
                    && pay_store::transition(&mut tx, &p.id, "pending", "succeeded", now).await?
                {
                    let card = session.card.as_ref();
                    pay_store::set_processor_details(
                        &mut tx,
                        &p.id,
                        session.payment_intent_id.as_deref(),
                        card.map(|c| c.brand.as_str()),
                        card.map(|c| c.last4.as_str()),
                        now,
                    )
                    .await?;
                    self.add_event(
                        &mut tx,
                        &p.id,
                        "succeeded",
                        &format!("captured, confirmed by {}", source.as_str()),
                    )
                    .await?;
                    let brand = card.map_or("unknown", |c| c.brand.as_str());
                    self.post_payment(&mut tx, &p, brand).await?;
                    self.audit(
                        &mut tx,
                        "processor",
                        "payment.succeeded",
                        &p.id,
                        "success",
                        "-",
                        &format!("{} cents via {}", p.amount_cents, source.as_str()),
                    )
                    .await?;
                    let mut fresh = p.clone();
                    fresh.status = "succeeded".into();
                    fresh.card_brand = card.map(|c| c.brand.clone());
                    fresh.card_last4 = card.map(|c| c.last4.clone());
                    let items = pay_store::items(&mut tx, &p.id).await?;
                    let paid_items: Vec<(String, i64)> = items
                        .iter()
                        .filter(|i| i.item_type == "utility")
                        .map(|i| (i.account_number.clone(), i.amount_cents))
                        .collect();
                    let view = self.view(fresh, items)?;
                    self.enqueue_receipt(&mut tx, &view).await?;
                    // The city's systems hear of it in the same transaction.
                    self.enqueue_city_event(
                        &mut tx,
                        "payment.succeeded",
                        serde_json::json!({
                            "payment_id": view.id,
                            "confirmation_number": view.confirmation_number,
                            "amount_cents": view.amount.cents(),
                            "currency": view.amount.currency().code(),
                            "items": view.items.iter().map(|i| serde_json::json!({
                                "type": i.item_type, "account_number": i.account_number,
                                "amount_cents": i.amount.cents(),
                            })).collect::<Vec<_>>(),
                        }),
                    )
                    .await?;
                    self.bills_paid_events(&mut tx, &paid_items, &view.id)
                        .await?;
                    WebhookOutcome::Applied
                } else if self.captured_now(&mut tx, &p.id, status).await? {
                    WebhookOutcome::Ignored("already succeeded")
                } else {
                    // Captured by the processor after we closed the payment: never silently
                    // drop money. Recorded for reconciliation and staff follow-up.
                    self.add_event(
                        &mut tx,
                        &p.id,
                        "capture_after_close",
                        &format!("processor captured a {} payment", status.as_str()),
                    )
                    .await?;
                    self.audit(
                        &mut tx,
                        "processor",
                        "payment.capture_after_close",
                        &p.id,
                        "failure",
                        "-",
                        "needs reconciliation",
                    )
                    .await?;
                    self.raise_session_exception(
                        &mut tx,
                        ExceptionKind::CaptureAfterClose,
                        Some(&p.id),
                        session,
                    )
                    .await?;
                    tracing::error!(payment_id = %p.id, status = status.as_str(), "processor captured a closed payment");
                    WebhookOutcome::Ignored("payment already closed")
                }
            }
            (SessionStatus::Expired, _) => {
                // A session closed before its time was closed on the resident's cancel (we
                // only expire early then), whichever of cancel and webhook lands first.
                let closed_early = p.created_at + self.config().payment_ttl_secs > now;
                let to = if p.failure_code.is_some() {
                    "failed"
                } else if matches!(source, SettleSource::Cancel)
                    || (closed_early && !matches!(source, SettleSource::ExpiryJob))
                {
                    "canceled"
                } else {
                    "expired"
                };
                let event = match to {
                    "failed" => PaymentEvent::Fail,
                    "canceled" => PaymentEvent::Cancel,
                    _ => PaymentEvent::Expire,
                };
                if status.apply(event).is_ok()
                    && pay_store::transition(&mut tx, &p.id, "pending", to, now).await?
                {
                    self.add_event(
                        &mut tx,
                        &p.id,
                        to,
                        &format!("checkout session closed ({})", source.as_str()),
                    )
                    .await?;
                    self.audit(
                        &mut tx,
                        "processor",
                        &format!("payment.{to}"),
                        &p.id,
                        "success",
                        "-",
                        source.as_str(),
                    )
                    .await?;
                    WebhookOutcome::Applied
                } else {
                    WebhookOutcome::Ignored("payment already decided")
                }
            }
            _ => {
                // Still open. Remember a declined attempt so the resident sees why.
                if let Some(err) = &session.last_payment_error {
                    let code = err.decline_code.clone().unwrap_or_else(|| err.code.clone());
                    if p.failure_code.as_deref() != Some(code.as_str()) {
                        pay_store::set_failure(&mut tx, &p.id, &code, &err.message, now).await?;
                        self.add_event(
                            &mut tx,
                            &p.id,
                            "attempt_declined",
                            &format!("{code}: {}", err.message),
                        )
                        .await?;
                    }
                }
                WebhookOutcome::Ignored("checkout still open")
            }
        };
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(outcome)
    }

    /// Whether the payment is captured as the database has it now. `read` is what this
    /// transaction read before: when another settlement (the webhook and the resident's
    /// return, racing) won the compare-and-set meanwhile, the row says so now, and a
    /// capture it recorded is not a "capture after close".
    async fn captured_now(
        &self,
        tx: &mut Conn,
        payment_id: &str,
        read: PaymentStatus,
    ) -> Result<bool, AppError> {
        if read.captured() {
            return Ok(true);
        }
        let now = pay_store::get(tx, payment_id)
            .await?
            .and_then(|p| PaymentStatus::parse(&p.status));
        Ok(now.is_some_and(|s| s.captured()))
    }

    /// An exception for a captured checkout session, once per session.
    async fn raise_session_exception(
        &self,
        tx: &mut Conn,
        kind: ExceptionKind,
        payment_id: Option<&str>,
        session: &CheckoutSession,
    ) -> Result<bool, AppError> {
        let amount = domain::Currency::parse(&session.currency)
            .map(|c| Money::from_cents(session.amount_total, c));
        self.raise_exception(
            tx,
            "processor",
            NewException {
                kind,
                // The key reconciliation uses for the same capture, so one capture is one
                // exception whichever path sees it first.
                dedupe_key: match &session.payment_intent_id {
                    Some(pi) => format!("capture:{pi}"),
                    None => format!("session:{}", session.id),
                },
                payment_id: payment_id.map(str::to_owned),
                processor_ref: Some(session.id.clone()),
                amount,
                business_date: None,
                evidence: session_evidence(session),
            },
        )
        .await
    }

    /// Posts each item's amount to its account, once.
    async fn post_payment(
        &self,
        tx: &mut Conn,
        p: &PaymentRow,
        card_brand: &str,
    ) -> Result<(), AppError> {
        let items = pay_store::items(tx, &p.id).await?;
        for item in &items {
            if item.item_type != "utility" {
                if item.item_type != CARD_FEE {
                    if let Some(line) = self
                        .post_to_invoice(tx, &item.account_number, &p.id, item.amount_cents)
                        .await?
                    {
                        self.add_event(tx, &p.id, "posted", &line).await?;
                    }
                }
                continue;
            }
            let added = accounts::post_ledger(
                tx,
                &accounts::LedgerRow {
                    id: random_id(),
                    account_number: item.account_number.clone(),
                    kind: "payment".into(),
                    reference: p.id.clone(),
                    amount_cents: -item.amount_cents,
                    description: format!("Online payment {}", p.confirmation_number),
                    posted_at: self.now_unix(),
                },
            )
            .await?;
            if added {
                let detail = format!(
                    "posted {} to account {}",
                    Money::from_cents(item.amount_cents, self.config().currency),
                    item.account_number
                );
                self.add_event(tx, &p.id, "posted", &detail).await?;
            }
        }
        // The city's ledger: one posting line per item, on today's business day.
        let lines: Vec<(String, String, i64)> = items
            .iter()
            .map(|i| {
                (
                    i.item_type.clone(),
                    i.account_number.clone(),
                    i.amount_cents,
                )
            })
            .collect();
        self.post_lines(
            tx,
            "payment",
            &p.id,
            &p.confirmation_number,
            card_brand,
            &lines,
        )
        .await
    }

    /// A processor webhook: verified (signature and age), de-duplicated by event id, then
    /// the session is fetched from the processor, which is the source of truth.
    pub async fn handle_webhook(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<WebhookOutcome, AppError> {
        let header = signature.ok_or(AppError::Webhook(
            processor::webhook::WebhookError::MissingHeader,
        ))?;
        let event = processor::webhook::verify(
            body,
            header,
            self.config().webhook_secret.expose(),
            self.now_unix(),
            self.config().webhook_tolerance_secs,
        )?;
        {
            let mut conn = self.store.conn().await?;
            if store::webhooks::was_processed(&mut conn, &event.id).await? {
                return Ok(WebhookOutcome::Duplicate);
            }
        }
        if event.kind.starts_with("checkout.session.") {
            // Only the id is taken from the event: the session itself is fetched from the
            // processor, the source of truth.
            let Some(sid) = event
                .object
                .get("id")
                .and_then(|v| v.as_str())
                .filter(|s| s.starts_with("cs_"))
            else {
                return Err(AppError::invalid(
                    "data.object.id",
                    "not a checkout session id",
                ));
            };
            let session = match self.processor.retrieve_checkout_session(sid).await {
                Ok(session) => session,
                Err(ProcessorError::Api { status: 404, .. }) => {
                    return Ok(WebhookOutcome::Ignored("unknown checkout session"))
                }
                Err(e) => return Err(e.into()),
            };
            return self
                .settle(
                    &session,
                    SettleSource::Webhook,
                    Some((&event.id, &event.kind)),
                )
                .await;
        }
        let mut conn = self.store.conn().await?;
        if event.kind == "charge.refunded" {
            if let Some((charge, intent)) = event
                .refunded_charge()
                .and_then(|c| c.payment_intent.clone().map(|i| (c, i)))
            {
                if let Some(p) = pay_store::by_payment_intent(&mut conn, &intent).await? {
                    drop(conn);
                    let mut tx = self.store.begin().await?;
                    if store::webhooks::mark_processed(
                        &mut tx,
                        &event.id,
                        &event.kind,
                        self.now_unix(),
                    )
                    .await?
                    {
                        self.add_event(
                            &mut tx,
                            &p.id,
                            "refund_reported",
                            &format!(
                                "processor reports {} cents refunded",
                                charge.amount_refunded
                            ),
                        )
                        .await?;
                    }
                    tx.commit().await.map_err(store::StoreError::from)?;
                    return Ok(WebhookOutcome::Applied);
                }
            }
        }
        Ok(
            if store::webhooks::mark_processed(&mut conn, &event.id, &event.kind, self.now_unix())
                .await?
            {
                WebhookOutcome::Ignored("event type not used")
            } else {
                WebhookOutcome::Duplicate
            },
        )
    }

    /// The return and cancel pages are public GETs that ask the processor about a pending
    /// payment: at most `PROCESSOR_CHECKS` times per payment per 15 minutes, so nobody can
    /// spend the city's processor API quota by reloading them (the webhook settles the
    /// payment anyway; the page then says "confirming").
    async fn may_ask_processor(&self, payment_id: &str) -> Result<bool, AppError> {
        match self
            .rate_limit(
                &format!("processor-check:{payment_id}"),
                PROCESSOR_CHECKS,
                15 * 60,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(AppError::RateLimited) => {
                tracing::info!(
                    payment_id,
                    "processor check skipped: too many for this payment"
                );
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The resident is back on the success URL: if the webhook has not arrived yet, ask
    /// the processor directly.
    pub async fn complete_return(&self, payment_id: &str) -> Result<PaymentView, AppError> {
        let p = self.payment(payment_id).await?;
        if p.status == PaymentStatus::Pending && self.may_ask_processor(payment_id).await? {
            if let Some(sid) = &p.processor_session_id {
                match self.processor.retrieve_checkout_session(sid).await {
                    Ok(session) => {
                        self.settle(&session, SettleSource::Return, None).await?;
                    }
                    // The webhook will settle it; the receipt page says "confirming".
                    Err(e) => {
                        tracing::warn!(payment_id, error = %e, "processor unreachable on return")
                    }
                }
            }
        }
        self.payment(payment_id).await
    }

    /// The resident left the hosted page. The session is expired at the processor first so
    /// it cannot be paid later; if it was paid meanwhile, it is settled as paid.
    /// The resident came back from the processor without paying (its cancel link). Nothing
    /// is changed by this look: the processor's view is recorded (a decline, or a payment
    /// that did complete) and, while the checkout is still open, its address is returned so
    /// the resident can try another card. Cancelling is a separate, deliberate step.
    pub async fn payment_left(
        &self,
        payment_id: &str,
    ) -> Result<(PaymentView, Option<String>), AppError> {
        let p = self.payment(payment_id).await?;
        let (PaymentStatus::Pending, Some(sid)) = (p.status, p.processor_session_id.clone()) else {
            return Ok((p, None));
        };
        if !self.may_ask_processor(payment_id).await? {
            return Ok((p, None));
        }
        match self.processor.retrieve_checkout_session(&sid).await {
            Ok(session) => {
                self.settle(&session, SettleSource::Return, None).await?;
                let url = (session.status == SessionStatus::Open)
                    .then_some(session.url)
                    .flatten();
                Ok((self.payment(payment_id).await?, url))
            }
            Err(e) => {
                tracing::warn!(payment_id, error = %e, "processor unreachable after the resident left checkout");
                Ok((p, None))
            }
        }
    }

    pub async fn cancel_return(&self, payment_id: &str) -> Result<PaymentView, AppError> {
        let p = self.payment(payment_id).await?;
        if p.status == PaymentStatus::Pending {
            self.close_at_processor(&p, SettleSource::Cancel).await?;
        }
        self.payment(payment_id).await
    }

    async fn close_at_processor(
        &self,
        p: &PaymentView,
        source: SettleSource,
    ) -> Result<(), AppError> {
        let Some(sid) = &p.processor_session_id else {
            return self
                .expire_locally(p, source, "no checkout session was opened")
                .await;
        };
        // Ask before expiring: the processor may already hold a decision (and a decline).
        let first = match self.processor.retrieve_checkout_session(sid).await {
            Ok(s) => s,
            // The processor has no such session (e.g. made with sandbox keys before the city
            // switched to live ones): nothing can be captured on it, so it expires here;
            // otherwise it would be retried forever and block the job's queue.
            Err(ProcessorError::Api { status: 404, .. }) => {
                return self
                    .expire_locally(p, source, "the processor has no such checkout session")
                    .await;
            }
            Err(e) => return Err(e.into()),
        };
        let session = match first {
            s if s.status == SessionStatus::Open => {
                self.settle(&s, source, None).await?; // records a decline, if any
                match self.processor.expire_checkout_session(sid).await {
                    Ok(s) => s,
                    Err(ProcessorError::Api { status, .. }) if status < 500 => {
                        self.processor.retrieve_checkout_session(sid).await?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            s => s,
        };
        self.settle(&session, source, None).await?;
        Ok(())
    }

    async fn expire_locally(
        &self,
        p: &PaymentView,
        source: SettleSource,
        why: &str,
    ) -> Result<(), AppError> {
        let mut tx = self.store.begin().await?;
        if pay_store::transition(&mut tx, &p.id, "pending", "expired", self.now_unix()).await? {
            self.add_event(&mut tx, &p.id, "expired", why).await?;
            self.audit(
                &mut tx,
                "system",
                "payment.expired",
                &p.id,
                "success",
                "-",
                &format!("{}: {why}", source.as_str()),
            )
            .await?;
        }
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(())
    }

    /// Expires pending payments older than the configured time to live. Returns how many
    /// were looked at.
    pub async fn expire_stale_payments(&self) -> Result<usize, AppError> {
        {
            // Idempotency keys are kept for a day (longer than any payment stays open).
            let mut conn = self.store.conn().await?;
            store::idempotency::prune(&mut conn, self.now_unix() - IDEMPOTENCY_KEY_SECS).await?;
            // Rate-limit counters of windows long past.
            store::ratelimit::prune(&mut conn, self.now_unix() - 24 * 3600).await?;
        }
        let cutoff = self.now_unix() - self.config().payment_ttl_secs;
        let stale = {
            let mut conn = self.store.conn().await?;
            pay_store::stale_pending(&mut conn, cutoff, 100).await?
        };
        let n = stale.len();
        for p in stale {
            let items = {
                let mut conn = self.store.conn().await?;
                pay_store::items(&mut conn, &p.id).await?
            };
            let view = self.view(p, items)?;
            if let Err(e) = self
                .close_at_processor(&view, SettleSource::ExpiryJob)
                .await
            {
                tracing::warn!(payment_id = %view.id, error = %e, "could not expire payment");
            }
        }
        Ok(n)
    }

    pub async fn payments_for_resident(
        &self,
        resident_id: &str,
        limit: i64,
    ) -> Result<Vec<PaymentView>, AppError> {
        let mut conn = self.store.read().await?;
        let rows = pay_store::for_resident(&mut conn, resident_id, limit).await?;
        self.views_of(&mut conn, rows).await
    }

    pub async fn payments_for_account(
        &self,
        account: &str,
        limit: i64,
    ) -> Result<Vec<PaymentView>, AppError> {
        let mut conn = self.store.read().await?;
        let rows = pay_store::for_account(&mut conn, account, limit).await?;
        self.views_of(&mut conn, rows).await
    }

    /// The payments one resident made to an account, newest first (their bill history:
    /// others who pay the same account are not shown to everyone who links it).
    pub async fn payments_for_account_by_resident(
        &self,
        account: &str,
        resident_id: &str,
        limit: i64,
    ) -> Result<Vec<PaymentView>, AppError> {
        let mut conn = self.store.read().await?;
        let rows =
            pay_store::for_account_by_resident(&mut conn, account, resident_id, limit).await?;
        self.views_of(&mut conn, rows).await
    }

    /// Views of a page of payments, their items read in one query.
    async fn views_of(
        &self,
        conn: &mut store::Conn,
        rows: Vec<pay_store::PaymentRow>,
    ) -> Result<Vec<PaymentView>, AppError> {
        let ids: Vec<&str> = rows.iter().map(|p| p.id.as_str()).collect();
        let mut items = pay_store::items_of(conn, &ids).await?;
        let mut out = Vec::with_capacity(rows.len());
        for p in rows {
            let (mine, rest) = items.into_iter().partition(|i| i.payment_id == p.id);
            items = rest;
            out.push(self.view(p, mine)?);
        }
        Ok(out)
    }
}
