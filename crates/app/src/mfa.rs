//! Staff multi-factor authentication (mandatory): TOTP (RFC 6238: SHA-1, 6 digits, 30-second
//! steps, one step of clock skew either way) with single-use codes, and recovery codes.
//!
//! A right password never yields a session by itself. [`App::staff_login`] answers with a
//! [`LoginStep`]: a challenge (a random token the browser keeps for at most 5 minutes) that
//! [`App::staff_login_verify`] turns into a session once a code is right. A member who has
//! not enrolled yet is shown a fresh secret and enrolls by entering a first code; then ten
//! recovery codes are made, returned once, and only a keyed hash is kept.
//!
//! Single use: the store remembers the newest 30-second step whose code was accepted, and a
//! code is accepted only for a later step (an atomic conditional update, so two requests
//! racing with the same code cannot both win). Wrong codes count toward the account's
//! lockout (10 failures, 30 minutes) and a challenge allows 5 tries.
//!
//! Residents use the same pieces, opt-in (`crate::resident_mfa`): the helpers here take the
//! realm's [`store::mfa::Tables`].

use crate::crypto::columns;
use crate::ids::{random_token, token_hash};
use crate::sessions::{NewSession, Realm};
use crate::staff::{StaffUser, LOCK_SECS, MAX_FAILURES};
use crate::{App, AppError};
use rand::{Rng, RngCore};
use store::mfa::{self as m, ChallengeRow, MfaRow, Tables};
use store::staff::{self as st, StaffRow};
use store::StoreError;
use totp_rs::{Algorithm, Secret, TOTP};

/// How long a challenge (password accepted, code owed) lives.
pub const CHALLENGE_SECS: i64 = 5 * 60;
/// Codes a challenge accepts before the member must enter the password again.
pub const CHALLENGE_ATTEMPTS: i64 = 5;
/// Recovery codes made at enrollment.
pub const RECOVERY_CODES: usize = 10;
/// TOTP time step, seconds.
pub const STEP_SECS: i64 = 30;
const DIGITS: usize = 6;
/// 160-bit secrets (RFC 4226 recommends 160).
const SECRET_BYTES: usize = 20;
/// Recovery codes use an alphabet without look-alikes (no 0/o, 1/i/l).
const RECOVERY_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
const RECOVERY_LEN: usize = 12;

/// What a person offers as the second step of a login.
#[derive(Clone, Copy)]
pub(crate) enum SecondFactor<'a> {
    /// A TOTP code or a recovery code, as typed.
    Code(&'a str),
    /// The browser's signed answer to the sign-in ceremony (JSON).
    Passkey(&'a str),
}

/// Which second factor was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Used {
    Totp,
    Recovery,
    Passkey,
}

impl Used {
    pub(crate) fn from_recovery(recovery: bool) -> Used {
        if recovery {
            Used::Recovery
        } else {
            Used::Totp
        }
    }

    /// The audit detail of a login that used it.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Used::Totp => "mfa: totp",
            Used::Recovery => "mfa: recovery code",
            Used::Passkey => "mfa: passkey",
        }
    }
}

/// What a right password leads to: the token goes in a short-lived cookie.
#[derive(Clone)]
pub enum LoginStep {
    /// Enrolled: ask for a code.
    Challenge { token: String },
    /// Not enrolled yet: show the secret; the first right code completes enrollment.
    Enroll {
        token: String,
        secret_base32: String,
        otpauth_uri: String,
    },
}

impl LoginStep {
    pub fn token(&self) -> &str {
        match self {
            LoginStep::Challenge { token } | LoginStep::Enroll { token, .. } => token,
        }
    }
}

impl std::fmt::Debug for LoginStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginStep::Challenge { .. } => f.write_str("LoginStep::Challenge { .. }"),
            LoginStep::Enroll { .. } => f.write_str("LoginStep::Enroll { .. }"),
        }
    }
}

