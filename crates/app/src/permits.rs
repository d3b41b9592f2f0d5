//! Building permits: apply (saved and resumed), upload plans, submit; staff review; fees
//! invoiced on approval; issued automatically once paid; inspections booked against each
//! day's capacity and recorded by inspectors; a public lookup without personal data.

use crate::crypto::columns;
use crate::documents::{check_content, check_file_name, DocumentKind};
use crate::ids::random_id;
use crate::services::{PermitType, PERMIT};
use crate::{App, AppError, FieldProblem};
use domain::fees::FeeLine;
use domain::Money;
use sha2::{Digest, Sha256};
use store::services::{self as sv, InspectionRow, PermitRow, PlanRow};
use store::{Conn, StoreError};

/// What the application form sends (text as typed; checked by [`App::save_permit`]).
#[derive(Debug, Clone, Default)]
pub struct PermitInput {
    pub permit_type: String,
    pub applicant_name: String,
    pub applicant_phone: String,
    pub site_street: String,
    pub site_zip: String,
    pub scope: String,
    pub valuation: String,
    pub area_sq_ft: String,
    pub contractor_licence: String,
}

/// The fields of the application form, in order (for error summaries).
pub const PERMIT_FIELDS: &[&str] = &[
    "permit_type",
    "applicant_name",
    "applicant_phone",
    "site_street",
    "site_zip",
    "scope",
    "valuation",
    "area_sq_ft",
    "contractor_licence",
];

#[derive(Debug, Clone)]
pub struct PermitView {
    pub id: String,
    pub resident_id: String,
    pub permit_type: String,
    pub status: String,
    pub applicant_name: String,
    pub applicant_phone: String,
    pub site_street: String,
    pub site_zip: String,
    pub scope: String,
    pub valuation_cents: i64,
    pub area_sq_ft: i64,
    pub contractor_licence: String,
    pub permit_number: Option<String>,
    pub review_note: Option<String>,
    pub submitted_at: Option<i64>,
    pub issued_at: Option<i64>,
    pub created_at: i64,
}

impl PermitView {
    /// The resident may still change it.
    pub fn editable(&self) -> bool {
        matches!(self.status.as_str(), "draft" | "revision_requested")
    }
}

#[derive(Debug, Clone)]
pub struct PlanView {
    pub id: String,
    pub file_name: String,
    pub kind: DocumentKind,
    pub size_bytes: i64,
}

#[derive(Debug, Clone)]
pub struct InspectionView {
    pub id: String,
    pub permit_id: String,
    pub inspection_type: String,
    pub day: String,
    pub status: String,
    pub note: Option<String>,
}

/// A permit with everything its page shows.
#[derive(Debug, Clone)]
pub struct PermitFile {
    pub permit: PermitView,
    pub kind: PermitType,
    pub plans: Vec<PlanView>,
    pub estimate: Vec<FeeLine>,
    pub invoices: Vec<crate::services::InvoiceView>,
    pub inspections: Vec<InspectionView>,
}

/// What the public lookup shows: no names, no phone numbers, no amounts.
#[derive(Debug, Clone)]
pub struct PublicPermit {
    pub permit_number: String,
    pub permit_type: PermitType,
    pub status: String,
    pub issued_at: Option<i64>,
    pub inspections: Vec<InspectionView>,
}

/// A reviewer's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    Approve,
    Reject(String),
    RequestRevision(String),
}

/// An inspector's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectionResult {
    Pass,
    Fail,
    Partial,
}

impl InspectionResult {
    pub fn parse(s: &str) -> Option<InspectionResult> {
        match s {
            "passed" => Some(InspectionResult::Pass),
            "failed" => Some(InspectionResult::Fail),
            "partial" => Some(InspectionResult::Partial),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            InspectionResult::Pass => "passed",
            InspectionResult::Fail => "failed",
            InspectionResult::Partial => "partial",
        }
    }
}

/// How many days ahead inspections can be booked (weekdays from tomorrow).
pub const BOOKING_DAYS: usize = 10;

