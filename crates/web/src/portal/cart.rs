//! One cart, one checkout: a signed-in resident's utility balances and unpaid permit and
//! licence fees on one page; a review page that shows each item by department, the card
//! fee if the city charges one, and the total, with a way back; then one processor
//! checkout. If an item changed since the cart was shown (paid meanwhile, a new amount),
//! the cart says so before the resident is sent to pay.
//!
//! - `GET /cart`; `POST /cart/review`; `POST /cart/pay`.

use super::account::to_login;
use super::{render, Chrome, Ctx};
use crate::error::PageError;
use crate::forms::{value, FormErrors};
use crate::view;
use crate::AppState;
use app::payments::{Channel, ItemProof, PaymentRequest, RequestedInvoice, RequestedItem};
use app::sessions::Session;
use app::{AppError, FieldProblem};
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use domain::{AccountNumber, EmailAddress, Money};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/cart", get(cart))
        .route("/cart/review", post(review))
        .route("/cart/pay", post(pay))
        .route("/pay-fees", get(guest_form).post(guest_lookup))
        .route("/pay-fees/pay", post(guest_pay))
}

type Page = Result<Response, PageError>;
type Pairs = Vec<(String, String)>;

/// One thing the resident may pay.
struct CartLine {
    /// `u_<account>` or `i_<invoice>`.
    key: String,
    /// The field that errors point at.
    field: String,
    department: String,
    label: String,
    due: String,
    due_cents: i64,
    partial: bool,
    checked: bool,
    amount: String,
}

#[derive(Template)]
#[template(path = "portal/cart.html")]
struct CartPage {
    c: Chrome,
    lines: Vec<CartLine>,
    errors: FormErrors,
}

fn department(ctx: &Ctx, item_type: &str) -> String {
    ctx.t.s(&format!("department.{item_type}")).to_owned()
}

async fn lines(
    st: &AppState,
    ctx: &Ctx,
    s: &Session,
    form: Option<&Pairs>,
) -> Result<Vec<CartLine>, PageError> {
    let mut out = Vec::new();
    let checked =
        |key: &str| form.is_none_or(|f| f.iter().any(|(k, _)| k == &format!("pay_{key}")));
    let amount = |key: &str, default: i64| {
        form.map(|f| value(f, &format!("amount_{key}")))
            .unwrap_or_else(|| view::plain(default))
    };
    for a in st.app.dashboard(&s.user_id).await? {
        if !a.balance.is_positive() {
            continue;
        }
        let key = format!("u_{}", a.account_number.as_str());
        out.push(CartLine {
            field: format!("amount_{key}"),
            department: department(ctx, "utility"),
            label: ctx.t.f(
                "cart.utility_line",
                &[
                    ("account", a.account_number.as_str()),
                    ("street", &a.service_street),
                ],
            ),
            due: a.balance.to_string(),
            due_cents: a.balance.cents(),
            partial: st.app.partial_allowed("utility"),
            checked: checked(&key),
            amount: amount(&key, a.balance.cents()),
            key,
        });
    }
    for i in st.app.open_invoices(&s.user_id).await? {
        let key = format!("i_{}", i.id);
        out.push(CartLine {
            field: format!("invoice_{}", i.id),
            department: department(ctx, &i.item_type),
            label: format!(
                "{}: {}",
                ctx.t.s(&format!("invoice.purpose.{}", i.purpose)),
                i.id
            ),
            due: view::money(i.due_cents()),
            due_cents: i.due_cents(),
            partial: st.app.partial_allowed(&i.item_type),
            checked: checked(&key),
            amount: amount(&key, i.due_cents()),
            key,
        });
    }
    Ok(out)
}

async fn cart_page(
    st: &AppState,
    ctx: &Ctx,
    s: &Session,
    form: Option<&Pairs>,
    errors: FormErrors,
) -> Page {
    let lines = lines(st, ctx, s, form).await?;
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(
        status,
        &CartPage {
            c: ctx.chrome(),
            lines,
            errors,
        },
    )
}

