//! The city's ledger: business days, postings and their export to the city's customer
//! information system (CIS) and general ledger.
//!
//! **Business day.** A business day closes at the configured cut-off in the city's time
//! zone: a moment before the cut-off (local time) belongs to that date, a moment at or
//! after it to the next date. Daylight-saving changes are the tz database's (compiled in).
//!
//! **Postings.** Each captured payment (one line per item), each refund (negative) and
//! each exception attached to an account becomes posting lines with the item type's fund,
//! department and ledger account, in the same transaction as the money's change; UNIQUE
//! (kind, source, line) makes that exactly once.
//!
//! **Export.** A closed day is exported once: the first export records the day's export
//! and marks its postings; every later export of the day renders the postings it marked,
//! in the same order, so the same layout gives the same bytes.

use crate::ids::random_id;
use crate::{App, AppError, FieldProblem};
use domain::Money;
use std::collections::BTreeMap;
use store::postings::{self as ps, ExportRow, PostingRow};
use store::{Conn, StoreError};

/// Where one item type's money goes in the city's chart of accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlAccount {
    pub fund: String,
    pub department: String,
    pub ledger_account: String,
}

/// The ledger's configuration (`[ledger]` and `city.time_zone` in the config file).
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub time_zone: jiff::tz::TimeZone,
    /// Hour and minute, city local time.
    pub cutoff: (u8, u8),
    /// By item type (`utility`, ...).
    pub accounts: BTreeMap<String, GlAccount>,
    /// Named export layouts the back office offers (the built-in `standard` CSV is always
    /// there).
    pub layouts: BTreeMap<String, ExportLayout>,
    /// Refunds above this need a second person's approval (finance policy; cents).
    pub refund_approval_threshold_cents: i64,
}

impl LedgerConfig {
    /// Pacific time, a 17:00 cut-off, utility receipts to fund 510 (a water utility
    /// enterprise fund), the standard CSV layout.
    pub fn standard() -> Result<LedgerConfig, AppError> {
        let time_zone = jiff::tz::TimeZone::get("America/Los_Angeles")
            .map_err(|e| AppError::Internal(format!("time zone: {e}")))?;
        let mut accounts = BTreeMap::new();
        for (item, fund, department, account) in [
            ("permit", "101", "BUILDING", "3220-BUILDING-PERMITS"),
            ("licence", "101", "FINANCE", "3210-BUSINESS-LICENSES"),
            ("card_fee", "101", "FINANCE", "3490-CARD-CONVENIENCE-FEES"),
        ] {
            accounts.insert(
                item.to_owned(),
                GlAccount {
                    fund: fund.into(),
                    department: department.into(),
                    ledger_account: account.into(),
                },
            );
        }
        accounts.insert(
            "utility".to_owned(),
            GlAccount {
                fund: "510".into(),
                department: "UTILITIES".into(),
                ledger_account: "4410-UTILITY-RECEIPTS".into(),
            },
        );
        let mut layouts = BTreeMap::new();
        layouts.insert("standard".to_owned(), ExportLayout::standard());
        Ok(LedgerConfig {
            time_zone,
            cutoff: (17, 0),
            accounts,
            layouts,
            refund_approval_threshold_cents: 50_000,
        })
    }

    fn account_of(&self, item_type: &str) -> GlAccount {
        self.accounts.get(item_type).cloned().unwrap_or(GlAccount {
            fund: "UNMAPPED".into(),
            department: "UNMAPPED".into(),
            ledger_account: format!("UNMAPPED-{item_type}"),
        })
    }
}

/// Parses `HH:MM` (24-hour clock).
pub fn parse_cutoff(s: &str) -> Option<(u8, u8)> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.trim().len() == 5).then_some((h, m))
}

fn to_time_date(d: jiff::civil::Date) -> Result<time::Date, AppError> {
    let month = time::Month::try_from(d.month() as u8)
        .map_err(|e| AppError::Internal(format!("month: {e}")))?;
    time::Date::from_calendar_date(i32::from(d.year()), month, d.day() as u8)
        .map_err(|e| AppError::Internal(format!("date: {e}")))
}