fn text(problems: &mut Vec<FieldProblem>, field: &str, v: &str, max: usize) -> String {
    let v = v.trim();
    if v.is_empty() {
        problems.push(FieldProblem::new(field, "required", "this is required"));
    } else if v.chars().count() > max {
        problems.push(FieldProblem::new(
            field,
            "too_long",
            format!("at most {max} characters"),
        ));
    } else if v.chars().any(char::is_control) && field != "scope" {
        problems.push(FieldProblem::new(
            field,
            "control_characters",
            "no control characters",
        ));
    }
    v.to_owned()
}

fn whole_number(problems: &mut Vec<FieldProblem>, field: &str, v: &str) -> i64 {
    let cleaned: String = v.trim().chars().filter(|c| *c != ',').collect();
    match cleaned.parse::<i64>() {
        Ok(n) if (0..=100_000_000).contains(&n) => n,
        _ => {
            problems.push(FieldProblem::new(
                field,
                "whole_number",
                "enter a whole number, like 1200",
            ));
            0
        }
    }
}

fn dollars(
    problems: &mut Vec<FieldProblem>,
    field: &str,
    v: &str,
    currency: domain::Currency,
) -> i64 {
    let cleaned: String = v
        .trim()
        .trim_start_matches('$')
        .chars()
        .filter(|c| *c != ',')
        .collect();
    match Money::parse_dollars(&cleaned, currency) {
        Ok(m) if m.cents() >= 0 && m.cents() <= 100_000_000_000 => m.cents(),
        _ => {
            problems.push(FieldProblem::new(
                field,
                "amount_shape",
                "enter an amount in dollars, like 25000 or 25000.00",
            ));
            0
        }
    }
}

fn zip(problems: &mut Vec<FieldProblem>, field: &str, v: &str) -> String {
    match domain::PostalCode::parse(v.trim()) {
        Some(z) => z.as_str().to_owned(),
        None => {
            problems.push(FieldProblem::new(
                field,
                "zip_shape",
                "enter a 5-digit ZIP code",
            ));
            v.trim().to_owned()
        }
    }
}

fn phone(problems: &mut Vec<FieldProblem>, field: &str, v: &str) -> String {
    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
    let ok_chars = v
        .chars()
        .all(|c| c.is_ascii_digit() || " ()-+.".contains(c));
    if !(10..=15).contains(&digits.len()) || !ok_chars {
        problems.push(FieldProblem::new(
            field,
            "phone_shape",
            "enter a phone number with area code, like 555-123-4567",
        ));
    }
    v.trim().to_owned()
}

impl App {
    fn permit_view(&self, r: PermitRow) -> Result<PermitView, AppError> {
        Ok(PermitView {
            applicant_name: self.open(columns::PERMIT_APPLICANT_NAME, &r.applicant_name)?,
            applicant_phone: self.open(columns::PERMIT_APPLICANT_PHONE, &r.applicant_phone)?,
            id: r.id,
            resident_id: r.resident_id,
            permit_type: r.permit_type,
            status: r.status,
            site_street: r.site_street,
            site_zip: r.site_zip,
            scope: r.scope,
            valuation_cents: r.valuation_cents,
            area_sq_ft: r.area_sq_ft,
            contractor_licence: r.contractor_licence,
            permit_number: r.permit_number,
            review_note: r.review_note,
            submitted_at: r.submitted_at,
            issued_at: r.issued_at,
            created_at: r.created_at,
        })
    }