async fn cart(State(st): State<AppState>, ctx: Ctx) -> Page {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    cart_page(&st, &ctx, &s, None, FormErrors::none()).await
}

/// What the form asks to pay, or every problem with it.
fn selection(
    ctx: &Ctx,
    form: &Pairs,
) -> Result<(Vec<RequestedItem>, Vec<RequestedInvoice>), Vec<FieldProblem>> {
    let mut items = Vec::new();
    let mut invoices = Vec::new();
    let mut problems = Vec::new();
    let currency = domain::Currency::Usd;
    for (k, _) in form.iter().filter(|(k, _)| k.starts_with("pay_")) {
        let key = &k["pay_".len()..];
        let typed = value(form, &format!("amount_{key}"));
        let typed = typed.trim().trim_start_matches('$').replace(',', "");
        let amount = Money::parse_dollars(&typed, currency)
            .ok()
            .filter(|m| m.is_positive());
        if let Some(acct) = key.strip_prefix("u_") {
            let Some(account) = AccountNumber::parse(acct) else {
                continue;
            };
            match amount {
                Some(amount) => items.push(RequestedItem {
                    account,
                    proof: ItemProof::Linked,
                    amount,
                }),
                None => problems.push(FieldProblem::new(
                    &format!("amount_{key}"),
                    "amount_shape",
                    "enter an amount like 12.34",
                )),
            }
        } else if let Some(inv) = key.strip_prefix("i_") {
            let expected = value(form, &format!("due_{key}")).parse::<i64>().ok();
            match amount {
                Some(amount) => invoices.push(RequestedInvoice {
                    invoice_id: inv.to_owned(),
                    amount,
                    expected_due_cents: expected,
                }),
                None => problems.push(FieldProblem::new(
                    &format!("invoice_{inv}"),
                    "amount_shape",
                    "enter an amount like 12.34",
                )),
            }
        }
    }
    if items.is_empty() && invoices.is_empty() && problems.is_empty() {
        problems.push(FieldProblem::new(
            "cart",
            "cart_empty",
            "choose at least one item to pay",
        ));
    }
    let _ = ctx;
    if problems.is_empty() {
        Ok((items, invoices))
    } else {
        Err(problems)
    }
}

fn fields_of(form: &Pairs) -> Vec<String> {
    let mut f: Vec<String> = vec!["cart".into()];
    for (k, _) in form {
        if let Some(key) = k.strip_prefix("pay_") {
            f.push(match key.strip_prefix("i_") {
                Some(inv) => format!("invoice_{inv}"),
                None => format!("amount_{key}"),
            });
        }
    }
    f
}

fn errors_of(ctx: &Ctx, form: &Pairs, problems: &[FieldProblem]) -> FormErrors {
    let fields = fields_of(form);
    let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    FormErrors::from_problems(&ctx.t, problems, &refs)
}

struct ReviewLine {
    department: String,
    label: String,
    amount: String,
}

#[derive(Template)]
#[template(path = "portal/cart_review.html")]
struct ReviewPage {
    c: Chrome,
    lines: Vec<ReviewLine>,
    fee: String,
    total: String,
    hidden: Vec<(String, String)>,
    form_key: String,
}

