//! Webhook delivery: one worker per sandbox receives new event ids, delivers
//! each on its own task with exponential backoff, and sweeps expired sessions.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Shared;
use crate::webhook;

/// Attempts per event, the first included.
pub(crate) const MAX_ATTEMPTS: u32 = 8;
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub(crate) async fn worker(state: Weak<Shared>, mut queue: mpsc::UnboundedReceiver<String>) {
    let mut tasks = JoinSet::new();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            next = queue.recv() => match next {
                Some(id) => { tasks.spawn(deliver(state.clone(), id)); }
                // Every sender lives in the sandbox state: it is gone.
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = sweep.tick() => match state.upgrade() {
                // Expiring due sessions emits their events onto the queue.
                Some(st) => drop(st.lock_fresh()),
                None => break,
            },
        }
    }
    tasks.abort_all();
}

async fn deliver(state: Weak<Shared>, id: String) {
    let Some(retry_base) = state.upgrade().map(|s| s.cfg.retry_base) else {
        return;
    };
    let mut delay = retry_base;
    for attempt in 1..=MAX_ATTEMPTS {
        // Hold while deliveries are paused.
        let mut paused = match state.upgrade() {
            Some(st) => st.paused.subscribe(),
            None => return,
        };
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        drop(paused);
        let request = {
            let Some(st) = state.upgrade() else { return };
            let Some(url) = st.cfg.webhook_url.clone() else {
                return;
            };
            let payload = {
                let inner = st.lock();
                match inner.events.iter().find(|e| e.id == id) {
                    Some(e) => e.payload.clone(),
                    None => return,
                }
            };
            let signature = webhook::sign(payload.as_bytes(), &st.cfg.webhook_secret, st.now());
            st.http
                .post(url)
                .header("content-type", "application/json")
                .header("stripe-signature", signature)
                .header(
                    "user-agent",
                    "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                )
                .body(payload)
        };
        let status = match request.send().await {
            Ok(resp) => Some(resp.status().as_u16()),
            Err(_) => None,
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        {
            let Some(st) = state.upgrade() else { return };
            let mut inner = st.lock();
            if let Some(e) = inner.events.iter_mut().find(|e| e.id == id) {
                e.attempts = attempt;
                e.last_status = status;
                e.delivered = ok;
            }
        }
        if ok {
            return;
        }
        tracing::debug!(event = %id, attempt, status = ?status, "sandbox webhook delivery failed");
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
}
