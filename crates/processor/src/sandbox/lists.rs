//! Stripe's list endpoints over the sandbox's records: `GET /v1/checkout/sessions`,
//! `/v1/charges`, `/v1/refunds` and `/v1/payouts`. Same parameters and shape as Stripe:
//! `limit` (1 to 100, default 10), `starting_after` / `ending_before` (an object id, not
//! both), `created[gte|gt|lte|lt]` (unix seconds); newest first; answered as
//! `{"object": "list", "url", "has_more", "data"}`.
//!
//! Payouts: the sandbox pays out each UTC day once it has ended, the day's succeeded
//! charges less its refunds (`po_test_YYYYMMDD`, created at the day's end, arriving two
//! days later: `in_transit` until then, `paid` after). They are derived from the charges
//! and refunds whenever they are listed, so they never disagree with them.

use super::params::{parse_int, ApiError, Params};
use super::{Expand, Inner, Shared};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

const DAY: i64 = 86_400;

/// What one list request asks for.
struct ListQuery {
    limit: usize,
    starting_after: Option<String>,
    ending_before: Option<String>,
    gte: Option<i64>,
    gt: Option<i64>,
    lte: Option<i64>,
    lt: Option<i64>,
}

impl ListQuery {
    fn parse(p: &mut Params) -> Result<ListQuery, ApiError> {
        let limit = match p.take("limit")? {
            None => 10,
            Some(v) => {
                let n = parse_int("limit", &v)?;
                if !(1..=100).contains(&n) {
                    return Err(ApiError::invalid(
                        "limit",
                        "parameter_invalid_integer",
                        "This value must be greater than or equal to 1 and less than or equal to 100.",
                    ));
                }
                n as usize
            }
        };
        let cursor = |p: &mut Params, key: &str| -> Result<Option<String>, ApiError> {
            match p.take(key)? {
                Some(v) if v.is_empty() => Err(ApiError::invalid(
                    key,
                    "parameter_invalid_empty",
                    format!("You passed an empty string for '{key}'. We assume empty values are an attempt to unset a parameter; however '{key}' cannot be unset. You should remove '{key}' from your request or supply a non-empty value."),
                )),
                other => Ok(other),
            }
        };
        let starting_after = cursor(p, "starting_after")?;
        let ending_before = cursor(p, "ending_before")?;
        if starting_after.is_some() && ending_before.is_some() {
            return Err(ApiError::request(
                StatusCode::BAD_REQUEST,
                None,
                "You may only specify one of these parameters: ending_before, starting_after.",
            ));
        }
        let mut bound = |k: &str| -> Result<Option<i64>, ApiError> {
            let key = format!("created[{k}]");
            p.take(&key)?.map(|v| parse_int(&key, &v)).transpose()
        };
        let (gte, gt, lte, lt) = (bound("gte")?, bound("gt")?, bound("lte")?, bound("lt")?);
        Ok(ListQuery {
            limit,
            starting_after,
            ending_before,
            gte,
            gt,
            lte,
            lt,
        })
    }

    fn admits(&self, created: i64) -> bool {
        self.gte.is_none_or(|b| created >= b)
            && self.gt.is_none_or(|b| created > b)
            && self.lte.is_none_or(|b| created <= b)
            && self.lt.is_none_or(|b| created < b)
    }
}

/// One page of `items` (created, id, object): newest first, ties by id, as Stripe orders.
fn page(
    mut items: Vec<(i64, String, Value)>,
    q: &ListQuery,
    url: &str,
    object: &str,
) -> Result<Value, ApiError> {
    items.retain(|(created, _, _)| q.admits(*created));
    items.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    let position = |id: &str, param: &str| {
        items
            .iter()
            .position(|(_, i, _)| i == id)
            .ok_or_else(|| ApiError::not_found(object, id, Some(param)))
    };
    let (data, has_more): (Vec<Value>, bool) = if let Some(after) = &q.starting_after {
        let at = position(after, "starting_after")?;
        let rest = &items[at + 1..];
        (
            rest.iter()
                .take(q.limit)
                .map(|(_, _, v)| v.clone())
                .collect(),
            rest.len() > q.limit,
        )
    } else if let Some(before) = &q.ending_before {
        let at = position(before, "ending_before")?;
        let head = &items[..at];
        let from = head.len().saturating_sub(q.limit);
        (
            head[from..].iter().map(|(_, _, v)| v.clone()).collect(),
            from > 0,
        )
    } else {
        (
            items
                .iter()
                .take(q.limit)
                .map(|(_, _, v)| v.clone())
                .collect(),
            items.len() > q.limit,
        )
    };
    Ok(json!({ "object": "list", "url": url, "has_more": has_more, "data": data }))
}