async fn review(State(st): State<AppState>, ctx: Ctx, Form(form): Form<Pairs>) -> Page {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    ctx.check_csrf(&value(&form, "csrf"))?;
    let (items, invoices) = match selection(&ctx, &form) {
        Ok(x) => x,
        Err(p) => return cart_page(&st, &ctx, &s, Some(&form), errors_of(&ctx, &form, &p)).await,
    };
    // Each fee checked now against what the cart showed: paid meanwhile, or changed.
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut typed: Vec<(String, i64)> = Vec::new();
    for i in &items {
        out.push(ReviewLine {
            department: department(&ctx, "utility"),
            label: ctx
                .t
                .f("cart.utility_short", &[("account", i.account.as_str())]),
            amount: i.amount.to_string(),
        });
        typed.push(("utility".into(), i.amount.cents()));
    }
    for r in &invoices {
        let field = format!("invoice_{}", r.invoice_id);
        match st.app.invoice(&r.invoice_id).await {
            Ok(inv) if inv.status != "open" => {
                problems.push(FieldProblem::new(&field, "invoice_paid", "already paid"))
            }
            Ok(inv) if r.expected_due_cents.is_some_and(|e| e != inv.due_cents()) => {
                problems.push(FieldProblem::new(
                    &field,
                    "invoice_changed",
                    format!("now {}", view::money(inv.due_cents())),
                ))
            }
            Ok(inv) => {
                out.push(ReviewLine {
                    department: department(&ctx, &inv.item_type),
                    label: format!(
                        "{}: {}",
                        ctx.t.s(&format!("invoice.purpose.{}", inv.purpose)),
                        inv.id
                    ),
                    amount: r.amount.to_string(),
                });
                typed.push((inv.item_type.clone(), r.amount.cents()));
            }
            Err(_) => problems.push(FieldProblem::new(&field, "invoice_unknown", "no such fee")),
        }
    }
    if !problems.is_empty() {
        return cart_page(
            &st,
            &ctx,
            &s,
            Some(&form),
            errors_of(&ctx, &form, &problems),
        )
        .await;
    }
    let fee = st.app.card_fee_for(&typed)?.map_or(0, |f| f.amount_cents);
    let total: i64 = typed.iter().map(|(_, c)| c).sum::<i64>() + fee;
    let hidden = form
        .iter()
        .filter(|(k, _)| k.starts_with("pay_") || k.starts_with("amount_") || k.starts_with("due_"))
        .cloned()
        .collect();
    render(
        StatusCode::OK,
        &ReviewPage {
            c: ctx.chrome(),
            lines: out,
            fee: if fee > 0 {
                view::money(fee)
            } else {
                String::new()
            },
            total: view::money(total),
            hidden,
            form_key: app::ids::form_key(),
        },
    )
}

