//! Back-office settings: the business-day cut-off and the refund approval threshold.
//!
//! Their defaults come from the deployment file (`ledger.cutoff`,
//! `ledger.refund_approval_threshold`); an administrator's change on the settings page is
//! stored in the `settings` table and wins over the default. Every change is audited
//! (`settings.changed`, before and after) in the transaction that stores it.

use crate::error::FieldProblem;
use crate::ledger::parse_cutoff;
use crate::staff::{Role, StaffUser};
use crate::{App, AppError};
use domain::{Money, MoneyError};
use store::{Conn, StoreError};

const CUTOFF: &str = "business_day_cutoff";
const THRESHOLD: &str = "refund_approval_threshold_cents";

/// The settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// (hour, minute), city local time, when a business day closes: a moment at or after
    /// it belongs to the next business day.
    pub business_day_cutoff: (u8, u8),
    /// Refunds above this many cents need a second staff member's approval.
    pub refund_approval_threshold_cents: i64,
}

/// What an administrator typed on the settings page.
#[derive(Debug, Clone, Default)]
pub struct SettingsInput {
    /// `HH:MM`.
    pub business_day_cutoff: String,
    /// Dollars, e.g. `500.00`.
    pub refund_approval_threshold: String,
}

/// `HH:MM` of a cut-off.
pub fn format_cutoff((h, m): (u8, u8)) -> String {
    format!("{h:02}:{m:02}")
}

impl App {
    /// The settings in force: stored values over the configured defaults. One small query;
    /// call it where the value is needed rather than caching it, so every node sees a
    /// change at once.
    pub async fn settings(&self) -> Result<Settings, AppError> {
        let mut conn = self.store.conn().await?;
        self.settings_in(&mut conn).await
    }

    /// [`App::settings`] read in the caller's transaction.
    pub(crate) async fn settings_in(&self, conn: &mut Conn) -> Result<Settings, AppError> {
        let mut s = Settings {
            business_day_cutoff: self.ledger_config().cutoff,
            refund_approval_threshold_cents: self.ledger_config().refund_approval_threshold_cents,
        };
        for (name, value) in store::settings::all(conn).await? {
            match name.as_str() {
                CUTOFF => {
                    s.business_day_cutoff = parse_cutoff(&value).ok_or_else(|| {
                        AppError::Internal(format!("stored cut-off {value:?} is malformed"))
                    })?;
                }
                THRESHOLD => {
                    s.refund_approval_threshold_cents = value.parse().map_err(|_| {
                        AppError::Internal(format!("stored threshold {value:?} is malformed"))
                    })?;
                }
                _ => {}
            }
        }
        Ok(s)
    }

    /// Changes the settings (administrators). Every field is checked and all problems are
    /// reported together; nothing is stored unless all are right. Each changed value is
    /// audited with its before and after in the same transaction.
    pub async fn update_settings(
        &self,
        staff: &StaffUser,
        input: &SettingsInput,
        source_ip: &str,
    ) -> Result<Settings, AppError> {
        if staff.role != Role::Administrator {
            return Err(AppError::Forbidden);
        }
        let mut problems = Vec::new();
        let cutoff = parse_cutoff(&input.business_day_cutoff);
        if cutoff.is_none() {
            problems.push(FieldProblem::new(
                "business_day_cutoff",
                "cutoff_shape",
                "enter the cut-off as a 24-hour time like 17:00",
            ));
        }
        let threshold =
            match Money::parse_dollars(&input.refund_approval_threshold, self.config().currency) {
                Ok(m) => Some(m.cents()),
                Err(MoneyError::Negative) => {
                    problems.push(FieldProblem::new(
                        "refund_approval_threshold",
                        "threshold_negative",
                        "the threshold cannot be negative",
                    ));
                    None
                }
                Err(_) => {
                    problems.push(FieldProblem::new(
                        "refund_approval_threshold",
                        "threshold_shape",
                        "enter the threshold in dollars, like 500.00",
                    ));
                    None
                }
            };
        let (Some(cutoff), Some(threshold), true) = (cutoff, threshold, problems.is_empty()) else {
            return Err(AppError::Fields(problems));
        };
        let actor = format!("staff:{}", staff.id);
        let now = self.now_unix();
        let mut tx = self.store.begin().await?;
        let before = self.settings_in(&mut tx).await?;
        let currency = self.config().currency;
        if before.business_day_cutoff != cutoff {
            let value = format_cutoff(cutoff);
            store::settings::put(&mut tx, CUTOFF, &value, now, &staff.id).await?;
            let detail = format!("{} -> {value}", format_cutoff(before.business_day_cutoff));
            self.audit(
                &mut tx,
                &actor,
                "settings.changed",
                CUTOFF,
                "success",
                source_ip,
                &detail,
            )
            .await?;
        }
        if before.refund_approval_threshold_cents != threshold {
            store::settings::put(&mut tx, THRESHOLD, &threshold.to_string(), now, &staff.id)
                .await?;
            let detail = format!(
                "{} -> {}",
                Money::from_cents(before.refund_approval_threshold_cents, currency),
                Money::from_cents(threshold, currency)
            );
            self.audit(
                &mut tx,
                &actor,
                "settings.changed",
                THRESHOLD,
                "success",
                source_ip,
                &detail,
            )
            .await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(Settings {
            business_day_cutoff: cutoff,
            refund_approval_threshold_cents: threshold,
        })
    }
}
