//! Staff pages of the email outbox.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/outbox", get(outbox))
        .route("/outbox/{id}", get(outbox_email))
}

// ---- outbox ----

struct EmailRow {
    id: String,
    created: String,
    to: String,
    subject: String,
    kind: String,
    status: String,
    attempts: i64,
}

fn email_status(t: &Tr, status: &str) -> String {
    match status {
        "pending" => t.s("staff.outbox.status.pending").to_owned(),
        "sent" => t.s("staff.outbox.status.sent").to_owned(),
        "held_in_outbox" => t.s("staff.outbox.status.held_in_outbox").to_owned(),
        "failed" => t.s("staff.outbox.status.failed").to_owned(),
        other => other.to_owned(),
    }
}

fn email_row(t: &Tr, e: &app::store::outbox::EmailRow) -> EmailRow {
    EmailRow {
        id: e.id.clone(),
        created: utc(e.created_at),
        to: e.to_addr.clone(),
        subject: e.subject.clone(),
        kind: e.kind.clone(),
        status: email_status(t, &e.status),
        attempts: e.attempts,
    }
}

#[derive(Template)]
#[template(path = "staff/outbox.html")]
struct OutboxPage {
    c: Chrome,
    rows: Vec<EmailRow>,
}

async fn outbox(State(st): State<AppState>, ctx: StaffCtx) -> Page {
    ctx.require(VIEW_ACCOUNTS)?;
    let emails = st
        .app
        .outbox(LIST_LIMIT)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let rows = emails.iter().map(|e| email_row(&ctx.t, e)).collect();
    page(&OutboxPage {
        c: ctx.chrome(),
        rows,
    })
}

#[derive(Template)]
#[template(path = "staff/outbox_email.html")]
struct OutboxEmailPage {
    c: Chrome,
    e: EmailRow,
    sent: Option<String>,
    last_error: Option<String>,
    body: String,
}

async fn outbox_email(State(st): State<AppState>, ctx: StaffCtx, Path(id): Path<String>) -> Page {
    ctx.require(VIEW_ACCOUNTS)?;
    if EmailId::parse(&id).is_none() {
        return Err(ctx.not_found());
    }
    let e = st
        .app
        .outbox_email(&id)
        .await
        .map_err(|e| ctx.app_error(e))?;
    let data = OutboxEmailPage {
        c: ctx.chrome(),
        e: email_row(&ctx.t, &e),
        sent: e.sent_at.map(utc),
        last_error: e.last_error.clone(),
        body: e.body_text.clone(),
    };
    page(&data)
}
