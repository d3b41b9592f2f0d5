//! Business licences: apply, pay, get a certificate with a verification code; renew
//! (details carried forward, a late penalty by rule after expiry); renewal notices 30
//! days before expiry; staff suspend, revoke or reinstate; a public check of a
//! certificate. Dates are the city's, from the injected clock.

use crate::ids::random_id;
use crate::permits::check_reason;
use crate::services::{readable_code, LicenceType, LICENCE};
use crate::{App, AppError, FieldProblem};
use domain::fees::FeeLine;
use domain::Money;
use serde::{Deserialize, Serialize};
use store::services::{self as sv, LicenceKey, LicenceRow};
use store::{Conn, StoreError};
use time::Date;

/// Renewal notices go out this many days before expiry, and renewal opens then.
pub const RENEWAL_WINDOW_DAYS: i64 = 30;

/// What the application and renewal forms send.
#[derive(Debug, Clone, Default)]
pub struct LicenceInput {
    pub licence_type: String,
    pub business_name: String,
    pub business_street: String,
    pub business_zip: String,
    pub employees: String,
    pub gross_receipts: String,
}

pub const LICENCE_FIELDS: &[&str] = &[
    "licence_type",
    "business_name",
    "business_street",
    "business_zip",
    "employees",
    "gross_receipts",
];

/// The details a renewal invoice carries until it is paid.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Details {
    business_name: String,
    business_street: String,
    business_zip: String,
    employees: i64,
    gross_receipts_cents: i64,
}

#[derive(Debug, Clone)]
pub struct LicenceView {
    pub id: String,
    pub licence_number: Option<String>,
    pub resident_id: String,
    pub licence_type: String,
    pub business_name: String,
    pub business_street: String,
    pub business_zip: String,
    pub employees: i64,
    pub gross_receipts_cents: i64,
    /// pending, active, expired (active past its expiry), suspended, revoked.
    pub status: String,
    pub issued_on: Option<String>,
    pub expires_on: Option<String>,
    pub verification_code: Option<String>,
    pub status_reason: Option<String>,
    /// Renewal is open (within the window before expiry, or after it).
    pub renewable: bool,
}

/// What the public certificate check shows.
#[derive(Debug, Clone)]
pub struct Verification {
    pub licence_number: String,
    pub business_name: String,
    pub licence_type: LicenceType,
    pub status: String,
    pub expires_on: Option<String>,
    /// Genuine, active and not expired today.
    pub current: bool,
}

fn parse_date(s: &Option<String>) -> Option<Date> {
    s.as_deref()
        .and_then(|s| Date::parse(s, &time::format_description::well_known::Iso8601::DATE).ok())
}

impl App {
    fn licence_view(&self, r: LicenceRow, today: Date) -> LicenceView {
        let expires = parse_date(&r.expires_on);
        let status = match (r.status.as_str(), expires) {
            ("active", Some(e)) if e < today => "expired".to_owned(),
            (s, _) => s.to_owned(),
        };
        let renewable = matches!(status.as_str(), "active" | "expired")
            && expires.is_some_and(|e| (e - today).whole_days() <= RENEWAL_WINDOW_DAYS);
        LicenceView {
            id: r.id,
            licence_number: r.licence_number,
            resident_id: r.resident_id,
            licence_type: r.licence_type,
            business_name: r.business_name,
            business_street: r.business_street,
            business_zip: r.business_zip,
            employees: r.employees,
            gross_receipts_cents: r.gross_receipts_cents,
            status,
            issued_on: r.issued_on,
            expires_on: r.expires_on,
            verification_code: r.verification_code,
            status_reason: r.status_reason,
            renewable,
        }
    }

