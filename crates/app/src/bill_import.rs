//! Bills in from the city's billing system (CIS): one engine for the command line
//! (`strongroom import-bills`), the back office upload and the API.
//!
//! A **mapping** (TOML) describes the file: CSV with any column order and header names, or
//! fixed-width records with field positions; amounts in dollars or cents; the date format;
//! any number of line items (water, sewer, trash, late fee...), each a column.
//!
//! The file is **streamed**: records are read and applied in chunks (`CHUNK`, or
//! `CHUNK_POSTGRES`) of bills, so a
//! file of a million bills never has a million bills in memory. Every record is checked
//! (each error names its line and field, up to `MAX_ERRORS`); the whole file is one
//! transaction, rolled back on the first invalid line unless `skip_invalid` is set (then
//! invalid lines are reported and skipped). A file larger than `max_bytes` is refused
//! before reading.
//!
//! **Idempotent**: bills are keyed by the CIS's bill id. A bill seen before with the same
//! amount changes nothing; a changed amount updates the bill and adds a ledger adjustment
//! (the difference), so payments already made stay and the balance is recomputed, never
//! overwritten; each change is audited with before and after. A bill id twice in one file
//! is an error. Accounts the file names that we do not have are created (holder and street
//! sealed), each with a linking code (from the file, or generated); a code the file sends
//! for an account we already had replaces ours (the billing system prints it), audited
//! `account.linking_code_replaced`. Residents who asked for it are emailed that a new bill
//! is ready.

use crate::crypto::columns;
use crate::ids::random_id;
use crate::{App, AppError};
use domain::{AccountNumber, Money, PostalCode};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Read};
use store::accounts::{AccountRow, BillLineRow, BillRow, LedgerRow};
use store::bill_import::{self as bi, ImportRow};
use store::StoreError;

/// Bills applied per chunk (one round of bulk statements) on SQLite, whose driver binds
/// parameters in quadratic time (the chunk's `IN` look-ups hold one parameter per bill).
pub const CHUNK: usize = 500;
/// Bills per chunk on PostgreSQL: fewer, larger round trips.
pub const CHUNK_POSTGRES: usize = 2_000;
/// Errors kept (and shown) per import.
pub const MAX_ERRORS: usize = 100;
/// Files larger than this are refused unless the caller sets another limit: 1 GiB, about
/// ten million bills.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Where a field is in a record: a CSV column (by header name) or a fixed-width span
/// (1-based start, length in characters).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Loc {
    Column(String),
    Span { start: usize, length: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Fixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Amounts {
    /// `123.45` (exact decimal; never a float).
    #[default]
    Dollars,
    /// `12345`.
    Cents,
}

/// The fields of a bill record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    pub bill_id: Loc,
    pub account_number: Loc,
    pub postal_code: Loc,
    pub holder_name: Loc,
    pub service_street: Loc,
    pub service_city: Loc,
    pub period_start: Loc,
    pub period_end: Loc,
    pub issued_on: Loc,
    pub due_on: Loc,
    #[serde(default)]
    pub meter_previous: Option<Loc>,
    #[serde(default)]
    pub meter_current: Option<Loc>,
    #[serde(default)]
    pub usage_units: Option<Loc>,
    #[serde(default)]
    pub linking_code: Option<Loc>,
}

/// One line item of a bill: a column holding its amount (empty: the bill has no such line).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    /// `water`, `sewer`, `trash`, `late_fee`, ...
    pub kind: String,
    /// What the resident reads.
    pub description: String,
    pub amount: Loc,
}

/// A bill file's mapping.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub format: Format,
    /// CSV: one ASCII character (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Only `utf-8` is read; any other encoding must be converted first (a wrong encoding
    /// is an error naming the line, never garbled names).
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub amounts: Amounts,
    /// In the `time` crate's format language (default `[year]-[month]-[day]`).
    #[serde(default)]
    pub date_format: Option<String>,
    pub fields: Fields,
    pub lines: Vec<LineItem>,
}

/// An error of one line of a file (line 0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineError {
    pub line: u64,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.field.is_empty()) {
            (0, _) => write!(f, "{}", self.message),
            (l, true) => write!(f, "line {l}: {}", self.message),
            (l, false) => write!(f, "line {l}, field {}: {}", self.field, self.message),
        }
    }
}

fn file_error(field: &str, message: impl Into<String>) -> LineError {
    LineError {
        line: 0,
        field: field.to_owned(),
        message: message.into(),
    }
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub import_id: String,
    pub lines: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub accounts_created: u64,
    /// Up to `MAX_ERRORS`; with `skip_invalid` these are the skipped lines.
    pub errors: Vec<LineError>,
    /// Errors beyond the ones kept.
    pub more_errors: u64,
    /// Nothing was stored (an invalid line without `skip_invalid`, or a file error).
    pub rolled_back: bool,
}