fn to_civil(d: time::Date) -> Result<jiff::civil::Date, AppError> {
    let year = i16::try_from(d.year())
        .map_err(|_| AppError::invalid("business_date", "year out of range"))?;
    jiff::civil::Date::new(year, u8::from(d.month()) as i8, d.day() as i8)
        .map_err(|e| AppError::Internal(format!("date: {e}")))
}

/// The business date of `unix` seconds under a time zone and cut-off.
pub fn business_date_of(
    tz: &jiff::tz::TimeZone,
    cutoff: (u8, u8),
    unix: i64,
) -> Result<time::Date, AppError> {
    let ts = jiff::Timestamp::from_second(unix)
        .map_err(|e| AppError::Internal(format!("timestamp: {e}")))?;
    let local = ts.to_zoned_datetime(tz.clone());
    let t = local.time();
    let date = local.date();
    let date = if (t.hour() as u8, t.minute() as u8) >= cutoff {
        date.tomorrow()
            .map_err(|e| AppError::Internal(format!("date: {e}")))?
    } else {
        date
    };
    to_time_date(date)
}

/// `[from, to)` in unix seconds of a business date: the previous date's cut-off to this
/// date's cut-off, local time.
pub fn business_day_bounds_of(
    tz: &jiff::tz::TimeZone,
    cutoff: (u8, u8),
    day: time::Date,
) -> Result<(i64, i64), AppError> {
    let d = to_civil(day)?;
    let at = |d: jiff::civil::Date| -> Result<i64, AppError> {
        Ok(d.at(cutoff.0 as i8, cutoff.1 as i8, 0, 0)
            .to_zoned_datetime(tz.clone())
            .map_err(|e| AppError::Internal(format!("zoned: {e}")))?
            .timestamp()
            .as_second())
    };
    let prev = d
        .yesterday()
        .map_err(|e| AppError::Internal(format!("date: {e}")))?;
    Ok((at(prev)?, at(d)?))
}

// ---------------------------------------------------------------------------
// Export layouts
// ---------------------------------------------------------------------------

/// A field of a posting (or of the trailer) that a layout column can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    BusinessDate,
    PostingId,
    Kind,
    SourceId,
    Reference,
    AccountNumber,
    Fund,
    Department,
    LedgerAccount,
    PaymentMethod,
    /// Dollars with two decimals, `-` for money given back: `123.45`, `-5.00`.
    Amount,
    /// Integer cents: `12345`, `-500`.
    AmountCents,
    /// A fixed text (`value`).
    Literal,
    /// Trailer only: the number of postings.
    RecordCount,
    /// Trailer only: the sum of the amounts, in dollars.
    TotalAmount,
    /// Trailer only: the sum of the amounts, in cents.
    TotalCents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    #[default]
    Left,
    Right,
}

/// One column of a layout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub field: Field,
    /// CSV: the header's name (default: the field's name).
    #[serde(default)]
    pub name: Option<String>,
    /// Fixed width: the column's width in characters (required there).
    #[serde(default)]
    pub width: Option<usize>,
    #[serde(default)]
    pub align: Align,
    /// Fixed width: the pad character (default a space).
    #[serde(default)]
    pub pad: Option<char>,
    /// `literal`: the text.
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Fixed,
}

/// How the city's CIS wants a day's postings (a mapping file, TOML).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportLayout {
    pub format: Format,
    /// CSV: one ASCII character (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// CSV: write a header row (default true).
    #[serde(default)]
    pub header: Option<bool>,
    /// `lf` (default) or `crlf`.
    #[serde(default)]
    pub line_ending: Option<String>,
    /// How business dates are written, in the `time` crate's description language (default
    /// `[year]-[month]-[day]`; `[year][month][day]` for YYYYMMDD).
    #[serde(default)]
    pub date_format: Option<String>,
    pub columns: Vec<Column>,
    /// A last record with counts and totals (fixed width or CSV).
    #[serde(default)]
    pub trailer: Vec<Column>,
}

