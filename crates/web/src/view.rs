//! View helpers every area shares: amounts, dates, names in the reader's language, fee
//! lines, invoices. Feature modules use these rather than each other.

use crate::i18n::Tr;
use app::services::InvoiceView;
use domain::fees::FeeLine;
use domain::{Currency, Money};

/// `$1,234.56`.
pub fn money(cents: i64) -> String {
    Money::from_cents(cents, Currency::Usd).to_string()
}

/// `12345.67` (what a form field shows for an amount).
pub fn plain(cents: i64) -> String {
    Money::from_cents(cents, Currency::Usd).to_plain()
}

/// A unix time as the city's date people read ("December 4, 2026").
pub fn date_of(t: &Tr, unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|d| t.date(&d.date().to_string()))
        .unwrap_or_default()
}

/// A configured name in the reader's language.
pub fn name<'a>(t: &Tr, en: &'a str, es: &'a str) -> &'a str {
    if t.lang == "es" {
        es
    } else {
        en
    }
}

/// One fee line for people: its label from the catalog and the amount.
#[derive(Debug, Clone)]
pub struct LineRow {
    pub label: String,
    pub amount: String,
}

pub fn fee_lines(t: &Tr, lines: &[FeeLine]) -> Vec<LineRow> {
    lines
        .iter()
        .map(|l| LineRow {
            label: t.s(&format!("fee.{}", l.code)).to_owned(),
            amount: money(l.amount_cents),
        })
        .collect()
}

/// An invoice for people.
#[derive(Debug, Clone)]
pub struct InvoiceRow {
    pub id: String,
    pub purpose: String,
    pub status: String,
    pub open: bool,
    pub total: String,
    pub due: String,
    pub lines: Vec<LineRow>,
}

pub fn invoice_rows(t: &Tr, invoices: &[InvoiceView]) -> Vec<InvoiceRow> {
    invoices
        .iter()
        .filter(|i| i.status != "void")
        .map(|i| InvoiceRow {
            id: i.id.clone(),
            purpose: t.s(&format!("invoice.purpose.{}", i.purpose)).to_owned(),
            status: t.s(&format!("invoice.status.{}", i.status)).to_owned(),
            open: i.status == "open",
            total: money(i.amount_cents),
            due: money(i.due_cents()),
            lines: fee_lines(t, &i.lines),
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub fn utc(ts: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_else(|| ts.to_string())
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (timelines, where seconds matter).
pub fn utc_seconds(ts: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_else(|| ts.to_string())
}

/// A secret in groups of four, for typing into an app.
pub fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