/// What an import tells its caller as it goes.
pub trait Observer: Send {
    /// After each chunk: bytes and lines read so far.
    fn progress(&mut self, _bytes: u64, _lines: u64) {}
    /// Every line skipped (with `skip_invalid`), all of them, not only the first
    /// `MAX_ERRORS` the report keeps.
    fn skipped(&mut self, _e: &LineError) {}
}

/// An observer that wants nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub skip_invalid: bool,
    pub max_bytes: u64,
    /// Recorded with the import (file name, or `api`).
    pub source: String,
    /// Who: `staff:<id>`, `cli`, `api_key:<id>`.
    pub actor: String,
}

impl ImportOptions {
    pub fn new(source: &str, actor: &str) -> ImportOptions {
        ImportOptions {
            skip_invalid: false,
            max_bytes: DEFAULT_MAX_BYTES,
            source: source.to_owned(),
            actor: actor.to_owned(),
        }
    }
}

impl Mapping {
    /// Parses and checks a mapping file's text.
    pub fn parse(text: &str) -> Result<Mapping, LineError> {
        let m: Mapping =
            toml::from_str(text).map_err(|e| file_error("mapping", format!("mapping: {e}")))?;
        m.check()?;
        Ok(m)
    }

    fn locs(&self) -> Vec<(&'static str, &Loc)> {
        let f = &self.fields;
        let mut v: Vec<(&'static str, &Loc)> = vec![
            ("bill_id", &f.bill_id),
            ("account_number", &f.account_number),
            ("postal_code", &f.postal_code),
            ("holder_name", &f.holder_name),
            ("service_street", &f.service_street),
            ("service_city", &f.service_city),
            ("period_start", &f.period_start),
            ("period_end", &f.period_end),
            ("issued_on", &f.issued_on),
            ("due_on", &f.due_on),
        ];
        for (name, l) in [
            ("meter_previous", &f.meter_previous),
            ("meter_current", &f.meter_current),
            ("usage_units", &f.usage_units),
            ("linking_code", &f.linking_code),
        ] {
            if let Some(l) = l {
                v.push((name, l));
            }
        }
        v
    }

    fn check(&self) -> Result<(), LineError> {
        if let Some(e) = &self.encoding {
            if !e.eq_ignore_ascii_case("utf-8") && !e.eq_ignore_ascii_case("utf8") {
                return Err(file_error(
                    "encoding",
                    format!("mapping: encoding {e:?} is not read; convert the file to UTF-8"),
                ));
            }
        }
        if self.lines.is_empty() {
            return Err(file_error("lines", "mapping: name at least one line item"));
        }
        if let Some(d) = self.delimiter {
            if !d.is_ascii() || d == '"' || d == '\n' || d == '\r' {
                return Err(file_error(
                    "delimiter",
                    "mapping: the delimiter must be one ASCII character other than a quote or line break",
                ));
            }
        }
        self.date_description()?;
        let line_locs = self.lines.iter().map(|l| ("lines.amount", &l.amount));
        for (name, loc) in self.locs().into_iter().chain(line_locs) {
            match (self.format, loc) {
                (Format::Csv, Loc::Column(c)) if !c.trim().is_empty() => {}
                (Format::Fixed, Loc::Span { start, length }) if *start >= 1 && *length >= 1 => {}
                (Format::Csv, _) => {
                    return Err(file_error(
                        name,
                        format!("mapping: {name} must name a CSV column"),
                    ))
                }
                (Format::Fixed, _) => {
                    return Err(file_error(
                        name,
                        format!("mapping: {name} must be {{ start = N, length = N }} (1-based)"),
                    ))
                }
            }
        }
        Ok(())
    }

    fn date_description(&self) -> Result<time::format_description::OwnedFormatItem, LineError> {
        let text = self
            .date_format
            .as_deref()
            .unwrap_or("[year]-[month]-[day]");
        time::format_description::parse_owned::<2>(text)
            .map_err(|e| file_error("date_format", format!("mapping: date_format: {e}")))
    }
}

/// A record as read: its line number and its fields' raw text.
struct Raw {
    line: u64,
    values: HashMap<&'static str, String>,
    amounts: Vec<String>,
}

/// Reads records from a CSV or fixed-width file, one at a time.
enum Records<R: Read> {
    Csv {
        reader: csv::Reader<R>,
        /// Column index of each field, and of each line item.
        index: Vec<(&'static str, usize)>,
        amounts: Vec<usize>,
        width: usize,
    },
    Fixed {
        reader: std::io::BufReader<R>,
        line: u64,
        buf: Vec<u8>,
        bytes: u64,
    },
}

impl<R: Read> Records<R> {
    fn open(m: &Mapping, input: R) -> Result<Records<R>, LineError> {
        match m.format {
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(m.delimiter.unwrap_or(',') as u8)
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(input);
                let headers = reader.byte_headers().map_err(|e| LineError {
                    line: 1,
                    field: String::new(),
                    message: format!("the header line cannot be read: {e}"),
                })?;
                let headers: Vec<String> = headers
                    .iter()
                    .map(|h| {
                        String::from_utf8_lossy(h)
                            .trim()
                            .trim_start_matches('\u{feff}')
                            .to_owned()
                    })
                    .collect();
                let find = |name: &str, col: &str| -> Result<usize, LineError> {
                    headers.iter().position(|h| h == col.trim()).ok_or_else(|| LineError {
                        line: 1,
                        field: name.to_owned(),
                        message: format!("the mapping names column {col:?}, which the header line does not have"),
                    })
                };
                let mut index = Vec::new();
                for (name, loc) in m.locs() {
                    if let Loc::Column(c) = loc {
                        index.push((name, find(name, c)?));
                    }
                }
                let mut amounts = Vec::new();
                for l in &m.lines {
                    if let Loc::Column(c) = &l.amount {
                        amounts.push(find(&l.kind, c)?);
                    }
                }
                Ok(Records::Csv {
                    reader,
                    index,
                    amounts,
                    width: headers.len(),
                })
            }
            Format::Fixed => Ok(Records::Fixed {
                reader: std::io::BufReader::new(input),
                line: 0,
                buf: Vec::new(),
                bytes: 0,
            }),
        }
    }

