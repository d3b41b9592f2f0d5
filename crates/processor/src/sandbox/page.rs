//! The sandbox's hosted card page: plain, accessible HTML, no script, no inline
//! style, works without JavaScript.
//!
//! The card number, security code and expiry are read from the form body into
//! locals of [`submit`], checked, reduced to brand + last four digits, and
//! dropped when the handler returns. They are never logged, stored or echoed.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::card::{self, Outcome};
use super::{read_body, SessionRec, Shared};
use crate::SessionStatus;

const CSS: &str = include_str!("sandbox.css");

/// What the page shows of a session (no card data).
struct View {
    id: String,
    /// (name, unit amount, quantity, amount)
    items: Vec<(String, i64, i64, i64)>,
    total: i64,
    success_url: String,
    cancel_url: String,
    status: SessionStatus,
    w: &'static Words,
}

/// The page's words, in English or Spanish (the session's `locale`).
struct Words {
    lang: &'static str,
    banner: &'static str,
    summary: &'static str,
    item: &'static str,
    quantity: &'static str,
    amount: &'static str,
    total: &'static str,
    pay: &'static str,
    problem: &'static str,
    declined: &'static str,
    no_money: &'static str,
    card_details: &'static str,
    test_hint: &'static str,
    labels: [&'static str; 5],
    cancel: &'static str,
    error_prefix: &'static str,
    title_suffix: &'static str,
    closed_title: &'static str,
    already_paid: &'static str,
    expired: &'static str,
    return_to_site: &'static str,
    not_found_title: &'static str,
    not_found_text: &'static str,
    too_large: &'static str,
    unreadable: &'static str,
    number_missing: &'static str,
    number_invalid: &'static str,
    expiry_missing: &'static str,
    expiry_shape: &'static str,
    expiry_past: &'static str,
    cvc: &'static str,
    name_missing: &'static str,
    name_long: &'static str,
    zip: &'static str,
    generic_decline: &'static str,
    insufficient_funds: &'static str,
}

const EN: Words = Words {
    lang: "en",
    banner: "Sandbox payment processor (test mode). No real card is charged.",
    summary: "Order summary",
    item: "Item",
    quantity: "Quantity",
    amount: "Amount",
    total: "Total",
    pay: "Pay",
    problem: "There is a problem",
    declined: "Payment declined",
    no_money: "No money was taken. Try another card, or cancel and return.",
    card_details: "Card details",
    test_hint: "Test cards: 4242 4242 4242 4242 succeeds; 4000 0000 0000 0002 is declined; 4000 0000 0000 9995 has insufficient funds.",
    labels: ["Card number", "Expiration (MM/YY)", "Security code", "Name on card", "ZIP code"],
    cancel: "Cancel and return",
    error_prefix: "Error: ",
    title_suffix: "Sandbox checkout",
    closed_title: "This checkout is no longer open",
    already_paid: "This payment has already been made.",
    expired: "This checkout has expired or was cancelled. No money was taken.",
    return_to_site: "Return to the site",
    not_found_title: "Checkout not found",
    not_found_text: "There is no checkout at this address. Return to the site you came from and start again.",
    too_large: "The form was too large. Enter your card details again.",
    unreadable: "The form could not be read. Enter your card details again.",
    number_missing: "Card number: enter your card number",
    number_invalid: "Card number: enter a valid card number (your card number is incorrect)",
    expiry_missing: "Expiration (MM/YY): enter the expiration date",
    expiry_shape: "Expiration (MM/YY): enter the date as MM/YY, for example 04/29",
    expiry_past: "Expiration (MM/YY): your card's expiration date is in the past",
    cvc: "Security code: enter the {n}-digit security code",
    name_missing: "Name on card: enter the name shown on the card",
    name_long: "Name on card: enter at most 100 characters",
    zip: "ZIP code: enter a 5-digit ZIP code",
    generic_decline: "Your card was declined.",
    insufficient_funds: "Your card has insufficient funds.",
};

const ES: Words = Words {
    lang: "es",
    banner: "Procesador de pagos de prueba (modo de prueba). No se cobra a ninguna tarjeta real.",
    summary: "Resumen del pedido",
    item: "Concepto",
    quantity: "Cantidad",
    amount: "Monto",
    total: "Total",
    pay: "Pagar",
    problem: "Hay un problema",
    declined: "Pago rechazado",
    no_money: "No se cobró nada. Pruebe con otra tarjeta, o cancele y regrese.",
    card_details: "Datos de la tarjeta",
    test_hint: "Tarjetas de prueba: 4242 4242 4242 4242 se aprueba; 4000 0000 0000 0002 se rechaza; 4000 0000 0000 9995 no tiene fondos suficientes.",
    labels: ["Número de tarjeta", "Vencimiento (MM/AA)", "Código de seguridad", "Nombre en la tarjeta", "Código postal"],
    cancel: "Cancelar y regresar",
    error_prefix: "Error: ",
    title_suffix: "Pago de prueba",
    closed_title: "Este pago ya no está abierto",
    already_paid: "Este pago ya se realizó.",
    expired: "Este pago venció o se canceló. No se cobró nada.",
    return_to_site: "Regresar al sitio",
    not_found_title: "Pago no encontrado",
    not_found_text: "No hay ningún pago en esta dirección. Regrese al sitio de donde vino y empiece de nuevo.",
    too_large: "El formulario era demasiado grande. Escriba de nuevo los datos de su tarjeta.",
    unreadable: "No se pudo leer el formulario. Escriba de nuevo los datos de su tarjeta.",
    number_missing: "Número de tarjeta: escriba el número de su tarjeta",
    number_invalid: "Número de tarjeta: escriba un número de tarjeta válido (el número es incorrecto)",
    expiry_missing: "Vencimiento (MM/AA): escriba la fecha de vencimiento",
    expiry_shape: "Vencimiento (MM/AA): escriba la fecha como MM/AA, por ejemplo 04/29",
    expiry_past: "Vencimiento (MM/AA): la fecha de vencimiento de su tarjeta ya pasó",
    cvc: "Código de seguridad: escriba el código de seguridad de {n} dígitos",
    name_missing: "Nombre en la tarjeta: escriba el nombre que aparece en la tarjeta",
    name_long: "Nombre en la tarjeta: escriba como máximo 100 caracteres",
    zip: "Código postal: escriba un código postal de 5 dígitos",
    generic_decline: "Su tarjeta fue rechazada.",
    insufficient_funds: "Su tarjeta no tiene fondos suficientes.",
};

fn words(locale: &str) -> &'static Words {
    if locale.eq_ignore_ascii_case("es") || locale.to_ascii_lowercase().starts_with("es-") {
        &ES
    } else {
        &EN
    }
}

