//! Sessions of the two realms. Residents and staff never share a session: the realm is
//! part of every lookup, and each realm has its own cookie on its own listener.

use crate::ids::{random_token, token_hash};
use crate::{App, AppError};
use sha2::{Digest, Sha256};
use store::sessions::{self as sess, SessionRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realm {
    Resident,
    Staff,
}

impl Realm {
    pub fn as_str(self) -> &'static str {
        match self {
            Realm::Resident => "resident",
            Realm::Staff => "staff",
        }
    }
    /// Idle timeout, then absolute lifetime, in seconds.
    fn timeouts(self) -> (i64, i64) {
        match self {
            Realm::Resident => (30 * 60, 12 * 3600),
            Realm::Staff => (15 * 60, 8 * 3600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub realm: Realm,
    pub user_id: String,
    pub csrf_token: String,
    token_hash: String,
}

impl Session {
    /// This session's opaque reference (see [`session_ref`]).
    pub fn reference(&self) -> String {
        session_ref(&self.token_hash)
    }
}

/// At most this many sessions per user and realm. A new sign-in beyond it ends the oldest
/// sessions of that user (by creation time), so sign-ins from forgotten devices do not
/// pile up and the "active sessions" list stays short (ASVS 7.1.2 / 7.5.2).
pub const MAX_SESSIONS_PER_USER: usize = 10;

/// The reference of a session shown to its owner (and posted back to end it): the first
/// 64 bits of SHA-256 over the stored token hash, written with the letters `a`..`p` (one
/// per 4 bits). It names a session without revealing the token or its stored hash, and
/// having no digits it can never look like a card number to the card-number guard.
pub fn session_ref(token_hash: &str) -> String {
    Sha256::digest(token_hash.as_bytes())
        .iter()
        .take(8)
        .flat_map(|b| [b >> 4, b & 0x0f])
        .map(|n| char::from(b'a' + n))
        .collect()
}

/// One active session of a user, as listed to them.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub reference: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// The session the request listing them came with.
    pub this_device: bool,
}

/// A new session: the token goes in the cookie and is never stored.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
}

impl App {
    pub async fn create_session(
        &self,
        conn: &mut store::Conn,
        realm: Realm,
        user_id: &str,
    ) -> Result<NewSession, AppError> {
        let token = random_token();
        let csrf_token = random_token();
        let now = self.now_unix();
        let (idle, absolute) = realm.timeouts();
        let hash = token_hash(&token);
        sess::insert(
            conn,
            &SessionRow {
                token_hash: hash.clone(),
                realm: realm.as_str().into(),
                user_id: user_id.into(),
                csrf_token: csrf_token.clone(),
                created_at: now,
                last_seen_at: now,
                expires_at: now + absolute,
            },
        )
        .await?;
        // Parallel sessions are capped at MAX_SESSIONS_PER_USER: the user's expired rows are
        // dropped, then the oldest live ones beyond the cap (the new one always stays).
        let others: Vec<SessionRow> = sess::for_user(conn, realm.as_str(), user_id)
            .await?
            .into_iter()
            .filter(|r| r.token_hash != hash)
            .collect();
        let (live, dead): (Vec<SessionRow>, Vec<SessionRow>) = others
            .into_iter()
            .partition(|r| r.expires_at > now && r.last_seen_at + idle > now);
        let excess = (live.len() + 1).saturating_sub(MAX_SESSIONS_PER_USER);
        for r in dead.iter().chain(live.iter().take(excess)) {
            sess::delete(conn, &r.token_hash).await?;
        }
        Ok(NewSession { token, csrf_token })
    }

    /// The live sessions of a user, newest first; `current` (the caller's own session, if
    /// it is one of them) is flagged `this_device`.
    pub async fn sessions_of(
        &self,
        realm: Realm,
        user_id: &str,
        current: Option<&Session>,
    ) -> Result<Vec<SessionInfo>, AppError> {
        let (idle, _) = realm.timeouts();
        let now = self.now_unix();
        let rows = {
            let mut conn = self.store.conn().await?;
            sess::for_user(&mut conn, realm.as_str(), user_id).await?
        };
        let mut out: Vec<SessionInfo> = rows
            .into_iter()
            .filter(|r| r.expires_at > now && r.last_seen_at + idle > now)
            .map(|r| SessionInfo {
                reference: session_ref(&r.token_hash),
                created_at: r.created_at,
                last_seen_at: r.last_seen_at,
                this_device: current
                    .is_some_and(|c| c.realm == realm && c.token_hash == r.token_hash),
            })
            .collect();
        out.reverse();
        Ok(out)
    }

    /// Ends one session of `user_id`, named by its reference, and records it
    /// (`{realm}.session_ended`). Only sessions of that user can match. False when no
    /// session of that user has that reference (already ended, or not theirs).
    pub async fn end_session_by_id(
        &self,
        realm: Realm,
        user_id: &str,
        session_ref_value: &str,
        source_ip: &str,
    ) -> Result<bool, AppError> {
        let mut tx = self.store.begin().await?;
        let target = sess::for_user(&mut tx, realm.as_str(), user_id)
            .await?
            .into_iter()
            .find(|r| {
                domain::secret::constant_time_eq(&session_ref(&r.token_hash), session_ref_value)
            });
        let ended = match &target {
            Some(r) => {
                sess::delete_of_user(&mut tx, realm.as_str(), user_id, &r.token_hash).await?
            }
            None => false,
        };
        let realm_name = realm.as_str();
        self.audit(
            &mut tx,
            &format!("{realm_name}:{user_id}"),
            &format!("{realm_name}.session_ended"),
            user_id,
            if ended { "success" } else { "failure" },
            source_ip,
            if ended { "one" } else { "no such session" },
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(ended)
    }

    /// Ends every session of `user_id` except `except` (the caller's own, when a user ends
    /// their other sessions), recording it (`{realm}.sessions_ended`). Returns how many
    /// were ended.
    pub async fn end_all_sessions(
        &self,
        realm: Realm,
        user_id: &str,
        except: Option<&Session>,
        source_ip: &str,
    ) -> Result<u64, AppError> {
        let mut tx = self.store.begin().await?;
        let n = self
            .end_sessions_in(&mut tx, realm, user_id, except)
            .await?;
        let realm_name = realm.as_str();
        self.audit(
            &mut tx,
            &format!("{realm_name}:{user_id}"),
            &format!("{realm_name}.sessions_ended"),
            user_id,
            "success",
            source_ip,
            &format!("ended {n}"),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(n)
    }

    /// Inside a transaction: ends every session of `user_id` in `realm`, except `except`
    /// when it is a session of that same user.
    pub(crate) async fn end_sessions_in(
        &self,
        conn: &mut store::Conn,
        realm: Realm,
        user_id: &str,
        except: Option<&Session>,
    ) -> Result<u64, AppError> {
        let keep = except
            .filter(|s| s.realm == realm && s.user_id == user_id)
            .map(|s| s.token_hash.clone())
            .unwrap_or_default();
        Ok(sess::delete_for_user_except(conn, realm.as_str(), user_id, &keep).await?)
    }

    /// The live session for a cookie token, if any; refreshes the idle clock.
    pub async fn session(&self, realm: Realm, token: &str) -> Result<Option<Session>, AppError> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let (idle, _) = realm.timeouts();
        let now = self.now_unix();
        let hash = token_hash(token);
        let found = {
            let mut read = self.store.read().await?;
            sess::find(&mut read, &hash, realm.as_str(), now, idle).await?
        };
        let s = match found {
            sess::Found::Live { session, stale } => {
                if stale {
                    sess::seen(&mut *self.store.conn().await?, &hash, now).await?;
                }
                session
            }
            sess::Found::Dead => {
                sess::delete(&mut *self.store.conn().await?, &hash).await?;
                return Ok(None);
            }
            sess::Found::Missing => return Ok(None),
        };
        Ok(Some(Session {
            realm,
            user_id: s.user_id,
            csrf_token: s.csrf_token,
            token_hash: s.token_hash,
        }))
    }

    /// Signs out: ends the session and records it (`staff.logout` / `resident.logout`) in
    /// one transaction.
    pub async fn logout(&self, session: &Session, source_ip: &str) -> Result<(), AppError> {
        let mut tx = self.store.begin().await?;
        sess::delete(&mut tx, &session.token_hash).await?;
        let realm = session.realm.as_str();
        self.audit(
            &mut tx,
            &format!("{realm}:{}", session.user_id),
            &format!("{realm}.logout"),
            &session.user_id,
            "success",
            source_ip,
            "",
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(())
    }

    pub async fn end_session(&self, session: &Session) -> Result<(), AppError> {
        let mut conn = self.store.conn().await?;
        sess::delete(&mut conn, &session.token_hash).await?;
        Ok(())
    }
}
