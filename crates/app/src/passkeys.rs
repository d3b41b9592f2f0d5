//! Passkeys (WebAuthn, through webauthn-rs): a second factor for staff (beside their
//! mandatory TOTP) and for residents (instead of, or beside, TOTP).
//!
//! Each listener is its own relying party: the portal's RP ID is the portal's host name,
//! the back office's is its own, so a passkey made for one never works on the other.
//! WebAuthn needs a domain name: on an origin that is an IP address (the tests' default)
//! passkeys are simply not offered.
//!
//! A ceremony has two requests. The first stores the server's half (the challenge) in
//! `passkey_ceremonies` under the SHA-256 of a random token the browser holds; the second
//! presents the browser's signed answer, which is checked against that state and the
//! stored public keys. Registration tokens travel in a form field and are used once;
//! sign-in ceremonies are opened with the login challenge (after a right password) and
//! keyed by its cookie token, so the passkey step is bound to the password step and
//! shares its 5-minute life and 5 attempts.

use crate::ids::{random_id, random_token, token_hash};
use crate::mfa::CHALLENGE_SECS;
use crate::sessions::Realm;
use crate::{App, AppError};
use base64::Engine;
use sha2::{Digest, Sha256};
use store::passkeys::{self as pk, CeremonyRow, PasskeyRow};
use store::StoreError;
use webauthn_rs::prelude::{
    COSEAlgorithm, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

/// Passkeys one person may register.
pub const MAX_PASSKEYS: usize = 10;
/// Longest passkey name.
pub const MAX_NAME_CHARS: usize = 60;
/// The message shown when a passkey answer does not verify.
pub const NOT_VERIFIED: &str = "the passkey could not be verified; try again";

const REGISTER: &str = "register";
const LOGIN: &str = "login";

/// The two relying parties (portal, back office), where their origins allow one.
pub struct RelyingParties {
    portal: Option<Webauthn>,
    staff: Option<Webauthn>,
}

impl std::fmt::Debug for RelyingParties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParties")
            .field("portal", &self.portal.is_some())
            .field("staff", &self.staff.is_some())
            .finish()
    }
}

impl RelyingParties {
    /// One relying party per origin (`https://pay.city.gov`); `None` for an origin whose
    /// host is not a domain name.
    pub fn new(portal_origin: &str, staff_origin: &str, name: &str) -> RelyingParties {
        let rp = |origin: &str| -> Option<Webauthn> {
            let url = Url::parse(origin).ok()?;
            let host = url.domain()?.to_owned();
            WebauthnBuilder::new(&host, &url)
                .ok()?
                .rp_name(name)
                .build()
                .ok()
        };
        RelyingParties {
            portal: rp(portal_origin),
            staff: rp(staff_origin),
        }
    }

    fn get(&self, realm: Realm) -> Option<&Webauthn> {
        match realm {
            Realm::Resident => self.portal.as_ref(),
            Realm::Staff => self.staff.as_ref(),
        }
    }
}

/// A passkey as its owner sees it in their list.
#[derive(Debug, Clone)]
pub struct PasskeyInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A registration ceremony begun: the token goes in the page's form, the options to the
/// browser's `navigator.credentials.create`.
#[derive(Clone)]
pub struct PasskeyCeremony {
    pub token: String,
    pub options_json: String,
    pub name: String,
}

impl std::fmt::Debug for PasskeyCeremony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasskeyCeremony { .. }")
    }
}

/// The WebAuthn user handle of a person: derived from realm and id, so it reveals
/// neither the email address nor the database id.
fn user_handle(realm: Realm, user_id: &str) -> Uuid {
    let digest = Sha256::digest(format!(
        "strongroom passkey user:{}:{user_id}",
        realm.as_str()
    ));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// The signature algorithms a passkey may use: ECDSA P-256 and Ed25519.
fn strong_algorithm(alg: COSEAlgorithm) -> bool {
    matches!(alg, COSEAlgorithm::ES256 | COSEAlgorithm::EDDSA)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn actor(realm: Realm, user_id: &str) -> String {
    format!("{}:{user_id}", realm.as_str())
}

fn parse_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::invalid(
            "name",
            "give the passkey a name, such as the device it is on",
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::invalid(
            "name",
            format!("a passkey name is at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            "a passkey name cannot contain control characters",
        ));
    }
    Ok(name.to_owned())
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("passkeys: {e}"))
}