    fn check_licence_input(
        &self,
        input: &LicenceInput,
        types: &[LicenceType],
    ) -> Result<Details, AppError> {
        let mut p = Vec::new();
        if !types.iter().any(|t| t.code == input.licence_type) {
            p.push(FieldProblem::new(
                "licence_type",
                "licence_type_unknown",
                "choose a licence type",
            ));
        }
        let mut text = |field: &str, v: &str, max: usize| {
            let v = v.trim();
            if v.is_empty() {
                p.push(FieldProblem::new(field, "required", "this is required"));
            } else if v.chars().count() > max {
                p.push(FieldProblem::new(
                    field,
                    "too_long",
                    format!("at most {max} characters"),
                ));
            } else if v.chars().any(char::is_control) {
                p.push(FieldProblem::new(
                    field,
                    "control_characters",
                    "no control characters",
                ));
            }
            v.to_owned()
        };
        let business_name = text("business_name", &input.business_name, 160);
        let business_street = text("business_street", &input.business_street, 200);
        let business_zip = match domain::PostalCode::parse(input.business_zip.trim()) {
            Some(z) => z.as_str().to_owned(),
            None => {
                p.push(FieldProblem::new(
                    "business_zip",
                    "zip_shape",
                    "enter a 5-digit ZIP code",
                ));
                String::new()
            }
        };
        let employees = match input.employees.trim().replace(',', "").parse::<i64>() {
            Ok(n) if (0..=1_000_000).contains(&n) => n,
            _ => {
                p.push(FieldProblem::new(
                    "employees",
                    "whole_number",
                    "enter a whole number, like 12",
                ));
                0
            }
        };
        let cleaned: String = input
            .gross_receipts
            .trim()
            .trim_start_matches('$')
            .replace(',', "");
        let gross_receipts_cents = match Money::parse_dollars(&cleaned, self.config().currency) {
            Ok(m) if m.cents() >= 0 && m.cents() <= 1_000_000_000_000 => m.cents(),
            _ => {
                p.push(FieldProblem::new(
                    "gross_receipts",
                    "amount_shape",
                    "enter an amount in dollars, like 250000",
                ));
                0
            }
        };
        if p.is_empty() {
            Ok(Details {
                business_name,
                business_street,
                business_zip,
                employees,
                gross_receipts_cents,
            })
        } else {
            Err(AppError::Fields(p))
        }
    }

    /// The fee lines of a licence of `kind` for these details, renewed (or first paid)
    /// today after expiring on `expired_on`.
    fn licence_fee_lines(
        kind: &LicenceType,
        d: &Details,
        expired_on: Option<Date>,
        today: Date,
    ) -> Result<Vec<FeeLine>, AppError> {
        let fee = kind
            .fee
            .compute(d.employees, d.gross_receipts_cents)
            .map_err(|e| AppError::invalid("gross_receipts", e.to_string()))?;
        let mut lines = vec![FeeLine {
            code: "licence_fee".into(),
            amount_cents: fee,
        }];
        if let Some(e) = expired_on {
            let penalty = kind
                .late_penalty
                .compute(fee, e, today)
                .map_err(|e| AppError::invalid("gross_receipts", e.to_string()))?;
            if penalty > 0 {
                lines.push(FeeLine {
                    code: "late_penalty".into(),
                    amount_cents: penalty,
                });
            }
        }
        Ok(lines)
    }

