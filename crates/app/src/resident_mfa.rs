//! Resident two-step sign-in (opt-in): the staff TOTP machinery of [`crate::mfa`] (same
//! codes, single use, recovery codes, 5-minute challenges with 5 tries) over the
//! `resident_*` tables.
//!
//! A resident turns it on from `/account/security`: a fresh secret is shown
//! ([`App::begin_resident_totp`]) and the first right code confirms it
//! ([`App::confirm_resident_totp`]), which makes ten recovery codes, shown once. Turning it
//! off takes the password and a current code. While it is on, a right password yields a
//! challenge ([`ResidentLoginStep::Challenge`]), never a session; the session comes from
//! [`App::resident_login_verify`]. Every code attempt counts toward the resident's login
//! rate limit (10 per 15 minutes), as every password attempt does.

use crate::crypto::columns;
use crate::ids::token_hash;
use crate::mfa::{
    classify, new_secret_base32, otpauth_uri, recovery_hash, well_formed_token, Entered,
    SecondFactor, TotpEnrollment, Used, CHALLENGE_ATTEMPTS,
};
use crate::residents::Resident;
use crate::sessions::{NewSession, Realm};
use crate::{App, AppError};
use store::mfa::{self as m, RESIDENT as T};
use store::residents::{self as res, ResidentRow};
use store::StoreError;

/// The message of a wrong code on the account security page (`AppError::Invalid` on field
/// `code`).
pub const WRONG_CODE: &str = "that code is not right; enter the current code from your app";

/// What a right password leads to.
pub enum ResidentLoginStep {
    /// No two-step sign-in: signed in.
    SignedIn(Resident, NewSession),
    /// Two-step sign-in is on: the token goes in the `sr_resident_mfa` cookie.
    Challenge { token: String },
}

impl std::fmt::Debug for ResidentLoginStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResidentLoginStep::SignedIn(r, _) => write!(f, "SignedIn({})", r.id),
            ResidentLoginStep::Challenge { .. } => f.write_str("Challenge { .. }"),
        }
    }
}

/// A completed two-step resident login.
#[derive(Debug, Clone)]
pub struct ResidentMfaLogin {
    pub resident: Resident,
    pub session: NewSession,
    pub used_recovery_code: bool,
}

