//! What the city offers besides utility bills: the permit and licence types it configures,
//! the invoices residents pay for them, the card fees it charges, and what happens when an
//! invoice is paid (a permit issued, a licence activated or renewed).

use crate::ids::random_id;
use crate::{App, AppError, FieldProblem};
use domain::fees::{CardFeeRule, Expiry, FeeLine, LatePenalty, LicenceFee, PermitFees};
use serde::{Deserialize, Serialize};
use store::services::{self as sv, InvoiceLineRow, InvoiceRow, ServiceTypeRow};
use store::{Conn, StoreError};

/// A permit type: its documents, fees and inspections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermitType {
    pub code: String,
    pub name: String,
    pub name_es: String,
    /// What the applicant must upload (at least one plan per listed document).
    #[serde(default)]
    pub required_documents: Vec<String>,
    pub fees: PermitFees,
    /// Inspection types, in the order they are usually done.
    #[serde(default)]
    pub inspections: Vec<String>,
}

/// A business licence type: its fee rule, expiry and late penalty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenceType {
    pub code: String,
    pub name: String,
    pub name_es: String,
    pub fee: LicenceFee,
    pub expiry: Expiry,
    pub late_penalty: LatePenalty,
}

/// The services part of the configuration.
#[derive(Debug, Clone)]
pub struct ServicesConfig {
    /// Types the config file defines; written to the database at start (audited when they
    /// change), after which staff may edit them in the back office.
    pub permit_types: Vec<PermitType>,
    pub licence_types: Vec<LicenceType>,
    /// Inspections a day takes unless staff set that day otherwise.
    pub inspection_capacity: i64,
    /// Item types a resident may pay part of (utility bills by default; permit and licence
    /// fees are paid in full).
    pub partial_payments: Vec<String>,
    /// Card fees, checked against the networks' rules at start.
    pub card_fees: Vec<CardFeeRule>,
}

impl ServicesConfig {
    /// No types, no fees, four inspections a day, partial payment of utility bills only.
    pub fn standard() -> ServicesConfig {
        ServicesConfig {
            permit_types: Vec::new(),
            licence_types: Vec::new(),
            inspection_capacity: 4,
            partial_payments: vec!["utility".into()],
            card_fees: Vec::new(),
        }
    }

    /// Checks every type and the card fees; each problem is named.
    pub fn check(&self) -> Result<(), String> {
        for t in &self.permit_types {
            check_permit_type(t).map_err(|e| format!("permit type {:?}: {e}", t.code))?;
        }
        for t in &self.licence_types {
            check_licence_type(t).map_err(|e| format!("licence type {:?}: {e}", t.code))?;
        }
        if self.inspection_capacity < 0 {
            return Err("services.inspection_capacity must not be negative".into());
        }
        let v = domain::fees::check_card_fees(&self.card_fees);
        if !v.is_empty() {
            return Err(v
                .iter()
                .map(|v| format!("card fee {}: {} ({})", v.subject, v.message, v.citation))
                .collect::<Vec<_>>()
                .join("; "));
        }
        for r in &self.card_fees {
            // Charging a service fee as its own card transaction needs a second checkout
            // at the processor, which this portal does not open yet: refused rather than
            // charged the wrong way.
            if r.kind == domain::fees::CardFeeKind::Service
                && r.charged_to == domain::fees::ChargedTo::Payer
            {
                return Err(format!(
                    "card fee {} / {}: service fees charged to the payer need a separate card transaction, which this version does not open; use a convenience fee or absorb the fee",
                    r.item_type, r.channel
                ));
            }
        }
        Ok(())
    }
}

/// The types file (`services.types_file`; `deploy/services.toml` is the demo's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypesFile {
    #[serde(default)]
    permit_types: Vec<PermitType>,
    #[serde(default)]
    licence_types: Vec<LicenceType>,
}