async fn pay(State(st): State<AppState>, ctx: Ctx, Form(form): Form<Pairs>) -> Page {
    let Some(s) = ctx.session.clone() else {
        return Ok(to_login());
    };
    ctx.check_csrf(&value(&form, "csrf"))?;
    let (items, invoices) = match selection(&ctx, &form) {
        Ok(x) => x,
        Err(p) => return cart_page(&st, &ctx, &s, Some(&form), errors_of(&ctx, &form, &p)).await,
    };
    let resident = st.app.resident(&s.user_id).await?;
    let email = EmailAddress::parse(&resident.email)
        .ok_or_else(|| AppError::Internal("stored resident email is malformed".into()))?;
    let req = PaymentRequest {
        language: Some(ctx.t.lang.to_owned()),
        items,
        invoices,
        email,
        resident_id: Some(s.user_id.clone()),
        channel: Channel::Portal,
        return_url: None,
        source_ip: ctx.ip.clone(),
        form_key: Some(value(&form, "form_key")),
    };
    match st.app.start_payment(req).await {
        Ok(started) => Ok(Redirect::to(&started.checkout_url).into_response()),
        Err(AppError::FormAlreadyUsed(id)) => {
            Ok(Redirect::to(&format!("/payments/{id}/receipt")).into_response())
        }
        Err(e) => {
            // Refusals of utility items name `items[i].amount_cents`: shown on that row.
            let e = match e {
                AppError::Invalid { field, message } if field.starts_with("items[") => {
                    let row = field
                        .strip_prefix("items[")
                        .and_then(|r| r.split_once(']'))
                        .and_then(|(i, _)| i.parse::<usize>().ok());
                    let accounts: Vec<String> = form
                        .iter()
                        .filter_map(|(k, _)| k.strip_prefix("pay_u_").map(str::to_owned))
                        .collect();
                    match row.and_then(|r| accounts.get(r)) {
                        Some(a) => AppError::Fields(vec![FieldProblem::new(
                            &format!("amount_u_{a}"),
                            "amount_range",
                            message,
                        )]),
                        None => AppError::Invalid { field, message },
                    }
                }
                e => e,
            };
            match FormErrors::from_app(
                &ctx.t,
                &e,
                "cart",
                &fields_of(&form)
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ) {
                Some(errors) => cart_page(&st, &ctx, &s, Some(&form), errors).await,
                None => Err(e.into()),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Guests: a permit's or licence's fees by its number and ZIP code, without an account.

const GUEST_FIELDS: &[&str] = &["number", "zip", "email"];

struct GuestLine {
    id: String,
    department: String,
    label: String,
    due: String,
    due_cents: i64,
}

#[derive(Template)]
#[template(path = "portal/pay_fees.html")]
struct GuestPage {
    c: Chrome,
    number: String,
    zip: String,
    email: String,
    errors: FormErrors,
    /// Looked up: the open fees (empty: nothing is due).
    found: bool,
    lines: Vec<GuestLine>,
    fee: String,
    total: String,
    form_key: String,
}

impl GuestPage {
    fn new(ctx: &Ctx, f: &GuestForm) -> GuestPage {
        GuestPage {
            c: ctx.chrome(),
            number: f.number.trim().chars().take(40).collect(),
            zip: f.zip.trim().chars().take(10).collect(),
            email: f.email.trim().chars().take(254).collect(),
            errors: FormErrors::none(),
            found: false,
            lines: Vec::new(),
            fee: String::new(),
            total: String::new(),
            form_key: app::ids::form_key(),
        }
    }
}

#[derive(serde::Deserialize, Default)]
struct GuestForm {
    #[serde(default)]
    number: String,
    #[serde(default)]
    zip: String,
    #[serde(default)]
    email: String,
}

async fn guest_form(ctx: Ctx) -> Page {
    render(StatusCode::OK, &GuestPage::new(&ctx, &GuestForm::default()))
}

/// The guest's open fees, or the page answering why not.
async fn guest_fees(
    st: &AppState,
    ctx: &Ctx,
    f: &GuestForm,
) -> Result<Result<(GuestPage, Vec<app::services::InvoiceView>), Response>, PageError> {
    let mut page = GuestPage::new(ctx, f);
    let mut problems = Vec::new();
    if f.number.trim().is_empty() {
        problems.push(FieldProblem::new("number", "required", "enter the number"));
    }
    if domain::PostalCode::parse(f.zip.trim()).is_none() {
        problems.push(FieldProblem::new("zip", "zip_shape", "a 5-digit ZIP code"));
    }
    if !problems.is_empty() {
        page.errors = FormErrors::from_problems(&ctx.t, &problems, GUEST_FIELDS);
        return Ok(Err(render(StatusCode::BAD_REQUEST, &page)?));
    }
    match st.app.guest_invoices(&f.number, &f.zip, &ctx.ip).await {
        Ok((_, invoices)) => Ok(Ok((page, invoices))),
        Err(AppError::NotFound(_)) => {
            page.errors = FormErrors::from_problems(
                &ctx.t,
                &[FieldProblem::new(
                    "number",
                    "fee_lookup_none",
                    "nothing matches",
                )],
                GUEST_FIELDS,
            );
            Ok(Err(render(StatusCode::NOT_FOUND, &page)?))
        }
        Err(e) => match FormErrors::from_app(&ctx.t, &e, "number", GUEST_FIELDS) {
            Some(errors) => {
                page.errors = errors;
                Ok(Err(render(crate::error::status_of(&e), &page)?))
            }
            None => Err(e.into()),
        },
    }
}

fn show_fees(
    st: &AppState,
    ctx: &Ctx,
    mut page: GuestPage,
    invoices: &[app::services::InvoiceView],
) -> Result<GuestPage, PageError> {
    page.found = true;
    page.lines = invoices
        .iter()
        .map(|i| GuestLine {
            id: i.id.clone(),
            department: department(ctx, &i.item_type),
            label: format!(
                "{}: {}",
                ctx.t.s(&format!("invoice.purpose.{}", i.purpose)),
                i.id
            ),
            due: view::money(i.due_cents()),
            due_cents: i.due_cents(),
        })
        .collect();
    let typed: Vec<(String, i64)> = invoices
        .iter()
        .map(|i| (i.item_type.clone(), i.due_cents()))
        .collect();
    let fee = st.app.card_fee_for(&typed)?.map_or(0, |f| f.amount_cents);
    page.fee = if fee > 0 {
        view::money(fee)
    } else {
        String::new()
    };
    page.total = view::money(typed.iter().map(|(_, c)| c).sum::<i64>() + fee);
    Ok(page)
}

async fn guest_lookup(State(st): State<AppState>, ctx: Ctx, Form(f): Form<GuestForm>) -> Page {
    let (page, invoices) = match guest_fees(&st, &ctx, &f).await? {
        Ok(x) => x,
        Err(answer) => return Ok(answer),
    };
    render(StatusCode::OK, &show_fees(&st, &ctx, page, &invoices)?)
}

async fn guest_pay(State(st): State<AppState>, ctx: Ctx, Form(form): Form<Pairs>) -> Page {
    let f = GuestForm {
        number: value(&form, "number"),
        zip: value(&form, "zip"),
        email: value(&form, "email"),
    };
    let (page, invoices) = match guest_fees(&st, &ctx, &f).await? {
        Ok(x) => x,
        Err(answer) => return Ok(answer),
    };
    // What the page showed as due, fee by fee: paid or changed meanwhile is refused.
    let requested: Vec<RequestedInvoice> = invoices
        .iter()
        .map(|i| RequestedInvoice {
            invoice_id: i.id.clone(),
            amount: Money::from_cents(i.due_cents(), domain::Currency::Usd),
            expected_due_cents: value(&form, &format!("due_{}", i.id)).parse::<i64>().ok(),
        })
        .collect();
    let Some(email) = EmailAddress::parse(&f.email) else {
        let mut page = show_fees(&st, &ctx, page, &invoices)?;
        page.errors = FormErrors::from_problems(
            &ctx.t,
            &[FieldProblem::new(
                "email",
                "email_shape",
                "an email address",
            )],
            GUEST_FIELDS,
        );
        return render(StatusCode::BAD_REQUEST, &page);
    };
    if requested.is_empty() {
        return render(StatusCode::OK, &show_fees(&st, &ctx, page, &invoices)?);
    }
    let req = PaymentRequest {
        items: vec![],
        invoices: requested,
        email,
        resident_id: None,
        channel: Channel::Portal,
        return_url: None,
        source_ip: ctx.ip.clone(),
        form_key: Some(value(&form, "form_key")),
        language: Some(ctx.t.lang.to_owned()),
    };
    match st.app.start_payment(req).await {
        Ok(started) => Ok(Redirect::to(&started.checkout_url).into_response()),
        Err(AppError::FormAlreadyUsed(id)) => {
            Ok(Redirect::to(&format!("/payments/{id}/receipt")).into_response())
        }
        Err(e) => {
            let status = crate::error::status_of(&e);
            let Some(errors) = FormErrors::from_app(&ctx.t, &e, "number", GUEST_FIELDS) else {
                return Err(e.into());
            };
            let mut page = show_fees(&st, &ctx, page, &invoices)?;
            page.errors = errors;
            render(status, &page)
        }
    }
}
