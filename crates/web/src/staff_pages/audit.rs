//! Staff pages: the audit-log viewer (auditors and administrators). Filters by event,
//! actor and object (exact match), newest first, paged by `seq`; "Verify chain" checks the
//! whole hash chain. Every view is recorded in the log itself (`audit.viewed`).

use crate::portal::{render, Chrome};
use crate::staff::{Refusal, StaffCtx};
use crate::view::utc_seconds;
use crate::AppState;
use app::staff::Role;
use app::store::audit::{AuditFilter, ChainBreak};
use app::AppError;
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

/// Rows per page.
const PAGE: i64 = 50;
/// Longest filter value accepted.
const MAX_FILTER: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(audit_log))
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    event: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    object: String,
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    verify: Option<String>,
}

struct Row {
    seq: i64,
    at: String,
    actor: String,
    event: String,
    object: String,
    outcome: String,
    failed: bool,
    source_ip: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "staff/audit.html")]
struct AuditLogPage {
    c: Chrome,
    event: String,
    actor: String,
    object: String,
    filtered: bool,
    rows: Vec<Row>,
    /// Query string (without `before`) of the current filter, for the paging links.
    filter_query: String,
    older: Option<i64>,
    paged: bool,
    /// The chain check, when asked for.
    verified: Option<Verdict>,
}

struct Verdict {
    ok: bool,
    message: String,
}

fn clean(v: String) -> Option<String> {
    let v = v.trim().to_owned();
    (v.len() <= MAX_FILTER && !v.chars().any(char::is_control)).then_some(v)
}

async fn audit_log(
    State(st): State<AppState>,
    ctx: StaffCtx,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    let me = ctx.require(Role::Auditor)?;
    let Ok(Query(q)) = query else {
        return Err(ctx.bad_request());
    };
    let (Some(event), Some(actor), Some(object)) =
        (clean(q.event), clean(q.actor), clean(q.object))
    else {
        return Err(ctx.bad_request());
    };
    if q.before.is_some_and(|b| b < 1) {
        return Err(ctx.bad_request());
    }
    let filter = AuditFilter {
        event,
        actor,
        object,
    };
    let verify = q.verify.is_some_and(|v| !v.is_empty());
    let result = st
        .app
        .audit_log(me, &filter, q.before, PAGE, verify, &ctx.ip)
        .await;
    let page = match result {
        Ok(p) => p,
        Err(AppError::Forbidden) => {
            // Refused by role (the use case recorded the attempt).
            return Err(ctx.fail(
                StatusCode::FORBIDDEN,
                "forbidden",
                ctx.t.s("staff.error.forbidden"),
            ));
        }
        Err(e) => return Err(ctx.app_error(e)),
    };
    let verified = page.verified.map(|v| match v {
        Ok(n) => Verdict {
            ok: true,
            message: ctx
                .t
                .f("staff.audit.verify.ok", &[("count", &n.to_string())]),
        },
        Err(b) => Verdict {
            ok: false,
            message: break_message(&ctx, &b),
        },
    });
    let filter_query = serde_urlencoded::to_string([
        ("event", filter.event.as_str()),
        ("actor", filter.actor.as_str()),
        ("object", filter.object.as_str()),
    ])
    .unwrap_or_default();
    let rows = page
        .rows
        .into_iter()
        .map(|r| Row {
            seq: r.seq,
            at: utc_seconds(r.at),
            failed: r.outcome != "success",
            actor: r.actor,
            event: r.event,
            object: r.object,
            outcome: r.outcome,
            source_ip: r.source_ip,
            detail: r.detail,
        })
        .collect();
    let data = AuditLogPage {
        c: ctx.chrome(),
        filtered: !(filter.event.is_empty() && filter.actor.is_empty() && filter.object.is_empty()),
        event: filter.event,
        actor: filter.actor,
        object: filter.object,
        rows,
        filter_query,
        older: page.older,
        paged: q.before.is_some(),
        verified,
    };
    Ok(render(StatusCode::OK, &data)?)
}

/// The first break of the chain, in the page's language.
fn break_message(ctx: &StaffCtx, b: &ChainBreak) -> String {
    let n = |v: &i64| v.to_string();
    match b {
        ChainBreak::Edited { seq } => ctx.t.f("staff.audit.break.edited", &[("seq", &n(seq))]),
        ChainBreak::Missing { seq } => ctx.t.f("staff.audit.break.missing", &[("seq", &n(seq))]),
        ChainBreak::Reordered {
            seq,
            entry,
            stored_as,
        } => ctx.t.f(
            "staff.audit.break.reordered",
            &[
                ("seq", &n(seq)),
                ("entry", &n(entry)),
                ("stored_as", &n(stored_as)),
            ],
        ),
        ChainBreak::Link { seq } => ctx.t.f("staff.audit.break.link", &[("seq", &n(seq))]),
        ChainBreak::Truncated { seq, .. } | ChainBreak::Rewritten { seq } => {
            ctx.t.f("staff.audit.break.truncated", &[("seq", &n(seq))])
        }
    }
}
