//! Staff pages for payments: search, a payment with its timeline, refunds.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(search))
        .route("/payments/{id}", get(payment))
        .route("/payments/{id}/refund", post(refund))
}

// ---- payments ----

#[derive(Template)]
#[template(path = "staff/search.html")]
struct SearchPage {
    c: Chrome,
    q: String,
    payments: Vec<PaymentRow>,
    payments_caption: String,
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn search(
    State(st): State<AppState>,
    ctx: StaffCtx,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Page {
    ctx.require(VIEW_PAYMENTS)?;
    let Ok(Query(SearchQuery { q })) = query else {
        return Err(ctx.bad_request());
    };
    let q = q.trim().to_owned();
    if q.len() > MAX_QUERY || q.chars().any(char::is_control) {
        return Err(ctx.bad_request());
    }
    let found = st
        .app
        .search_payments(&q, LIST_LIMIT)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let payments: Vec<PaymentRow> = found.iter().map(|p| payment_row(&ctx.t, p)).collect();
    let payments_caption = if q.is_empty() {
        ctx.t.f(
            "staff.search.caption_recent",
            &[("count", &payments.len().to_string())],
        )
    } else {
        ctx.t.f(
            "staff.search.caption",
            &[("count", &payments.len().to_string()), ("q", &q)],
        )
    };
    page(&SearchPage {
        c: ctx.chrome(),
        q,
        payments,
        payments_caption,
    })
}

struct ItemRow {
    kind: String,
    account_number: String,
    amount: String,
}

struct EventRow {
    at: String,
    kind: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "staff/payment.html")]
struct PaymentPage {
    c: Chrome,
    p: PaymentRow,
    refunded: Option<String>,
    card: Option<String>,
    decided: Option<String>,
    channel: String,
    failure_code: Option<String>,
    failure_message: Option<String>,
    items: Vec<ItemRow>,
    link_accounts: bool,
    events: Vec<EventRow>,
    refunds: Vec<RefundLine>,
    /// The refund form: the member may refund and money is left to refund.
    can_refund: bool,
    /// The field a refund error is about (`account`, `amount`, `reason`), and the error.
    errors: crate::forms::FormErrors,
    notice: String,
}

/// One refund in the payment page's list.
struct RefundLine {
    created: String,
    account_number: String,
    amount: String,
    status: String,
    reason: String,
}

/// Who may ask for a refund (a clerk's request, and any above the city's threshold, waits
/// for a supervisor's or administrator's approval at `/refunds`).
const REFUND: Role = Role::Clerk;

#[derive(Deserialize)]
struct RefundForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
}

/// `POST /payments/{id}/refund` (supervisors and administrators).
async fn refund(
    State(st): State<AppState>,
    ctx: StaffCtx,
    Path(id): Path<String>,
    form: Result<Form<RefundForm>, FormRejection>,
) -> Page {
    let me = ctx.require(REFUND)?;
    if PaymentId::parse(&id).is_none() {
        return Err(ctx.not_found());
    }
    let Ok(Form(f)) = form else {
        return Err(ctx.bad_request());
    };
    let csrf_ok = ctx
        .signed_in
        .as_ref()
        .is_some_and(|(s, _)| !f.csrf.is_empty() && secrets_equal(&s.csrf_token, &f.csrf));
    if !csrf_ok {
        return Err(ctx.fail(
            StatusCode::FORBIDDEN,
            "csrf_token_invalid",
            ctx.t.s("staff.error.csrf"),
        ));
    }
    match st
        .app
        .refund_payment(me, &id, &f.account, &f.amount, &f.reason, &ctx.ip)
        .await
    {
        Ok(r) => {
            let notice = ctx.t.f(
                if r.status == "awaiting_approval" {
                    "staff.refund.awaiting"
                } else {
                    "staff.refund.done"
                },
                &[
                    ("amount", &r.amount.to_string()),
                    ("account", &r.account_number),
                ],
            );
            show_payment(
                &st,
                &ctx,
                &id,
                StatusCode::OK,
                crate::forms::FormErrors::none(),
                notice,
            )
            .await
        }
        Err(AppError::Processor(_)) => {
            let error = ctx.t.s("staff.refund.processor").to_owned();
            let errors = crate::forms::FormErrors::of(vec![("refund-amount".into(), error)]);
            show_payment(
                &st,
                &ctx,
                &id,
                StatusCode::BAD_GATEWAY,
                errors,
                String::new(),
            )
            .await
        }
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            // Every problem at once, on the form's fields (`refund-<field>`), in the
            // reader's language by their codes.
            let e = match e {
                AppError::Fields(ps) => AppError::Fields(
                    ps.into_iter()
                        .map(|mut p| {
                            p.field = match p.field.as_str() {
                                "account" => "refund-account",
                                "reason" => "refund-reason",
                                _ => "refund-amount",
                            }
                            .into();
                            p
                        })
                        .collect(),
                ),
                e => e,
            };
            let errors = crate::forms::FormErrors::from_app(
                &ctx.t,
                &e,
                "refund-amount",
                &["refund-account", "refund-amount", "refund-reason"],
            )
            .unwrap_or_default();
            show_payment(
                &st,
                &ctx,
                &id,
                StatusCode::BAD_REQUEST,
                errors,
                String::new(),
            )
            .await
        }
        Err(e) => Err(ctx.app_error(e)),
    }
}

