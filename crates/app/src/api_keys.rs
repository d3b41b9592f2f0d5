//! API keys of the city's systems (CIS, finance): made by administrators in the back
//! office, shown once, kept only as the SHA-256 of their secret, revocable, and scoped.
//! A key is `sr_live_<id>_<secret>` (the prefix lets secret scanners and our log scrubber
//! spot it; the id finds the row; the secret, 32 characters from the OS RNG, proves it).
//! Every state-changing call made with a key is audited with the key as its actor
//! (`api_key:<id>`); reads are counted on the key (`last_used_at`), not audited one by one.

use crate::staff::{Role, StaffUser};
use crate::{App, AppError, FieldProblem};
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};
use store::api_keys::{self as ak, ApiKeyRow};
use store::StoreError;

/// What a key may do.
pub const SCOPES: [&str; 4] = [
    "bills:write",
    "payments:read",
    "postings:read",
    "refunds:write",
];

/// The prefix of every key.
pub const PREFIX: &str = "sr_live_";

/// A key as the API sees it after checking it.
#[derive(Debug, Clone)]
pub struct ApiPrincipal {
    pub key_id: String,
    pub scopes: Vec<String>,
}

impl ApiPrincipal {
    pub fn may(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The actor of audit entries.
    pub fn actor(&self) -> String {
        format!("api_key:{}", self.key_id)
    }
}

/// A key as the back office lists it (never its secret).
#[derive(Debug, Clone)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn view(r: ApiKeyRow) -> ApiKeyView {
    ApiKeyView {
        scopes: r.scopes.split_whitespace().map(str::to_owned).collect(),
        id: r.id,
        name: r.name,
        created_by: r.created_by,
        created_at: r.created_at,
        revoked_at: r.revoked_at,
        last_used_at: r.last_used_at,
    }
}

impl App {
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyView>, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(ak::list(&mut conn).await?.into_iter().map(view).collect())
    }

    /// Makes a key (administrators); returns it with its full text, shown once.
    pub async fn create_api_key(
        &self,
        staff: &StaffUser,
        name: &str,
        scopes: &[String],
        source_ip: &str,
    ) -> Result<(ApiKeyView, String), AppError> {
        if staff.role != Role::Administrator {
            return Err(AppError::Forbidden);
        }
        let name = name.trim();
        let mut problems = Vec::new();
        if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
            problems.push(FieldProblem::new(
                "name",
                "key_name",
                "give the key a name of 1 to 80 characters",
            ));
        }
        if scopes.is_empty() || scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
            problems.push(FieldProblem::new(
                "scopes",
                "key_scopes",
                "choose what the key may do",
            ));
        }
        if !problems.is_empty() {
            return Err(AppError::Fields(problems));
        }
        let id = Alphanumeric
            .sample_string(&mut rand::rngs::OsRng, 12)
            .to_ascii_lowercase();
        let secret = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32);
        let row = ApiKeyRow {
            id: id.clone(),
            name: name.to_owned(),
            secret_hash: hash(&secret),
            scopes: scopes.join(" "),
            created_by: staff.id.clone(),
            created_at: self.now_unix(),
            revoked_at: None,
            last_used_at: None,
        };
        let mut tx = self.store.begin().await?;
        ak::insert(&mut tx, &row).await?;
        self.audit(
            &mut tx,
            &format!("staff:{}", staff.id),
            "api_key.created",
            &format!("api_key:{id}"),
            "success",
            source_ip,
            &format!("{name}: {}", row.scopes),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok((view(row), format!("{PREFIX}{id}_{secret}")))
    }

    pub async fn revoke_api_key(
        &self,
        staff: &StaffUser,
        id: &str,
        source_ip: &str,
    ) -> Result<(), AppError> {
        if staff.role != Role::Administrator {
            return Err(AppError::Forbidden);
        }
        let mut tx = self.store.begin().await?;
        if !ak::revoke(&mut tx, id, self.now_unix()).await? {
            return Err(AppError::NotFound("API key"));
        }
        self.audit(
            &mut tx,
            &format!("staff:{}", staff.id),
            "api_key.revoked",
            &format!("api_key:{id}"),
            "success",
            source_ip,
            "",
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// The key of an `Authorization: Bearer` value, if it is a live key.
    pub async fn api_principal(&self, bearer: &str) -> Result<Option<ApiPrincipal>, AppError> {
        let Some((id, secret)) = bearer
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        if id.is_empty() || id.len() > 32 || secret.len() != 32 {
            return Ok(None);
        }
        let mut conn = self.store.conn().await?;
        let Some(row) = ak::get(&mut conn, id).await? else {
            return Ok(None);
        };
        if row.revoked_at.is_some()
            || !domain::secret::constant_time_eq(&row.secret_hash, &hash(secret))
        {
            return Ok(None);
        }
        ak::touch(&mut conn, id, self.now_unix()).await?;
        Ok(Some(ApiPrincipal {
            key_id: row.id,
            scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
        }))
    }
}

impl App {
    /// A page of payments created in `[from, to)`, newest first, after the payment
    /// `starting_after`; and whether more follow.
    pub async fn payments_page(
        &self,
        from: i64,
        to: i64,
        starting_after: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<crate::payments::PaymentView>, bool), AppError> {
        let mut conn = self.store.conn().await?;
        let cursor = match starting_after {
            None => None,
            Some(id) => {
                let p = store::payments::get(&mut conn, id)
                    .await?
                    .ok_or_else(|| AppError::invalid("starting_after", "no such payment"))?;
                Some((p.created_at, p.id))
            }
        };
        let mut rows = store::payments::page(
            &mut conn,
            from,
            to,
            cursor.as_ref().map(|(t, id)| (*t, id.as_str())),
            limit + 1,
        )
        .await?;
        drop(conn);
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.payment(&r.id).await?);
        }
        Ok((out, more))
    }

    /// A business day's postings in posting order.
    pub async fn postings_of_day(
        &self,
        day: time::Date,
    ) -> Result<Vec<store::postings::PostingRow>, AppError> {
        let mut conn = self.store.conn().await?;
        Ok(store::postings::of_day(&mut conn, &day.to_string()).await?)
    }
}
