//! Utility accounts as residents and staff see them: balance, due date, bills.

use crate::crypto::columns;
use crate::{App, AppError};
use domain::account::mask_name;
use domain::{AccountNumber, Money, PostalCode};
use store::accounts::{self, BillLineRow, BillRow};

/// What quick pay may show about an account to someone who knows its number and ZIP.
#[derive(Debug, Clone)]
pub struct AccountSummary {
    pub account_number: AccountNumber,
    pub masked_name: String,
    pub service_street: String,
    pub balance: Money,
    /// Due date of the latest bill (`YYYY-MM-DD`).
    pub due_date: Option<String>,
    pub past_due: bool,
    pub latest_bill: Option<Bill>,
}

#[derive(Debug, Clone)]
pub struct Bill {
    pub id: String,
    pub account_number: String,
    pub period_start: String,
    pub period_end: String,
    pub issued_on: String,
    pub due_on: String,
    pub amount: Money,
    pub meter_previous: Option<i64>,
    pub meter_current: Option<i64>,
    pub usage_units: Option<i64>,
    pub lines: Vec<BillLine>,
}

#[derive(Debug, Clone)]
pub struct BillLine {
    pub kind: String,
    pub description: String,
    pub amount: Money,
}

#[derive(Debug, Clone)]
pub struct LedgerEntry {
    pub kind: String,
    pub description: String,
    pub amount: Money,
    pub posted_at: i64,
}

impl App {
    fn money(&self, cents: i64) -> Money {
        Money::from_cents(cents, self.config().currency)
    }

    fn bill_from_rows(&self, b: BillRow, lines: Vec<BillLineRow>) -> Bill {
        Bill {
            amount: self.money(b.amount_cents),
            lines: lines
                .into_iter()
                .map(|l| BillLine {
                    kind: l.kind,
                    description: l.description,
                    amount: self.money(l.amount_cents),
                })
                .collect(),
            id: b.id,
            account_number: b.account_number,
            period_start: b.period_start,
            period_end: b.period_end,
            issued_on: b.issued_on,
            due_on: b.due_on,
            meter_previous: b.meter_previous,
            meter_current: b.meter_current,
            usage_units: b.usage_units,
        }
    }

    /// An account's summary: the account and its balance (`accounts::get_with_balance`),
    /// then its latest bill with the bill's lines.
    pub(crate) async fn summary_of(
        &self,
        conn: &mut store::Conn,
        found: accounts::AccountWithBalance,
    ) -> Result<AccountSummary, AppError> {
        let a = &found.account;
        let balance = self.money(found.balance_cents);
        let latest = match accounts::latest_bill(conn, &a.account_number).await? {
            Some(b) => {
                let lines = accounts::bill_lines(conn, &b.id).await?;
                Some(self.bill_from_rows(b, lines))
            }
            None => None,
        };
        let today = self.now().date().to_string();
        let due_date = latest.as_ref().map(|b| b.due_on.clone());
        // Past due: the latest bill's date has passed with money owing, or more is owed than
        // the latest bill (an earlier bill is unpaid).
        let latest_amount = latest.as_ref().map_or(0, |b| b.amount.cents());
        let past_due = balance.is_positive()
            && (due_date.as_deref().is_some_and(|d| d < today.as_str())
                || balance.cents() > latest_amount);
        Ok(AccountSummary {
            account_number: AccountNumber::parse(&a.account_number)
                .ok_or_else(|| AppError::Internal("stored account number is malformed".into()))?,
            masked_name: mask_name(&self.open(columns::ACCOUNT_HOLDER_NAME, &a.holder_name)?),
            service_street: self.open(columns::ACCOUNT_SERVICE_STREET, &a.service_street)?,
            balance,
            due_date,
            past_due,
            latest_bill: latest,
        })
    }

    /// Quick pay: account number and service ZIP must both match. An unknown account and a
    /// wrong ZIP give the same answer.
    pub async fn lookup(
        &self,
        account: &str,
        postal_code: &str,
    ) -> Result<AccountSummary, AppError> {
        let account = AccountNumber::parse(account).ok_or_else(|| {
            AppError::invalid(
                "account_number",
                "enter the 4 to 12 digit account number shown on your bill",
            )
        })?;
        let zip = PostalCode::parse(postal_code).ok_or_else(|| {
            AppError::invalid(
                "postal_code",
                "enter the 5 digit ZIP code of the service address",
            )
        })?;
        let mut conn = self.store.read().await?;
        match accounts::get_with_balance(&mut conn, account.as_str()).await? {
            Some(a) if a.account.postal_code == zip.as_str() => self.summary_of(&mut conn, a).await,
            _ => Err(AppError::AccountNotFound),
        }
    }

    /// An account by number, for staff or for a resident who has linked it (callers check).
    pub async fn account_summary(&self, account: &str) -> Result<AccountSummary, AppError> {
        let mut conn = self.store.read().await?;
        let a = accounts::get_with_balance(&mut conn, account)
            .await?
            .ok_or(AppError::NotFound("account"))?;
        self.summary_of(&mut conn, a).await
    }

    pub async fn bills(&self, account: &str, limit: i64) -> Result<Vec<Bill>, AppError> {
        let mut conn = self.store.read().await?;
        let rows = accounts::bills(&mut conn, account, limit).await?;
        let ids: Vec<&str> = rows.iter().map(|b| b.id.as_str()).collect();
        let mut lines = accounts::bill_lines_of(&mut conn, &ids).await?;
        let mut out = Vec::with_capacity(rows.len());
        for b in rows {
            let (mine, rest) = lines.into_iter().partition(|l| l.bill_id == b.id);
            lines = rest;
            out.push(self.bill_from_rows(b, mine));
        }
        Ok(out)
    }

    pub async fn bill(&self, bill_id: &str) -> Result<Bill, AppError> {
        let mut conn = self.store.read().await?;
        let b = accounts::bill(&mut conn, bill_id)
            .await?
            .ok_or(AppError::NotFound("bill"))?;
        let lines = accounts::bill_lines(&mut conn, &b.id).await?;
        Ok(self.bill_from_rows(b, lines))
    }

    pub async fn ledger(&self, account: &str, limit: i64) -> Result<Vec<LedgerEntry>, AppError> {
        let mut conn = self.store.read().await?;
        Ok(accounts::ledger(&mut conn, account, limit)
            .await?
            .into_iter()
            .map(|l| LedgerEntry {
                kind: l.kind,
                description: l.description,
                amount: self.money(l.amount_cents),
                posted_at: l.posted_at,
            })
            .collect())
    }

    /// Counts a hit against a rate-limit bucket; refuses once over `max` per window.
    /// Throttles keyed by the client are counted in this node's memory (no commit per
    /// request); limits on an account or a user are in the database, shared by every node.
    pub async fn rate_limit(
        &self,
        bucket: &str,
        max: i64,
        window_secs: i64,
    ) -> Result<(), AppError> {
        if crate::limiter::node_local(bucket) {
            if self.limiter.lifted() {
                return Ok(());
            }
            if self.limiter.hit(bucket, self.now_unix(), window_secs) > max {
                return Err(AppError::RateLimited);
            }
            return Ok(());
        }
        let mut conn = self.store.conn().await?;
        let hits = store::ratelimit::hit(&mut conn, bucket, self.now_unix(), window_secs).await?;
        if hits > max {
            return Err(AppError::RateLimited);
        }
        Ok(())
    }
}