    /// Bytes read so far.
    fn position(&self) -> u64 {
        match self {
            Records::Csv { reader, .. } => reader.position().byte(),
            Records::Fixed { bytes, .. } => *bytes,
        }
    }

    fn next(&mut self, m: &Mapping) -> Option<Result<Raw, LineError>> {
        match self {
            Records::Csv {
                reader,
                index,
                amounts,
                width,
            } => {
                let mut rec = csv::ByteRecord::new();
                match reader.read_byte_record(&mut rec) {
                    Ok(false) => None,
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        Some(Err(LineError {
                            line,
                            field: String::new(),
                            message: format!("the line cannot be read as CSV: {}", csv_reason(&e)),
                        }))
                    }
                    Ok(true) => {
                        let line = rec.position().map_or(0, |p| p.line());
                        if rec.len() == 1 && rec.get(0).is_some_and(|f| f.is_empty()) {
                            // A blank line.
                            return self.next(m);
                        }
                        if rec.len() != *width {
                            return Some(Err(LineError {
                                line,
                                field: String::new(),
                                message: format!(
                                    "expected {width} columns, found {} (a truncated or broken line)",
                                    rec.len()
                                ),
                            }));
                        }
                        let text = |i: usize, field: &str| -> Result<String, LineError> {
                            let bytes = rec.get(i).unwrap_or_default();
                            std::str::from_utf8(bytes)
                                .map(|s| s.trim().to_owned())
                                .map_err(|_| LineError {
                                    line,
                                    field: field.to_owned(),
                                    message: "not valid UTF-8 (is the file in another encoding?)"
                                        .into(),
                                })
                        };
                        let mut values = HashMap::new();
                        for (name, i) in index.iter() {
                            match text(*i, name) {
                                Ok(v) => {
                                    values.insert(*name, v);
                                }
                                Err(e) => return Some(Err(e)),
                            }
                        }
                        let mut amts = Vec::with_capacity(amounts.len());
                        for (k, i) in amounts.iter().enumerate() {
                            let kind = m.lines.get(k).map_or("amount", |l| l.kind.as_str());
                            match text(*i, kind) {
                                Ok(v) => amts.push(v),
                                Err(e) => return Some(Err(e)),
                            }
                        }
                        Some(Ok(Raw {
                            line,
                            values,
                            amounts: amts,
                        }))
                    }
                }
            }
            Records::Fixed {
                reader,
                line,
                buf,
                bytes,
            } => loop {
                buf.clear();
                let n = match reader.read_until(b'\n', buf) {
                    Ok(0) => return None,
                    Ok(n) => n,
                    Err(e) => {
                        return Some(Err(LineError {
                            line: *line + 1,
                            field: String::new(),
                            message: format!("the file cannot be read: {e}"),
                        }))
                    }
                };
                *bytes += n as u64;
                *line += 1;
                let l = *line;
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                if buf.iter().all(|b| *b == b' ') {
                    continue;
                }
                let Ok(text) = std::str::from_utf8(buf) else {
                    return Some(Err(LineError {
                        line: l,
                        field: String::new(),
                        message: "not valid UTF-8 (is the file in another encoding?)".into(),
                    }));
                };
                let chars: Vec<char> = text.chars().collect();
                let cut = |name: &str, loc: &Loc| -> Result<String, LineError> {
                    let Loc::Span { start, length } = loc else {
                        return Ok(String::new());
                    };
                    let (from, to) = (start - 1, start - 1 + length);
                    if chars.len() < to {
                        return Err(LineError {
                            line: l,
                            field: name.to_owned(),
                            message: format!(
                                "the line ends at column {}, the field needs columns {start} to {} (a truncated line)",
                                chars.len(),
                                to
                            ),
                        });
                    }
                    Ok(chars[from..to].iter().collect::<String>().trim().to_owned())
                };
                let mut values = HashMap::new();
                for (name, loc) in m.locs() {
                    match cut(name, loc) {
                        Ok(v) => {
                            values.insert(name, v);
                        }
                        Err(e) => return Some(Err(e)),
                    }
                }
                let mut amounts = Vec::with_capacity(m.lines.len());
                for li in &m.lines {
                    match cut(&li.kind, &li.amount) {
                        Ok(v) => amounts.push(v),
                        Err(e) => return Some(Err(e)),
                    }
                }
                return Some(Ok(Raw {
                    line: l,
                    values,
                    amounts,
                }));
            },
        }
    }
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => io.to_string(),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => "malformed quoting or field".into(),
    }
}