/// Reads a types file: unknown keys and bad schedules are errors, each named.
pub fn parse_types(text: &str) -> Result<(Vec<PermitType>, Vec<LicenceType>), String> {
    let f: TypesFile = toml::from_str(text).map_err(|e| e.to_string())?;
    for t in &f.permit_types {
        check_permit_type(t).map_err(|e| format!("permit type {:?}: {e}", t.code))?;
    }
    for t in &f.licence_types {
        check_licence_type(t).map_err(|e| format!("licence type {:?}: {e}", t.code))?;
    }
    Ok((f.permit_types, f.licence_types))
}

/// The demo city's types (the `deploy/services.toml` shipped with the source).
pub const DEMO_TYPES: &str = include_str!("../../../deploy/services.toml");

impl ServicesConfig {
    /// The standard settings with the demo city's permit and licence types.
    pub fn demo() -> Result<ServicesConfig, String> {
        let (permit_types, licence_types) = parse_types(DEMO_TYPES)?;
        Ok(ServicesConfig {
            permit_types,
            licence_types,
            ..ServicesConfig::standard()
        })
    }
}

fn code_ok(code: &str) -> bool {
    (1..=40).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub fn check_permit_type(t: &PermitType) -> Result<(), String> {
    if !code_ok(&t.code) {
        return Err("code must be 1 to 40 lower-case letters, digits, - or _".into());
    }
    if t.name.trim().is_empty() || t.name_es.trim().is_empty() {
        return Err("name and name_es are required".into());
    }
    t.fees.check().map_err(|e| e.to_string())
}

pub fn check_licence_type(t: &LicenceType) -> Result<(), String> {
    if !code_ok(&t.code) {
        return Err("code must be 1 to 40 lower-case letters, digits, - or _".into());
    }
    if t.name.trim().is_empty() || t.name_es.trim().is_empty() {
        return Err("name and name_es are required".into());
    }
    t.fee.check().map_err(|e| e.to_string())?;
    t.expiry.check().map_err(|e| e.to_string())?;
    t.late_penalty.check().map_err(|e| e.to_string())
}

/// Kinds of service type.
pub const PERMIT: &str = "permit";
pub const LICENCE: &str = "licence";

/// An invoice as residents and staff see it.
#[derive(Debug, Clone)]
pub struct InvoiceView {
    pub id: String,
    pub item_type: String,
    pub subject_id: String,
    pub purpose: String,
    pub amount_cents: i64,
    pub paid_cents: i64,
    pub status: String,
    pub lines: Vec<FeeLine>,
    pub created_at: i64,
}

impl InvoiceView {
    pub fn due_cents(&self) -> i64 {
        (self.amount_cents - self.paid_cents).max(0)
    }
}

fn invoice_view(r: InvoiceRow, lines: Vec<InvoiceLineRow>) -> InvoiceView {
    InvoiceView {
        id: r.id,
        item_type: r.item_type,
        subject_id: r.subject_id,
        purpose: r.purpose,
        amount_cents: r.amount_cents,
        paid_cents: r.paid_cents,
        status: r.status,
        lines: lines
            .into_iter()
            .map(|l| FeeLine {
                code: l.code,
                amount_cents: l.amount_cents,
            })
            .collect(),
        created_at: r.created_at,
    }
}

/// A card fee to add to a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardFee {
    pub amount_cents: i64,
}

impl App {
    pub fn services(&self) -> &ServicesConfig {
        &self.config().services
    }