impl View {
    fn of(s: &SessionRec, id: &str) -> Self {
        View {
            w: words(&s.locale),
            id: id.to_owned(),
            items: s
                .line_items
                .iter()
                .map(|i| (i.name.clone(), i.unit_amount, i.quantity, i.amount_total))
                .collect(),
            total: s.amount_total,
            success_url: s.success_url.clone(),
            cancel_url: s.cancel_url.clone(),
            status: s.status,
        }
    }

    fn success_redirect(&self) -> String {
        self.success_url.replace("{CHECKOUT_SESSION_ID}", &self.id)
    }
}

/// Field ids and names, in page order (their labels are `Words::labels`).
const FIELDS: [(&str, &str); 5] = [
    ("card-number", "card_number"),
    ("card-expiry", "expiry"),
    ("card-cvc", "cvc"),
    ("card-name", "name"),
    ("card-zip", "zip"),
];

struct FieldError {
    field: &'static str,
    message: String,
}

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `$1,234.56`.
pub(crate) fn dollars(cents: i64) -> String {
    let neg = cents < 0;
    let abs = cents.unsigned_abs();
    let whole = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}${grouped}.{:02}", if neg { "-" } else { "" }, abs % 100)
}

fn origin(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let o = u.origin();
    o.is_tuple().then(|| o.ascii_serialization())
}