/// A checked bill record.
#[derive(Debug, Clone)]
struct Record {
    line: u64,
    cis_id: String,
    account: String,
    postal_code: String,
    holder_name: String,
    service_street: String,
    service_city: String,
    period_start: time::Date,
    period_end: time::Date,
    issued_on: time::Date,
    due_on: time::Date,
    meter_previous: Option<i64>,
    meter_current: Option<i64>,
    usage_units: Option<i64>,
    linking_code: Option<String>,
    lines: Vec<(String, String, i64)>,
    amount_cents: i64,
}

/// Linking codes: 6 to 16 of the unambiguous upper-case letters and digits.
pub fn valid_linking_code(s: &str) -> bool {
    (6..=16).contains(&s.len()) && s.bytes().all(|b| LINK_ALPHABET.contains(&b))
}

const LINK_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// A new linking code: 10 characters of `LINK_ALPHABET` from the thread's CSPRNG (about
/// 49 bits; linking attempts are rate limited).
pub fn new_linking_code() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| char::from(LINK_ALPHABET[rng.gen_range(0..LINK_ALPHABET.len())]))
        .collect()
}

fn check(
    m: &Mapping,
    dates: &time::format_description::OwnedFormatItem,
    raw: Raw,
    currency: domain::Currency,
) -> Result<Record, LineError> {
    let line = raw.line;
    let err = |field: &str, message: String| LineError {
        line,
        field: field.to_owned(),
        message,
    };
    // Invariant 1: nothing that looks like a card number is stored, or repeated back.
    for (name, v) in &raw.values {
        if domain::pan::contains_pan(v) {
            return Err(err(
                name,
                "looks like a card number; card numbers are never accepted".into(),
            ));
        }
    }
    let get = |name: &str| raw.values.get(name).cloned().unwrap_or_default();
    let text = |name: &str, max: usize| -> Result<String, LineError> {
        let v = get(name);
        if v.is_empty() {
            return Err(err(name, "is empty".into()));
        }
        if v.chars().count() > max || v.chars().any(char::is_control) {
            return Err(err(
                name,
                format!("must be at most {max} characters, without control characters"),
            ));
        }
        Ok(v)
    };
    let cis_id = text("bill_id", 64)?;
    if !cis_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
    {
        return Err(err(
            "bill_id",
            "may hold only letters, digits and - _ . /".into(),
        ));
    }
    let account = AccountNumber::parse(&get("account_number")).ok_or_else(|| {
        err(
            "account_number",
            "is not an account number (4 to 12 digits)".into(),
        )
    })?;
    let zip = PostalCode::parse(&get("postal_code"))
        .ok_or_else(|| err("postal_code", "is not a 5-digit ZIP code".into()))?;
    let date = |name: &str| -> Result<time::Date, LineError> {
        time::Date::parse(&get(name), dates).map_err(|_| {
            err(
                name,
                format!(
                    "is not a date in the form {}",
                    m.date_format.as_deref().unwrap_or("[year]-[month]-[day]")
                ),
            )
        })
    };
    let (period_start, period_end) = (date("period_start")?, date("period_end")?);
    if period_end < period_start {
        return Err(err("period_end", "is before period_start".into()));
    }
    let (issued_on, due_on) = (date("issued_on")?, date("due_on")?);
    if due_on < issued_on {
        return Err(err("due_on", "is before issued_on".into()));
    }
    let number = |name: &str| -> Result<Option<i64>, LineError> {
        let v = get(name);
        if v.is_empty() {
            return Ok(None);
        }
        match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(err(name, "must be a whole number, 0 or more".into())),
        }
    };
    let linking_code = match get("linking_code") {
        c if c.is_empty() => None,
        c if valid_linking_code(&c) => Some(c),
        _ => {
            return Err(err(
                "linking_code",
                "must be 6 to 16 of the letters and digits printed on bills (no 0, 1, I, L, O)"
                    .into(),
            ))
        }
    };
    let mut lines = Vec::new();
    let mut total: i64 = 0;
    for (li, v) in m.lines.iter().zip(&raw.amounts) {
        if v.is_empty() {
            continue;
        }
        if v.starts_with('-') {
            return Err(err(
                &li.kind,
                "is negative; bills hold only charges (credits come as payments or adjustments)"
                    .into(),
            ));
        }
        let cents = match m.amounts {
            Amounts::Dollars => Money::parse_dollars(v, currency)
                .map(|x| x.cents())
                .map_err(|_| err(&li.kind, "is not an amount like 12.34".into()))?,
            Amounts::Cents => v
                .parse::<i64>()
                .map_err(|_| err(&li.kind, "is not a whole number of cents".into()))?,
        };
        if cents < 0 {
            return Err(err(
                &li.kind,
                "is negative; bills hold only charges (credits come as payments or adjustments)"
                    .into(),
            ));
        }
        total = total
            .checked_add(cents)
            .ok_or_else(|| err(&li.kind, "the total is too large".into()))?;
        lines.push((li.kind.clone(), li.description.clone(), cents));
    }
    if lines.is_empty() {
        return Err(err(
            "lines",
            "the bill has no line item with an amount".into(),
        ));
    }
    Ok(Record {
        line,
        cis_id,
        account: account.to_string(),
        postal_code: zip.to_string(),
        holder_name: text("holder_name", 200)?,
        service_street: text("service_street", 200)?,
        service_city: text("service_city", 100)?,
        period_start,
        period_end,
        issued_on,
        due_on,
        meter_previous: number("meter_previous")?,
        meter_current: number("meter_current")?,
        usage_units: number("usage_units")?,
        linking_code,
        lines,
        amount_cents: total,
    })
}