    /// Writes the config file's types to the database where they differ, each change
    /// audited with what it was and what it became.
    pub async fn sync_service_types(&self) -> Result<usize, AppError> {
        let mut changed = 0;
        let entries: Vec<(&str, String, String)> = self
            .services()
            .permit_types
            .iter()
            .map(|t| Ok((PERMIT, t.code.clone(), toml_of(t)?)))
            .chain(
                self.services()
                    .licence_types
                    .iter()
                    .map(|t| Ok((LICENCE, t.code.clone(), toml_of(t)?))),
            )
            .collect::<Result<_, AppError>>()?;
        for (kind, code, definition) in entries {
            if self
                .put_service_type(kind, &code, &definition, "config", "-")
                .await?
            {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Stores a type's definition if it changed; audited. True if it changed.
    async fn put_service_type(
        &self,
        kind: &str,
        code: &str,
        definition: &str,
        actor: &str,
        ip: &str,
    ) -> Result<bool, AppError> {
        let mut tx = self.store.begin().await?;
        let before = sv::types(&mut tx, kind)
            .await?
            .into_iter()
            .find(|t| t.code == code)
            .map(|t| t.definition);
        if before.as_deref() == Some(definition) {
            return Ok(false);
        }
        sv::upsert_type(
            &mut tx,
            &ServiceTypeRow {
                kind: kind.into(),
                code: code.into(),
                definition: definition.into(),
                updated_by: actor.into(),
                updated_at: self.now_unix(),
            },
        )
        .await?;
        let detail = serde_json::json!({ "before": before, "after": definition }).to_string();
        self.audit(
            &mut tx,
            actor,
            "service_type.changed",
            &format!("{kind}:{code}"),
            "success",
            ip,
            &detail,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(true)
    }

    /// A staff member's edit of a type, given as TOML. Checked like the config file.
    pub async fn save_service_type(
        &self,
        staff_id: &str,
        kind: &str,
        definition: &str,
        ip: &str,
    ) -> Result<String, AppError> {
        let bad = |m: String| {
            AppError::Fields(vec![FieldProblem::new("definition", "type_definition", m)])
        };
        let code = match kind {
            PERMIT => {
                let t: PermitType =
                    toml::from_str(definition).map_err(|e| bad(e.message().to_owned()))?;
                check_permit_type(&t).map_err(bad)?;
                t.code
            }
            LICENCE => {
                let t: LicenceType =
                    toml::from_str(definition).map_err(|e| bad(e.message().to_owned()))?;
                check_licence_type(&t).map_err(bad)?;
                t.code
            }
            _ => return Err(AppError::NotFound("service type")),
        };
        self.put_service_type(kind, &code, definition, &format!("staff:{staff_id}"), ip)
            .await?;
        Ok(code)
    }

    /// The stored definitions of one kind, as (code, TOML).
    pub async fn service_type_definitions(
        &self,
        kind: &str,
    ) -> Result<Vec<(String, String)>, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(sv::types(&mut conn, kind)
            .await?
            .into_iter()
            .map(|t| (t.code, t.definition))
            .collect())
    }

    pub async fn permit_types(&self) -> Result<Vec<PermitType>, AppError> {
        self.service_type_definitions(PERMIT)
            .await?
            .into_iter()
            .map(|(code, d)| {
                toml::from_str(&d)
                    .map_err(|e| AppError::Internal(format!("permit type {code}: {e}")))
            })
            .collect()
    }

    pub async fn licence_types(&self) -> Result<Vec<LicenceType>, AppError> {
        self.service_type_definitions(LICENCE)
            .await?
            .into_iter()
            .map(|(code, d)| {
                toml::from_str(&d)
                    .map_err(|e| AppError::Internal(format!("licence type {code}: {e}")))
            })
            .collect()
    }

    pub async fn permit_type(&self, code: &str) -> Result<PermitType, AppError> {
        self.permit_types()
            .await?
            .into_iter()
            .find(|t| t.code == code)
            .ok_or(AppError::NotFound("permit type"))
    }

    pub async fn licence_type(&self, code: &str) -> Result<LicenceType, AppError> {
        self.licence_types()
            .await?
            .into_iter()
            .find(|t| t.code == code)
            .ok_or(AppError::NotFound("licence type"))
    }

    /// Creates an invoice in the caller's transaction.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn create_invoice(
        &self,
        tx: &mut Conn,
        item_type: &str,
        subject_id: &str,
        purpose: &str,
        resident_id: Option<&str>,
        lines: &[FeeLine],
        detail: &str,
    ) -> Result<String, AppError> {
        let id = format!("inv_{}", random_id());
        let amount = lines
            .iter()
            .try_fold(0i64, |a, l| a.checked_add(l.amount_cents))
            .ok_or_else(|| AppError::invalid("fees", "the fee is too large"))?;
        sv::insert_invoice(
            tx,
            &InvoiceRow {
                id: id.clone(),
                item_type: item_type.into(),
                subject_id: subject_id.into(),
                purpose: purpose.into(),
                resident_id: resident_id.map(str::to_owned),
                amount_cents: amount,
                paid_cents: 0,
                status: if amount == 0 { "paid" } else { "open" }.into(),
                detail: detail.into(),
                created_at: self.now_unix(),
                paid_at: None,
            },
            &lines
                .iter()
                .enumerate()
                .map(|(i, l)| InvoiceLineRow {
                    invoice_id: id.clone(),
                    line_no: i as i64 + 1,
                    code: l.code.clone(),
                    amount_cents: l.amount_cents,
                })
                .collect::<Vec<_>>(),
        )
        .await?;
        Ok(id)
    }

    pub async fn invoice(&self, id: &str) -> Result<InvoiceView, AppError> {
        let mut conn = self.store.conn().await?;
        let r = sv::invoice(&mut conn, id)
            .await?
            .ok_or(AppError::NotFound("invoice"))?;
        let lines = sv::invoice_lines(&mut conn, id).await?;
        Ok(invoice_view(r, lines))
    }

    pub(crate) async fn invoices_of(
        &self,
        conn: &mut Conn,
        subject: &str,
    ) -> Result<Vec<InvoiceView>, AppError> {
        let mut out = Vec::new();
        for r in sv::invoices_of_subject(conn, subject).await? {
            let lines = sv::invoice_lines(conn, &r.id).await?;
            out.push(invoice_view(r, lines));
        }
        Ok(out)
    }

    /// A resident's unpaid permit and licence invoices (the cart offers them).
    pub async fn open_invoices(&self, resident_id: &str) -> Result<Vec<InvoiceView>, AppError> {
        let mut conn = self.store.conn().await?;
        let mut out = Vec::new();
        for r in sv::open_invoices_of_resident(&mut conn, resident_id).await? {
            let lines = sv::invoice_lines(&mut conn, &r.id).await?;
            out.push(invoice_view(r, lines));
        }
        Ok(out)
    }

    /// Whether a resident may pay part of an item of this type.
    pub fn partial_allowed(&self, item_type: &str) -> bool {
        self.services()
            .partial_payments
            .iter()
            .any(|t| t == item_type)
    }

    /// The card fee the payer pays on a payment of these (item type, cents) lines: one
    /// flat convenience fee per payment when the city charges one (the networks require
    /// the same flat fee on every payment in the channel, so it is charged once).
    pub fn card_fee_for(&self, lines: &[(String, i64)]) -> Result<Option<CardFee>, AppError> {
        let mut fee = 0i64;
        for r in &self.services().card_fees {
            if r.method != "card" || r.channel != "web" {
                continue;
            }
            if r.kind == domain::fees::CardFeeKind::Convenience
                && lines.iter().any(|(t, _)| *t == r.item_type)
            {
                let total: i64 = lines.iter().map(|(_, c)| *c).sum();
                fee = fee.max(
                    domain::fees::card_fee(r, total)
                        .map_err(|e| AppError::Internal(e.to_string()))?,
                );
            }
        }
        Ok((fee > 0).then_some(CardFee { amount_cents: fee }))
    }

    /// Posts a payment item to its invoice, once, and carries out what a fully paid invoice
    /// means. Returns a line for the payment's timeline, or None if already posted.
    pub(crate) async fn post_to_invoice(
        &self,
        tx: &mut Conn,
        invoice_id: &str,
        payment_id: &str,
        amount_cents: i64,
    ) -> Result<Option<String>, AppError> {
        let now = self.now_unix();
        let before = sv::invoice(tx, invoice_id)
            .await?
            .ok_or_else(|| AppError::Internal(format!("invoice {invoice_id} vanished")))?;
        if !sv::pay_invoice(tx, invoice_id, payment_id, amount_cents, now).await? {
            return Ok(None);
        }
        let inv = sv::invoice(tx, invoice_id)
            .await?
            .ok_or_else(|| AppError::Internal(format!("invoice {invoice_id} vanished")))?;
        if before.status != "open" {
            // Two checkouts for one invoice (two tabs, say), both captured: the second pays
            // for something already paid. Its money is recorded, never acted on twice (no
            // second issue or renewal), and waits in the exceptions queue for a refund.
            self.raise_exception(
                tx,
                "system",
                crate::exceptions::NewException {
                    kind: crate::exceptions::ExceptionKind::Duplicate,
                    dedupe_key: format!("invoice:{invoice_id}:{payment_id}"),
                    payment_id: Some(payment_id.to_owned()),
                    processor_ref: None,
                    amount: Some(domain::Money::from_cents(
                        amount_cents,
                        self.config().currency,
                    )),
                    business_date: None,
                    evidence: serde_json::json!({
                        "invoice": invoice_id,
                        "invoice_status_before": before.status,
                        "note": "a payment for an invoice that was already paid",
                    }),
                },
            )
            .await?;
        } else if inv.status == "paid" {
            // Open -> paid, by this payment: what a paid invoice means happens once.
            match inv.item_type.as_str() {
                PERMIT => self.permit_invoice_paid(tx, &inv).await?,
                LICENCE => self.licence_invoice_paid(tx, &inv).await?,
                _ => {}
            }
        }
        Ok(Some(format!(
            "posted {} to invoice {invoice_id} ({})",
            domain::Money::from_cents(amount_cents, self.config().currency),
            inv.status
        )))
    }

    /// Takes a refunded amount back off an invoice.
    pub(crate) async fn unpost_from_invoice(
        &self,
        tx: &mut Conn,
        invoice_id: &str,
        amount_cents: i64,
    ) -> Result<(), AppError> {
        sv::unpay_invoice(tx, invoice_id, amount_cents).await?;
        Ok(())
    }

    /// The resident's email address, for notices about their applications.
    pub(crate) async fn resident_address(
        &self,
        tx: &mut Conn,
        resident_id: &str,
    ) -> Result<Option<String>, AppError> {
        match store::residents::get(tx, resident_id).await? {
            Some(r) => Ok(Some(
                self.open(crate::crypto::columns::RESIDENT_EMAIL, &r.email)?,
            )),
            None => Ok(None),
        }
    }

    /// Queues an email to a resident, if they still exist.
    pub(crate) async fn notify_resident(
        &self,
        tx: &mut Conn,
        resident_id: &str,
        subject: &str,
        body: &str,
        kind: &str,
    ) -> Result<(), AppError> {
        if let Some(to) = self.resident_address(tx, resident_id).await? {
            self.enqueue_email(tx, &to, subject, body, kind).await?;
        }
        Ok(())
    }
}

fn toml_of<T: Serialize>(t: &T) -> Result<String, AppError> {
    toml::to_string(t).map_err(|e| AppError::Internal(format!("type definition: {e}")))
}

/// A short random code people can type: 10 characters without look-alikes.
pub(crate) fn readable_code(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

impl App {
    /// A guest's look-up of what a permit or licence owes, by its number and the ZIP code of
    /// its property or business (the verifier: both must match, and nothing says which did
    /// not). Returns the subject's kind and its open invoices.
    pub async fn guest_invoices(
        &self,
        number: &str,
        zip: &str,
        ip: &str,
    ) -> Result<(&'static str, Vec<InvoiceView>), AppError> {
        self.rate_limit(&format!("fee-lookup:{ip}"), 60, 900)
            .await?;
        let number = number.trim().to_ascii_uppercase();
        let zip = zip.trim();
        if number.is_empty() || number.len() > 40 || zip.is_empty() {
            return Err(AppError::NotFound("permit or licence"));
        }
        let mut conn = self.store.conn().await?;
        let subject = if let Some(p) = sv::permit_by_number(&mut conn, &number)
            .await?
            .filter(|p| p.site_zip == zip)
        {
            (PERMIT, p.id)
        } else if let Some(l) = sv::licence_by(&mut conn, sv::LicenceKey::Number, &number)
            .await?
            .filter(|l| l.business_zip == zip)
        {
            (LICENCE, l.id)
        } else {
            return Err(AppError::NotFound("permit or licence"));
        };
        let open = self
            .invoices_of(&mut conn, &subject.1)
            .await?
            .into_iter()
            .filter(|i| i.status == "open" && i.due_cents() > 0)
            .collect();
        Ok((subject.0, open))
    }
}
