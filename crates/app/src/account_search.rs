//! Staff find an account by number (or its beginning), by words of the holder's name or
//! of the service street, or by a resident's email (the accounts that resident linked).
//! Names and streets are sealed at rest, so their words are indexed only as keyed blind
//! indexes (`account_search`), filled for every account without one at start and by the
//! worker every minute and before each search (500 at a time: an account imported a
//! moment ago is found at once, up to the backlog of a large import).

use crate::crypto::columns;
use crate::{App, AppError};
use store::accounts;

const INDEX_WORD: &str = "word";
/// Results shown.
pub const MAX_RESULTS: i64 = 50;

/// The words of a name or street: letters and digits, lower case, two characters or more.
fn words(s: &str) -> Vec<String> {
    let mut w: Vec<String> = s
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .collect();
    w.sort();
    w.dedup();
    w
}

/// A found account.
#[derive(Debug, Clone)]
pub struct Found {
    pub account_number: String,
    pub holder_name: String,
    pub service_street: String,
    pub balance: domain::Money,
}

impl App {
    fn word_token(&self, w: &str) -> String {
        self.keys().blind_index(INDEX_WORD, w)
    }

    /// Indexes up to `limit` accounts not yet indexed; returns how many.
    pub async fn index_accounts_for_search(&self, limit: i64) -> Result<usize, AppError> {
        // Usually nothing is waiting: a read, not a write transaction, per search and tick.
        {
            let mut conn = self.store.conn().await?;
            if accounts::unindexed(&mut conn, 1).await?.is_empty() {
                return Ok(0);
            }
        }
        let mut tx = self.store.begin().await?;
        let todo = accounts::unindexed(&mut tx, limit).await?;
        for (number, name, street) in &todo {
            let name = self.open(columns::ACCOUNT_HOLDER_NAME, name)?;
            let street = self.open(columns::ACCOUNT_SERVICE_STREET, street)?;
            let mut tokens: Vec<String> = words(&name)
                .into_iter()
                .chain(words(&street))
                .map(|w| self.word_token(&w))
                .collect();
            tokens.sort();
            tokens.dedup();
            accounts::index_account(&mut tx, number, &tokens).await?;
        }
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(todo.len())
    }

    /// Finds accounts; see the module documentation.
    pub async fn find_accounts(&self, query: &str) -> Result<Vec<Found>, AppError> {
        let q = query.trim();
        if q.is_empty() || q.chars().count() > 200 {
            return Ok(Vec::new());
        }
        // Accounts made since the worker last ran are indexed first (a bounded batch).
        self.index_accounts_for_search(500).await?;
        let mut conn = self.store.conn().await?;
        let numbers = if q.contains('@') {
            let index = self.email_index(q);
            match store::residents::by_email_key(&mut conn, &index).await? {
                Some(r) => store::residents::linked_accounts(&mut conn, &r.id).await?,
                None => Vec::new(),
            }
        } else if q.chars().all(|c| c.is_ascii_digit()) {
            accounts::with_prefix(&mut conn, q, MAX_RESULTS).await?
        } else {
            let tokens: Vec<String> = words(q).iter().map(|w| self.word_token(w)).collect();
            accounts::with_tokens(&mut conn, &tokens, MAX_RESULTS).await?
        };
        let mut out = Vec::with_capacity(numbers.len());
        for n in numbers.into_iter().take(MAX_RESULTS as usize) {
            let Some(a) = accounts::get(&mut conn, &n).await? else {
                continue;
            };
            out.push(Found {
                balance: domain::Money::from_cents(
                    accounts::balance_cents(&mut conn, &n).await?,
                    self.config().currency,
                ),
                holder_name: self.open(columns::ACCOUNT_HOLDER_NAME, &a.holder_name)?,
                service_street: self.open(columns::ACCOUNT_SERVICE_STREET, &a.service_street)?,
                account_number: n,
            });
        }
        Ok(out)
    }
}