/// Why a layout cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LayoutError(pub String);

impl ExportLayout {
    /// The built-in layout: CSV with a header, one row per posting.
    pub fn standard() -> ExportLayout {
        let col = |field: Field, name: &str| Column {
            field,
            name: Some(name.to_owned()),
            width: None,
            align: Align::Left,
            pad: None,
            value: None,
        };
        ExportLayout {
            format: Format::Csv,
            delimiter: None,
            header: None,
            line_ending: None,
            date_format: None,
            columns: vec![
                col(Field::BusinessDate, "business_date"),
                col(Field::PostingId, "posting_id"),
                col(Field::Kind, "kind"),
                col(Field::Reference, "reference"),
                col(Field::AccountNumber, "account_number"),
                col(Field::Fund, "fund"),
                col(Field::Department, "department"),
                col(Field::LedgerAccount, "ledger_account"),
                col(Field::PaymentMethod, "payment_method"),
                col(Field::Amount, "amount"),
            ],
            trailer: vec![],
        }
    }

    /// Parses and checks a mapping file's text.
    pub fn parse(text: &str) -> Result<ExportLayout, LayoutError> {
        let l: ExportLayout = toml::from_str(text).map_err(|e| LayoutError(e.to_string()))?;
        l.check()?;
        Ok(l)
    }

    fn check(&self) -> Result<(), LayoutError> {
        if self.columns.is_empty() {
            return Err(LayoutError(
                "columns: a layout needs at least one column".into(),
            ));
        }
        if let Some(d) = self.delimiter {
            if !d.is_ascii() || d == '"' || d == '\n' || d == '\r' {
                return Err(LayoutError(
                    "delimiter: one ASCII character other than a quote or line break".into(),
                ));
            }
        }
        match self.line_ending.as_deref() {
            None | Some("lf") | Some("crlf") => {}
            Some(other) => {
                return Err(LayoutError(format!(
                    "line_ending: {other:?} is not lf or crlf"
                )))
            }
        }
        self.date_description()?;
        for (part, cols) in [("columns", &self.columns), ("trailer", &self.trailer)] {
            for (i, c) in cols.iter().enumerate() {
                let at = format!("{part}[{i}]");
                let trailer_only = matches!(
                    c.field,
                    Field::RecordCount | Field::TotalAmount | Field::TotalCents
                );
                if part == "columns" && trailer_only {
                    return Err(LayoutError(format!(
                        "{at}.field: {:?} belongs in the trailer",
                        c.field
                    )));
                }
                if part == "trailer"
                    && !(trailer_only || matches!(c.field, Field::Literal | Field::BusinessDate))
                {
                    return Err(LayoutError(format!("{at}.field: a trailer holds record_count, total_amount, total_cents, business_date or literal")));
                }
                if c.field == Field::Literal && c.value.is_none() {
                    return Err(LayoutError(format!(
                        "{at}.value: a literal column needs its value"
                    )));
                }
                if self.format == Format::Fixed && c.width.is_none_or(|w| w == 0 || w > 200) {
                    return Err(LayoutError(format!(
                        "{at}.width: a fixed-width column needs a width of 1 to 200"
                    )));
                }
            }
        }
        Ok(())
    }

    fn date_description(
        &self,
    ) -> Result<Vec<time::format_description::OwnedFormatItem>, LayoutError> {
        let text = self
            .date_format
            .as_deref()
            .unwrap_or("[year]-[month]-[day]");
        time::format_description::parse_owned::<2>(text)
            .map(|d| vec![d])
            .map_err(|e| LayoutError(format!("date_format: {e}")))
    }

