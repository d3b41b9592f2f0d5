//! Staff account search: by account number (exact or prefix), by whole words of the holder
//! name or service street, or by a resident's email address.
//!
//! Holder names and streets are sealed at rest, so they are not searched in clear: each
//! account's words (normalised by `domain::account::search_words`) are stored as keyed blind
//! indexes (`KeyRing::blind_index(INDEX_ACCOUNT_WORD, word)`) in `account_search_words`,
//! written in the transaction that creates the account and back-filled at start for accounts
//! from before the index ([`App::index_unindexed_accounts`]). A search hashes its words the
//! same way and asks for the accounts that have all of them. Email search uses the residents'
//! email blind index and lists the accounts linked to that resident.

use crate::crypto::columns;
use crate::{App, AppError};
use domain::account::search_words;
use store::account_search as idx;

/// Blind-index kind of an account's name and street words.
pub const INDEX_ACCOUNT_WORD: &str = "account_word";

/// At most this many words of a query are looked up.
const MAX_QUERY_WORDS: usize = 8;

/// One account found by a staff search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountHit {
    pub account_number: String,
    pub holder_name: String,
    pub service_street: String,
    pub service_city: String,
}

impl App {
    /// The index rows of one account's holder name and street (clear text in, hashes out).
    pub(crate) fn account_word_rows(
        &self,
        account: &str,
        holder_name: &str,
        service_street: &str,
    ) -> Vec<(String, String)> {
        let mut words = search_words(holder_name);
        for w in search_words(service_street) {
            if !words.contains(&w) {
                words.push(w);
            }
        }
        words
            .iter()
            .map(|w| {
                (
                    account.to_owned(),
                    self.keys().blind_index(INDEX_ACCOUNT_WORD, w),
                )
            })
            .collect()
    }

    /// Indexes accounts that have no search words yet (accounts from before the index):
    /// run once at start, a no-op afterwards. Returns how many accounts it indexed.
    pub async fn index_unindexed_accounts(&self) -> Result<u64, AppError> {
        const BATCH: i64 = 500;
        let mut indexed = 0;
        let mut after = String::new();
        loop {
            let mut tx = self.store.begin().await?;
            let rows = idx::unindexed_page(&mut tx, &after, BATCH).await?;
            let Some((last, _, _)) = rows.last() else {
                break;
            };
            after = last.clone();
            let mut words = Vec::new();
            for (account, holder, street) in &rows {
                let holder = self.open(columns::ACCOUNT_HOLDER_NAME, holder)?;
                let street = self.open(columns::ACCOUNT_SERVICE_STREET, street)?;
                words.extend(self.account_word_rows(account, &holder, &street));
            }
            idx::insert_words(&mut tx, &words).await?;
            tx.commit().await.map_err(store::StoreError::from)?;
            indexed += rows.len() as u64;
        }
        Ok(indexed)
    }

    /// Staff search for accounts. A query with `@` is a resident's email (the accounts
    /// linked to them); digits are an account number or its beginning; anything else is
    /// whole words of the holder name or service street, all of which must match. Exact
    /// account number first, then by number; at most `limit`.
    pub async fn search_accounts(&self, q: &str, limit: i64) -> Result<Vec<AccountHit>, AppError> {
        let q = q.trim();
        if q.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.store.conn().await?;
        let mut numbers = if q.contains('@') {
            idx::linked_to_email(&mut conn, &self.email_index(q), limit).await?
        } else {
            let mut found = Vec::new();
            if q.len() <= 12 && q.bytes().all(|b| b.is_ascii_digit()) {
                found = idx::with_number_prefix(&mut conn, q, limit).await?;
            }
            let keys: Vec<String> = search_words(q)
                .iter()
                .take(MAX_QUERY_WORDS)
                .map(|w| self.keys().blind_index(INDEX_ACCOUNT_WORD, w))
                .collect();
            for a in idx::with_all_words(&mut conn, &keys, limit).await? {
                if !found.contains(&a) {
                    found.push(a);
                }
            }
            found
        };
        numbers.sort_by_key(|a| (a != q, a.clone()));
        numbers.truncate(usize::try_from(limit).unwrap_or(0));
        let mut out = Vec::with_capacity(numbers.len());
        for n in numbers {
            let Some(a) = store::accounts::get(&mut conn, &n).await? else {
                continue;
            };
            out.push(AccountHit {
                holder_name: self.open(columns::ACCOUNT_HOLDER_NAME, &a.holder_name)?,
                service_street: self.open(columns::ACCOUNT_SERVICE_STREET, &a.service_street)?,
                service_city: a.service_city,
                account_number: a.account_number,
            });
        }
        Ok(out)
    }
}
