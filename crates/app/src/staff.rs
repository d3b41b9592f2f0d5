//! The staff back office's use cases (first cut: password login, search, timelines, outbox).

use crate::ids::random_id;
use crate::mfa::LoginStep;
use crate::payments::PaymentView;
use crate::{passwords, App, AppError};
use sha2::Digest;
use store::staff::{self as st, StaffRow};
use store::StoreError;

pub const MAX_FAILURES: i64 = 10;
pub const LOCK_SECS: i64 = 30 * 60;

/// Kinds of email whose body holds a secret link.
const LINK_EMAILS: &[&str] = &["verify_email", "password_reset"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Records inspection results and nothing else: below every other role, so no route
    /// that needs one of them admits an inspector.
    Inspector,
    Auditor,
    Clerk,
    Supervisor,
    Administrator,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "inspector" => Some(Role::Inspector),
            "auditor" => Some(Role::Auditor),
            "clerk" => Some(Role::Clerk),
            "supervisor" => Some(Role::Supervisor),
            "administrator" => Some(Role::Administrator),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Inspector => "inspector",
            Role::Auditor => "auditor",
            Role::Clerk => "clerk",
            Role::Supervisor => "supervisor",
            Role::Administrator => "administrator",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StaffUser {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct TimelineEntry {
    pub at: i64,
    pub kind: String,
    pub detail: String,
}

impl App {
    pub(crate) fn staff_from_row(r: StaffRow) -> Result<StaffUser, AppError> {
        Ok(StaffUser {
            role: Role::parse(&r.role)
                .ok_or_else(|| AppError::Internal("stored role unknown".into()))?,
            id: r.id,
            username: r.username,
            display_name: r.display_name,
        })
    }

    pub async fn create_staff(
        &self,
        username: &str,
        display_name: &str,
        password_plain: &str,
        role: Role,
    ) -> Result<StaffUser, AppError> {
        let username = username.trim();
        if username.is_empty()
            || username.len() > 64
            || !username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(AppError::invalid(
                "username",
                "use 1 to 64 letters, digits, dots, dashes or underscores",
            ));
        }
        domain::password::check(
            password_plain,
            domain::password::STAFF_MIN_LEN,
            &[username, self.config().city_name.as_str()],
        )
        .map_err(|p| AppError::invalid("password", crate::residents::password_message(p)))?;
        let hash = passwords::hash(password_plain.to_owned()).await?;
        let row = StaffRow {
            id: domain::ids::StaffId::from_random(&random_id()).to_string(),
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            password_hash: hash,
            role: role.as_str().into(),
            disabled: 0,
            failed_logins: 0,
            locked_until: None,
            created_at: self.now_unix(),
        };
        let mut tx = self.store.begin().await?;
        st::insert(&mut tx, &row).await?;
        self.audit(
            &mut tx,
            "system",
            "staff.created",
            &row.id,
            "success",
            "-",
            &format!("role {}", role.as_str()),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Self::staff_from_row(row)
    }

    pub async fn staff_by_username(&self, username: &str) -> Result<Option<StaffUser>, AppError> {
        let mut conn = self.store.conn().await?;
        st::by_username(&mut conn, username)
            .await?
            .map(Self::staff_from_row)
            .transpose()
    }

    /// Password login, the first of two steps: a right password yields a [`LoginStep`] (a
    /// challenge for a TOTP code, or enrollment), never a session; see
    /// [`App::staff_login_verify`](crate::mfa). Locks the account for 30 minutes after 10
    /// failures (wrong codes count too). Unknown user and wrong password look the same.
    pub async fn staff_login(
        &self,
        username: &str,
        password_plain: &str,
        source_ip: &str,
    ) -> Result<LoginStep, AppError> {
        self.rate_limit(&format!("staff-login-ip:{source_ip}"), 50, 900)
            .await?;
        let row = {
            let mut conn = self.store.conn().await?;
            st::by_username(&mut conn, username.trim()).await?
        };
        let now = self.now_unix();
        let mut locked = row
            .as_ref()
            .is_some_and(|r| r.locked_until.is_some_and(|t| t > now));
        if row.is_none() {
            // An unknown name "locks" after as many failures as a real one, so the answer
            // (401, then 423) does not tell which names exist.
            let name = hex::encode(sha2::Sha256::digest(username.trim().to_lowercase()));
            locked = match self
                .rate_limit(&format!("staff-unknown:{name}"), MAX_FAILURES, LOCK_SECS)
                .await
            {
                Ok(()) => false,
                Err(AppError::RateLimited) => true,
                Err(e) => return Err(e),
            };
        }
        let ok = passwords::verify(
            password_plain.to_owned(),
            row.as_ref().map(|r| r.password_hash.clone()),
        )
        .await;
        let mut tx = self.store.begin().await?;
        let row = match row {
            None if locked => {
                self.audit(
                    &mut tx,
                    "anonymous",
                    "staff.login",
                    "unknown",
                    "failure",
                    source_ip,
                    "locked",
                )
                .await?;
                tx.commit().await.map_err(StoreError::from)?;
                return Err(AppError::Locked);
            }
            Some(r) if locked => {
                self.audit(
                    &mut tx,
                    &format!("staff:{}", r.id),
                    "staff.login",
                    &r.id,
                    "failure",
                    source_ip,
                    "locked",
                )
                .await?;
                tx.commit().await.map_err(StoreError::from)?;
                return Err(AppError::Locked);
            }
            Some(r) if ok && r.disabled == 0 => r,
            other => {
                if let Some(r) = &other {
                    st::record_failure(&mut tx, &r.id, MAX_FAILURES, now + LOCK_SECS).await?;
                }
                let object = other
                    .as_ref()
                    .map(|r| r.id.clone())
                    .unwrap_or_else(|| "unknown".into());
                self.audit(
                    &mut tx,
                    "anonymous",
                    "staff.login",
                    &object,
                    "failure",
                    source_ip,
                    "",
                )
                .await?;
                tx.commit().await.map_err(StoreError::from)?;
                return Err(AppError::BadCredentials);
            }
        };
        // The failure count is reset only when the second factor is right too.
        let step = self.start_staff_challenge(&mut tx, &row, source_ip).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(step)
    }

    pub async fn staff_user(&self, id: &str) -> Result<Option<StaffUser>, AppError> {
        let mut conn = self.store.conn().await?;
        match st::get(&mut conn, id).await? {
            Some(r) if r.disabled == 0 => Ok(Some(Self::staff_from_row(r)?)),
            _ => Ok(None),
        }
    }

    /// Search by confirmation number, account number, email or payment id; empty query lists
    /// the most recent payments.
    pub async fn search_payments(&self, q: &str, limit: i64) -> Result<Vec<PaymentView>, AppError> {
        let q = q.trim();
        let rows = {
            let mut conn = self.store.conn().await?;
            if q.is_empty() {
                store::payments::recent(&mut conn, limit).await?
            } else {
                store::payments::search(&mut conn, q, &self.email_index(q), limit).await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for p in rows {
            out.push(self.payment(&p.id).await?);
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.created_at));
        Ok(out)
    }

    /// A payment's timeline: our events and audit entries, in time order.
    pub async fn payment_timeline(&self, payment_id: &str) -> Result<Vec<TimelineEntry>, AppError> {
        let mut conn = self.store.conn().await?;
        let mut out: Vec<TimelineEntry> = store::payments::events(&mut conn, payment_id)
            .await?
            .into_iter()
            .map(|e| TimelineEntry {
                at: e.at,
                kind: e.kind,
                detail: e.detail,
            })
            .collect();
        out.sort_by_key(|e| e.at);
        Ok(out)
    }

    pub async fn outbox(&self, limit: i64) -> Result<Vec<store::outbox::EmailRow>, AppError> {
        let rows = {
            let mut conn = self.store.conn().await?;
            store::outbox::recent(&mut conn, limit).await?
        };
        rows.into_iter().map(|e| self.open_email(e)).collect()
    }

    pub async fn outbox_email(&self, id: &str) -> Result<store::outbox::EmailRow, AppError> {
        let mut conn = self.store.conn().await?;
        let e = store::outbox::get(&mut conn, id)
            .await?
            .ok_or(AppError::NotFound("email"))?;
        let mut e = self.open_email(e)?;
        if !self.config().outbox_shows_links && LINK_EMAILS.contains(&e.kind.as_str()) {
            e.body_text = "(This email carries a single-use link for the resident and is not shown to staff.)".into();
        }
        Ok(e)
    }
}