    fn eol(&self) -> &'static str {
        if self.line_ending.as_deref() == Some("crlf") {
            "\r\n"
        } else {
            "\n"
        }
    }

    /// The file for `postings` (all of one business day).
    pub fn render(&self, day: time::Date, postings: &[PostingRow]) -> Result<Vec<u8>, LayoutError> {
        let dates = self.date_description()?;
        let date_text = day
            .format(&dates[0])
            .map_err(|e| LayoutError(format!("date_format: {e}")))?;
        let total: i64 = postings
            .iter()
            .try_fold(0i64, |acc, p| acc.checked_add(p.amount_cents))
            .ok_or_else(|| LayoutError("the day's total overflows".into()))?;
        let value = |c: &Column, p: Option<&PostingRow>| -> String {
            match (c.field, p) {
                (Field::Literal, _) => c.value.clone().unwrap_or_default(),
                (Field::BusinessDate, _) => date_text.clone(),
                (Field::RecordCount, _) => postings.len().to_string(),
                (Field::TotalAmount, _) => dollars(total),
                (Field::TotalCents, _) => total.to_string(),
                (_, None) => String::new(),
                (Field::PostingId, Some(p)) => p.id.clone(),
                (Field::Kind, Some(p)) => p.kind.clone(),
                (Field::SourceId, Some(p)) => p.source_id.clone(),
                (Field::Reference, Some(p)) => p.reference.clone(),
                (Field::AccountNumber, Some(p)) => p.account_number.clone(),
                (Field::Fund, Some(p)) => p.fund.clone(),
                (Field::Department, Some(p)) => p.department.clone(),
                (Field::LedgerAccount, Some(p)) => p.ledger_account.clone(),
                (Field::PaymentMethod, Some(p)) => p.payment_method.clone(),
                (Field::Amount, Some(p)) => dollars(p.amount_cents),
                (Field::AmountCents, Some(p)) => p.amount_cents.to_string(),
            }
        };
        let eol = self.eol();
        match self.format {
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .delimiter(self.delimiter.unwrap_or(',') as u8)
                    .terminator(if eol == "\r\n" {
                        csv::Terminator::CRLF
                    } else {
                        csv::Terminator::Any(b'\n')
                    })
                    .from_writer(Vec::new());
                let io = |e: csv::Error| LayoutError(format!("writing CSV: {e}"));
                if self.header.unwrap_or(true) {
                    w.write_record(self.columns.iter().map(|c| {
                        c.name
                            .clone()
                            .unwrap_or_else(|| field_name(c.field).to_owned())
                    }))
                    .map_err(io)?;
                }
                for p in postings {
                    w.write_record(self.columns.iter().map(|c| value(c, Some(p))))
                        .map_err(io)?;
                }
                if !self.trailer.is_empty() {
                    w.write_record(self.trailer.iter().map(|c| value(c, None)))
                        .map_err(io)?;
                }
                w.into_inner()
                    .map_err(|e| LayoutError(format!("writing CSV: {e}")))
            }
            Format::Fixed => {
                let mut out = String::new();
                let mut line =
                    |cols: &[Column], p: Option<&PostingRow>| -> Result<(), LayoutError> {
                        for c in cols {
                            out.push_str(&fit(c, &value(c, p))?);
                        }
                        out.push_str(eol);
                        Ok(())
                    };
                for p in postings {
                    line(&self.columns, Some(p))?;
                }
                if !self.trailer.is_empty() {
                    line(&self.trailer, None)?;
                }
                Ok(out.into_bytes())
            }
        }
    }
}

fn field_name(f: Field) -> &'static str {
    match f {
        Field::BusinessDate => "business_date",
        Field::PostingId => "posting_id",
        Field::Kind => "kind",
        Field::SourceId => "source_id",
        Field::Reference => "reference",
        Field::AccountNumber => "account_number",
        Field::Fund => "fund",
        Field::Department => "department",
        Field::LedgerAccount => "ledger_account",
        Field::PaymentMethod => "payment_method",
        Field::Amount => "amount",
        Field::AmountCents => "amount_cents",
        Field::Literal => "literal",
        Field::RecordCount => "record_count",
        Field::TotalAmount => "total_amount",
        Field::TotalCents => "total_cents",
    }
}

