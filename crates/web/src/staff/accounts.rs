//! Staff page of one utility account: bills, ledger, payments.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/accounts/{account}", get(account))
}

// ---- accounts ----

struct BillRow {
    issued_on: String,
    period: String,
    due_on: String,
    amount: String,
}

struct LedgerRow {
    posted: String,
    kind: String,
    description: String,
    amount: String,
}

#[derive(Template)]
#[template(path = "staff/account.html")]
struct AccountPage {
    c: Chrome,
    s: app::billing::AccountSummary,
    bills: Vec<BillRow>,
    ledger: Vec<LedgerRow>,
    payments: Vec<PaymentRow>,
    payments_caption: String,
}

fn ledger_kind(t: &Tr, kind: &str) -> String {
    match kind {
        "bill" => t.s("staff.ledger.kind.bill").to_owned(),
        "payment" => t.s("staff.ledger.kind.payment").to_owned(),
        "refund" => t.s("staff.ledger.kind.refund").to_owned(),
        "adjustment" => t.s("staff.ledger.kind.adjustment").to_owned(),
        other => other.to_owned(),
    }
}

async fn account(State(st): State<AppState>, ctx: StaffCtx, Path(account): Path<String>) -> Page {
    ctx.require(VIEW_ACCOUNTS)?;
    let Some(number) = AccountNumber::parse(&account).filter(|n| n.as_str() == account) else {
        return Err(ctx.not_found());
    };
    let n = number.as_str();
    let s = st
        .app
        .account_summary(n)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let bills = st
        .app
        .bills(n, LIST_LIMIT)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let ledger = st
        .app
        .ledger(n, LIST_LIMIT)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let payments = st
        .app
        .payments_for_account(n, LIST_LIMIT)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let data = AccountPage {
        c: ctx.chrome(),
        s,
        bills: bills
            .iter()
            .map(|b| BillRow {
                issued_on: b.issued_on.clone(),
                period: ctx.t.f(
                    "staff.account.period",
                    &[("start", &b.period_start), ("end", &b.period_end)],
                ),
                due_on: b.due_on.clone(),
                amount: b.amount.to_string(),
            })
            .collect(),
        ledger: ledger
            .iter()
            .map(|l| LedgerRow {
                posted: utc(l.posted_at),
                kind: ledger_kind(&ctx.t, &l.kind),
                description: l.description.clone(),
                amount: l.amount.to_string(),
            })
            .collect(),
        payments: payments.iter().map(|p| payment_row(&ctx.t, p)).collect(),
        payments_caption: ctx.t.s("staff.account.payments_caption").to_owned(),
    };
    page(&data)
}
