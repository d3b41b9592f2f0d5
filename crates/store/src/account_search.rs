//! Staff account search: the blind index of account words (migration 0017). The store sees
//! only keyed hashes; `app::account_search` computes them.

use crate::bill_import::{placeholders, rows_per_insert};
use crate::Result;
use sqlx::AnyConnection;

/// Adds (account number, word key) rows; a row already present is left alone.
pub async fn insert_words(conn: &mut AnyConnection, rows: &[(String, String)]) -> Result<()> {
    let n = rows_per_insert(conn).await;
    for chunk in rows.chunks(n) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", placeholders(i * 2 + 1, 2)))
            .collect();
        let sql = format!(
            "INSERT INTO account_search_words (account_number, word_key) VALUES {}
             ON CONFLICT (account_number, word_key) DO NOTHING",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (account, key) in chunk {
            q = q.bind(account).bind(key);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Accounts indexed under every one of `keys` (whole words, all of them), by number.
pub async fn with_all_words(
    conn: &mut AnyConnection,
    keys: &[String],
    limit: i64,
) -> Result<Vec<String>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT account_number FROM account_search_words WHERE word_key IN ({})
         GROUP BY account_number HAVING COUNT(*) = ${}
         ORDER BY account_number LIMIT ${}",
        placeholders(1, keys.len()),
        keys.len() + 1,
        keys.len() + 2
    );
    let mut q = sqlx::query_as::<_, (String,)>(&sql);
    for k in keys {
        q = q.bind(k);
    }
    let rows = q
        .bind(i64::try_from(keys.len()).unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|(a,)| a).collect())
}

/// Accounts whose number starts with `prefix` (the caller allows only letters, digits and
/// `-`, so the pattern has no wildcard of its own).
pub async fn with_number_prefix(
    conn: &mut AnyConnection,
    prefix: &str,
    limit: i64,
) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT account_number FROM utility_accounts WHERE account_number LIKE $1
         ORDER BY account_number LIMIT $2",
    )
    .bind(format!("{prefix}%"))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(a,)| a).collect())
}

/// Accounts linked to the resident whose email has this blind index.
pub async fn linked_to_email(
    conn: &mut AnyConnection,
    email_key: &str,
    limit: i64,
) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT ra.account_number FROM resident_accounts ra
         JOIN residents r ON r.id = ra.resident_id
         WHERE r.email_key = $1 ORDER BY ra.account_number LIMIT $2",
    )
    .bind(email_key)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(a,)| a).collect())
}

/// (account number, sealed holder name, sealed service street) of accounts after `after`
/// (by number) that have no index row yet: the back-fill at start.
pub async fn unindexed_page(
    conn: &mut AnyConnection,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT a.account_number, a.holder_name, a.service_street FROM utility_accounts a
         WHERE a.account_number > $1 AND NOT EXISTS
           (SELECT 1 FROM account_search_words w WHERE w.account_number = a.account_number)
         ORDER BY a.account_number LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