/// `12345` -> `123.45`, `-500` -> `-5.00`.
fn dollars(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let a = cents.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// A value in a fixed-width column: padded to its width; a value that does not fit is an
/// error (never cut: a cut amount or account number would post wrong money). Numbers
/// padded with zeros keep their sign in front (`-0000500`).
fn fit(c: &Column, v: &str) -> Result<String, LayoutError> {
    let width = c.width.unwrap_or(0);
    let len = v.chars().count();
    if len > width {
        return Err(LayoutError(format!(
            "the value {v:?} does not fit the {} column of width {width}",
            field_name(c.field)
        )));
    }
    let pad = c.pad.unwrap_or(' ');
    let fill: String = std::iter::repeat_n(pad, width - len).collect();
    Ok(match (c.align, v.strip_prefix('-')) {
        (Align::Right, Some(digits)) if pad == '0' => format!("-{fill}{digits}"),
        (Align::Right, _) => format!("{fill}{v}"),
        (Align::Left, _) => format!("{v}{fill}"),
    })
}

/// One line of the settlement report: a department and payment method's money of a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementLine {
    pub department: String,
    pub payment_method: String,
    pub receipts: Money,
    pub refunds: Money,
    pub net: Money,
    pub count: i64,
}

/// A business day's settlement report; `total` equals the sum of the day's postings.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub business_date: time::Date,
    pub lines: Vec<SettlementLine>,
    pub total: Money,
    pub postings: i64,
    pub exported: Option<ExportRow>,
}

/// What an export produced.
#[derive(Debug, Clone)]
pub struct Export {
    pub business_date: time::Date,
    pub bytes: Vec<u8>,
    pub rows: usize,
    pub total: Money,
    /// This run recorded the day's export (false: the day was exported before; the same
    /// postings were rendered again).
    pub first: bool,
    pub sha256: String,
}

/// A day's summary for the postings page.
#[derive(Debug, Clone)]
pub struct PostingDay {
    pub business_date: String,
    pub count: i64,
    pub total: Money,
    pub exported: bool,
    pub closed: bool,
}

impl App {
    pub fn ledger_config(&self) -> &LedgerConfig {
        &self.config().ledger
    }

    /// Today's calendar date in the city (licence expiries, inspection days).
    pub fn city_today(&self) -> Result<time::Date, AppError> {
        let ts = jiff::Timestamp::from_second(self.now_unix())
            .map_err(|e| AppError::Internal(format!("timestamp: {e}")))?;
        to_time_date(
            ts.to_zoned_datetime(self.ledger_config().time_zone.clone())
                .date(),
        )
    }

    /// The business date of a moment; see the module documentation.
    pub fn business_date(&self, unix: i64) -> Result<time::Date, AppError> {
        business_date_of(&self.ledger_config().time_zone, self.cutoff(), unix)
    }

    /// `[from, to)` in unix seconds of a business date.
    pub fn business_day_bounds(&self, day: time::Date) -> Result<(i64, i64), AppError> {
        business_day_bounds_of(&self.ledger_config().time_zone, self.cutoff(), day)
    }

    /// A business date is closed once its cut-off has passed.
    pub fn business_day_closed(&self, day: time::Date) -> Result<bool, AppError> {
        Ok(self.now_unix() >= self.business_day_bounds(day)?.1)
    }