fn csp(view: Option<&View>) -> String {
    let mut form_action = String::from("'self'");
    if let Some(v) = view {
        for u in [&v.success_url, &v.cancel_url] {
            if let Some(o) = origin(u) {
                if !form_action.split(' ').any(|x| x == o) {
                    form_action.push(' ');
                    form_action.push_str(&o);
                }
            }
        }
    }
    format!(
        "default-src 'none'; style-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
}

fn html_response(status: StatusCode, view: Option<&View>, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp(view)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    security_headers(h);
    resp
}

fn security_headers(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn layout(w: &Words, title: &str, main: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/static/sandbox.css">
</head>
<body>
<header class="banner">
<p>{banner}</p>
</header>
<main id="main">
{main}
</main>
</body>
</html>
"#,
        title = esc(title),
        lang = w.lang,
        banner = w.banner,
    )
}

fn order_summary(view: &View) -> String {
    let mut rows = String::new();
    for (name, unit, qty, amount) in &view.items {
        let _ = writeln!(
            rows,
            "<tr><th scope=\"row\">{}</th><td>{} &times; {}</td><td class=\"amount\">{}</td></tr>",
            esc(name),
            qty,
            dollars(*unit),
            dollars(*amount)
        );
    }
    format!(
        r#"<section aria-labelledby="summary-heading">
<h2 id="summary-heading">{summary}</h2>
<table>
<thead><tr><th scope="col">{item}</th><th scope="col">{quantity}</th><th scope="col" class="amount">{amount}</th></tr></thead>
<tbody>
{rows}</tbody>
<tfoot><tr><th scope="row" colspan="2">{total_label}</th><td class="amount">{total}</td></tr></tfoot>
</table>
</section>"#,
        total = dollars(view.total),
        summary = view.w.summary,
        item = view.w.item,
        quantity = view.w.quantity,
        amount = view.w.amount,
        total_label = view.w.total,
    )
}

fn render_form(
    view: &View,
    errors: &[FieldError],
    decline: Option<&str>,
    name: &str,
    zip: &str,
) -> String {
    let w = view.w;
    let mut main = format!("<h1>{} {}</h1>\n", w.pay, dollars(view.total));
    if !errors.is_empty() {
        let _ = write!(
            main,
            "<div class=\"error-summary\" role=\"alert\" aria-labelledby=\"error-summary-title\" tabindex=\"-1\">\n<h2 id=\"error-summary-title\">{}</h2>\n<ul>\n",
            w.problem
        );
        for e in errors {
            let _ = writeln!(
                main,
                "<li><a href=\"#{}\">{}</a></li>",
                e.field,
                esc(&e.message)
            );
        }
        main.push_str("</ul>\n</div>\n");
    } else if let Some(msg) = decline {
        let _ = write!(
            main,
            "<div class=\"error-summary\" role=\"alert\" aria-labelledby=\"error-summary-title\" tabindex=\"-1\">\n<h2 id=\"error-summary-title\">{}</h2>\n<p>{} {}</p>\n</div>\n",
            w.declined,
            esc(msg),
            w.no_money
        );
    }
    main.push_str(&order_summary(view));
    let _ = write!(
        main,
        "\n<form method=\"post\" action=\"/c/pay/{}\" novalidate>\n<h2>{}</h2>\n<p class=\"hint\" id=\"test-hint\">{}</p>\n",
        esc(&view.id),
        w.card_details,
        w.test_hint
    );
    for ((id, field_name), label) in FIELDS.into_iter().zip(w.labels) {
        let err = errors.iter().find(|e| e.field == id);
        let (autocomplete, input_attrs, value) = match field_name {
            "card_number" => (
                "cc-number",
                " inputmode=\"numeric\" maxlength=\"23\" aria-describedby=\"test-hint{ERR}\"",
                "",
            ),
            "expiry" => (
                "cc-exp",
                " inputmode=\"numeric\" maxlength=\"7\" size=\"7\"{DESC}",
                "",
            ),
            "cvc" => (
                "cc-csc",
                " inputmode=\"numeric\" maxlength=\"4\" size=\"4\"{DESC}",
                "",
            ),
            "name" => ("cc-name", " maxlength=\"100\"{DESC}", name),
            _ => (
                "postal-code",
                " inputmode=\"numeric\" maxlength=\"5\" size=\"5\"{DESC}",
                zip,
            ),
        };
        let err_id = format!("{id}-error");
        let attrs = input_attrs
            .replace(
                "{ERR}",
                &err.map(|_| format!(" {err_id}")).unwrap_or_default(),
            )
            .replace(
                "{DESC}",
                &err.map(|_| format!(" aria-describedby=\"{err_id}\""))
                    .unwrap_or_default(),
            );
        let _ = write!(
            main,
            "<div class=\"field{}\">\n<label for=\"{id}\">{label}</label>\n",
            if err.is_some() { " field-error" } else { "" }
        );
        if let Some(e) = err {
            let _ = writeln!(
                main,
                "<p class=\"error-message\" id=\"{err_id}\"><span class=\"visually-hidden\">{}</span>{}</p>",
                w.error_prefix,
                esc(&e.message)
            );
        }
        let _ = write!(
            main,
            "<input id=\"{id}\" name=\"{field_name}\" type=\"text\" autocomplete=\"{autocomplete}\" required{attrs}{invalid} value=\"{value}\">\n</div>\n",
            invalid = if err.is_some() { " aria-invalid=\"true\"" } else { "" },
            value = esc(value),
        );
    }
    let _ = write!(
        main,
        "<div class=\"actions\">\n<button type=\"submit\">{}</button>\n",
        w.pay
    );
    let _ = write!(
        main,
        "<a class=\"cancel\" href=\"{}\">{}</a>\n</div>\n</form>",
        esc(&view.cancel_url),
        w.cancel
    );
    let prefix = if !errors.is_empty() || decline.is_some() {
        w.error_prefix
    } else {
        ""
    };
    let title = format!(
        "{prefix}{} {} - {}",
        w.pay,
        dollars(view.total),
        w.title_suffix
    );
    layout(w, &title, &main)
}

fn render_closed(view: &View) -> String {
    let w = view.w;
    let (what, link) = match view.status {
        SessionStatus::Complete => (w.already_paid, view.success_redirect()),
        _ => (w.expired, view.cancel_url.clone()),
    };
    let main = format!(
        "<h1>{}</h1>\n<p>{what}</p>\n<p><a href=\"{}\">{}</a></p>",
        w.closed_title,
        esc(&link),
        w.return_to_site
    );
    layout(
        w,
        &format!("{} - {}", w.closed_title, w.title_suffix),
        &main,
    )
}

fn render_not_found() -> String {
    let w = &EN;
    layout(
        w,
        &format!("{} - {}", w.not_found_title, w.title_suffix),
        &format!(
            "<h1>{}</h1>\n<p>{}</p>",
            w.not_found_title, w.not_found_text
        ),
    )
}

fn not_found() -> Response {
    html_response(StatusCode::NOT_FOUND, None, render_not_found())
}

/// The session's view, after expiring it if it is due.
fn load(st: &Shared, id: &str) -> Option<View> {
    let inner = st.lock_fresh();
    inner.session(id).map(|s| View::of(s, id))
}

pub(crate) async fn show(
    State(st): State<Arc<Shared>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    st.ensure_worker();
    let Ok(Path(id)) = path else {
        return not_found();
    };
    let Some(view) = load(&st, &id) else {
        return not_found();
    };
    if view.status != SessionStatus::Open {
        return html_response(StatusCode::OK, Some(&view), render_closed(&view));
    }
    html_response(
        StatusCode::OK,
        Some(&view),
        render_form(&view, &[], None, "", ""),
    )
}

pub(crate) async fn submit(
    State(st): State<Arc<Shared>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Body,
) -> Response {
    st.ensure_worker();
    let Ok(Path(id)) = path else {
        return not_found();
    };
    let Some(view) = load(&st, &id) else {
        return not_found();
    };
    if view.status != SessionStatus::Open {
        return html_response(StatusCode::CONFLICT, Some(&view), render_closed(&view));
    }
    let form_error = |message: &str| {
        let errs = [FieldError {
            field: "card-number",
            message: message.to_owned(),
        }];
        html_response(
            StatusCode::BAD_REQUEST,
            Some(&view),
            render_form(&view, &errs, None, "", ""),
        )
    };
    let Ok(bytes) = read_body(body).await else {
        return form_error(view.w.too_large);
    };
    let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes) else {
        return form_error(view.w.unreadable);
    };
    let field = |name: &str| -> &str {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let number_input = field("card_number");
    let expiry_input = field("expiry");
    let cvc_input = field("cvc").trim();
    let name = field("name").trim();
    let zip = field("zip").trim();

    let mut errors = Vec::new();
    let digits = card::normalize_number(number_input).filter(|d| card::luhn_valid(d));
    let brand = digits.as_deref().map(card::brand);
    if number_input.trim().is_empty() {
        errors.push(FieldError {
            field: "card-number",
            message: view.w.number_missing.into(),
        });
    } else if digits.is_none() {
        errors.push(FieldError {
            field: "card-number",
            message: view.w.number_invalid.into(),
        });
    }
    if expiry_input.trim().is_empty() {
        errors.push(FieldError {
            field: "card-expiry",
            message: view.w.expiry_missing.into(),
        });
    } else {
        match card::parse_expiry(expiry_input) {
            None => errors.push(FieldError {
                field: "card-expiry",
                message: view.w.expiry_shape.into(),
            }),
            Some((m, y)) if !card::expiry_not_past(m, y, st.now()) => errors.push(FieldError {
                field: "card-expiry",
                message: view.w.expiry_past.into(),
            }),
            Some(_) => {}
        }
    }
    let cvc_len = if brand == Some("amex") { 4 } else { 3 };
    if cvc_input.len() != cvc_len || !cvc_input.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(FieldError {
            field: "card-cvc",
            message: view.w.cvc.replace("{n}", &cvc_len.to_string()),
        });
    }
    if name.is_empty() {
        errors.push(FieldError {
            field: "card-name",
            message: view.w.name_missing.into(),
        });
    } else if name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push(FieldError {
            field: "card-name",
            message: view.w.name_long.into(),
        });
    }
    if zip.len() != 5 || !zip.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(FieldError {
            field: "card-zip",
            message: view.w.zip.into(),
        });
    }
    // Only name and ZIP are ever written back into the page; never anything
    // that could be a card number.
    let name_back = if card::normalize_number(name).is_some() {
        ""
    } else {
        name
    };
    let zip_back = if zip.len() <= 5 { zip } else { "" };
    let (Some(digits), Some(brand), true) = (digits, brand, errors.is_empty()) else {
        return html_response(
            StatusCode::BAD_REQUEST,
            Some(&view),
            render_form(&view, &errors, None, name_back, zip_back),
        );
    };

    let outcome = card::outcome(&digits);
    let last4 = card::last4(&digits);
    drop(digits);
    let now = st.now();
    let recorded = st
        .lock_fresh()
        .attempt_payment(&id, brand, last4, outcome, now, &st.base_url);
    if recorded.is_none() {
        // Completed or expired meanwhile: charge nothing.
        let view = load(&st, &id).unwrap_or(view);
        return html_response(StatusCode::CONFLICT, Some(&view), render_closed(&view));
    }
    match outcome {
        Outcome::Succeed => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            let h = resp.headers_mut();
            if let Ok(loc) = HeaderValue::from_str(&view.success_redirect()) {
                h.insert(header::LOCATION, loc);
            }
            security_headers(h);
            resp
        }
        Outcome::Decline { decline_code, .. } => {
            let message = match decline_code {
                "insufficient_funds" => view.w.insufficient_funds,
                _ => view.w.generic_decline,
            };
            html_response(
                StatusCode::PAYMENT_REQUIRED,
                Some(&view),
                render_form(&view, &[], Some(message), name_back, zip_back),
            )
        }
    }
}