async fn payment(State(st): State<AppState>, ctx: StaffCtx, Path(id): Path<String>) -> Page {
    if PaymentId::parse(&id).is_none() {
        ctx.require(VIEW_PAYMENTS)?;
        return Err(ctx.not_found());
    }
    show_payment(
        &st,
        &ctx,
        &id,
        StatusCode::OK,
        crate::forms::FormErrors::none(),
        String::new(),
    )
    .await
}

/// The payment page, with a refund error (field, message) or notice.
async fn show_payment(
    st: &AppState,
    ctx: &StaffCtx,
    id: &str,
    status: StatusCode,
    errors: crate::forms::FormErrors,
    notice: String,
) -> Page {
    let me = ctx.require(VIEW_PAYMENTS)?;
    let link_accounts = allowed(me.role, VIEW_ACCOUNTS);
    let p = st.app.payment(id).await.map_err(|e| ctx.app_error(e))?;
    let refunds = st
        .app
        .refunds(id)
        .await
        .map_err(|e| ctx.app_error(e))?
        .into_iter()
        .map(|r| RefundLine {
            created: utc(r.created_at),
            account_number: r.account_number,
            amount: r.amount.to_string(),
            status: ctx
                .t
                .s(&format!("staff.refund.status.{}", r.status))
                .to_owned(),
            reason: r.reason,
        })
        .collect();
    let can_refund = allowed(me.role, REFUND)
        && matches!(
            p.status,
            domain::PaymentStatus::Succeeded | domain::PaymentStatus::PartiallyRefunded
        )
        && p.refunded.cents() < p.amount.cents();
    let timeline = st
        .app
        .payment_timeline(id)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let card = match (&p.card_brand, &p.card_last4) {
        (Some(b), Some(l)) => Some(ctx.t.f(
            "receipt.card_ending",
            &[("brand", app::email::brand_name(b)), ("last4", l)],
        )),
        _ => None,
    };
    let page_data = PaymentPage {
        c: ctx.chrome(),
        refunded: (p.refunded.cents() != 0).then(|| p.refunded.to_string()),
        card,
        decided: p.decided_at.map(utc),
        channel: p.channel.clone(),
        failure_code: p.failure_code.clone(),
        failure_message: p.failure_message.clone(),
        items: p
            .items
            .iter()
            .map(|i| ItemRow {
                kind: i.item_type.clone(),
                account_number: i.account_number.clone(),
                amount: i.amount.to_string(),
            })
            .collect(),
        link_accounts,
        events: in_lifecycle_order(timeline)
            .into_iter()
            .map(|e| EventRow {
                at: utc_seconds(e.at),
                kind: e.kind,
                detail: e.detail,
            })
            .collect(),
        p: payment_row(&ctx.t, &p),
        refunds,
        can_refund,
        errors,
        notice,
    };
    Ok(render(status, &page_data)?)
}

/// Events are stamped to the second and the store breaks ties by a random id, so events
/// of the same second are put back in the order a payment lives through them.
pub(super) fn in_lifecycle_order(mut events: Vec<TimelineEntry>) -> Vec<TimelineEntry> {
    fn rank(kind: &str) -> u8 {
        match kind {
            "created" => 0,
            "checkout_opened" => 1,
            "attempt_declined" => 2,
            "posted" => 4,
            "refund_reported" => 5,
            _ => 3,
        }
    }
    events.sort_by_key(|e| (e.at, rank(&e.kind)));
    events
}