impl App {
    /// Can people of this realm use passkeys here (is its origin a domain name)?
    pub fn passkeys_available(&self, realm: Realm) -> bool {
        self.rps.get(realm).is_some()
    }

    fn rp(&self, realm: Realm) -> Result<&Webauthn, AppError> {
        self.rps.get(realm).ok_or_else(|| {
            AppError::invalid(
                "passkey",
                "passkeys need the site to be reached by a domain name",
            )
        })
    }

    /// A person's passkeys, oldest first.
    pub async fn passkeys(
        &self,
        realm: Realm,
        user_id: &str,
    ) -> Result<Vec<PasskeyInfo>, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(pk::list(&mut conn, realm.as_str(), user_id)
            .await?
            .into_iter()
            .map(|r| PasskeyInfo {
                id: r.id,
                name: r.name,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
            })
            .collect())
    }

    /// Starts adding a passkey named `name` for a signed-in person (`account_name`: what
    /// their authenticator shows, their username or email address). Takes their password
    /// again (a wrong one: `AppError::Invalid` on `current_password`): a borrowed or stolen
    /// session alone cannot add a second factor.
    pub async fn begin_passkey_registration(
        &self,
        realm: Realm,
        user_id: &str,
        account_name: &str,
        name: &str,
        password_plain: &str,
        source_ip: &str,
    ) -> Result<PasskeyCeremony, AppError> {
        let name = parse_name(name)?;
        let rp = self.rp(realm)?;
        self.reauthenticate(realm, user_id, password_plain, source_ip)
            .await?;
        let now = self.now_unix();
        let mut conn = self.store.conn().await?;
        let existing = pk::list(&mut conn, realm.as_str(), user_id).await?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(AppError::invalid(
                "name",
                format!("you have {MAX_PASSKEYS} passkeys; remove one before adding another"),
            ));
        }
        let exclude = existing
            .iter()
            .filter_map(|r| serde_json::from_str::<Passkey>(&r.credential).ok())
            .map(|p| p.cred_id().clone())
            .collect::<Vec<_>>();
        let (options, state) = rp
            .start_passkey_registration(
                user_handle(realm, user_id),
                account_name,
                account_name,
                Some(exclude),
            )
            .map_err(internal)?;
        let options_json = serde_json::to_string(&options).map_err(internal)?;
        let token = random_token();
        pk::insert_ceremony(
            &mut conn,
            &CeremonyRow {
                token_hash: token_hash(&token),
                realm: realm.as_str().into(),
                user_id: user_id.into(),
                purpose: REGISTER.into(),
                state: serde_json::to_string(&state).map_err(internal)?,
                options: options_json.clone(),
                label: name.clone(),
                expires_at: now + CHALLENGE_SECS,
            },
            now,
        )
        .await?;
        Ok(PasskeyCeremony {
            token,
            options_json,
            name,
        })
    }

    /// Finishes adding a passkey: `credential_json` is the browser's answer. A resident
    /// whose first second factor this is gets recovery codes (returned once).
    pub async fn finish_passkey_registration(
        &self,
        realm: Realm,
        user_id: &str,
        ceremony_token: &str,
        credential_json: &str,
        source_ip: &str,
    ) -> Result<Vec<String>, AppError> {
        let rp = self.rp(realm)?;
        let now = self.now_unix();
        let hash = token_hash(ceremony_token);
        let mut tx = self.store.begin().await?;
        let c = match pk::ceremony(&mut tx, realm.as_str(), REGISTER, &hash).await? {
            Some(c) if c.user_id == user_id && c.expires_at > now => c,
            _ => return Err(AppError::BadToken),
        };
        // Used once, whatever the answer.
        if !pk::take_ceremony(&mut tx, &hash).await? {
            return Err(AppError::BadToken);
        }
        let verified = serde_json::from_str::<RegisterPublicKeyCredential>(credential_json)
            .ok()
            .zip(serde_json::from_str::<PasskeyRegistration>(&c.state).ok())
            .and_then(|(answer, state)| rp.finish_passkey_registration(&answer, &state).ok())
            // Elliptic-curve keys only: RS256 (RSASSA-PKCS1-v1_5, RSA-2048) is below the
            // project's bar (ASVS 11.2.3, 11.6.1); webauthn-rs offers it by default.
            .filter(|p| strong_algorithm(p.get_public_key().type_));
        let actor = actor(realm, user_id);
        let event = format!("{}.passkey_added", realm.as_str());
        let Some(passkey) = verified else {
            self.audit(
                &mut tx,
                &actor,
                &event,
                user_id,
                "failure",
                source_ip,
                "not verified",
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Err(AppError::invalid("credential", NOT_VERIFIED));
        };
        let id = random_id();
        let inserted = pk::insert(
            &mut tx,
            &PasskeyRow {
                id: id.clone(),
                realm: realm.as_str().into(),
                user_id: user_id.into(),
                credential_id: b64(passkey.cred_id().as_ref()),
                name: c.label.clone(),
                credential: serde_json::to_string(&passkey).map_err(internal)?,
                created_at: now,
                last_used_at: None,
            },
        )
        .await?;
        if !inserted {
            tx.commit().await.map_err(StoreError::from)?;
            return Err(AppError::invalid(
                "credential",
                "this passkey is already registered",
            ));
        }
        let mut codes = Vec::new();
        if realm == Realm::Resident {
            let t = &store::mfa::RESIDENT;
            let totp_on = store::mfa::get_in(t, &mut tx, user_id)
                .await?
                .is_some_and(|r| r.enrolled_at.is_some());
            let unused = store::mfa::unused_recovery_codes_in(t, &mut tx, user_id).await?;
            if !totp_on && unused == 0 {
                codes = self.issue_recovery_codes(&mut tx, t, user_id, now).await?;
            }
        }
        self.audit(
            &mut tx,
            &actor,
            &event,
            &id,
            "success",
            source_ip,
            &if codes.is_empty() {
                "passkey added".to_owned()
            } else {
                format!("passkey added; {} recovery codes issued", codes.len())
            },
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(codes)
    }

    /// Removes one of a signed-in person's passkeys; takes their password again (a wrong
    /// one: `AppError::Invalid` on `current_password`).
    pub async fn remove_passkey(
        &self,
        realm: Realm,
        user_id: &str,
        passkey_id: &str,
        password_plain: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        self.reauthenticate(realm, user_id, password_plain, source_ip)
            .await?;
        let mut tx = self.store.begin().await?;
        if !pk::delete(&mut tx, realm.as_str(), user_id, passkey_id).await? {
            return Err(AppError::NotFound("passkey"));
        }
        self.audit(
            &mut tx,
            &actor(realm, user_id),
            &format!("{}.passkey_removed", realm.as_str()),
            passkey_id,
            "success",
            source_ip,
            "",
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// In the password step's transaction, when the person has passkeys: opens a sign-in
    /// ceremony bound to the login challenge `challenge_token`. Returns whether it did.
    pub(crate) async fn open_passkey_login(
        &self,
        conn: &mut store::Conn,
        realm: Realm,
        user_id: &str,
        challenge_token: &str,
    ) -> Result<bool, AppError> {
        let Some(rp) = self.rps.get(realm) else {
            return Ok(false);
        };
        let keys: Vec<Passkey> = pk::list(conn, realm.as_str(), user_id)
            .await?
            .iter()
            .filter_map(|r| serde_json::from_str(&r.credential).ok())
            .collect();
        if keys.is_empty() {
            return Ok(false);
        }
        let (options, state) = rp.start_passkey_authentication(&keys).map_err(internal)?;
        let now = self.now_unix();
        pk::insert_ceremony(
            conn,
            &CeremonyRow {
                token_hash: token_hash(challenge_token),
                realm: realm.as_str().into(),
                user_id: user_id.into(),
                purpose: LOGIN.into(),
                state: serde_json::to_string(&state).map_err(internal)?,
                options: serde_json::to_string(&options).map_err(internal)?,
                label: String::new(),
                expires_at: now + CHALLENGE_SECS,
            },
            now,
        )
        .await?;
        Ok(true)
    }

    /// The options for `navigator.credentials.get` of a live sign-in ceremony (the login
    /// challenge's cookie token), if the person has passkeys.
    pub async fn passkey_login_options(
        &self,
        realm: Realm,
        challenge_token: &str,
    ) -> Result<Option<String>, AppError> {
        if !crate::mfa::well_formed_token(challenge_token) {
            return Ok(None);
        }
        let mut conn = self.store.conn().await?;
        Ok(pk::ceremony(
            &mut conn,
            realm.as_str(),
            LOGIN,
            &token_hash(challenge_token),
        )
        .await?
        .filter(|c| c.expires_at > self.now_unix())
        .map(|c| c.options))
    }

    /// Checks a sign-in answer against the ceremony of login challenge `challenge_hash`:
    /// true when it is signed by one of `user_id`'s passkeys (whose counter is then
    /// updated, and the ceremony used up).
    pub(crate) async fn check_passkey_login(
        &self,
        conn: &mut store::Conn,
        realm: Realm,
        user_id: &str,
        challenge_hash: &str,
        credential_json: &str,
        now: i64,
    ) -> Result<bool, AppError> {
        let Some(rp) = self.rps.get(realm) else {
            return Ok(false);
        };
        let c = match pk::ceremony(conn, realm.as_str(), LOGIN, challenge_hash).await? {
            Some(c) if c.user_id == user_id && c.expires_at > now => c,
            _ => return Ok(false),
        };
        let Some(result) = serde_json::from_str::<PublicKeyCredential>(credential_json)
            .ok()
            .zip(serde_json::from_str::<PasskeyAuthentication>(&c.state).ok())
            .and_then(|(answer, state)| rp.finish_passkey_authentication(&answer, &state).ok())
        else {
            return Ok(false);
        };
        let used = b64(result.cred_id().as_ref());
        let Some(row) = pk::list(conn, realm.as_str(), user_id)
            .await?
            .into_iter()
            .find(|r| r.credential_id == used)
        else {
            return Ok(false);
        };
        if !pk::take_ceremony(conn, challenge_hash).await? {
            return Ok(false);
        }
        let mut key: Passkey = serde_json::from_str(&row.credential).map_err(internal)?;
        key.update_credential(&result);
        pk::record_use(
            conn,
            &row.id,
            &serde_json::to_string(&key).map_err(internal)?,
            now,
        )
        .await?;
        Ok(true)
    }

    /// Does this person have a passkey?
    pub(crate) async fn has_passkeys(
        &self,
        conn: &mut store::Conn,
        realm: Realm,
        user_id: &str,
    ) -> Result<bool, AppError> {
        Ok(pk::count(conn, realm.as_str(), user_id).await? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_elliptic_curve_passkeys() {
        assert!(strong_algorithm(COSEAlgorithm::ES256));
        assert!(strong_algorithm(COSEAlgorithm::EDDSA));
        assert!(!strong_algorithm(COSEAlgorithm::RS256));
        assert!(!strong_algorithm(COSEAlgorithm::INSECURE_RS1));
    }

    #[test]
    fn names_are_checked() {
        assert!(parse_name("  ").is_err());
        assert!(parse_name(&"x".repeat(61)).is_err());
        assert!(parse_name("Work\u{7}key").is_err());
        assert_eq!(parse_name(" YubiKey 5 ").ok().as_deref(), Some("YubiKey 5"));
    }

    #[test]
    fn relying_parties_need_domain_names() {
        let rps = RelyingParties::new("http://127.0.0.1:8080", "https://staff.example.gov", "City");
        assert!(rps.get(Realm::Resident).is_none());
        assert!(rps.get(Realm::Staff).is_some());
        let rps = RelyingParties::new("http://localhost:8080", "http://[::1]:8081", "City");
        assert!(rps.get(Realm::Resident).is_some());
        assert!(rps.get(Realm::Staff).is_none());
    }

    #[test]
    fn user_handles_differ_by_realm_and_person() {
        let a = user_handle(Realm::Staff, "u1");
        assert_eq!(a, user_handle(Realm::Staff, "u1"));
        assert_ne!(a, user_handle(Realm::Resident, "u1"));
        assert_ne!(a, user_handle(Realm::Staff, "u2"));
    }
}