/// A completed staff login.
#[derive(Debug, Clone)]
pub struct MfaLogin {
    pub user: StaffUser,
    pub session: NewSession,
    /// Only right after enrollment: the recovery codes, to show once. Never stored.
    pub recovery_codes: Vec<String>,
    /// True when a recovery code (not a TOTP code) was used.
    pub used_recovery_code: bool,
}

/// A one-time enrollment code an administrator gives a staff member out of band (in
/// person, by phone): with it, and only with it, the member enrolls a second factor.
#[derive(Clone)]
pub struct EnrollmentCode {
    pub code: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for EnrollmentCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnrollmentCode { .. }")
    }
}

/// How long an enrollment code lives: 72 hours.
pub const ENROLLMENT_SECS: i64 = 72 * 3600;

/// A secret set up without the member's own first code (the demo user; an administrator's
/// reset): what to give the member.
#[derive(Clone)]
pub struct TotpEnrollment {
    pub secret_base32: String,
    pub otpauth_uri: String,
}

impl std::fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrollment { .. }")
    }
}

/// A fresh 160-bit secret from the OS RNG, base32.
pub fn new_secret_base32() -> String {
    let mut bytes = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret::Raw(bytes).to_encoded().to_string()
}

pub(crate) fn totp(secret_base32: &str, issuer: &str, account: &str) -> Result<TOTP, AppError> {
    let bytes = Secret::Encoded(secret_base32.to_owned())
        .to_bytes()
        .map_err(|_| AppError::Internal("stored TOTP secret is not base32".into()))?;
    let issuer = issuer.replace(':', " ");
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECS as u64,
        bytes,
        Some(if issuer.trim().is_empty() {
            "Strongroom".to_owned()
        } else {
            issuer
        }),
        account.replace(':', " "),
    )
    .map_err(|e| AppError::Internal(format!("TOTP parameters refused: {e}")))
}

/// The `otpauth://totp/...` URI an authenticator app can import.
pub fn otpauth_uri(secret_base32: &str, issuer: &str, account: &str) -> Result<String, AppError> {
    Ok(totp(secret_base32, issuer, account)?.get_url())
}

/// The code of one 30-second step.
fn code_at_step(t: &TOTP, step: i64) -> Option<String> {
    let at = u64::try_from(step.checked_mul(STEP_SECS)?).ok()?;
    Some(t.generate(at))
}

/// Equality without an early exit on the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The step whose code `code` is, among the current step and one either side that are
/// later than `last_used_step`.
pub(crate) fn matching_step(t: &TOTP, code: &str, now: i64, last_used_step: i64) -> Option<i64> {
    let current = now.div_euclid(STEP_SECS);
    let mut found = None;
    for step in [current - 1, current, current + 1] {
        if step <= last_used_step {
            continue;
        }
        if let Some(c) = code_at_step(t, step) {
            if same(&c, code) && found.is_none() {
                found = Some(step);
            }
        }
    }
    found
}

/// One recovery code, `xxxx-xxxx-xxxx` (about 59 bits).
fn recovery_code() -> String {
    let mut rng = rand::rngs::OsRng;
    let chars: Vec<char> = (0..RECOVERY_LEN)
        .map(|_| char::from(RECOVERY_ALPHABET[rng.gen_range(0..RECOVERY_ALPHABET.len())]))
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// What a member typed, as a TOTP code or a recovery code.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entered {
    Totp(String),
    /// The canonical form: lower case, no separators.
    Recovery(String),
    Neither,
}

pub(crate) fn classify(input: &str) -> Entered {
    let s: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if s.len() == DIGITS && s.bytes().all(|b| b.is_ascii_digit()) {
        Entered::Totp(s)
    } else if s.len() == RECOVERY_LEN && s.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)) {
        Entered::Recovery(s)
    } else {
        Entered::Neither
    }
}

/// The sealed column of a realm's TOTP secrets.
fn totp_column(t: &Tables) -> &'static str {
    if t.mfa == m::STAFF.mfa {
        columns::STAFF_TOTP_SECRET
    } else {
        columns::RESIDENT_TOTP_SECRET
    }
}

