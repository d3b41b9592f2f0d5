//! Reading the audit log: the auditor's viewer and the chain check. Every view is itself
//! recorded (`audit.viewed`), in the same transaction as the read. Also the record of the
//! configuration each production start uses (`config.loaded`).

use crate::staff::{Role, StaffUser};
use crate::{App, AppError};
use store::audit::{self as au, AuditFilter, AuditRow, ChainBreak};
use store::StoreError;

/// Who may read the audit log: auditors, and administrators (who answer for the staff
/// accounts). Clerks and supervisors, whose work the log records, may not (PCI DSS 10.3.1:
/// read access limited to a job-related need).
pub fn may_read_audit_log(role: Role) -> bool {
    matches!(role, Role::Auditor | Role::Administrator)
}

/// One page of the log, newest first.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub rows: Vec<AuditRow>,
    /// `seq` to pass as `before` for the next (older) page, if there is one.
    pub older: Option<i64>,
    /// The chain check, when asked for: entries verified, or the first break.
    pub verified: Option<Result<i64, ChainBreak>>,
}

/// The audit object of configuration records.
pub const CONFIGURATION: &str = "configuration";

/// The fingerprint recorded in a `config.loaded` detail (`sha256=<hex>; ...`).
fn fingerprint_of(detail: &str) -> Option<&str> {
    detail
        .strip_prefix("sha256=")
        .map(|r| r.split(';').next().unwrap_or(r))
}

impl App {
    /// Records a refused access in its own transaction (`staff.access_refused`: a route the
    /// member's role does not allow; `resident.access_refused`: another resident's
    /// account). `actor` is `staff:<id>` or `resident:<id>`.
    pub async fn record_refusal(
        &self,
        actor: &str,
        event: &str,
        object: &str,
        detail: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        let mut tx = self.store.begin().await?;
        self.audit(&mut tx, actor, event, object, "failure", source_ip, detail)
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Records the configuration the server starts with (PCI DSS 10.2.2: changes to
    /// configuration are logged): `fingerprint` is a SHA-256 of the configuration file and
    /// the environment overrides. Audited `config.loaded` with whether it changed since
    /// the previous start; returns true when it did (or on a first start).
    pub async fn record_configuration(&self, fingerprint: &str) -> Result<bool, AppError> {
        let mut tx = self.store.begin().await?;
        let previous = au::for_object(&mut tx, CONFIGURATION)
            .await?
            .into_iter()
            .rev()
            .find(|r| r.event == "config.loaded")
            .and_then(|r| fingerprint_of(&r.detail).map(str::to_owned));
        let (changed, what) = match previous.as_deref() {
            None => (true, "first start with a recorded configuration".to_owned()),
            Some(p) if p == fingerprint => (false, "unchanged since the previous start".to_owned()),
            Some(p) => (
                true,
                format!("changed since the previous start (was sha256={p})"),
            ),
        };
        self.audit(
            &mut tx,
            "system",
            "config.loaded",
            CONFIGURATION,
            "success",
            "-",
            &format!("sha256={fingerprint}; {what}"),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(changed)
    }

    /// A page of the audit log for `viewer`, optionally with a check of the whole chain.
    /// Refused (and the refusal recorded) unless [`may_read_audit_log`].
    pub async fn audit_log(
        &self,
        viewer: &StaffUser,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: i64,
        verify: bool,
        source_ip: &str,
    ) -> Result<AuditPage, AppError> {
        let allowed = may_read_audit_log(viewer.role);
        let detail = format!(
            "event={:?} actor={:?} object={:?} before={} verify={verify}",
            filter.event,
            filter.actor,
            filter.object,
            before.map_or_else(|| "-".to_owned(), |b| b.to_string()),
        );
        let mut tx = self.store.begin().await?;
        self.audit(
            &mut tx,
            &format!("staff:{}", viewer.id),
            "audit.viewed",
            "audit_log",
            if allowed { "success" } else { "failure" },
            source_ip,
            &detail,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        if !allowed {
            return Err(AppError::Forbidden);
        }
        // The view's own entry (and any other waiting one) into the chain, then read.
        self.seal_audit().await?;
        // A read connection: verifying walks the whole log, and writers need not wait.
        let mut conn = self.store.read().await?;
        let mut rows = au::search(&mut conn, filter, before, limit.saturating_add(1)).await?;
        let older = if rows.len() as i64 > limit {
            rows.truncate(usize::try_from(limit).unwrap_or(0));
            rows.last().map(|r| r.seq)
        } else {
            None
        };
        let verified = if verify {
            Some(au::verify(&mut conn, &self.config().audit_key).await?)
        } else {
            None
        };
        Ok(AuditPage {
            rows,
            older,
            verified,
        })
    }
}