    /// Checks an application's fields, all at once.
    async fn check_permit_input(&self, input: &PermitInput) -> Result<PermitRow, AppError> {
        let mut p = Vec::new();
        let types = self.permit_types().await?;
        if !types.iter().any(|t| t.code == input.permit_type) {
            p.push(FieldProblem::new(
                "permit_type",
                "permit_type_unknown",
                "choose a permit type",
            ));
        }
        let currency = self.config().currency;
        let row = PermitRow {
            id: String::new(),
            resident_id: String::new(),
            permit_type: input.permit_type.clone(),
            status: "draft".into(),
            applicant_name: text(&mut p, "applicant_name", &input.applicant_name, 120),
            applicant_phone: phone(&mut p, "applicant_phone", &input.applicant_phone),
            site_street: text(&mut p, "site_street", &input.site_street, 200),
            site_zip: zip(&mut p, "site_zip", &input.site_zip),
            scope: text(&mut p, "scope", &input.scope, 2000),
            valuation_cents: dollars(&mut p, "valuation", &input.valuation, currency),
            area_sq_ft: whole_number(&mut p, "area_sq_ft", &input.area_sq_ft),
            contractor_licence: {
                let v = input.contractor_licence.trim();
                if v.len() > 40 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    p.push(FieldProblem::new(
                        "contractor_licence",
                        "contractor_licence_shape",
                        "letters, digits and dashes only, at most 40; leave empty for owner-builders",
                    ));
                }
                v.to_owned()
            },
            permit_number: None,
            review_note: None,
            reviewed_by: None,
            submitted_at: None,
            decided_at: None,
            issued_at: None,
            created_at: 0,
            updated_at: 0,
        };
        if p.is_empty() {
            Ok(row)
        } else {
            Err(AppError::Fields(p))
        }
    }

    /// Saves an application (new, or the resident's own draft or returned one).
    pub async fn save_permit(
        &self,
        resident_id: &str,
        id: Option<&str>,
        input: &PermitInput,
        ip: &str,
    ) -> Result<String, AppError> {
        let mut row = self.check_permit_input(input).await?;
        row.applicant_name = self.seal(columns::PERMIT_APPLICANT_NAME, &row.applicant_name)?;
        row.applicant_phone = self.seal(columns::PERMIT_APPLICANT_PHONE, &row.applicant_phone)?;
        let now = self.now_unix();
        row.updated_at = now;
        let mut tx = self.store.begin().await?;
        let id = match id {
            Some(id) => {
                let have = self.own_permit(&mut tx, resident_id, id).await?;
                row.id = have.id.clone();
                if !sv::update_permit_details(&mut tx, &row).await? {
                    return Err(AppError::Fields(vec![FieldProblem::new(
                        "permit_type",
                        "permit_not_editable",
                        "this application is with the city and cannot be changed now",
                    )]));
                }
                have.id
            }
            None => {
                row.id = format!("pmt_{}", random_id());
                row.resident_id = resident_id.to_owned();
                row.created_at = now;
                sv::insert_permit(&mut tx, &row).await?;
                row.id.clone()
            }
        };
        self.audit(
            &mut tx,
            &format!("resident:{resident_id}"),
            "permit.saved",
            &id,
            "success",
            ip,
            &row.permit_type,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(id)
    }

    async fn own_permit(
        &self,
        tx: &mut Conn,
        resident_id: &str,
        id: &str,
    ) -> Result<PermitRow, AppError> {
        match sv::permit(tx, id).await? {
            Some(p) if p.resident_id == resident_id => Ok(p),
            _ => Err(AppError::NotFound("permit")),
        }
    }

    /// A permit with its plans, fees, invoices and inspections. `resident_id` limits it to
    /// that resident's own (None: staff).
    pub async fn permit_file(
        &self,
        resident_id: Option<&str>,
        id: &str,
    ) -> Result<PermitFile, AppError> {
        let mut conn = self.store.conn().await?;
        let row = match resident_id {
            Some(r) => self.own_permit(&mut conn, r, id).await?,
            None => sv::permit(&mut conn, id)
                .await?
                .ok_or(AppError::NotFound("permit"))?,
        };
        let plans = sv::plans(&mut conn, id)
            .await?
            .into_iter()
            .map(|p| PlanView {
                kind: DocumentKind::from_media_type(&p.media_type).unwrap_or(DocumentKind::Pdf),
                id: p.id,
                file_name: p.original_name,
                size_bytes: p.size_bytes,
            })
            .collect();
        let invoices = self.invoices_of(&mut conn, id).await?;
        let inspections = sv::inspections_of_permit(&mut conn, id)
            .await?
            .into_iter()
            .map(inspection_view)
            .collect();
        drop(conn);
        let kind = self.permit_type(&row.permit_type).await?;
        let estimate = kind
            .fees
            .compute(row.valuation_cents, row.area_sq_ft)
            .map_err(|e| AppError::invalid("valuation", e.to_string()))?;
        Ok(PermitFile {
            permit: self.permit_view(row)?,
            kind,
            plans,
            estimate,
            invoices,
            inspections,
        })
    }

    pub async fn permits_of_resident(
        &self,
        resident_id: &str,
    ) -> Result<Vec<PermitView>, AppError> {
        let mut conn = self.store.conn().await?;
        sv::permits_of_resident(&mut conn, resident_id)
            .await?
            .into_iter()
            .map(|r| self.permit_view(r))
            .collect()
    }

    /// Uploads a plan to the resident's editable application, through the checks of the
    /// document pipeline (allow-listed types by magic bytes, no active content).
    pub async fn attach_plan(
        &self,
        resident_id: &str,
        permit_id: &str,
        file_name: &str,
        bytes: &[u8],
        ip: &str,
    ) -> Result<String, AppError> {
        let file_name = check_file_name(file_name)?;
        let kind = check_content(&file_name, bytes)?;
        let mut tx = self.store.begin().await?;
        let p = self.own_permit(&mut tx, resident_id, permit_id).await?;
        if !matches!(p.status.as_str(), "draft" | "revision_requested") {
            return Err(AppError::invalid(
                "plan",
                "this application is with the city and cannot be changed now",
            ));
        }
        let row = PlanRow {
            id: format!("pln_{}", random_id()),
            permit_id: permit_id.to_owned(),
            original_name: file_name,
            media_type: kind.media_type().to_owned(),
            size_bytes: i64::try_from(bytes.len())
                .map_err(|_| AppError::Internal("size out of range".into()))?,
            sha256: hex::encode(Sha256::digest(bytes)),
            created_at: self.now_unix(),
        };
        sv::insert_plan(&mut tx, &row, bytes).await?;
        self.audit(
            &mut tx,
            &format!("resident:{resident_id}"),
            "permit.plan_uploaded",
            permit_id,
            "success",
            ip,
            &format!(
                "{} {}; {} bytes; sha256 {}",
                row.id,
                kind.label(),
                row.size_bytes,
                row.sha256
            ),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(row.id)
    }

    /// A plan's content for its owner or for staff (`resident_id` None), checked against
    /// its hash.
    pub async fn plan_content(
        &self,
        resident_id: Option<&str>,
        plan_id: &str,
    ) -> Result<(String, DocumentKind, Vec<u8>), AppError> {
        let mut conn = self.store.conn().await?;
        let (row, bytes) = sv::plan_content(&mut conn, plan_id)
            .await?
            .ok_or(AppError::NotFound("plan"))?;
        if let Some(r) = resident_id {
            self.own_permit(&mut conn, r, &row.permit_id).await?;
        }
        if hex::encode(Sha256::digest(&bytes)) != row.sha256 {
            return Err(AppError::Internal(format!(
                "plan {plan_id}: content does not match its hash"
            )));
        }
        let kind = DocumentKind::from_media_type(&row.media_type)
            .ok_or_else(|| AppError::Internal("stored plan type unknown".into()))?;
        Ok((row.original_name, kind, bytes))
    }

    /// Sends the application to the city. Needs as many plans as the type lists documents.
    pub async fn submit_permit(
        &self,
        resident_id: &str,
        id: &str,
        ip: &str,
    ) -> Result<(), AppError> {
        let file = self.permit_file(Some(resident_id), id).await?;
        let need = file.kind.required_documents.len();
        if file.plans.len() < need {
            return Err(AppError::Fields(vec![FieldProblem::new(
                "plan",
                "plans_missing",
                format!("upload the required documents ({need}) before submitting"),
            )]));
        }
        let mut tx = self.store.begin().await?;
        if !sv::transition_permit(
            &mut tx,
            id,
            &["draft", "revision_requested"],
            "submitted",
            None,
            None,
            self.now_unix(),
        )
        .await?
        {
            return Err(AppError::invalid(
                "permit",
                "this application was already submitted",
            ));
        }
        // Numbered at its first submission: the applicant, the public lookup and a guest
        // paying its fees all know it by that number from then on.
        if file.permit.permit_number.is_none() {
            let number = self.next_permit_number(&mut tx).await?;
            sv::number_permit(&mut tx, id, &number).await?;
        }
        self.audit(
            &mut tx,
            &format!("resident:{resident_id}"),
            "permit.submitted",
            id,
            "success",
            ip,
            &file.kind.code,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Applications waiting for a reviewer, oldest first.
    pub async fn permit_queue(&self) -> Result<Vec<PermitView>, AppError> {
        let mut conn = self.store.conn().await?;
        sv::permits_with_status(&mut conn, "submitted")
            .await?
            .into_iter()
            .map(|r| self.permit_view(r))
            .collect()
    }

    /// A reviewer's decision (compare-and-set on `submitted`): approval invoices the fees
    /// of the type's schedule; the resident is emailed either way.
    pub async fn review_permit(
        &self,
        staff_id: &str,
        id: &str,
        review: &Review,
        ip: &str,
    ) -> Result<(), AppError> {
        let (to, note) = match review {
            Review::Approve => ("approved", None),
            Review::Reject(r) => ("rejected", Some(r.as_str())),
            Review::RequestRevision(r) => ("revision_requested", Some(r.as_str())),
        };
        if let Some(n) = note {
            check_reason("note", n)?;
        }
        let file = self.permit_file(None, id).await?;
        let mut tx = self.store.begin().await?;
        if !sv::transition_permit(
            &mut tx,
            id,
            &["submitted"],
            to,
            note,
            Some(staff_id),
            self.now_unix(),
        )
        .await?
        {
            return Err(AppError::invalid(
                "decision",
                "this application is not waiting for review",
            ));
        }
        let city = self.config().city_name.clone();
        let link = format!("{}/permits/{id}", self.config().portal_base_url);
        let body = match review {
            Review::Approve => {
                let inv = self
                    .create_invoice(&mut tx, PERMIT, id, "permit_fees", Some(&file.permit.resident_id), &file.estimate, "")
                    .await?;
                let total: i64 = file.estimate.iter().map(|l| l.amount_cents).sum();
                if total == 0 {
                    self.issue_if_paid(&mut tx, id).await?;
                }
                format!(
                    "{city} approved your {} permit application. The fees are {} (invoice {inv}). Pay them online to have the permit issued:\n\n{link}\n",
                    file.kind.name,
                    Money::from_cents(total, self.config().currency)
                )
            }
            Review::Reject(r) => format!(
                "{city} could not approve your {} permit application.\n\nReason: {r}\n\n{link}\n",
                file.kind.name
            ),
            Review::RequestRevision(r) => format!(
                "{city} needs changes to your {} permit application before it can be approved.\n\nWhat to change: {r}\n\nChange it and submit it again here:\n{link}\n",
                file.kind.name
            ),
        };
        self.notify_resident(
            &mut tx,
            &file.permit.resident_id,
            &format!("Your permit application: {}", to.replace('_', " ")),
            &body,
            "permit_review",
        )
        .await?;
        self.audit(
            &mut tx,
            &format!("staff:{staff_id}"),
            &format!("permit.{to}"),
            id,
            "success",
            ip,
            note.unwrap_or(""),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// An invoice of a permit was paid in full: a permit whose fees are all paid is issued.
    pub(crate) async fn permit_invoice_paid(
        &self,
        tx: &mut Conn,
        inv: &sv::InvoiceRow,
    ) -> Result<(), AppError> {
        if inv.purpose == "permit_fees" {
            self.issue_if_paid(tx, &inv.subject_id).await?;
        }
        Ok(())
    }

    async fn issue_if_paid(&self, tx: &mut Conn, permit_id: &str) -> Result<(), AppError> {
        let invoices = sv::invoices_of_subject(tx, permit_id).await?;
        if invoices
            .iter()
            .any(|i| i.purpose == "permit_fees" && i.status == "open")
        {
            return Ok(());
        }
        let number = match sv::permit(tx, permit_id)
            .await?
            .and_then(|p| p.permit_number)
        {
            Some(n) => n,
            None => self.next_permit_number(tx).await?,
        };
        if sv::issue_permit(tx, permit_id, &number, self.now_unix()).await? {
            self.audit(
                tx,
                "system",
                "permit.issued",
                permit_id,
                "success",
                "-",
                &number,
            )
            .await?;
            if let Some(p) = sv::permit(tx, permit_id).await? {
                let body = format!(
                    "Your building permit {number} is issued. Print it and request inspections here:\n\n{}/permits/{permit_id}\n",
                    self.config().portal_base_url
                );
                self.notify_resident(
                    tx,
                    &p.resident_id,
                    &format!("Permit {number} issued"),
                    &body,
                    "permit_issued",
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The next permit number: `BP-<year>-<sequence>`, the sequence per year.
    async fn next_permit_number(&self, tx: &mut Conn) -> Result<String, AppError> {
        let year = self.city_today()?.year();
        let n = sv::next_number(tx, &format!("permit:{year}")).await?;
        Ok(format!("BP-{year}-{n:05}"))
    }

    /// Days a resident may book, with the places left: weekdays from tomorrow, city time.
    pub async fn inspection_days(&self) -> Result<Vec<(String, i64)>, AppError> {
        let mut day = self.city_today()?;
        let mut out = Vec::new();
        let mut conn = self.store.conn().await?;
        while out.len() < BOOKING_DAYS {
            day = day
                .next_day()
                .ok_or_else(|| AppError::Internal("date overflow".into()))?;
            if matches!(
                day.weekday(),
                time::Weekday::Saturday | time::Weekday::Sunday
            ) {
                continue;
            }
            let d = day.to_string();
            let cap = sv::capacity(&mut conn, &d)
                .await?
                .unwrap_or(self.services().inspection_capacity);
            let left = (cap - sv::booked_on(&mut conn, &d).await?).max(0);
            out.push((d, left));
        }
        Ok(out)
    }

    /// Staff set how many inspections a day takes.
    pub async fn set_inspection_capacity(
        &self,
        staff_id: &str,
        day: &str,
        capacity: i64,
        ip: &str,
    ) -> Result<(), AppError> {
        let mut p = Vec::new();
        if time::Date::parse(day, &time::format_description::well_known::Iso8601::DATE).is_err() {
            p.push(FieldProblem::new(
                "day",
                "business_date_shape",
                "a date like 2026-12-04",
            ));
        }
        if !(0..=200).contains(&capacity) {
            p.push(FieldProblem::new("capacity", "capacity_range", "0 to 200"));
        }
        if !p.is_empty() {
            return Err(AppError::Fields(p));
        }
        let mut tx = self.store.begin().await?;
        sv::set_capacity(&mut tx, day, capacity).await?;
        self.audit(
            &mut tx,
            &format!("staff:{staff_id}"),
            "inspection.capacity_set",
            day,
            "success",
            ip,
            &capacity.to_string(),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Books an inspection of an issued permit on a day with room.
    pub async fn request_inspection(
        &self,
        resident_id: &str,
        permit_id: &str,
        inspection_type: &str,
        day: &str,
        ip: &str,
    ) -> Result<String, AppError> {
        let file = self.permit_file(Some(resident_id), permit_id).await?;
        let mut p = Vec::new();
        if file.permit.status != "issued" {
            p.push(FieldProblem::new(
                "inspection_type",
                "permit_not_issued",
                "inspections can be requested once the permit is issued",
            ));
        }
        if !file.kind.inspections.iter().any(|t| t == inspection_type) {
            p.push(FieldProblem::new(
                "inspection_type",
                "inspection_type_unknown",
                "choose an inspection",
            ));
        }
        if file
            .inspections
            .iter()
            .any(|i| i.inspection_type == inspection_type && i.status == "requested")
        {
            p.push(FieldProblem::new(
                "inspection_type",
                "inspection_pending",
                "this inspection is already booked",
            ));
        }
        if file
            .invoices
            .iter()
            .any(|i| i.purpose == "reinspection" && i.status == "open")
        {
            p.push(FieldProblem::new(
                "inspection_type",
                "reinspection_fee_due",
                "pay the re-inspection fee first",
            ));
        }
        let days = self.inspection_days().await?;
        match days.iter().find(|(d, _)| d == day) {
            Some((_, left)) if *left > 0 => {}
            Some(_) => p.push(FieldProblem::new(
                "day",
                "day_full",
                "that day is full; choose another",
            )),
            None => p.push(FieldProblem::new(
                "day",
                "day_unavailable",
                "choose one of the listed days",
            )),
        }
        if !p.is_empty() {
            return Err(AppError::Fields(p));
        }
        let mut tx = self.store.begin().await?;
        // Counted again inside the transaction: two residents racing for the last place.
        let cap = sv::capacity(&mut tx, day)
            .await?
            .unwrap_or(self.services().inspection_capacity);
        if sv::booked_on(&mut tx, day).await? >= cap {
            return Err(AppError::Fields(vec![FieldProblem::new(
                "day",
                "day_full",
                "that day is full; choose another",
            )]));
        }
        let id = format!("insp_{}", random_id());
        sv::insert_inspection(
            &mut tx,
            &InspectionRow {
                id: id.clone(),
                permit_id: permit_id.to_owned(),
                inspection_type: inspection_type.to_owned(),
                requested_for: day.to_owned(),
                status: "requested".into(),
                result_note: None,
                inspector_id: None,
                recorded_at: None,
                created_at: self.now_unix(),
            },
        )
        .await?;
        self.audit(
            &mut tx,
            &format!("resident:{resident_id}"),
            "inspection.requested",
            &id,
            "success",
            ip,
            &format!("{permit_id} {inspection_type} on {day}"),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(id)
    }

    /// Inspections waiting for a result, by day.
    pub async fn inspection_queue(&self) -> Result<Vec<(InspectionView, String)>, AppError> {
        let mut conn = self.store.conn().await?;
        let rows = sv::inspections_requested(&mut conn).await?;
        let mut out = Vec::new();
        for r in rows {
            let (number, street) = sv::permit(&mut conn, &r.permit_id)
                .await?
                .map(|p| (p.permit_number.unwrap_or_default(), p.site_street))
                .unwrap_or_default();
            out.push((inspection_view(r), format!("{number} {street}")));
        }
        Ok(out)
    }

    /// An inspector records a result (once). A failure of a type with a re-inspection fee
    /// invoices it.
    pub async fn record_inspection(
        &self,
        staff_id: &str,
        id: &str,
        result: InspectionResult,
        note: &str,
        ip: &str,
    ) -> Result<(), AppError> {
        let note = note.trim();
        if note.chars().count() > 2000 {
            return Err(AppError::Fields(vec![FieldProblem::new(
                "note",
                "too_long",
                "at most 2000 characters",
            )]));
        }
        if result != InspectionResult::Pass && note.is_empty() {
            return Err(AppError::Fields(vec![FieldProblem::new(
                "note",
                "inspection_note_required",
                "say what must be corrected",
            )]));
        }
        let mut tx = self.store.begin().await?;
        let insp = sv::inspection(&mut tx, id)
            .await?
            .ok_or(AppError::NotFound("inspection"))?;
        let permit = sv::permit(&mut tx, &insp.permit_id)
            .await?
            .ok_or(AppError::NotFound("permit"))?;
        if !sv::record_inspection(
            &mut tx,
            id,
            result.as_str(),
            note,
            staff_id,
            self.now_unix(),
        )
        .await?
        {
            return Err(AppError::invalid(
                "result",
                "a result was already recorded for this inspection",
            ));
        }
        let kind: Option<PermitType> = sv::types(&mut tx, PERMIT)
            .await?
            .into_iter()
            .find(|t| t.code == permit.permit_type)
            .and_then(|t| toml::from_str(&t.definition).ok());
        let fee = kind.map_or(0, |k| k.fees.reinspection_cents);
        if result == InspectionResult::Fail && fee > 0 {
            self.create_invoice(
                &mut tx,
                PERMIT,
                &permit.id,
                "reinspection",
                Some(&permit.resident_id),
                &[FeeLine {
                    code: "reinspection".into(),
                    amount_cents: fee,
                }],
                id,
            )
            .await?;
        }
        let body = format!(
            "The {} inspection of permit {} was recorded: {}.\n\n{}\n\nDetails and re-inspection requests: {}/permits/{}\n",
            insp.inspection_type,
            permit.permit_number.clone().unwrap_or_default(),
            result.as_str(),
            note,
            self.config().portal_base_url,
            permit.id
        );
        self.notify_resident(
            &mut tx,
            &permit.resident_id,
            "Inspection result",
            &body,
            "inspection_result",
        )
        .await?;
        self.audit(
            &mut tx,
            &format!("staff:{staff_id}"),
            &format!("inspection.{}", result.as_str()),
            id,
            "success",
            ip,
            note,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// The public lookup: a permit number and its site's street number and name (or ZIP)
    /// must both match; nothing personal is shown.
    pub async fn public_permit(
        &self,
        number: &str,
        address: &str,
        ip: &str,
    ) -> Result<PublicPermit, AppError> {
        self.rate_limit(&format!("permit-lookup:{ip}"), 60, 900)
            .await?;
        let number = number.trim().to_ascii_uppercase();
        let mut conn = self.store.conn().await?;
        let found = sv::permit_by_number(&mut conn, &number).await?.filter(|p| {
            let a = address.trim().to_ascii_lowercase();
            !a.is_empty() && (p.site_zip == a || p.site_street.to_ascii_lowercase() == a)
        });
        let Some(p) = found else {
            return Err(AppError::NotFound("permit"));
        };
        let inspections = sv::inspections_of_permit(&mut conn, &p.id)
            .await?
            .into_iter()
            .map(|mut i| {
                i.result_note = None;
                inspection_view(i)
            })
            .collect();
        drop(conn);
        Ok(PublicPermit {
            permit_number: number,
            permit_type: self.permit_type(&p.permit_type).await?,
            status: p.status,
            issued_at: p.issued_at,
            inspections,
        })
    }
}

/// A reason a person gives: required, at most 500 characters, no control characters.
pub(crate) fn check_reason(field: &str, r: &str) -> Result<(), AppError> {
    let r = r.trim();
    let problem = if r.is_empty() {
        Some(FieldProblem::new(field, "reason_required", "give a reason"))
    } else if r.chars().count() > 500 {
        Some(FieldProblem::new(
            field,
            "reason_too_long",
            "at most 500 characters",
        ))
    } else if r.chars().any(char::is_control) {
        Some(FieldProblem::new(
            field,
            "reason_control",
            "no control characters",
        ))
    } else {
        None
    };
    problem.map_or(Ok(()), |p| Err(AppError::Fields(vec![p])))
}

fn inspection_view(r: InspectionRow) -> InspectionView {
    InspectionView {
        id: r.id,
        permit_id: r.permit_id,
        inspection_type: r.inspection_type,
        day: r.requested_for,
        status: r.status,
        note: r.result_note,
    }
}
