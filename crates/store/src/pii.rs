//! The columns that hold sealed personal data, for the re-encryption pass after a key
//! rotation. The store does not know keys: it reads and writes the sealed TEXT.

use crate::Result;
use sqlx::{AnyConnection, Row};

/// A table with sealed columns, keyed by a TEXT primary key.
#[derive(Debug)]
pub struct SealedTable {
    pub table: &'static str,
    pub key: &'static str,
    pub columns: &'static [&'static str],
}

/// Every sealed column. Names are constants: they are formatted into SQL.
pub const SEALED: &[SealedTable] = &[
    SealedTable {
        table: "residents",
        key: "id",
        columns: &["email"],
    },
    SealedTable {
        table: "utility_accounts",
        key: "account_number",
        columns: &["holder_name", "service_street"],
    },
    SealedTable {
        table: "account_linking_codes",
        key: "account_number",
        columns: &["code"],
    },
    SealedTable {
        table: "webhook_endpoints",
        key: "id",
        columns: &["secret"],
    },
    SealedTable {
        table: "payments",
        key: "id",
        columns: &["email"],
    },
    SealedTable {
        table: "outbox_emails",
        key: "id",
        columns: &["to_addr", "body_text"],
    },
    SealedTable {
        table: "permits",
        key: "id",
        columns: &["applicant_name", "applicant_phone"],
    },
    STAFF_TOTP,
    RESIDENT_TOTP,
];

const STAFF_TOTP: SealedTable = SealedTable {
    table: "staff_mfa",
    key: "staff_id",
    columns: &["totp_secret"],
};

const RESIDENT_TOTP: SealedTable = SealedTable {
    table: "resident_mfa",
    key: "resident_id",
    columns: &["totp_secret"],
};

/// The tables of TOTP secrets (sealed since 2026-11-30; older rows are sealed at start).
pub const MFA_SECRETS: &[SealedTable] = &[STAFF_TOTP, RESIDENT_TOTP];

/// Up to `limit` rows with a key greater than `after`, in key order: (key, values).
pub async fn page(
    conn: &mut AnyConnection,
    t: &SealedTable,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, Vec<Option<String>>)>> {
    let sql = format!(
        "SELECT {key}, {cols} FROM {table} WHERE {key} > $1 ORDER BY {key} LIMIT $2",
        key = t.key,
        cols = t.columns.join(", "),
        table = t.table
    );
    let rows = sqlx::query(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let key: String = r.try_get(0)?;
        let mut values = Vec::with_capacity(t.columns.len());
        for i in 0..t.columns.len() {
            values.push(r.try_get::<Option<String>, _>(i + 1)?);
        }
        out.push((key, values));
    }
    Ok(out)
}

/// Writes one row's sealed values (in `columns` order).
pub async fn update(
    conn: &mut AnyConnection,
    t: &SealedTable,
    key: &str,
    values: &[Option<String>],
) -> Result<()> {
    let sets: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    let sql = format!(
        "UPDATE {table} SET {sets} WHERE {key} = ${n}",
        table = t.table,
        sets = sets.join(", "),
        key = t.key,
        n = t.columns.len() + 1
    );
    let mut q = sqlx::query(&sql);
    for v in values {
        q = q.bind(v.clone());
    }
    q.bind(key).execute(conn).await?;
    Ok(())
}
