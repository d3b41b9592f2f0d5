//! Settings administrators change in the back office over the configuration file's values:
//! the business day's cut-off, the refund approval threshold, and the city's webhook
//! endpoints (`city_webhooks`). Each change is audited with before and after in the same
//! transaction as the change. The values in force are kept in memory (read on every
//! posting) and loaded from the database at start; another node sees a change after its
//! restart (see ARCHITECTURE, "Settings").

use crate::ledger::{parse_cutoff, LedgerConfig};
use crate::staff::{Role, StaffUser};
use crate::{App, AppError, FieldProblem};
use domain::Money;
use store::city_webhooks as cw;
use store::StoreError;

/// The settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub cutoff: (u8, u8),
    pub refund_threshold_cents: i64,
}

impl Live {
    pub fn from_config(l: &LedgerConfig) -> Live {
        Live {
            cutoff: l.cutoff,
            refund_threshold_cents: l.refund_approval_threshold_cents,
        }
    }
}

const CUTOFF: &str = "ledger.cutoff";
const THRESHOLD: &str = "refunds.approval_threshold_cents";

fn hhmm((h, m): (u8, u8)) -> String {
    format!("{h:02}:{m:02}")
}

impl App {
    pub fn live_settings(&self) -> Live {
        self.live
            .read()
            .map(|l| *l)
            .unwrap_or_else(|_| Live::from_config(&self.config().ledger))
    }

    /// The business day's cut-off in force.
    pub fn cutoff(&self) -> (u8, u8) {
        self.live_settings().cutoff
    }

    /// Refunds above this (cents) wait for a second person.
    pub fn refund_threshold_cents(&self) -> i64 {
        self.live_settings().refund_threshold_cents
    }

    /// Reads the settings stored by the back office: at start, on each tick of the worker
    /// (so a change made on another node reaches this one within a tick), and before a
    /// refund is weighed against the threshold.
    pub async fn load_settings(&self) -> Result<(), AppError> {
        let mut conn = self.store.read().await?;
        let stored = cw::settings(&mut conn).await?;
        drop(conn);
        let mut live = self.live_settings();
        for (k, v) in stored {
            match k.as_str() {
                CUTOFF => {
                    if let Some(c) = parse_cutoff(&v) {
                        live.cutoff = c;
                    }
                }
                THRESHOLD => {
                    if let Ok(c) = v.parse::<i64>() {
                        live.refund_threshold_cents = c;
                    }
                }
                _ => {}
            }
        }
        if let Ok(mut l) = self.live.write() {
            *l = live;
        }
        Ok(())
    }

    /// Changes the cut-off and the refund threshold (administrators); every error at once;
    /// audited `settings.changed` with before and after.
    pub async fn update_settings(
        &self,
        staff: &StaffUser,
        cutoff: &str,
        threshold: &str,
        source_ip: &str,
    ) -> Result<Live, AppError> {
        if staff.role != Role::Administrator {
            return Err(AppError::Forbidden);
        }
        let mut problems = Vec::new();
        let new_cutoff = parse_cutoff(cutoff);
        if new_cutoff.is_none() {
            problems.push(FieldProblem::new(
                "cutoff",
                "cutoff_shape",
                "a time like 17:00 (24-hour clock)",
            ));
        }
        let new_threshold = Money::parse_dollars(threshold, self.config().currency).ok();
        if new_threshold.is_none() {
            problems.push(FieldProblem::new(
                "threshold",
                "threshold_shape",
                "an amount like 500.00",
            ));
        }
        let (Some(c), Some(t)) = (new_cutoff, new_threshold) else {
            return Err(AppError::Fields(problems));
        };
        let before = self.live_settings();
        let after = Live {
            cutoff: c,
            refund_threshold_cents: t.cents(),
        };
        let now = self.now_unix();
        let actor = format!("staff:{}", staff.id);
        let mut tx = self.store.begin().await?;
        cw::put_setting(&mut tx, CUTOFF, &hhmm(c), now, &actor).await?;
        cw::put_setting(&mut tx, THRESHOLD, &t.cents().to_string(), now, &actor).await?;
        let m = |x: i64| Money::from_cents(x, self.config().currency).to_string();
        self.audit(
            &mut tx,
            &actor,
            "settings.changed",
            "settings",
            "success",
            source_ip,
            &format!(
                "cut-off {} -> {}; refund approval threshold {} -> {}",
                hhmm(before.cutoff),
                hhmm(after.cutoff),
                m(before.refund_threshold_cents),
                m(after.refund_threshold_cents)
            ),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        if let Ok(mut l) = self.live.write() {
            *l = after;
        }
        Ok(after)
    }
}
