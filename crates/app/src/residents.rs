//! Resident accounts: register, verify the email, log in, reset a forgotten password,
//! link utility accounts.

use crate::billing::AccountSummary;
use crate::crypto::columns;
use crate::ids::{random_id, random_token, token_hash};
use crate::resident_mfa::ResidentLoginStep;
use crate::sessions::{NewSession, Realm};
use crate::{passwords, App, AppError};
use domain::password::{self, PasswordProblem};
use domain::{AccountNumber, EmailAddress};
use store::residents::{self as res, ResidentRow};
use store::StoreError;

const VERIFY_TTL: i64 = 24 * 3600;
const RESET_TTL: i64 = 3600;

#[derive(Debug, Clone)]
pub struct Resident {
    pub id: String,
    pub email: String,
    pub verified: bool,
}

/// A password refused, as a field problem with a stable code (the message catalog's
/// `field_error.<code>`): `password_short` (`staff_password_short` for staff, whose minimum
/// differs), `password_long`, `password_common`, `password_identifier`,
/// `password_repetitive`.
pub fn password_problem(field: &str, p: PasswordProblem, staff: bool) -> crate::FieldProblem {
    let code = match p {
        PasswordProblem::TooShort { .. } if staff => "staff_password_short",
        PasswordProblem::TooShort { .. } => "password_short",
        PasswordProblem::TooLong => "password_long",
        PasswordProblem::Common => "password_common",
        PasswordProblem::ContainsIdentifier => "password_identifier",
        PasswordProblem::Repetitive => "password_repetitive",
    };
    crate::FieldProblem::new(field, code, password_message(p))
}

pub fn password_message(p: PasswordProblem) -> String {
    match p {
        PasswordProblem::TooShort { min } => {
            format!("use at least {min} characters; a few unrelated words make a good password")
        }
        PasswordProblem::TooLong => format!("use at most {} characters", password::MAX_LEN),
        PasswordProblem::Common => {
            "this password appears in lists of common or breached passwords; choose another".into()
        }
        PasswordProblem::ContainsIdentifier => {
            "do not use your email address or user name in your password".into()
        }
        PasswordProblem::Repetitive => "avoid repeated or sequential characters".into(),
    }
}

impl App {
    fn link(&self, path: &str, token: &str) -> String {
        format!("{}{path}?token={token}", self.config().portal_base_url)
    }