    /// Posts lines in the caller's transaction, once per (kind, source, line).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn post_lines(
        &self,
        tx: &mut Conn,
        kind: &str,
        source_id: &str,
        reference: &str,
        payment_method: &str,
        lines: &[(String, String, i64)],
    ) -> Result<(), AppError> {
        let now = self.now_unix();
        let day = self.business_date(now)?.to_string();
        for (i, (item_type, account, cents)) in lines.iter().enumerate() {
            let gl = self.ledger_config().account_of(item_type);
            ps::insert_once(
                tx,
                &PostingRow {
                    id: format!("pst_{}", random_id()),
                    business_date: day.clone(),
                    kind: kind.to_owned(),
                    source_id: source_id.to_owned(),
                    line_no: i as i64 + 1,
                    item_type: item_type.clone(),
                    fund: gl.fund,
                    department: gl.department,
                    ledger_account: gl.ledger_account,
                    account_number: account.clone(),
                    amount_cents: *cents,
                    currency: self.config().currency.code().to_owned(),
                    payment_method: payment_method.to_owned(),
                    reference: reference.to_owned(),
                    created_at: now,
                    export_id: None,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Sum of a payment's postings (reconciliation's third side).
    pub(crate) async fn posted_cents_of_payment(
        &self,
        conn: &mut Conn,
        payment_id: &str,
    ) -> Result<i64, AppError> {
        Ok(ps::total_of_source(conn, "payment", payment_id).await?)
    }

    /// Whether the day was exported, and its postings that the export does not hold.
    pub(crate) async fn export_state_of_day(
        &self,
        conn: &mut Conn,
        day: time::Date,
    ) -> Result<(bool, Vec<String>), AppError> {
        let d = day.to_string();
        if ps::export_of_day(conn, &d).await?.is_none() {
            return Ok((false, Vec::new()));
        }
        Ok((true, ps::unexported_of_day(conn, &d).await?))
    }

    /// The most recent business days with postings.
    pub async fn posting_days(&self, limit: i64) -> Result<Vec<PostingDay>, AppError> {
        let mut conn = self.store.conn().await?;
        let rows = ps::days(&mut conn, limit).await?;
        drop(conn);
        let mut out = Vec::with_capacity(rows.len());
        for (day, count, total, export) in rows {
            let closed = match time::Date::parse(
                &day,
                &time::macros::format_description!("[year]-[month]-[day]"),
            ) {
                Ok(d) => self.business_day_closed(d)?,
                Err(_) => false,
            };
            out.push(PostingDay {
                business_date: day,
                count,
                total: Money::from_cents(total, self.config().currency),
                exported: export.is_some(),
                closed,
            });
        }
        Ok(out)
    }

    /// Exports a closed business day with a layout; see the module documentation.
    pub async fn export_postings(
        &self,
        day: time::Date,
        layout: &ExportLayout,
        actor: &str,
    ) -> Result<Export, AppError> {
        if !self.business_day_closed(day)? {
            return Err(AppError::Fields(vec![FieldProblem::new(
                "business_date",
                "business_day_open",
                "this business day is still open; export it after its cut-off",
            )]));
        }
        let d = day.to_string();
        let mut tx = self.store.begin().await?;
        let (export, first) = match ps::export_of_day(&mut tx, &d).await? {
            Some(e) => (e, false),
            None => {
                let postings = ps::of_day(&mut tx, &d).await?;
                let total = postings
                    .iter()
                    .try_fold(0i64, |a, p| a.checked_add(p.amount_cents))
                    .ok_or_else(|| AppError::Internal("day total overflows".into()))?;
                let e = ExportRow {
                    id: format!("exp_{}", random_id()),
                    business_date: d.clone(),
                    created_at: self.now_unix(),
                    exported_by: actor.to_owned(),
                    row_count: postings.len() as i64,
                    total_cents: total,
                };
                if let Err(err) = ps::insert_export(&mut tx, &e).await {
                    if store::is_unique_violation(&err) {
                        // Exported by someone else meanwhile: render theirs.
                        drop(tx);
                        return Box::pin(self.export_postings(day, layout, actor)).await;
                    }
                    return Err(err.into());
                }
                (e, true)
            }
        };
        let postings = ps::of_export(&mut tx, &export.id).await?;
        let bytes = layout
            .render(day, &postings)
            .map_err(|e| AppError::invalid("mapping", e.0))?;
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        self.audit(
            &mut tx,
            actor,
            "postings.exported",
            &d,
            "success",
            "-",
            &format!(
                "{} posting(s), {} cents, sha256 {sha256}{}",
                postings.len(),
                export.total_cents,
                if first { "" } else { " (again)" }
            ),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(Export {
            business_date: day,
            rows: postings.len(),
            total: Money::from_cents(export.total_cents, self.config().currency),
            bytes,
            first,
            sha256,
        })
    }

    /// The settlement report of a business day by department and payment method.
    pub async fn settlement(&self, day: time::Date) -> Result<Settlement, AppError> {
        let d = day.to_string();
        let mut conn = self.store.conn().await?;
        let postings = ps::of_day(&mut conn, &d).await?;
        let exported = ps::export_of_day(&mut conn, &d).await?;
        drop(conn);
        let c = self.config().currency;
        let mut by: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
        let mut total = 0i64;
        for p in &postings {
            let e = by
                .entry((p.department.clone(), p.payment_method.clone()))
                .or_insert((0, 0, 0));
            if p.amount_cents >= 0 {
                e.0 = e.0.saturating_add(p.amount_cents);
            } else {
                e.1 = e.1.saturating_add(p.amount_cents);
            }
            e.2 += 1;
            total = total.saturating_add(p.amount_cents);
        }
        let lines = by
            .into_iter()
            .map(|((department, payment_method), (r, f, n))| SettlementLine {
                department,
                payment_method,
                receipts: Money::from_cents(r, c),
                refunds: Money::from_cents(f, c),
                net: Money::from_cents(r.saturating_add(f), c),
                count: n,
            })
            .collect();
        Ok(Settlement {
            business_date: day,
            lines,
            total: Money::from_cents(total, c),
            postings: postings.len() as i64,
            exported,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn la() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get("America/Los_Angeles").unwrap()
    }

    fn utc(s: &str) -> i64 {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    }

    #[test]
    fn business_dates_turn_at_the_local_cut_off() {
        let d = |s: &str| {
            business_date_of(&la(), (17, 0), utc(s))
                .unwrap()
                .to_string()
        };
        // Winter: Los Angeles is UTC-8, so 17:00 local is 01:00 UTC the next day.
        assert_eq!(d("2026-12-04T00:59:59Z"), "2026-12-03");
        assert_eq!(d("2026-12-04T01:00:00Z"), "2026-12-04");
        assert_eq!(d("2026-12-04T20:00:00Z"), "2026-12-04");
        // Summer: UTC-7, 17:00 local is 00:00 UTC.
        assert_eq!(d("2026-07-01T23:59:59Z"), "2026-07-01");
        assert_eq!(d("2026-07-02T00:00:00Z"), "2026-07-02");
    }

    #[test]
    fn a_business_day_across_the_daylight_saving_change_has_23_or_25_hours() {
        let b = |s: &str| {
            let day = time::Date::parse(
                s,
                &time::macros::format_description!("[year]-[month]-[day]"),
            )
            .unwrap();
            business_day_bounds_of(&la(), (17, 0), day).unwrap()
        };
        // Clocks go forward on 2026-03-08: the day from Mar 7 17:00 to Mar 8 17:00 is 23 h.
        let (f, t) = b("2026-03-08");
        assert_eq!(t - f, 23 * 3600);
        // Back on 2026-11-01: 25 h.
        let (f, t) = b("2026-11-01");
        assert_eq!(t - f, 25 * 3600);
        // An ordinary day, and the bounds agree with business_date_of.
        let (f, t) = b("2026-12-04");
        assert_eq!(t - f, 24 * 3600);
        assert_eq!(
            business_date_of(&la(), (17, 0), f).unwrap().to_string(),
            "2026-12-04"
        );
        assert_eq!(
            business_date_of(&la(), (17, 0), t - 1).unwrap().to_string(),
            "2026-12-04"
        );
        assert_eq!(
            business_date_of(&la(), (17, 0), t).unwrap().to_string(),
            "2026-12-05"
        );
    }

    #[test]
    fn cut_offs_parse_strictly() {
        assert_eq!(parse_cutoff("17:00"), Some((17, 0)));
        assert_eq!(parse_cutoff("09:30"), Some((9, 30)));
        for bad in ["24:00", "9:30", "17:60", "17-00", "", "noon"] {
            assert_eq!(parse_cutoff(bad), None, "{bad}");
        }
    }

    fn posting(cents: i64, id: &str) -> PostingRow {
        PostingRow {
            id: id.into(),
            business_date: "2026-12-04".into(),
            kind: "payment".into(),
            source_id: "pay_1".into(),
            line_no: 1,
            item_type: "utility".into(),
            fund: "510".into(),
            department: "UTILITIES".into(),
            ledger_account: "4410".into(),
            account_number: "100001".into(),
            amount_cents: cents,
            currency: "usd".into(),
            payment_method: "visa".into(),
            reference: "SR-ABCD-EFGH".into(),
            created_at: 1,
            export_id: None,
        }
    }

    #[test]
    fn layouts_render_csv_and_fixed_width_with_trailers() {
        let day = time::macros::date!(2026 - 12 - 04);
        let rows = [posting(12345, "pst_a"), posting(-500, "pst_b")];
        let csv = ExportLayout::standard().render(day, &rows).unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "business_date,posting_id,kind,reference,account_number,fund,department,ledger_account,payment_method,amount\n\
             2026-12-04,pst_a,payment,SR-ABCD-EFGH,100001,510,UTILITIES,4410,visa,123.45\n\
             2026-12-04,pst_b,payment,SR-ABCD-EFGH,100001,510,UTILITIES,4410,visa,-5.00\n"
        );
        let fixed = ExportLayout::parse(
            r#"
            format = "fixed"
            line_ending = "crlf"
            date_format = "[year][month][day]"
            columns = [
              { field = "literal", value = "D", width = 1 },
              { field = "business_date", width = 8 },
              { field = "account_number", width = 12 },
              { field = "amount_cents", width = 10, align = "right", pad = "0" },
            ]
            trailer = [
              { field = "literal", value = "T", width = 1 },
              { field = "record_count", width = 6, align = "right", pad = "0" },
              { field = "total_cents", width = 12, align = "right", pad = "0" },
            ]
            "#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(fixed.render(day, &rows).unwrap()).unwrap(),
            "D20261204100001      0000012345\r\nD20261204100001      -000000500\r\nT000002000000011845\r\n"
        );
    }

    #[test]
    fn bad_layouts_are_refused_with_the_reason() {
        for (text, why) in [
            (
                "format = \"fixed\"\ncolumns = [{ field = \"fund\" }]",
                "width",
            ),
            ("format = \"csv\"\ncolumns = []", "at least one column"),
            (
                "format = \"csv\"\ncolumns = [{ field = \"record_count\" }]",
                "trailer",
            ),
            (
                "format = \"csv\"\ncolumns = [{ field = \"colour\" }]",
                "unknown variant",
            ),
            (
                "format = \"csv\"\ndate_format = \"[nope]\"\ncolumns = [{ field = \"fund\" }]",
                "date_format",
            ),
            (
                "format = \"csv\"\ncolumns = [{ field = \"literal\" }]",
                "value",
            ),
        ] {
            let e = ExportLayout::parse(text).unwrap_err();
            assert!(e.0.contains(why), "{text}: {e}");
        }
        // A value wider than its column is refused, never cut.
        let l = ExportLayout::parse(
            "format = \"fixed\"\ncolumns = [{ field = \"account_number\", width = 3 }]",
        )
        .unwrap();
        let e = l
            .render(time::macros::date!(2026 - 12 - 04), &[posting(1, "p")])
            .unwrap_err();
        assert!(e.0.contains("does not fit"), "{e}");
    }
}
