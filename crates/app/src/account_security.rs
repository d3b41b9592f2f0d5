//! Account security a signed-in user runs themselves: change the password (giving the
//! current one), and (in `sessions`) see and end their own sessions; and what an
//! administrator may do about someone else's sessions.
//!
//! A password change ends every other session of that user and keeps the one it was made
//! from; it is audited (`resident.password_changed` / `staff.password_changed`) in the same
//! transaction. A wrong current password is refused and recorded; every attempt counts
//! toward a per-user rate limit, so a stolen session cannot be used to guess the password.

use crate::crypto::columns;
use crate::residents::password_message;
use crate::sessions::{Realm, Session};
use crate::staff::{Role, StaffUser};
use crate::{passwords, App, AppError};
use domain::password;
use store::StoreError;

/// Password-change attempts per user per window.
const CHANGE_MAX: i64 = 10;
const CHANGE_WINDOW_SECS: i64 = 15 * 60;

/// What `change_*_password` answers to a wrong current password.
pub const WRONG_CURRENT: &str = "your current password is not correct";

/// What an administrator does to another user's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAction {
    /// End every session (`sessions.revoked`).
    EndSessions,
    /// Disable the account and end every session at once (`account.disabled`).
    Disable,
    /// Let a disabled account sign in again (`account.enabled`).
    Enable,
}

impl AccountAction {
    fn event(self) -> &'static str {
        match self {
            AccountAction::EndSessions => "sessions.revoked",
            AccountAction::Disable => "account.disabled",
            AccountAction::Enable => "account.enabled",
        }
    }
}

/// The sessions an administrator ended.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The user's id (resident or staff).
    pub user_id: String,
    pub ended: u64,
}