    /// Registers a resident and emails a verification link. An address that is already
    /// registered gets an email saying so, and the caller sees the same answer either way.
    pub async fn register(
        &self,
        email: &str,
        password_plain: &str,
        language: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        let lang = crate::mail_text::Lang::parse(language);
        // Both fields checked, every problem reported at once.
        let parsed = EmailAddress::parse(email);
        let mut problems = Vec::new();
        if parsed.is_none() {
            problems.push(crate::FieldProblem::new(
                "email",
                "email_shape",
                "enter an email address like name@example.com",
            ));
        }
        let identifiers = [
            parsed.as_ref().map_or(email.trim(), |e| e.as_str()),
            self.config().city_name.as_str(),
        ];
        if let Err(p) = password::check(password_plain, password::RESIDENT_MIN_LEN, &identifiers) {
            problems.push(password_problem("password", p, false));
        }
        let Some(email) = parsed.filter(|_| problems.is_empty()) else {
            return Err(AppError::Fields(problems));
        };
        self.rate_limit(&format!("register:{source_ip}"), 20, 3600)
            .await?;
        let hash = passwords::hash(password_plain.to_owned()).await?;
        let now = self.now_unix();
        let email_key = self.email_index(email.as_str());
        let mut tx = self.store.begin().await?;
        if let Some(existing) = res::by_email_key(&mut tx, &email_key).await? {
            let lang =
                crate::mail_text::Lang::parse(&res::language_of(&mut tx, &existing.id).await?);
            let (subject, body) = crate::mail_text::account_exists(
                lang,
                &self.config().city_name,
                &format!("{}/forgot", self.config().portal_base_url),
            );
            self.enqueue_email(&mut tx, email.as_str(), &subject, &body, "account_exists")
                .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Ok(());
        }
        let id = domain::ids::ResidentId::from_random(&random_id()).to_string();
        res::insert(
            &mut tx,
            &ResidentRow {
                id: id.clone(),
                email: self.seal(columns::RESIDENT_EMAIL, email.as_str())?,
                email_key,
                password_hash: hash,
                email_verified_at: None,
                disabled: 0,
                created_at: now,
            },
        )
        .await?;
        let token = random_token();
        res::insert_token(
            &mut tx,
            &token_hash(&token),
            &id,
            "verify",
            now + VERIFY_TTL,
            now,
        )
        .await?;
        res::set_language(&mut tx, &id, lang.code()).await?;
        let (subject, body) = crate::mail_text::verify(
            lang,
            &self.config().city_name,
            &self.link("/verify", &token),
        );
        self.enqueue_email(&mut tx, email.as_str(), &subject, &body, "verify_email")
            .await?;
        self.audit(
            &mut tx,
            &format!("resident:{id}"),
            "resident.registered",
            &id,
            "success",
            source_ip,
            "",
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    pub async fn verify_email(&self, token: &str, source_ip: &str) -> Result<(), AppError> {
        let mut tx = self.store.begin().await?;
        let id = res::consume_token(&mut tx, &token_hash(token), "verify", self.now_unix())
            .await?
            .ok_or(AppError::BadToken)?;
        res::set_verified(&mut tx, &id, self.now_unix()).await?;
        self.audit(
            &mut tx,
            &format!("resident:{id}"),
            "resident.email_verified",
            &id,
            "success",
            source_ip,
            "",
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Logs in a resident without two-step sign-in (one with it on is refused as
    /// `BadCredentials` after the password step; see [`App::resident_login_step`]).
    /// Remembers the language a resident reads (their emails are written in it); writes
    /// only when it changed.
    pub async fn remember_language(
        &self,
        resident_id: &str,
        language: &str,
    ) -> Result<(), AppError> {
        let lang = crate::mail_text::Lang::parse(language);
        let known = res::language_of(&mut *self.store.read().await?, resident_id).await?;
        if known != lang.code() {
            res::set_language(&mut *self.store.conn().await?, resident_id, lang.code()).await?;
        }
        Ok(())
    }

    pub async fn resident_login(
        &self,
        email: &str,
        password_plain: &str,
        source_ip: &str,
    ) -> Result<(Resident, NewSession), AppError> {
        match self
            .resident_login_step(email, password_plain, source_ip)
            .await?
        {
            ResidentLoginStep::SignedIn(r, s) => Ok((r, s)),
            ResidentLoginStep::Challenge { .. } => Err(AppError::BadCredentials),
        }
    }

    /// Logs a resident in. Unknown email and wrong password look the same, in answer and in
    /// time (a dummy hash is verified for unknown emails). With two-step sign-in on, a right
    /// password yields a challenge, not a session (`crate::resident_mfa`).
    pub async fn resident_login_step(
        &self,
        email: &str,
        password_plain: &str,
        source_ip: &str,
    ) -> Result<ResidentLoginStep, AppError> {
        // Blind index: the rate-limit bucket and the lookup carry no readable address.
        let key = self.email_index(email);
        self.rate_limit(&format!("login-ip:{source_ip}"), 30, 900)
            .await?;
        self.rate_limit(&format!("login-user:{key}"), 10, 900)
            .await?;
        let row = {
            let mut conn = self.store.conn().await?;
            res::by_email_key(&mut conn, &key).await?
        };
        let ok = passwords::verify(
            password_plain.to_owned(),
            row.as_ref().map(|r| r.password_hash.clone()),
        )
        .await;
        let mut tx = self.store.begin().await?;
        let row = match row {
            Some(r) if ok && r.disabled == 0 => r,
            other => {
                let object = other
                    .as_ref()
                    .map(|r| r.id.clone())
                    .unwrap_or_else(|| "unknown".into());
                self.audit(
                    &mut tx,
                    "anonymous",
                    "resident.login",
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
        if row.email_verified_at.is_none() {
            return Err(AppError::EmailNotVerified);
        }
        if let Some(token) = self
            .start_resident_challenge(&mut tx, &row, source_ip)
            .await?
        {
            tx.commit().await.map_err(StoreError::from)?;
            return Ok(ResidentLoginStep::Challenge { token });
        }
        let session = self
            .create_session(&mut tx, Realm::Resident, &row.id)
            .await?;
        self.audit(
            &mut tx,
            &format!("resident:{}", row.id),
            "resident.login",
            &row.id,
            "success",
            source_ip,
            "",
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(ResidentLoginStep::SignedIn(
            Resident {
                email: self.open(columns::RESIDENT_EMAIL, &row.email)?,
                id: row.id,
                verified: true,
            },
            session,
        ))
    }

    pub async fn resident(&self, id: &str) -> Result<Resident, AppError> {
        let mut conn = self.store.read().await?;
        let r = res::get(&mut conn, id)
            .await?
            .ok_or(AppError::NotFound("resident"))?;
        Ok(Resident {
            email: self.open(columns::RESIDENT_EMAIL, &r.email)?,
            id: r.id,
            verified: r.email_verified_at.is_some(),
        })
    }

    /// Emails a single-use reset link if the address has an account; says nothing either way.
    pub async fn request_password_reset(
        &self,
        email: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        let email = EmailAddress::parse(email).ok_or_else(|| {
            AppError::invalid("email", "enter an email address like name@example.com")
        })?;
        self.rate_limit(&format!("reset-ip:{source_ip}"), 20, 3600)
            .await?;
        let email_key = self.email_index(email.as_str());
        self.rate_limit(&format!("reset-user:{email_key}"), 5, 3600)
            .await?;
        let now = self.now_unix();
        let mut tx = self.store.begin().await?;
        if let Some(r) = res::by_email_key(&mut tx, &email_key).await? {
            let to = self.open(columns::RESIDENT_EMAIL, &r.email)?;
            let token = random_token();
            res::insert_token(
                &mut tx,
                &token_hash(&token),
                &r.id,
                "reset",
                now + RESET_TTL,
                now,
            )
            .await?;
            let lang = crate::mail_text::Lang::parse(&res::language_of(&mut tx, &r.id).await?);
            let (subject, body) = crate::mail_text::reset(
                lang,
                &self.config().city_name,
                &self.link("/reset", &token),
            );
            self.enqueue_email(&mut tx, &to, &subject, &body, "password_reset")
                .await?;
            self.audit(
                &mut tx,
                &format!("resident:{}", r.id),
                "resident.reset_requested",
                &r.id,
                "success",
                source_ip,
                "",
            )
            .await?;
        } else {
            // An unknown address costs about the same (a sealed body, a row, the commit),
            // so the time of the answer does not tell whether the address has an account;
            // the attempt is worth recording anyway.
            self.seal(columns::OUTBOX_BODY, &"x".repeat(320))?;
            self.audit(
                &mut tx,
                "anonymous",
                "resident.reset_requested",
                "unknown",
                "failure",
                source_ip,
                "no account with that address",
            )
            .await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Sets a new password with a reset token; ends every session of that resident. A
    /// password refused by the rules does not use up the token.
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        let hash = token_hash(token);
        // Hash before the transaction: SQLite has one connection, and Argon2 takes a while.
        // A token that is not live is refused first, so a guess costs no hash.
        {
            let mut conn = self.store.conn().await?;
            if !res::token_is_live(&mut conn, &hash, "reset", self.now_unix()).await? {
                return Err(AppError::BadToken);
            }
        }
        let new_hash = passwords::hash(new_password.to_owned()).await?;
        let mut tx = self.store.begin().await?;
        let id = res::consume_token(&mut tx, &hash, "reset", self.now_unix())
            .await?
            .ok_or(AppError::BadToken)?;
        let r = res::get(&mut tx, &id).await?.ok_or(AppError::BadToken)?;
        let email = self.open(columns::RESIDENT_EMAIL, &r.email)?;
        if let Err(p) = password::check(
            new_password,
            password::RESIDENT_MIN_LEN,
            &[email.as_str(), self.config().city_name.as_str()],
        ) {
            tx.rollback().await.map_err(StoreError::from)?;
            return Err(AppError::Fields(vec![password_problem(
                "password", p, false,
            )]));
        }
        res::set_password(&mut tx, &id, &new_hash).await?;
        res::void_tokens(&mut tx, &id, "reset", self.now_unix()).await?;
        // A reset proves control of the mailbox.
        res::set_verified(&mut tx, &id, self.now_unix()).await?;
        store::sessions::delete_for_user(&mut tx, Realm::Resident.as_str(), &id).await?;
        self.audit(
            &mut tx,
            &format!("resident:{id}"),
            "resident.password_reset",
            &id,
            "success",
            source_ip,
            "",
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Links a utility account to a resident. Proof: the account number and the linking
    /// code printed on the account's paper bills (quick pay shows an account's balance to
    /// anyone with its number and ZIP, so nothing quick pay shows is proof). A wrong proof
    /// does not say which part was wrong; 5 tries per resident and 20 per address in 15
    /// minutes.
    pub async fn link_account(
        &self,
        resident_id: &str,
        account: &str,
        linking_code: &str,
        source_ip: &str,
    ) -> Result<String, AppError> {
        let parsed = AccountNumber::parse(account);
        let code = linking_code
            .trim()
            .to_ascii_uppercase()
            .replace([' ', '-'], "");
        let mut problems = Vec::new();
        if parsed.is_none() {
            problems.push(crate::FieldProblem::new(
                "account_number",
                "account_number_shape",
                "enter the 4 to 12 digit account number shown on your bill",
            ));
        }
        if !crate::bill_import::valid_linking_code(&code) {
            problems.push(crate::FieldProblem::new(
                "linking_code",
                "linking_code_shape",
                "enter the web code printed on your bill: letters and digits",
            ));
        }
        let Some(account) = parsed.filter(|_| problems.is_empty()) else {
            return Err(AppError::Fields(problems));
        };
        self.rate_limit(&format!("link-user:{resident_id}"), 5, 900)
            .await?;
        self.rate_limit(&format!("link-ip:{source_ip}"), 20, 900)
            .await?;
        let mut tx = self.store.begin().await?;
        let stored = store::bill_import::linking_code(&mut tx, account.as_str()).await?;
        let matches = match stored {
            Some(sealed) => {
                let real = self.open(crate::crypto::columns::ACCOUNT_LINKING_CODE, &sealed)?;
                domain::secret::constant_time_eq(&real, &code)
            }
            None => false,
        };
        if !matches {
            self.audit(
                &mut tx,
                &format!("resident:{resident_id}"),
                "resident.link_account",
                account.as_str(),
                "failure",
                source_ip,
                "proof did not match",
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Err(AppError::LinkProofMismatch);
        }
        if res::link_account(&mut tx, resident_id, account.as_str(), self.now_unix()).await? {
            self.audit(
                &mut tx,
                &format!("resident:{resident_id}"),
                "resident.link_account",
                account.as_str(),
                "success",
                source_ip,
                "",
            )
            .await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(account.to_string())
    }

    /// The resident's linked accounts with balance and due date.
    pub async fn dashboard(&self, resident_id: &str) -> Result<Vec<AccountSummary>, AppError> {
        let mut conn = self.store.read().await?;
        let numbers = res::linked_accounts(&mut conn, resident_id).await?;
        let mut out = Vec::with_capacity(numbers.len());
        for n in numbers {
            if let Some(a) = store::accounts::get_with_balance(&mut conn, &n).await? {
                out.push(self.summary_of(&mut conn, a).await?);
            }
        }
        Ok(out)
    }

    /// Object-level check: may this resident see this account?
    pub async fn resident_owns(&self, resident_id: &str, account: &str) -> Result<bool, AppError> {
        let mut conn = self.store.read().await?;
        Ok(res::has_account(&mut conn, resident_id, account).await?)
    }
}