impl App {
    /// Is two-step sign-in on for this resident?
    pub async fn resident_mfa_enabled(&self, resident_id: &str) -> Result<bool, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(m::get_in(&T, &mut conn, resident_id)
            .await?
            .is_some_and(|r| r.enrolled_at.is_some()))
    }

    /// Shows a fresh secret to turn two-step sign-in on (a new one each time, until a code
    /// confirms it). `Forbidden` when it is on already.
    ///
    /// Takes the resident's password again: a borrowed or stolen session alone cannot add
    /// a second factor (and with it, lock the owner out).
    pub async fn begin_resident_totp(
        &self,
        resident_id: &str,
        password_plain: &str,
        source_ip: &str,
    ) -> Result<TotpEnrollment, AppError> {
        self.reauthenticate(Realm::Resident, resident_id, password_plain, source_ip)
            .await?;
        let mut conn = self.store.conn().await?;
        let row = res::get(&mut conn, resident_id)
            .await?
            .ok_or(AppError::NotFound("resident"))?;
        let pending = self.seal(columns::RESIDENT_TOTP_SECRET, &new_secret_base32())?;
        m::insert_pending_in(&T, &mut conn, resident_id, &pending).await?;
        let mfa = m::get_in(&T, &mut conn, resident_id)
            .await?
            .ok_or_else(|| AppError::Internal("MFA row missing after insert".into()))?;
        if mfa.enrolled_at.is_some() {
            return Err(AppError::Forbidden);
        }
        self.resident_enrollment(
            &row,
            &self.open(columns::RESIDENT_TOTP_SECRET, &mfa.totp_secret)?,
        )
    }

    /// The secret shown but not confirmed yet, if any (to show it again after a wrong code).
    pub async fn pending_resident_totp(
        &self,
        resident_id: &str,
    ) -> Result<Option<TotpEnrollment>, AppError> {
        let mut conn = self.store.conn().await?;
        let (Some(row), Some(mfa)) = (
            res::get(&mut conn, resident_id).await?,
            m::get_in(&T, &mut conn, resident_id).await?,
        ) else {
            return Ok(None);
        };
        if mfa.enrolled_at.is_some() {
            return Ok(None);
        }
        Ok(Some(self.resident_enrollment(
            &row,
            &self.open(columns::RESIDENT_TOTP_SECRET, &mfa.totp_secret)?,
        )?))
    }

    fn resident_enrollment(
        &self,
        row: &ResidentRow,
        secret: &str,
    ) -> Result<TotpEnrollment, AppError> {
        let email = self.open(columns::RESIDENT_EMAIL, &row.email)?;
        Ok(TotpEnrollment {
            otpauth_uri: otpauth_uri(secret, &self.totp_issuer(), &email)?,
            secret_base32: secret.to_owned(),
        })
    }

    /// Confirms the shown secret with a first code: two-step sign-in is on, and the ten
    /// recovery codes are returned (once; only keyed hashes are kept). A wrong code:
    /// `Invalid` on `code` ([`WRONG_CODE`]); no pending secret: `BadToken`.
    pub async fn confirm_resident_totp(
        &self,
        resident_id: &str,
        code: &str,
        source_ip: &str,
    ) -> Result<Vec<String>, AppError> {
        self.rate_limit(&format!("mfa-setup:{resident_id}"), 10, 900)
            .await?;
        let now = self.now_unix();
        let actor = format!("resident:{resident_id}");
        let mut tx = self.store.begin().await?;
        let (Some(row), Some(mfa)) = (
            res::get(&mut tx, resident_id).await?,
            m::get_in(&T, &mut tx, resident_id).await?,
        ) else {
            return Err(AppError::BadToken);
        };
        if mfa.enrolled_at.is_some() {
            return Err(AppError::BadToken);
        }
        let email = self.open(columns::RESIDENT_EMAIL, &row.email)?;
        let accepted = self
            .check_code(&mut tx, &T, &email, &mfa, code, now)
            .await?
            .is_some();
        if !accepted || !m::mark_enrolled_in(&T, &mut tx, resident_id, now).await? {
            self.audit(
                &mut tx,
                &actor,
                "resident.mfa_enabled",
                resident_id,
                "failure",
                source_ip,
                "mfa",
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Err(AppError::invalid("code", WRONG_CODE));
        }
        let codes = self
            .issue_recovery_codes(&mut tx, &T, resident_id, now)
            .await?;
        self.audit(
            &mut tx,
            &actor,
            "resident.mfa_enabled",
            resident_id,
            "success",
            source_ip,
            &format!("totp; {} recovery codes issued", codes.len()),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(codes)
    }

    /// Turns two-step sign-in off: the password (refused as
    /// [`crate::account_security::WRONG_CURRENT`] on `current_password`) and a current code
    /// (or an unused recovery code; refused as [`WRONG_CODE`] on `code`).
    pub async fn disable_resident_totp(
        &self,
        resident_id: &str,
        password_plain: &str,
        code: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        self.reauthenticate(Realm::Resident, resident_id, password_plain, source_ip)
            .await?;
        self.rate_limit(&format!("mfa-setup:{resident_id}"), 10, 900)
            .await?;
        let now = self.now_unix();
        let actor = format!("resident:{resident_id}");
        let mut tx = self.store.begin().await?;
        let (Some(row), Some(mfa)) = (
            res::get(&mut tx, resident_id).await?,
            m::get_in(&T, &mut tx, resident_id).await?,
        ) else {
            return Err(AppError::BadToken);
        };
        if mfa.enrolled_at.is_none() {
            return Err(AppError::BadToken);
        }
        let email = self.open(columns::RESIDENT_EMAIL, &row.email)?;
        let accepted = self
            .check_code(&mut tx, &T, &email, &mfa, code, now)
            .await?
            .is_some();
        if !accepted {
            self.audit(
                &mut tx,
                &actor,
                "resident.mfa_disabled",
                resident_id,
                "failure",
                source_ip,
                "mfa",
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Err(AppError::invalid("code", WRONG_CODE));
        }
        if self
            .has_passkeys(&mut tx, Realm::Resident, resident_id)
            .await?
        {
            m::delete_secret_in(&T, &mut tx, resident_id).await?;
        } else {
            m::delete_all_in(&T, &mut tx, resident_id).await?;
        }
        self.audit(
            &mut tx,
            &actor,
            "resident.mfa_disabled",
            resident_id,
            "success",
            source_ip,
            "totp",
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// After a right password, in the login's transaction: a challenge when two-step
    /// sign-in is on (audited `resident.mfa_challenge`), else `None`.
    pub(crate) async fn start_resident_challenge(
        &self,
        conn: &mut store::Conn,
        row: &ResidentRow,
        source_ip: &str,
    ) -> Result<Option<String>, AppError> {
        let enrolled = m::get_in(&T, conn, &row.id)
            .await?
            .is_some_and(|r| r.enrolled_at.is_some());
        if !enrolled && !self.has_passkeys(conn, Realm::Resident, &row.id).await? {
            return Ok(None);
        }
        let token = self.open_challenge(conn, &T, &row.id).await?;
        self.open_passkey_login(conn, Realm::Resident, &row.id, &token)
            .await?;
        self.audit(
            conn,
            &format!("resident:{}", row.id),
            "resident.mfa_challenge",
            &row.id,
            "success",
            source_ip,
            "password accepted; code required",
        )
        .await?;
        Ok(Some(token))
    }

    /// Is there a live resident challenge for this cookie token?
    pub async fn resident_challenge_live(&self, token: &str) -> Result<bool, AppError> {
        if !well_formed_token(token) {
            return Ok(false);
        }
        let now = self.now_unix();
        let mut conn = self.store.conn().await?;
        Ok(m::challenge_in(&T, &mut conn, &token_hash(token))
            .await?
            .is_some_and(|c| c.expires_at > now && c.attempts < CHALLENGE_ATTEMPTS))
    }

    /// The second step of a resident login: a TOTP code or an unused recovery code for a
    /// live challenge. `BadCredentials`: wrong code, the challenge goes on. `BadToken`: no
    /// live challenge (expired, used up, unknown, two-step sign-in turned off): start again.
    pub async fn resident_login_verify(
        &self,
        challenge_token: &str,
        code: &str,
        source_ip: &str,
    ) -> Result<ResidentMfaLogin, AppError> {
        self.resident_login_second(challenge_token, SecondFactor::Code(code), source_ip)
            .await
    }

    /// The second step of a resident login with a passkey (the browser's signed answer).
    /// Errors as [`App::resident_login_verify`].
    pub async fn resident_login_passkey(
        &self,
        challenge_token: &str,
        credential_json: &str,
        source_ip: &str,
    ) -> Result<ResidentMfaLogin, AppError> {
        self.resident_login_second(
            challenge_token,
            SecondFactor::Passkey(credential_json),
            source_ip,
        )
        .await
    }

    async fn resident_login_second(
        &self,
        challenge_token: &str,
        factor: SecondFactor<'_>,
        source_ip: &str,
    ) -> Result<ResidentMfaLogin, AppError> {
        self.rate_limit(&format!("login-ip:{source_ip}"), 30, 900)
            .await?;
        if !well_formed_token(challenge_token) {
            return Err(AppError::BadToken);
        }
        let hash = token_hash(challenge_token);
        // The per-user bucket of the password step (keyed by the email's blind index),
        // looked up before the transaction (SQLite has one connection).
        let email_key = {
            let mut conn = self.store.conn().await?;
            match m::challenge_in(&T, &mut conn, &hash).await? {
                Some(c) => res::get(&mut conn, &c.user_id).await?.map(|r| r.email_key),
                None => None,
            }
        };
        let Some(email_key) = email_key else {
            return Err(AppError::BadToken);
        };
        self.rate_limit(&format!("login-user:{email_key}"), 10, 900)
            .await?;
        let now = self.now_unix();
        let mut tx = self.store.begin().await?;
        let Some(c) = m::challenge_in(&T, &mut tx, &hash).await? else {
            return Err(AppError::BadToken);
        };
        let row = res::get(&mut tx, &c.user_id).await?;
        let mfa = m::get_in(&T, &mut tx, &c.user_id)
            .await?
            .filter(|m| m.enrolled_at.is_some());
        let passkeys = self
            .has_passkeys(&mut tx, Realm::Resident, &c.user_id)
            .await?;
        let (row, mfa) = match row {
            Some(r)
                if c.expires_at > now
                    && c.attempts < CHALLENGE_ATTEMPTS
                    && r.disabled == 0
                    && (mfa.is_some() || passkeys) =>
            {
                (r, mfa)
            }
            _ => {
                m::delete_challenge_in(&T, &mut tx, &hash).await?;
                tx.commit().await.map_err(StoreError::from)?;
                return Err(AppError::BadToken);
            }
        };
        let actor = format!("resident:{}", row.id);
        let email = self.open(columns::RESIDENT_EMAIL, &row.email)?;
        let used = match (factor, &mfa) {
            (SecondFactor::Code(code), Some(mfa)) => self
                .check_code(&mut tx, &T, &email, mfa, code, now)
                .await?
                .map(Used::from_recovery),
            // Passkeys without TOTP: a typed code can only be a recovery code.
            (SecondFactor::Code(code), None) => match classify(code) {
                Entered::Recovery(canonical) => m::use_recovery_code_in(
                    &T,
                    &mut tx,
                    &row.id,
                    &recovery_hash(&self.config().audit_key, &canonical),
                    now,
                )
                .await?
                .then_some(Used::Recovery),
                Entered::Totp(_) | Entered::Neither => None,
            },
            (SecondFactor::Passkey(json), _) => self
                .check_passkey_login(&mut tx, Realm::Resident, &row.id, &hash, json, now)
                .await?
                .then_some(Used::Passkey),
        };
        let Some(used) = used else {
            let attempts = m::count_attempt_in(&T, &mut tx, &hash).await?;
            let exhausted = attempts >= CHALLENGE_ATTEMPTS;
            if exhausted {
                m::delete_challenge_in(&T, &mut tx, &hash).await?;
            }
            self.audit(
                &mut tx,
                &actor,
                "resident.login",
                &row.id,
                "failure",
                source_ip,
                "mfa",
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Err(if exhausted {
                AppError::BadToken
            } else {
                AppError::BadCredentials
            });
        };
        let used_recovery_code = used == Used::Recovery;
        if used_recovery_code {
            let left = m::unused_recovery_codes_in(&T, &mut tx, &row.id).await?;
            self.audit(
                &mut tx,
                &actor,
                "resident.recovery_code_used",
                &row.id,
                "success",
                source_ip,
                &format!("{left} left"),
            )
            .await?;
        }
        m::delete_challenge_in(&T, &mut tx, &hash).await?;
        let session = self
            .create_session(&mut tx, Realm::Resident, &row.id)
            .await?;
        self.audit(
            &mut tx,
            &actor,
            "resident.login",
            &row.id,
            "success",
            source_ip,
            used.detail(),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(ResidentMfaLogin {
            resident: Resident {
                email,
                id: row.id,
                verified: row.email_verified_at.is_some(),
            },
            session,
            used_recovery_code,
        })
    }
}