impl App {
    /// Changes a resident's password. `current_session` is the session the request came
    /// with: it is kept, every other session of the resident is ended.
    pub async fn change_resident_password(
        &self,
        resident_id: &str,
        current: &str,
        new: &str,
        current_session: &Session,
        source_ip: &str,
    ) -> Result<(), AppError> {
        if current_session.realm != Realm::Resident || current_session.user_id != resident_id {
            return Err(AppError::Forbidden);
        }
        self.rate_limit(
            &format!("pwchange:resident:{resident_id}"),
            CHANGE_MAX,
            CHANGE_WINDOW_SECS,
        )
        .await?;
        let row = {
            let mut conn = self.store.conn().await?;
            store::residents::get(&mut conn, resident_id)
                .await?
                .ok_or(AppError::NotFound("resident"))?
        };
        let actor = format!("resident:{resident_id}");
        // Both fields checked, every problem reported at once.
        let mut problems = Vec::new();
        if !passwords::verify(current.to_owned(), Some(row.password_hash.clone())).await {
            self.refuse_change(&actor, "resident.password_changed", resident_id, source_ip)
                .await?;
            problems.push(crate::FieldProblem::new(
                "current_password",
                "current_password_wrong",
                WRONG_CURRENT,
            ));
        }
        let email = self.open(columns::RESIDENT_EMAIL, &row.email)?;
        if let Err(p) = password::check(
            new,
            password::RESIDENT_MIN_LEN,
            &[email.as_str(), self.config().city_name.as_str()],
        ) {
            problems.push(crate::residents::password_problem("password", p, false));
        }
        if !problems.is_empty() {
            return Err(AppError::Fields(problems));
        }
        let hash = passwords::hash(new.to_owned()).await?;
        let now = self.now_unix();
        let mut tx = self.store.begin().await?;
        store::residents::set_password(&mut tx, resident_id, &hash).await?;
        // An outstanding reset link would undo the change: void it.
        store::residents::void_tokens(&mut tx, resident_id, "reset", now).await?;
        let ended = self
            .end_sessions_in(&mut tx, Realm::Resident, resident_id, Some(current_session))
            .await?;
        self.audit(
            &mut tx,
            &actor,
            "resident.password_changed",
            resident_id,
            "success",
            source_ip,
            &format!("other sessions ended: {ended}"),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Changes a staff member's password; as [`App::change_resident_password`]. The rules
    /// are the staff rules (at least `STAFF_MIN_LEN` characters, not the user name).
    pub async fn change_staff_password(
        &self,
        staff_id: &str,
        current: &str,
        new: &str,
        current_session: &Session,
        source_ip: &str,
    ) -> Result<(), AppError> {
        if current_session.realm != Realm::Staff || current_session.user_id != staff_id {
            return Err(AppError::Forbidden);
        }
        self.rate_limit(
            &format!("pwchange:staff:{staff_id}"),
            CHANGE_MAX,
            CHANGE_WINDOW_SECS,
        )
        .await?;
        let row = {
            let mut conn = self.store.conn().await?;
            store::staff::get(&mut conn, staff_id)
                .await?
                .filter(|r| r.disabled == 0)
                .ok_or(AppError::NotFound("staff member"))?
        };
        let actor = format!("staff:{staff_id}");
        if !passwords::verify(current.to_owned(), Some(row.password_hash.clone())).await {
            self.refuse_change(&actor, "staff.password_changed", staff_id, source_ip)
                .await?;
            return Err(AppError::invalid("current_password", WRONG_CURRENT));
        }
        password::check(
            new,
            password::STAFF_MIN_LEN,
            &[row.username.as_str(), self.config().city_name.as_str()],
        )
        .map_err(|p| AppError::invalid("password", password_message(p)))?;
        let hash = passwords::hash(new.to_owned()).await?;
        let mut tx = self.store.begin().await?;
        store::staff::set_password(&mut tx, staff_id, &hash).await?;
        let ended = self
            .end_sessions_in(&mut tx, Realm::Staff, staff_id, Some(current_session))
            .await?;
        self.audit(
            &mut tx,
            &actor,
            "staff.password_changed",
            staff_id,
            "success",
            source_ip,
            &format!("other sessions ended: {ended}"),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Asks a signed-in user for their password again before ending sessions (ASVS
    /// 7.5.2). A wrong one is refused as [`WRONG_CURRENT`], recorded (`{realm}.reauth`)
    /// and counted toward the same per-user limit as password changes.
    pub async fn reauthenticate(
        &self,
        realm: Realm,
        user_id: &str,
        password_plain: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        self.rate_limit(
            &format!("pwchange:{}:{user_id}", realm.as_str()),
            CHANGE_MAX,
            CHANGE_WINDOW_SECS,
        )
        .await?;
        let stored = {
            let mut conn = self.store.conn().await?;
            match realm {
                Realm::Resident => store::residents::get(&mut conn, user_id)
                    .await?
                    .map(|r| r.password_hash),
                Realm::Staff => store::staff::get(&mut conn, user_id)
                    .await?
                    .filter(|r| r.disabled == 0)
                    .map(|r| r.password_hash),
            }
        };
        if stored.is_some() && passwords::verify(password_plain.to_owned(), stored).await {
            return Ok(());
        }
        let actor = format!("{}:{user_id}", realm.as_str());
        self.refuse_change(
            &actor,
            &format!("{}.reauth", realm.as_str()),
            user_id,
            source_ip,
        )
        .await?;
        Err(AppError::invalid("current_password", WRONG_CURRENT))
    }

    async fn refuse_change(
        &self,
        actor: &str,
        event: &str,
        object: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        let mut tx = self.store.begin().await?;
        self.audit(
            &mut tx,
            actor,
            event,
            object,
            "failure",
            source_ip,
            "wrong current password",
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// An administrator ends every session of a staff member (by user name). Audited
    /// `sessions.revoked`, also when refused or when no such member exists.
    pub async fn revoke_staff_sessions(
        &self,
        admin: &StaffUser,
        username: &str,
        source_ip: &str,
    ) -> Result<Revoked, AppError> {
        self.staff_account_action(admin, username, AccountAction::EndSessions, source_ip)
            .await
    }

    /// An administrator ends a staff member's sessions, disables their account (which
    /// ends them too, in the same transaction) or enables it again. Nobody disables
    /// their own account. Audited, also when refused.
    pub async fn staff_account_action(
        &self,
        admin: &StaffUser,
        username: &str,
        action: AccountAction,
        source_ip: &str,
    ) -> Result<Revoked, AppError> {
        let target = {
            let mut conn = self.store.conn().await?;
            store::staff::by_username(&mut conn, username.trim()).await?
        };
        self.revoke(admin, Realm::Staff, target.map(|r| r.id), action, source_ip)
            .await
    }

    /// An administrator ends every session of a resident, found by email through the
    /// blind index (the address itself is neither stored nor logged). Audited
    /// `sessions.revoked`.
    pub async fn revoke_resident_sessions(
        &self,
        admin: &StaffUser,
        email: &str,
        source_ip: &str,
    ) -> Result<Revoked, AppError> {
        self.resident_account_action(admin, email, AccountAction::EndSessions, source_ip)
            .await
    }

    /// As [`App::staff_account_action`], for a resident found by email.
    pub async fn resident_account_action(
        &self,
        admin: &StaffUser,
        email: &str,
        action: AccountAction,
        source_ip: &str,
    ) -> Result<Revoked, AppError> {
        let key = self.email_index(email);
        let target = {
            let mut conn = self.store.conn().await?;
            store::residents::by_email_key(&mut conn, &key).await?
        };
        self.revoke(
            admin,
            Realm::Resident,
            target.map(|r| r.id),
            action,
            source_ip,
        )
        .await
    }

    /// An administrator gives a staff member another role. Their sessions end in the same
    /// transaction (a privilege change takes a new sign-in); audited `staff.role_changed`
    /// with the old and new role, also when refused. Nobody changes their own role.
    pub async fn change_staff_role(
        &self,
        admin: &StaffUser,
        username: &str,
        role: Role,
        source_ip: &str,
    ) -> Result<Revoked, AppError> {
        let target = {
            let mut conn = self.store.conn().await?;
            store::staff::by_username(&mut conn, username.trim()).await?
        };
        let actor = format!("staff:{}", admin.id);
        let event = "staff.role_changed";
        let t = self
            .admin_target(Some(admin), target, |t| &t.id, false, event, source_ip)
            .await?;
        let mut tx = self.store.begin().await?;
        store::staff::set_role(&mut tx, &t.id, role.as_str()).await?;
        let ended = self
            .end_sessions_in(&mut tx, Realm::Staff, &t.id, None)
            .await?;
        let detail = format!("{} -> {}; sessions ended: {ended}", t.role, role.as_str());
        self.audit(&mut tx, &actor, event, &t.id, "success", source_ip, &detail)
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(Revoked {
            user_id: t.id,
            ended,
        })
    }

    /// The target of an administrator's action on someone's account, unless it is refused:
    /// `by` is not an administrator (`None`: the command line, always allowed), there is
    /// no such user, or it is `by`'s own account and `self_ok` is false. A refusal is
    /// audited as `event` (failure, with the reason) and returned as the error.
    pub(crate) async fn admin_target<T>(
        &self,
        by: Option<&StaffUser>,
        target: Option<T>,
        id_of: impl Fn(&T) -> &String,
        self_ok: bool,
        event: &str,
        source_ip: &str,
    ) -> Result<T, AppError> {
        let why = match (by, &target) {
            (Some(a), _) if a.role != Role::Administrator => "role too low",
            (_, None) => "no such user",
            (Some(a), Some(t)) if !self_ok && *id_of(t) == a.id => "own account",
            (_, Some(_)) => return target.ok_or(AppError::NotFound("user")),
        };
        let actor = by.map_or_else(|| "system".to_owned(), |a| format!("staff:{}", a.id));
        let object = target.as_ref().map_or("unknown", |t| id_of(t).as_str());
        self.record_refusal(&actor, event, object, why, source_ip)
            .await?;
        Err(if target.is_none() {
            AppError::NotFound("user")
        } else {
            AppError::Forbidden
        })
    }

    async fn revoke(
        &self,
        admin: &StaffUser,
        realm: Realm,
        target: Option<String>,
        action: AccountAction,
        source_ip: &str,
    ) -> Result<Revoked, AppError> {
        // Ending one's own sessions is allowed; disabling or enabling oneself is not.
        let self_ok = realm == Realm::Resident || action == AccountAction::EndSessions;
        let event = action.event();
        let id = self
            .admin_target(Some(admin), target, |t| t, self_ok, event, source_ip)
            .await?;
        let mut tx = self.store.begin().await?;
        if action != AccountAction::EndSessions {
            let disable = action == AccountAction::Disable;
            match realm {
                Realm::Staff => store::staff::set_disabled(&mut tx, &id, disable).await?,
                Realm::Resident => store::residents::set_disabled(&mut tx, &id, disable).await?,
            };
        }
        let ended = if action == AccountAction::Enable {
            0
        } else {
            self.end_sessions_in(&mut tx, realm, &id, None).await?
        };
        let detail = format!("{}: ended {ended}", realm.as_str());
        let actor = format!("staff:{}", admin.id);
        self.audit(&mut tx, &actor, event, &id, "success", source_ip, &detail)
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(Revoked { user_id: id, ended })
    }
}