    /// A new licence application: the licence waits, pending, for its first fee.
    pub async fn apply_licence(
        &self,
        resident_id: &str,
        input: &LicenceInput,
        ip: &str,
    ) -> Result<String, AppError> {
        let types = self.licence_types().await?;
        let d = self.check_licence_input(input, &types)?;
        let kind = types
            .iter()
            .find(|t| t.code == input.licence_type)
            .ok_or(AppError::NotFound("licence type"))?;
        let today = self.city_today()?;
        let lines = Self::licence_fee_lines(kind, &d, None, today)?;
        let now = self.now_unix();
        let id = format!("lic_{}", random_id());
        let mut tx = self.store.begin().await?;
        sv::insert_licence(
            &mut tx,
            &LicenceRow {
                id: id.clone(),
                licence_number: None,
                resident_id: resident_id.to_owned(),
                licence_type: kind.code.clone(),
                business_name: d.business_name.clone(),
                business_street: d.business_street.clone(),
                business_zip: d.business_zip.clone(),
                employees: d.employees,
                gross_receipts_cents: d.gross_receipts_cents,
                status: "pending".into(),
                issued_on: None,
                expires_on: None,
                verification_code: None,
                renewal_notice_for: None,
                status_reason: None,
                created_at: now,
                updated_at: now,
            },
        )
        .await?;
        let detail = serde_json::to_string(&d).map_err(|e| AppError::Internal(e.to_string()))?;
        let inv = self
            .create_invoice(
                &mut tx,
                LICENCE,
                &id,
                "licence_new",
                Some(resident_id),
                &lines,
                &detail,
            )
            .await?;
        self.audit(
            &mut tx,
            &format!("resident:{resident_id}"),
            "licence.applied",
            &id,
            "success",
            ip,
            &format!("{} invoice {inv}", kind.code),
        )
        .await?;
        if lines.iter().all(|l| l.amount_cents == 0) {
            if let Some(row) = sv::invoice(&mut tx, &inv).await? {
                self.licence_invoice_paid(&mut tx, &row).await?;
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(id)
    }

    async fn own_licence(
        &self,
        conn: &mut Conn,
        resident_id: Option<&str>,
        id: &str,
    ) -> Result<LicenceRow, AppError> {
        match sv::licence(conn, id).await? {
            Some(l) if resident_id.is_none_or(|r| r == l.resident_id) => Ok(l),
            _ => Err(AppError::NotFound("licence")),
        }
    }

    /// A licence with its invoices; a resident sees only their own (`None`: staff).
    pub async fn licence(
        &self,
        resident_id: Option<&str>,
        id: &str,
    ) -> Result<(LicenceView, LicenceType, Vec<crate::services::InvoiceView>), AppError> {
        let mut conn = self.store.conn().await?;
        let row = self.own_licence(&mut conn, resident_id, id).await?;
        let invoices = self.invoices_of(&mut conn, id).await?;
        drop(conn);
        let kind = self.licence_type(&row.licence_type).await?;
        Ok((self.licence_view(row, self.city_today()?), kind, invoices))
    }

    pub async fn licences_of_resident(
        &self,
        resident_id: &str,
    ) -> Result<Vec<LicenceView>, AppError> {
        let today = self.city_today()?;
        let mut conn = self.store.conn().await?;
        Ok(sv::licences_of_resident(&mut conn, resident_id)
            .await?
            .into_iter()
            .map(|r| self.licence_view(r, today))
            .collect())
    }

    pub async fn all_licences(&self) -> Result<Vec<LicenceView>, AppError> {
        let today = self.city_today()?;
        let mut conn = self.store.conn().await?;
        Ok(sv::all_licences(&mut conn)
            .await?
            .into_iter()
            .map(|r| self.licence_view(r, today))
            .collect())
    }

    /// What renewing today would cost with these (confirmed) details, without saving.
    pub async fn renewal_quote(
        &self,
        resident_id: &str,
        id: &str,
        input: &LicenceInput,
    ) -> Result<Vec<FeeLine>, AppError> {
        let (l, kind, _) = self.licence(Some(resident_id), id).await?;
        let mut input = input.clone();
        input.licence_type = l.licence_type.clone();
        let d = self.check_licence_input(&input, std::slice::from_ref(&kind))?;
        let today = self.city_today()?;
        let expired = parse_date(&l.expires_on).filter(|e| *e < today);
        Self::licence_fee_lines(&kind, &d, expired, today)
    }

    /// Renews: the owner confirms (or corrects) the details; an invoice for the fee, plus
    /// the late penalty when past expiry, replaces any unpaid renewal invoice.
    pub async fn renew_licence(
        &self,
        resident_id: &str,
        id: &str,
        input: &LicenceInput,
        ip: &str,
    ) -> Result<String, AppError> {
        let (l, kind, _) = self.licence(Some(resident_id), id).await?;
        if !l.renewable {
            return Err(AppError::Fields(vec![FieldProblem::new(
                "business_name",
                "licence_not_renewable",
                "this licence cannot be renewed now",
            )]));
        }
        let mut input = input.clone();
        input.licence_type = l.licence_type.clone();
        let d = self.check_licence_input(&input, std::slice::from_ref(&kind))?;
        let today = self.city_today()?;
        let expired = parse_date(&l.expires_on).filter(|e| *e < today);
        let lines = Self::licence_fee_lines(&kind, &d, expired, today)?;
        let detail = serde_json::to_string(&d).map_err(|e| AppError::Internal(e.to_string()))?;
        let mut tx = self.store.begin().await?;
        sv::void_open_invoices(&mut tx, id, "licence_renewal").await?;
        let inv = self
            .create_invoice(
                &mut tx,
                LICENCE,
                id,
                "licence_renewal",
                Some(resident_id),
                &lines,
                &detail,
            )
            .await?;
        let total: i64 = lines.iter().map(|l| l.amount_cents).sum();
        self.audit(
            &mut tx,
            &format!("resident:{resident_id}"),
            "licence.renewal_started",
            id,
            "success",
            ip,
            &format!("invoice {inv}; {total} cents"),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(inv)
    }

    /// An invoice of a licence was paid in full: a new licence becomes active with its
    /// number, expiry and verification code; a renewal moves the expiry a period on from
    /// the previous one and takes the confirmed details.
    pub(crate) async fn licence_invoice_paid(
        &self,
        tx: &mut Conn,
        inv: &sv::InvoiceRow,
    ) -> Result<(), AppError> {
        let Some(mut l) = sv::licence(tx, &inv.subject_id).await? else {
            return Ok(());
        };
        let kind: Option<LicenceType> = sv::types(tx, LICENCE)
            .await?
            .into_iter()
            .find(|t| t.code == l.licence_type)
            .and_then(|t| toml::from_str(&t.definition).ok());
        let Some(kind) = kind else {
            return Err(AppError::Internal(format!(
                "licence type {} is not configured",
                l.licence_type
            )));
        };
        let today = self.city_today()?;
        let details: Option<Details> = serde_json::from_str(&inv.detail).ok();
        let event = match inv.purpose.as_str() {
            "licence_new" if l.status == "pending" => {
                let year = today.year();
                let n = sv::next_number(tx, &format!("licence:{year}")).await?;
                l.licence_number = Some(format!("BL-{year}-{n:05}"));
                l.issued_on = Some(today.to_string());
                l.expires_on = Some(kind.expiry.first(today).to_string());
                l.verification_code = Some(readable_code(10));
                l.status = "active".into();
                "licence.issued"
            }
            "licence_renewal" => {
                let prev = parse_date(&l.expires_on).unwrap_or(today);
                l.expires_on = Some(kind.expiry.renewed(prev).to_string());
                if let Some(d) = details {
                    l.business_name = d.business_name;
                    l.business_street = d.business_street;
                    l.business_zip = d.business_zip;
                    l.employees = d.employees;
                    l.gross_receipts_cents = d.gross_receipts_cents;
                }
                "licence.renewed"
            }
            _ => return Ok(()),
        };
        l.updated_at = self.now_unix();
        sv::update_licence(tx, &l).await?;
        let number = l.licence_number.clone().unwrap_or_default();
        let expires = l.expires_on.clone().unwrap_or_default();
        self.audit(
            tx,
            "system",
            event,
            &l.id,
            "success",
            "-",
            &format!("{number} until {expires}"),
        )
        .await?;
        let body = format!(
            "Business licence {number} for {} is valid until {expires}.\n\nPrint the certificate: {}/licences/{}/certificate\nAnyone can check it at {}/licence-check/{}\n",
            l.business_name,
            self.config().portal_base_url,
            l.id,
            self.config().portal_base_url,
            l.verification_code.clone().unwrap_or_default()
        );
        self.notify_resident(
            tx,
            &l.resident_id,
            &format!("Business licence {number}"),
            &body,
            "licence_issued",
        )
        .await
    }

    /// Staff suspend, revoke or reinstate a licence, with a reason; audited.
    pub async fn set_licence_status(
        &self,
        staff_id: &str,
        id: &str,
        action: &str,
        reason: &str,
        ip: &str,
    ) -> Result<(), AppError> {
        let (from, to): (&[&str], &str) = match action {
            "suspend" => (&["active"], "suspended"),
            "revoke" => (&["active", "suspended"], "revoked"),
            "reinstate" => (&["suspended"], "active"),
            _ => {
                return Err(AppError::Fields(vec![FieldProblem::new(
                    "action",
                    "licence_action",
                    "choose suspend, revoke or reinstate",
                )]));
            }
        };
        check_reason("reason", reason)?;
        let mut tx = self.store.begin().await?;
        let mut l = self.own_licence(&mut tx, None, id).await?;
        if !from.contains(&l.status.as_str()) {
            return Err(AppError::Fields(vec![FieldProblem::new(
                "action",
                "licence_action_state",
                format!("a {} licence cannot be changed that way", l.status),
            )]));
        }
        let before = l.status.clone();
        l.status = to.into();
        l.status_reason = Some(reason.trim().to_owned());
        l.updated_at = self.now_unix();
        sv::update_licence(&mut tx, &l).await?;
        self.audit(
            &mut tx,
            &format!("staff:{staff_id}"),
            &format!("licence.{to}"),
            id,
            "success",
            ip,
            &format!("{before} -> {to}; reason: {}", reason.trim()),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// The public check of a certificate's verification code.
    pub async fn verify_certificate(&self, code: &str, ip: &str) -> Result<Verification, AppError> {
        self.rate_limit(&format!("licence-verify:{ip}"), 120, 900)
            .await?;
        let code = code.trim().to_ascii_uppercase();
        if code.is_empty() || code.len() > 20 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(AppError::NotFound("certificate"));
        }
        let mut conn = self.store.conn().await?;
        let row = sv::licence_by(&mut conn, LicenceKey::VerificationCode, &code)
            .await?
            .ok_or(AppError::NotFound("certificate"))?;
        drop(conn);
        let kind = self.licence_type(&row.licence_type).await?;
        let v = self.licence_view(row, self.city_today()?);
        Ok(Verification {
            licence_number: v.licence_number.unwrap_or_default(),
            business_name: v.business_name,
            current: v.status == "active",
            status: v.status,
            expires_on: v.expires_on,
            licence_type: kind,
        })
    }

    /// Emails the owners of licences expiring within the window, once per expiry (a
    /// compare-and-set marks each, so two nodes or runs send one notice).
    pub async fn send_renewal_notices(&self) -> Result<usize, AppError> {
        let today = self.city_today()?;
        let until = today + time::Duration::days(RENEWAL_WINDOW_DAYS);
        let mut conn = self.store.conn().await?;
        let due = sv::licences_due_notice(&mut conn, &until.to_string()).await?;
        drop(conn);
        let mut sent = 0;
        for l in due {
            let Some(expiry) = l.expires_on.clone() else {
                continue;
            };
            let mut tx = self.store.begin().await?;
            if !sv::mark_notice(&mut tx, &l.id, &expiry).await? {
                continue;
            }
            let body = format!(
                "Business licence {} for {} expires on {expiry}. Renew it online before then to avoid a late penalty:\n\n{}/licences/{}\n",
                l.licence_number.clone().unwrap_or_default(),
                l.business_name,
                self.config().portal_base_url,
                l.id
            );
            self.notify_resident(
                &mut tx,
                &l.resident_id,
                "Your business licence is due for renewal",
                &body,
                "licence_renewal_notice",
            )
            .await?;
            self.audit(
                &mut tx,
                "system",
                "licence.renewal_notice",
                &l.id,
                "success",
                "-",
                &expiry,
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            sent += 1;
        }
        Ok(sent)
    }
}