impl Inner {
    /// The sandbox's payouts as of `now`: one per ended UTC day with money moved.
    fn payouts(&self, now: i64) -> Vec<(i64, String, Value)> {
        let mut days: BTreeMap<i64, (i64, String)> = BTreeMap::new();
        for ch in self.charges.values().filter(|c| c.succeeded) {
            let e = days
                .entry(ch.created.div_euclid(DAY))
                .or_insert((0, ch.currency.clone()));
            e.0 = e.0.saturating_add(ch.amount);
        }
        for r in self.refunds.values() {
            let e = days
                .entry(r.created.div_euclid(DAY))
                .or_insert((0, r.currency.clone()));
            e.0 = e.0.saturating_sub(r.amount);
        }
        days.into_iter()
            .filter(|(day, (amount, _))| (day + 1) * DAY <= now && *amount != 0)
            .map(|(day, (amount, currency))| {
                let created = (day + 1) * DAY;
                let arrival = created + 2 * DAY;
                let date = time::OffsetDateTime::from_unix_timestamp(day * DAY)
                    .map(|d| format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day()))
                    .unwrap_or_else(|_| day.to_string());
                let id = format!("po_test_{date}");
                let v = json!({
                    "id": id,
                    "object": "payout",
                    "amount": amount,
                    "arrival_date": arrival,
                    "created": created,
                    "currency": currency,
                    "livemode": false,
                    "method": "standard",
                    "status": if now >= arrival { "paid" } else { "in_transit" },
                    "type": "bank_account",
                });
                (created, id, v)
            })
            .collect()
    }
}

/// Which list a request is for.
#[derive(Clone, Copy)]
enum Kind {
    Sessions,
    Charges,
    Refunds,
    Payouts,
}

fn list(st: &Arc<Shared>, headers: &HeaderMap, query: Option<String>, kind: Kind) -> Response {
    st.ensure_worker();
    let result = (|| {
        st.authorize(headers)?;
        let mut p = Params::parse(query.unwrap_or_default().as_bytes())?;
        let q = ListQuery::parse(&mut p)?;
        let payment_intent = match kind {
            Kind::Sessions | Kind::Charges | Kind::Refunds => p.take("payment_intent")?,
            Kind::Payouts => None,
        };
        p.finish()?;
        let inner = st.lock_fresh();
        let wanted = |pi: Option<&str>| payment_intent.as_deref().is_none_or(|w| pi == Some(w));
        let (items, url, object): (Vec<(i64, String, Value)>, &str, &str) = match kind {
            Kind::Sessions => (
                inner
                    .sessions
                    .values()
                    .filter(|s| wanted(s.payment_intent.as_deref()))
                    .filter_map(|s| {
                        let v = inner.session_json(&s.id, Expand::default(), &st.base_url)?;
                        Some((s.created, s.id.clone(), v))
                    })
                    .collect(),
                "/v1/checkout/sessions",
                "checkout.session",
            ),
            Kind::Charges => (
                inner
                    .charges
                    .values()
                    .filter(|c| wanted(Some(&c.payment_intent)))
                    .filter_map(|c| Some((c.created, c.id.clone(), inner.charge_json(&c.id)?)))
                    .collect(),
                "/v1/charges",
                "charge",
            ),
            Kind::Refunds => (
                inner
                    .refunds
                    .values()
                    .filter(|r| wanted(Some(&r.payment_intent)))
                    .filter_map(|r| Some((r.created, r.id.clone(), inner.refund_json(&r.id)?)))
                    .collect(),
                "/v1/refunds",
                "refund",
            ),
            Kind::Payouts => (inner.payouts(st.now()), "/v1/payouts", "payout"),
        };
        page(items, &q, url, object)
    })();
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn list_sessions(
    State(st): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(&st, &headers, query, Kind::Sessions)
}

pub(super) async fn list_charges(
    State(st): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(&st, &headers, query, Kind::Charges)
}

pub(super) async fn list_refunds(
    State(st): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(&st, &headers, query, Kind::Refunds)
}

pub(super) async fn list_payouts(
    State(st): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(&st, &headers, query, Kind::Payouts)
}