/// The state of one import while it runs.
struct Run {
    id: String,
    report: ImportReport,
    /// An invalid line was met without `skip_invalid`: nothing more is applied, the
    /// transaction is dropped, and reading goes on only to report more errors.
    failed: bool,
}

impl Run {
    fn error(&mut self, e: LineError) {
        if self.report.errors.len() < MAX_ERRORS {
            self.report.errors.push(e);
        } else {
            self.report.more_errors += 1;
        }
    }
}

impl App {
    /// Imports a bill file; see the module documentation. `progress` is called after each
    /// chunk with (bytes read, lines read). On an invalid file (without `skip_invalid`) the
    /// report says what was wrong and nothing is stored. Its audit entries are in the
    /// chain when it returns (imports often run off a request's path).
    pub async fn import_bills<R: Read>(
        &self,
        input: R,
        size: u64,
        mapping: &Mapping,
        opts: &ImportOptions,
        observer: &mut dyn Observer,
    ) -> Result<ImportReport, AppError> {
        self.sealing_audit(self.import_bills_unsealed(input, size, mapping, opts, observer))
            .await
    }

    async fn import_bills_unsealed<R: Read>(
        &self,
        input: R,
        size: u64,
        mapping: &Mapping,
        opts: &ImportOptions,
        observer: &mut dyn Observer,
    ) -> Result<ImportReport, AppError> {
        let id = format!("imp_{}", random_id());
        let mut run = Run {
            id: id.clone(),
            report: ImportReport {
                import_id: id.clone(),
                ..ImportReport::default()
            },
            failed: false,
        };
        if size > opts.max_bytes {
            run.error(file_error(
                "file",
                format!(
                    "the file is {} MiB; the largest file imported is {} MiB (split it, or raise the limit)",
                    size >> 20,
                    opts.max_bytes >> 20
                ),
            ));
            run.report.rolled_back = true;
            return Ok(run.report);
        }
        let dates = mapping
            .date_description()
            .map_err(|e| AppError::invalid("mapping", e.message))?;
        // The file's fingerprint is computed as it streams by.
        let hashing = HashingReader::new(input);
        let digest = hashing.digest.clone();
        let mut records = match Records::open(mapping, hashing) {
            Ok(r) => r,
            Err(e) => {
                run.error(e);
                run.report.rolled_back = true;
                return Ok(run.report);
            }
        };
        let now = self.now_unix();
        let mut tx = self.store.begin().await?;
        bi::insert_import(
            &mut tx,
            &ImportRow {
                id: id.clone(),
                source: opts.source.clone(),
                file_sha256: String::new(),
                status: "running".into(),
                started_by: opts.actor.clone(),
                started_at: now,
                finished_at: None,
                lines: 0,
                bills_created: 0,
                bills_updated: 0,
                bills_unchanged: 0,
                lines_skipped: 0,
                accounts_created: 0,
                errors: "[]".into(),
            },
        )
        .await?;
        let currency = self.config().currency;
        let chunk_size = match self.store.backend() {
            store::Backend::Postgres => CHUNK_POSTGRES,
            store::Backend::Sqlite => CHUNK,
        };
        let mut chunk: Vec<Record> = Vec::with_capacity(chunk_size);
        loop {
            let next = records.next(mapping);
            let done = next.is_none();
            if let Some(r) = next {
                run.report.lines += 1;
                match r.and_then(|raw| check(mapping, &dates, raw, currency)) {
                    Ok(rec) => {
                        if !run.failed {
                            chunk.push(rec);
                        }
                    }
                    Err(e) => {
                        if opts.skip_invalid {
                            observer.skipped(&e);
                            run.report.skipped += 1;
                        }
                        run.error(e);
                        if !opts.skip_invalid {
                            run.failed = true;
                            chunk.clear();
                        }
                    }
                }
            }
            if chunk.len() >= chunk_size || (done && !chunk.is_empty()) {
                self.apply_chunk(
                    &mut tx,
                    &mut run,
                    std::mem::take(&mut chunk),
                    opts,
                    observer,
                )
                .await?;
                observer.progress(records.position(), run.report.lines);
            }
            if done {
                break;
            }
            if run.failed && run.report.errors.len() >= MAX_ERRORS {
                break;
            }
        }
        observer.progress(records.position(), run.report.lines);
        let sha = digest
            .lock()
            .map(|h| hex::encode(sha2::Digest::finalize(h.clone())))
            .unwrap_or_default();
        if run.failed {
            drop(tx);
            run.report.rolled_back = true;
            // The failed attempt is recorded (its errors, nothing else).
            let mut tx = self.store.begin().await?;
            let row = self.import_row(&run, opts, &sha, now, "failed")?;
            bi::insert_import(&mut tx, &row).await?;
            self.audit(
                &mut tx,
                &opts.actor,
                "bills.import_refused",
                &id,
                "failure",
                "-",
                &format!(
                    "{} error(s); nothing imported; file sha256 {sha}",
                    run.report.errors.len() as u64 + run.report.more_errors
                ),
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Ok(run.report);
        }
        let row = self.import_row(&run, opts, &sha, now, "succeeded")?;
        bi::finish_import(&mut tx, &row).await?;
        let r = &run.report;
        self.audit(
            &mut tx,
            &opts.actor,
            "bills.imported",
            &id,
            "success",
            "-",
            &format!(
                "{}: {} line(s), {} created, {} updated, {} unchanged, {} skipped, {} account(s) created; sha256 {sha}",
                opts.source, r.lines, r.created, r.updated, r.unchanged, r.skipped, r.accounts_created
            ),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(run.report)
    }

    fn import_row(
        &self,
        run: &Run,
        opts: &ImportOptions,
        sha: &str,
        started: i64,
        status: &str,
    ) -> Result<ImportRow, AppError> {
        let r = &run.report;
        Ok(ImportRow {
            id: run.id.clone(),
            source: opts.source.clone(),
            file_sha256: sha.to_owned(),
            status: status.into(),
            started_by: opts.actor.clone(),
            started_at: started,
            finished_at: Some(self.now_unix()),
            lines: r.lines as i64,
            bills_created: r.created as i64,
            bills_updated: r.updated as i64,
            bills_unchanged: r.unchanged as i64,
            lines_skipped: r.skipped as i64,
            accounts_created: r.accounts_created as i64,
            errors: serde_json::to_string(&r.errors)
                .map_err(|e| AppError::Internal(format!("errors: {e}")))?,
        })
    }

    /// Applies one chunk of checked records in the import's transaction.
    async fn apply_chunk(
        &self,
        tx: &mut store::Conn,
        run: &mut Run,
        records: Vec<Record>,
        opts: &ImportOptions,
        observer: &mut dyn Observer,
    ) -> Result<(), AppError> {
        let now = self.now_unix();
        let currency = self.config().currency.code().to_owned();
        let cis_ids: Vec<String> = records.iter().map(|r| r.cis_id.clone()).collect();
        let known: HashMap<String, bi::KnownBill> = bi::known_bills(tx, &cis_ids)
            .await?
            .into_iter()
            .map(|b| (b.cis_bill_id.clone(), b))
            .collect();
        let mut numbers: Vec<String> = records.iter().map(|r| r.account.clone()).collect();
        numbers.sort();
        numbers.dedup();
        let mut have: HashSet<String> = bi::known_accounts(tx, &numbers)
            .await?
            .into_iter()
            .collect();
        // Codes the file sends for accounts we have: the city's billing system prints its
        // own, so a different one replaces ours (audited, never logged).
        let mut with_code: Vec<String> = records
            .iter()
            .filter(|r| r.linking_code.is_some() && have.contains(&r.account))
            .map(|r| r.account.clone())
            .collect();
        with_code.sort();
        with_code.dedup();
        let mut stored_codes: HashMap<String, String> = HashMap::new();
        for (a, sealed) in bi::linking_codes_of(tx, &with_code).await? {
            let code = self.open(columns::ACCOUNT_LINKING_CODE, &sealed)?;
            stored_codes.insert(a, code);
        }
        let mut new_accounts = Vec::new();
        let mut new_codes = Vec::new();
        let mut new_bills = Vec::new();
        let mut new_lines = Vec::new();
        let mut ledger = Vec::new();
        let mut touched = Vec::new();
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut notify: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in records {
            let dup = seen.get(&r.cis_id).copied().or_else(|| {
                known
                    .get(&r.cis_id)
                    .filter(|b| b.import_id.as_deref() == Some(run.id.as_str()))
                    .map(|_| 0)
            });
            if let Some(first) = dup {
                let where_ = if first > 0 {
                    format!(" (first on line {first})")
                } else {
                    " (earlier in this file)".into()
                };
                let e = LineError {
                    line: r.line,
                    field: "bill_id".into(),
                    message: format!("this bill id appears twice in the file{where_}"),
                };
                if opts.skip_invalid {
                    observer.skipped(&e);
                    run.error(e);
                    run.report.skipped += 1;
                    continue;
                }
                run.error(e);
                run.failed = true;
                return Ok(());
            }
            seen.insert(r.cis_id.clone(), r.line);
            if !have.contains(&r.account) {
                new_accounts.push(AccountRow {
                    account_number: r.account.clone(),
                    postal_code: r.postal_code.clone(),
                    holder_name: self.seal(columns::ACCOUNT_HOLDER_NAME, &r.holder_name)?,
                    service_street: self
                        .seal(columns::ACCOUNT_SERVICE_STREET, &r.service_street)?,
                    service_city: r.service_city.clone(),
                    currency: currency.clone(),
                    created_at: now,
                });
                let code = r.linking_code.clone().unwrap_or_else(new_linking_code);
                new_codes.push((
                    r.account.clone(),
                    self.seal(columns::ACCOUNT_LINKING_CODE, &code)?,
                    now,
                ));
                have.insert(r.account.clone());
                run.report.accounts_created += 1;
            } else if let Some(code) = r
                .linking_code
                .as_ref()
                .filter(|c| stored_codes.get(&r.account) != Some(*c))
            {
                // Only accounts we had before this chunk (a new account's first code stays).
                if with_code.binary_search(&r.account).is_ok() {
                    let sealed = self.seal(columns::ACCOUNT_LINKING_CODE, code)?;
                    bi::set_linking_code(tx, &r.account, &sealed, now).await?;
                    self.audit(
                        tx,
                        &opts.actor,
                        "account.linking_code_replaced",
                        &r.account,
                        "success",
                        "-",
                        &format!(
                            "the billing system's code (line {}, import {}){}",
                            r.line,
                            run.id,
                            if stored_codes.contains_key(&r.account) {
                                " replaces the account's code"
                            } else {
                                ""
                            }
                        ),
                    )
                    .await?;
                    stored_codes.insert(r.account.clone(), code.clone());
                }
            }
            let lines_of = |bill_id: &str| -> Vec<BillLineRow> {
                r.lines
                    .iter()
                    .enumerate()
                    .map(|(i, (kind, description, cents))| BillLineRow {
                        bill_id: bill_id.to_owned(),
                        line_no: i as i64 + 1,
                        kind: kind.clone(),
                        description: description.clone(),
                        amount_cents: *cents,
                    })
                    .collect()
            };
            match known.get(&r.cis_id) {
                None => {
                    let bill_id = format!("bill_{}", random_id());
                    new_lines.extend(lines_of(&bill_id));
                    ledger.push(LedgerRow {
                        id: random_id(),
                        account_number: r.account.clone(),
                        kind: "bill".into(),
                        reference: bill_id.clone(),
                        amount_cents: r.amount_cents,
                        description: format!("Bill {} issued {}", r.cis_id, r.issued_on),
                        posted_at: now,
                    });
                    notify.entry(r.account.clone()).or_default().push(format!(
                        "{} due {}",
                        Money::from_cents(r.amount_cents, self.config().currency),
                        r.due_on
                    ));
                    new_bills.push((self.bill_row(&bill_id, &r, now), r.cis_id.clone()));
                    run.report.created += 1;
                }
                Some(b) if b.account_number != r.account => {
                    let e = LineError {
                        line: r.line,
                        field: "account_number".into(),
                        message: "this bill id was imported before for another account".into(),
                    };
                    if opts.skip_invalid {
                        observer.skipped(&e);
                        run.error(e);
                        run.report.skipped += 1;
                        continue;
                    }
                    run.error(e);
                    run.failed = true;
                    return Ok(());
                }
                Some(b) if b.amount_cents == r.amount_cents => {
                    touched.push(b.id.clone());
                    run.report.unchanged += 1;
                }
                Some(b) => {
                    // A changed amount: the bill is updated and the difference goes to the
                    // account's ledger, so payments already made keep counting.
                    let row = self.bill_row(&b.id, &r, now);
                    bi::update_bill(tx, &row, &lines_of(&b.id), &run.id).await?;
                    store::accounts::post_ledger(
                        tx,
                        &LedgerRow {
                            id: random_id(),
                            account_number: r.account.clone(),
                            kind: "bill_adjustment".into(),
                            reference: format!("{}:{}", b.id, run.id),
                            amount_cents: r.amount_cents - b.amount_cents,
                            description: format!("Bill {} corrected", r.cis_id),
                            posted_at: now,
                        },
                    )
                    .await?;
                    self.audit(
                        tx,
                        &opts.actor,
                        "bill.amount_changed",
                        &b.id,
                        "success",
                        "-",
                        &format!(
                            "CIS bill {} on account {}: {} -> {} (import {})",
                            r.cis_id,
                            r.account,
                            Money::from_cents(b.amount_cents, self.config().currency),
                            Money::from_cents(r.amount_cents, self.config().currency),
                            run.id
                        ),
                    )
                    .await?;
                    run.report.updated += 1;
                }
            }
        }
        bi::insert_accounts(tx, &new_accounts).await?;
        bi::insert_linking_codes(tx, &new_codes).await?;
        bi::insert_bills(tx, &new_bills, &run.id).await?;
        bi::insert_bill_lines(tx, &new_lines).await?;
        bi::insert_ledger(tx, &ledger).await?;
        bi::touch_bills(tx, &touched, &run.id).await?;
        let accounts: Vec<String> = notify.keys().cloned().collect();
        for (account, sealed_email) in bi::notice_recipients(tx, &accounts).await? {
            let to = self.open(columns::RESIDENT_EMAIL, &sealed_email)?;
            let what = notify
                .get(&account)
                .map(|v| v.join(", "))
                .unwrap_or_default();
            let body = format!(
                "A new bill is ready for utility account {account}: {what}.\n\nSee it and pay online at {}/dashboard\n",
                self.config().portal_base_url
            );
            self.enqueue_email(
                tx,
                &to,
                "Your new utility bill is ready",
                &body,
                "bill_ready",
            )
            .await?;
        }
        Ok(())
    }

    fn bill_row(&self, id: &str, r: &Record, now: i64) -> BillRow {
        BillRow {
            id: id.to_owned(),
            account_number: r.account.clone(),
            period_start: r.period_start.to_string(),
            period_end: r.period_end.to_string(),
            issued_on: r.issued_on.to_string(),
            due_on: r.due_on.to_string(),
            amount_cents: r.amount_cents,
            meter_previous: r.meter_previous,
            meter_current: r.meter_current,
            usage_units: r.usage_units,
            created_at: now,
        }
    }

    /// Recent imports, newest first.
    pub async fn bill_imports(&self, limit: i64) -> Result<Vec<ImportRow>, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(bi::recent_imports(&mut conn, limit).await?)
    }

    pub async fn bill_import(&self, id: &str) -> Result<ImportRow, AppError> {
        let mut conn = self.store.conn().await?;
        bi::import(&mut conn, id)
            .await?
            .ok_or(AppError::NotFound("import"))
    }

    /// Gives every account without a linking code one (the demo's, and accounts from before
    /// linking codes). Returns how many.
    pub async fn issue_missing_linking_codes(&self) -> Result<usize, AppError> {
        let mut total = 0;
        loop {
            let mut tx = self.store.begin().await?;
            let accounts = bi::accounts_without_code(&mut tx, 500).await?;
            if accounts.is_empty() {
                return Ok(total);
            }
            let now = self.now_unix();
            let mut rows = Vec::with_capacity(accounts.len());
            for a in &accounts {
                rows.push((
                    a.clone(),
                    self.seal(columns::ACCOUNT_LINKING_CODE, &new_linking_code())?,
                    now,
                ));
            }
            bi::insert_linking_codes(&mut tx, &rows).await?;
            tx.commit().await.map_err(StoreError::from)?;
            total += accounts.len();
        }
    }

    /// Linking codes for the bill printer, a page at a time: (account number, code) of the
    /// accounts numbered after `after`, in order, at most `limit`. An empty page is the end;
    /// the next page starts after the last account of this one.
    pub async fn linking_codes_after(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, AppError> {
        let page = {
            let mut conn = self.store.conn().await?;
            bi::linking_codes_after(&mut conn, after, limit).await?
        };
        page.into_iter()
            .map(|(a, sealed)| Ok((a, self.open(columns::ACCOUNT_LINKING_CODE, &sealed)?)))
            .collect()
    }

    /// One account's linking code (the demo prints one).
    pub async fn linking_code_of(&self, account: &str) -> Result<Option<String>, AppError> {
        let mut conn = self.store.conn().await?;
        match bi::linking_code(&mut conn, account).await? {
            Some(s) => Ok(Some(self.open(columns::ACCOUNT_LINKING_CODE, &s)?)),
            None => Ok(None),
        }
    }
}

/// A reader that hashes what passes through it (SHA-256 of the whole file).
struct HashingReader<R> {
    inner: R,
    digest: std::sync::Arc<std::sync::Mutex<sha2::Sha256>>,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            digest: std::sync::Arc::new(std::sync::Mutex::new(
                <sha2::Sha256 as sha2::Digest>::new(),
            )),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut h) = self.digest.lock() {
            sha2::Digest::update(&mut *h, &buf[..n]);
        }
        Ok(n)
    }
}

impl App {
    /// Whether the resident is emailed when a new bill of a linked account arrives.
    pub async fn bill_notices(&self, resident_id: &str) -> Result<bool, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(bi::bill_notices(&mut conn, resident_id).await?)
    }

    /// Turns new-bill emails on or off for the resident, audited.
    pub async fn set_bill_notices(
        &self,
        resident_id: &str,
        on: bool,
        source_ip: &str,
    ) -> Result<(), AppError> {
        let mut tx = self.store.begin().await?;
        bi::set_bill_notices(&mut tx, resident_id, on).await?;
        self.audit(
            &mut tx,
            &format!("resident:{resident_id}"),
            "resident.bill_notices",
            resident_id,
            "success",
            source_ip,
            if on { "on" } else { "off" },
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }
}