pub(crate) async fn stylesheet() -> Response {
    let mut resp = CSS.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn money() {
        assert_eq!(dollars(0), "$0.00");
        assert_eq!(dollars(5), "$0.05");
        assert_eq!(dollars(123456), "$1,234.56");
        assert_eq!(dollars(99_999_999), "$999,999.99");
        assert_eq!(dollars(100_000_000), "$1,000,000.00");
        assert_eq!(dollars(-250), "-$2.50");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }

    #[test]
    fn spanish_has_every_word() {
        assert_eq!(words("es").lang, "es");
        assert_eq!(words("es-US").lang, "es");
        assert_eq!(words("").lang, "en");
        assert!(ES.labels.iter().all(|l| !l.is_empty()) && ES.cvc.contains("{n}"));
    }

    #[test]
    fn csp_lists_origins() {
        let v = View {
            id: "cs_test_1".into(),
            items: vec![],
            total: 1,
            success_url: "https://city.example:8443/pay/done?id={CHECKOUT_SESSION_ID}".into(),
            cancel_url: "https://city.example:8443/pay/cancel".into(),
            status: SessionStatus::Open,
            w: &EN,
        };
        assert_eq!(
            csp(Some(&v)),
            "default-src 'none'; style-src 'self'; form-action 'self' https://city.example:8443; frame-ancestors 'none'; base-uri 'none'"
        );
        assert_eq!(
            v.success_redirect(),
            "https://city.example:8443/pay/done?id=cs_test_1"
        );
    }
}
