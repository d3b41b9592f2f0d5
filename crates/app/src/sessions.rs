//! Sessions of the two realms. Residents and staff never share a session: the realm is
//! part of every lookup, and each realm has its own cookie on its own listener.

use crate::ids::{random_token, token_hash};
use crate::{App, AppError};
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
        let (_, absolute) = realm.timeouts();
        sess::insert(
            conn,
            &SessionRow {
                token_hash: token_hash(&token),
                realm: realm.as_str().into(),
                user_id: user_id.into(),
                csrf_token: csrf_token.clone(),
                created_at: now,
                last_seen_at: now,
                expires_at: now + absolute,
            },
        )
        .await?;
        Ok(NewSession { token, csrf_token })
    }

    /// The live session for a cookie token, if any; refreshes the idle clock.
    pub async fn session(&self, realm: Realm, token: &str) -> Result<Option<Session>, AppError> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let (idle, _) = realm.timeouts();
        let mut conn = self.store.conn().await?;
        Ok(sess::touch(
            &mut conn,
            &token_hash(token),
            realm.as_str(),
            self.now_unix(),
            idle,
        )
        .await?
        .map(|s| Session {
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