/// Enrollment codes are kept as recovery codes are, under their own label.
fn enrollment_hash(server_key: &[u8], canonical: &str) -> String {
    recovery_hash(server_key, &format!("enrollment:{canonical}"))
}

/// Recovery codes are kept as a keyed hash (HMAC-SHA256 under a key derived from the
/// server's audit key, which is not in the database): a leaked database or backup alone
/// does not allow guessing them offline.
pub(crate) fn recovery_hash(server_key: &[u8], canonical: &str) -> String {
    use hmac::{Hmac, Mac};
    let derived = match <Hmac<sha2::Sha256> as Mac>::new_from_slice(server_key) {
        Ok(mut m) => {
            m.update(b"strongroom recovery codes v1");
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => return token_hash(canonical),
    };
    match <Hmac<sha2::Sha256> as Mac>::new_from_slice(&derived) {
        Ok(mut m) => {
            m.update(canonical.as_bytes());
            hex::encode(m.finalize().into_bytes())
        }
        Err(_) => token_hash(canonical),
    }
}

pub(crate) fn well_formed_token(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

impl App {
    pub(crate) fn totp_issuer(&self) -> String {
        self.config().city_name.clone()
    }

    /// A new challenge for `user_id` (their earlier ones end): the token for the cookie.
    pub(crate) async fn open_challenge(
        &self,
        conn: &mut store::Conn,
        t: &Tables,
        user_id: &str,
    ) -> Result<String, AppError> {
        let now = self.now_unix();
        let token = random_token();
        m::insert_challenge_in(
            t,
            conn,
            &ChallengeRow {
                token_hash: token_hash(&token),
                user_id: user_id.to_owned(),
                created_at: now,
                expires_at: now + CHALLENGE_SECS,
                attempts: 0,
            },
        )
        .await?;
        Ok(token)
    }

    /// Checks what the user typed: `Some(used_recovery_code)` when it was an unused TOTP
    /// step's code (that step and every earlier one are then used up) or, once enrolled,
    /// an unused recovery code (then used up); `None` otherwise.
    pub(crate) async fn check_code(
        &self,
        conn: &mut store::Conn,
        t: &Tables,
        account: &str,
        mfa: &MfaRow,
        code: &str,
        now: i64,
    ) -> Result<Option<bool>, AppError> {
        Ok(match classify(code) {
            Entered::Totp(code) => {
                let secret = self.open(totp_column(t), &mfa.totp_secret)?;
                let tp = totp(&secret, &self.totp_issuer(), account)?;
                match matching_step(&tp, &code, now, mfa.last_used_step) {
                    Some(step) => m::use_step_in(t, conn, &mfa.user_id, step)
                        .await?
                        .then_some(false),
                    None => None,
                }
            }
            Entered::Recovery(canonical) if mfa.enrolled_at.is_some() => m::use_recovery_code_in(
                t,
                conn,
                &mfa.user_id,
                &recovery_hash(&self.config().audit_key, &canonical),
                now,
            )
            .await?
            .then_some(true),
            _ => None,
        })
    }

    /// Makes `RECOVERY_CODES` new recovery codes for `user_id` (replacing earlier ones):
    /// returned once, only their keyed hashes stored.
    pub(crate) async fn issue_recovery_codes(
        &self,
        conn: &mut store::Conn,
        t: &Tables,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<String>, AppError> {
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| recovery_hash(&self.config().audit_key, &c.replace('-', "")))
            .collect();
        m::replace_recovery_codes_in(t, conn, user_id, &hashes, now).await?;
        Ok(codes)
    }

    /// After a right password: a new challenge (earlier ones of the member end), and for a
    /// member without an enrolled secret, a pending secret to enroll.
    pub(crate) async fn start_staff_challenge(
        &self,
        conn: &mut store::Conn,
        row: &StaffRow,
        source_ip: &str,
    ) -> Result<LoginStep, AppError> {
        let pending = self.seal(columns::STAFF_TOTP_SECRET, &new_secret_base32())?;
        m::insert_pending(conn, &row.id, &pending).await?;
        let mfa = m::get(conn, &row.id)
            .await?
            .ok_or_else(|| AppError::Internal("MFA row missing after insert".into()))?;
        let token = self.open_challenge(conn, &m::STAFF, &row.id).await?;
        let enrolled = mfa.enrolled_at.is_some();
        if enrolled {
            self.open_passkey_login(conn, Realm::Staff, &row.id, &token)
                .await?;
        }
        self.audit(
            conn,
            &format!("staff:{}", row.id),
            "staff.mfa_challenge",
            &row.id,
            "success",
            source_ip,
            if enrolled {
                "password accepted; code required"
            } else {
                "password accepted; enrollment required"
            },
        )
        .await?;
        Ok(if enrolled {
            LoginStep::Challenge { token }
        } else {
            self.enroll_step(token, &mfa, &row.username)?
        })
    }

    /// The enrollment page's step: the pending secret, opened, and its URI.
    fn enroll_step(
        &self,
        token: String,
        mfa: &MfaRow,
        username: &str,
    ) -> Result<LoginStep, AppError> {
        let secret = self.open(columns::STAFF_TOTP_SECRET, &mfa.totp_secret)?;
        Ok(LoginStep::Enroll {
            otpauth_uri: otpauth_uri(&secret, &self.totp_issuer(), username)?,
            secret_base32: secret,
            token,
        })
    }

    /// The live challenge for a cookie token, if any (what the code page shows).
    pub async fn staff_challenge(&self, token: &str) -> Result<Option<LoginStep>, AppError> {
        if !well_formed_token(token) {
            return Ok(None);
        }
        let now = self.now_unix();
        let mut conn = self.store.conn().await?;
        let Some(c) = m::challenge(&mut conn, &token_hash(token)).await? else {
            return Ok(None);
        };
        if c.expires_at <= now || c.attempts >= CHALLENGE_ATTEMPTS {
            return Ok(None);
        }
        let (Some(row), Some(mfa)) = (
            st::get(&mut conn, &c.user_id).await?,
            m::get(&mut conn, &c.user_id).await?,
        ) else {
            return Ok(None);
        };
        if row.disabled != 0 {
            return Ok(None);
        }
        Ok(Some(if mfa.enrolled_at.is_some() {
            LoginStep::Challenge {
                token: token.to_owned(),
            }
        } else {
            self.enroll_step(token.to_owned(), &mfa, &row.username)?
        }))
    }

    /// The second step of a staff login: a TOTP code (or, once enrolled, an unused recovery
    /// code) for a live challenge. `BadCredentials`: wrong code, the challenge goes on.
    /// `BadToken`: no live challenge (expired, used up, unknown): start again.
    ///
    /// A member who is not enrolled yet also gives `enrollment_code`, the one-time code an
    /// administrator issued ([`App::reset_staff_second_factors`]); it is ignored otherwise.
    pub async fn staff_login_verify(
        &self,
        challenge_token: &str,
        code: &str,
        enrollment_code: &str,
        source_ip: &str,
    ) -> Result<MfaLogin, AppError> {
        self.staff_login_second(
            challenge_token,
            SecondFactor::Code(code),
            enrollment_code,
            source_ip,
        )
        .await
    }

    /// The second step of a staff login with a passkey: the browser's signed answer to
    /// the challenge's sign-in ceremony. Errors as [`App::staff_login_verify`].
    pub async fn staff_login_passkey(
        &self,
        challenge_token: &str,
        credential_json: &str,
        source_ip: &str,
    ) -> Result<MfaLogin, AppError> {
        self.staff_login_second(
            challenge_token,
            SecondFactor::Passkey(credential_json),
            "",
            source_ip,
        )
        .await
    }

    async fn staff_login_second(
        &self,
        challenge_token: &str,
        factor: SecondFactor<'_>,
        enrollment_code: &str,
        source_ip: &str,
    ) -> Result<MfaLogin, AppError> {
        self.rate_limit(&format!("staff-mfa-ip:{source_ip}"), 50, 900)
            .await?;
        if !well_formed_token(challenge_token) {
            return Err(AppError::BadToken);
        }
        let hash = token_hash(challenge_token);
        let now = self.now_unix();
        let mut tx = self.store.begin().await?;
        let Some(c) = m::challenge(&mut tx, &hash).await? else {
            return Err(AppError::BadToken);
        };
        if c.expires_at <= now || c.attempts >= CHALLENGE_ATTEMPTS {
            m::delete_challenge(&mut tx, &hash).await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Err(AppError::BadToken);
        }
        let actor = format!("staff:{}", c.user_id);
        let row = match st::get(&mut tx, &c.user_id).await? {
            Some(r) if r.disabled == 0 => r,
            _ => {
                m::delete_challenge(&mut tx, &hash).await?;
                tx.commit().await.map_err(StoreError::from)?;
                return Err(AppError::BadToken);
            }
        };
        if row.locked_until.is_some_and(|t| t > now) {
            m::delete_challenge(&mut tx, &hash).await?;
            self.audit(
                &mut tx,
                &actor,
                "staff.login",
                &row.id,
                "failure",
                source_ip,
                "locked",
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Err(AppError::Locked);
        }
        let mfa = m::get(&mut tx, &row.id)
            .await?
            .ok_or_else(|| AppError::Internal("challenge without an MFA secret".into()))?;
        let enrolled = mfa.enrolled_at.is_some();
        // A first enrollment (and one after a reset) also takes the one-time code an
        // administrator issued: knowing the password first is not enough. It is checked
        // before the app's code, so a wrong one does not use up that code's time step.
        let enrollment_hash = match classify(enrollment_code) {
            Entered::Recovery(c) => Some(enrollment_hash(&self.config().audit_key, &c)),
            _ => None,
        };
        let enrollment_ok = enrolled
            || match &enrollment_hash {
                Some(h) => m::enrollment_code_matches(&mut tx, &row.id, h, now).await?,
                None => false,
            };
        let mut used = match factor {
            _ if !enrollment_ok => None,
            SecondFactor::Code(code) => self
                .check_code(&mut tx, &m::STAFF, &row.username, &mfa, code, now)
                .await?
                .map(Used::from_recovery),
            SecondFactor::Passkey(json) if enrolled => self
                .check_passkey_login(&mut tx, Realm::Staff, &row.id, &hash, json, now)
                .await?
                .then_some(Used::Passkey),
            SecondFactor::Passkey(_) => None,
        };
        // The enrollment code is used up with the enrollment (and a request that lost a race
        // for it is refused).
        if let (Some(_), false, Some(h)) = (used, enrolled, &enrollment_hash) {
            if !m::take_enrollment_code(&mut tx, &row.id, h, now).await? {
                used = None;
            }
        }
        let accepted = used.is_some();
        let used_recovery_code = used == Some(Used::Recovery);
        if !accepted {
            let attempts = m::count_attempt(&mut tx, &hash).await?;
            st::record_failure(&mut tx, &row.id, MAX_FAILURES, now + LOCK_SECS).await?;
            let exhausted = attempts >= CHALLENGE_ATTEMPTS;
            if exhausted {
                m::delete_challenge(&mut tx, &hash).await?;
            }
            self.audit(
                &mut tx,
                &actor,
                "staff.login",
                &row.id,
                "failure",
                source_ip,
                if enrollment_ok {
                    "mfa"
                } else {
                    "mfa: enrollment code"
                },
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Err(if exhausted {
                AppError::BadToken
            } else {
                AppError::BadCredentials
            });
        }
        let mut recovery_codes = Vec::new();
        if !enrolled && m::mark_enrolled(&mut tx, &row.id, now).await? {
            recovery_codes = self
                .issue_recovery_codes(&mut tx, &m::STAFF, &row.id, now)
                .await?;
            self.audit(
                &mut tx,
                &actor,
                "staff.mfa_enrolled",
                &row.id,
                "success",
                source_ip,
                &format!("totp; {RECOVERY_CODES} recovery codes issued"),
            )
            .await?;
        }
        if used_recovery_code {
            let left = m::unused_recovery_codes(&mut tx, &row.id).await?;
            self.audit(
                &mut tx,
                &actor,
                "staff.recovery_code_used",
                &row.id,
                "success",
                source_ip,
                &format!("{left} left"),
            )
            .await?;
        }
        m::delete_challenge(&mut tx, &hash).await?;
        st::record_success(&mut tx, &row.id).await?;
        let session = self.create_session(&mut tx, Realm::Staff, &row.id).await?;
        self.audit(
            &mut tx,
            &actor,
            "staff.login",
            &row.id,
            "success",
            source_ip,
            used.map(Used::detail).unwrap_or_default(),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(MfaLogin {
            user: Self::staff_from_row(row)?,
            session,
            recovery_codes,
            used_recovery_code,
        })
    }

    /// Replaces a signed-in person's recovery codes with ten new ones (returned once; the
    /// old ones stop working), after their password again. Only for someone with a second
    /// factor (staff always; residents with TOTP or a passkey). Audited
    /// `{realm}.recovery_codes_renewed`.
    pub async fn renew_recovery_codes(
        &self,
        realm: Realm,
        user_id: &str,
        password_plain: &str,
        source_ip: &str,
    ) -> Result<Vec<String>, AppError> {
        self.reauthenticate(realm, user_id, password_plain, source_ip)
            .await?;
        let t = match realm {
            Realm::Staff => &m::STAFF,
            Realm::Resident => &m::RESIDENT,
        };
        let now = self.now_unix();
        let mut tx = self.store.begin().await?;
        let totp = m::get_in(t, &mut tx, user_id)
            .await?
            .is_some_and(|r| r.enrolled_at.is_some());
        if !totp && !self.has_passkeys(&mut tx, realm, user_id).await? {
            return Err(AppError::invalid(
                "recovery",
                "recovery codes come with two-step sign-in; turn it on first",
            ));
        }
        let codes = self.issue_recovery_codes(&mut tx, t, user_id, now).await?;
        self.audit(
            &mut tx,
            &format!("{}:{user_id}", realm.as_str()),
            &format!("{}.recovery_codes_renewed", realm.as_str()),
            user_id,
            "success",
            source_ip,
            &format!("{RECOVERY_CODES} new recovery codes; the earlier ones no longer work"),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(codes)
    }

    /// Resets a staff member's second factors and issues a one-time enrollment code:
    /// their enrolled TOTP secret, recovery codes and passkeys are removed and their
    /// sessions ended, in one transaction (audited `staff.mfa_reset`). `by`: the
    /// administrator doing it, or `None` for the command line (`strongroom staff-add`).
    /// An administrator cannot reset their own factors.
    pub async fn reset_staff_second_factors(
        &self,
        by: Option<&StaffUser>,
        username: &str,
        source_ip: &str,
    ) -> Result<EnrollmentCode, AppError> {
        let target = {
            let mut conn = self.store.conn().await?;
            st::by_username(&mut conn, username.trim()).await?
        };
        let actor = by.map_or_else(|| "system".to_owned(), |a| format!("staff:{}", a.id));
        let event = "staff.mfa_reset";
        let id = self
            .admin_target(by, target, |t| &t.id, false, event, source_ip)
            .await?
            .id;
        let mut tx = self.store.begin().await?;
        let now = self.now_unix();
        let code = recovery_code();
        let expires_at = now + ENROLLMENT_SECS;
        m::reset_staff(&mut tx, &id).await?;
        store::passkeys::delete_all(&mut tx, Realm::Staff.as_str(), &id).await?;
        let ended = self
            .end_sessions_in(&mut tx, Realm::Staff, &id, None)
            .await?;
        m::set_enrollment_code(
            &mut tx,
            &id,
            &enrollment_hash(&self.config().audit_key, &code.replace('-', "")),
            &actor,
            now,
            expires_at,
        )
        .await?;
        self.audit(
            &mut tx,
            &actor,
            event,
            &id,
            "success",
            source_ip,
            &format!("enrollment code issued (72 hours); sessions ended: {ended}"),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(EnrollmentCode { code, expires_at })
    }

    /// Gives staff member `username` a new, already enrolled TOTP secret, replacing any
    /// earlier one and removing their recovery codes. For the demo's user and for setting
    /// up accounts out of band; audited.
    pub async fn provision_staff_totp(&self, username: &str) -> Result<TotpEnrollment, AppError> {
        let row = {
            let mut conn = self.store.conn().await?;
            st::by_username(&mut conn, username)
                .await?
                .ok_or(AppError::NotFound("staff user"))?
        };
        let secret = new_secret_base32();
        let uri = otpauth_uri(&secret, &self.totp_issuer(), &row.username)?;
        let mut tx = self.store.begin().await?;
        let sealed = self.seal(columns::STAFF_TOTP_SECRET, &secret)?;
        m::replace_enrolled(&mut tx, &row.id, &sealed, self.now_unix()).await?;
        // A reset starts the member's second factors afresh: their passkeys go too.
        store::passkeys::delete_all(&mut tx, Realm::Staff.as_str(), &row.id).await?;
        self.audit(
            &mut tx,
            "system",
            "staff.mfa_enrolled",
            &row.id,
            "success",
            "-",
            "totp provisioned",
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(TotpEnrollment {
            secret_base32: secret,
            otpauth_uri: uri,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_160_bits_of_base32() {
        let s = new_secret_base32();
        assert_eq!(s.len(), 32, "{s}");
        assert_eq!(
            Secret::Encoded(s.clone()).to_bytes().map(|b| b.len()).ok(),
            Some(20)
        );
        assert_ne!(s, new_secret_base32());
    }

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 appendix B: secret "12345678901234567890", T = 59 s -> 94287082 (8
        // digits); the 6-digit code is its last six.
        let secret = Secret::Raw(b"12345678901234567890".to_vec())
            .to_encoded()
            .to_string();
        let t = totp(&secret, "City", "clerk").ok();
        let code = t.as_ref().and_then(|t| code_at_step(t, 59 / STEP_SECS));
        assert_eq!(code.as_deref(), Some("287082"));
    }

    #[test]
    fn steps_are_single_use_with_one_step_of_skew() {
        let secret = new_secret_base32();
        let Ok(t) = totp(&secret, "City", "clerk") else {
            unreachable!("valid parameters")
        };
        let now = 1_700_000_015;
        let step = now / STEP_SECS;
        let code = |s| code_at_step(&t, s).unwrap_or_default();
        assert_eq!(matching_step(&t, &code(step), now, 0), Some(step));
        assert_eq!(matching_step(&t, &code(step - 1), now, 0), Some(step - 1));
        assert_eq!(matching_step(&t, &code(step + 1), now, 0), Some(step + 1));
        assert_eq!(matching_step(&t, &code(step - 2), now, 0), None);
        assert_eq!(matching_step(&t, &code(step), now, step), None, "replay");
        assert_eq!(
            matching_step(&t, &code(step - 1), now, step),
            None,
            "older code after a newer one"
        );
    }

    #[test]
    fn recovery_codes_look_right_and_classify() {
        let c = recovery_code();
        assert_eq!(c.len(), 14);
        assert_eq!(c.matches('-').count(), 2);
        assert_eq!(
            classify(&c.to_uppercase()),
            Entered::Recovery(c.replace('-', ""))
        );
        assert_eq!(classify(" 123 456 "), Entered::Totp("123456".into()));
        assert_eq!(classify("12345"), Entered::Neither);
        assert_eq!(classify("abcd-efgh-ijkl"), Entered::Neither, "i and l");
    }

    #[test]
    fn otpauth_uri_names_issuer_and_account() {
        let s = new_secret_base32();
        let uri = otpauth_uri(&s, "City of Testville", "clerk1").unwrap_or_default();
        assert!(uri.starts_with("otpauth://totp/City%20of%20Testville:clerk1?"));
        assert!(uri.contains(&format!("secret={s}")));
    }
}
