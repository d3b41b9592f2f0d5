//! Moving a city from one store to another (a town that grows from the SQLite file to
//! PostgreSQL): `strongroom export` writes every table, in the order the tables were
//! created (parents before the rows that refer to them), as JSON lines; `strongroom
//! import` loads them into a new, empty store (migrated by the binary first), checks every
//! table's row count against the export's, and verifies the audit chain on the new store.
//!
//! Values are the schema's two types: BIGINT and TEXT (and NULL). Personal data stays
//! sealed: the export holds the sealed TEXT, so the same data keys file must go with it.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};
use std::io::{BufRead, Write};

const FORMAT: &str = "strongroom-export";
const BATCH: usize = 100;

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

/// The store's tables in creation order, without the migrations' own.
async fn tables(conn: &mut AnyConnection, pg: bool) -> anyhow::Result<Vec<String>> {
    let sql = if pg {
        "SELECT CAST(relname AS TEXT) FROM pg_class WHERE relkind = 'r' AND relnamespace = CAST('public' AS regnamespace) ORDER BY oid"
    } else {
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
    };
    let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(conn).await?;
    Ok(rows
        .into_iter()
        .map(|(n,)| n)
        .filter(|n| !n.starts_with("_sqlx"))
        .collect())
}

/// A table's columns in order, each with whether it is an integer column.
async fn columns(
    conn: &mut AnyConnection,
    pg: bool,
    table: &str,
) -> anyhow::Result<Vec<(String, bool)>> {
    if pg {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(n, t)| (n, t.contains("int")))
            .collect())
    } else {
        let ident = quote(table)?;
        let rows = sqlx::query(&format!(
            "SELECT name, type FROM pragma_table_info('{}')",
            &ident[1..ident.len() - 1]
        ))
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get(0)?;
                let ty: String = r.try_get(1)?;
                Ok((name, ty.to_ascii_uppercase().contains("INT")))
            })
            .collect()
    }
}

/// A table or column name as a quoted identifier (names come from the database itself;
/// anything but letters, digits and `_` is refused all the same).
fn quote(name: &str) -> anyhow::Result<String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bail!("unexpected table or column name {name:?}");
    }
    Ok(format!("\"{name}\""))
}

/// Writes every table of the store at `url` to `out`; returns (table, rows) in order.
pub async fn export(url: &str, out: &mut impl Write) -> anyhow::Result<Vec<(String, u64)>> {
    let store = store::Store::connect(url)
        .await
        .context("cannot open the source store")?;
    let pg = is_postgres(url);
    let mut conn = store.conn().await?;
    writeln!(out, "{}", json!({ "format": FORMAT, "version": 1 }))?;
    let mut counts = Vec::new();
    for table in tables(&mut conn, pg).await? {
        let cols = columns(&mut conn, pg, &table).await?;
        writeln!(
            out,
            "{}",
            json!({ "table": table, "columns": cols.iter().map(|(n, _)| n).collect::<Vec<_>>(), "integer": cols.iter().map(|(_, i)| i).collect::<Vec<_>>() })
        )?;
        let list = cols
            .iter()
            .map(|(n, _)| quote(n))
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(", ");
        let sql = format!("SELECT {list} FROM {}", quote(&table)?);
        let mut n = 0u64;
        {
            // Row by row: a big city's export takes no more memory than a small one's.
            use futures_util::TryStreamExt;
            let mut rows = sqlx::query(&sql).fetch(&mut *conn);
            while let Some(row) = rows.try_next().await? {
                let mut values = Vec::with_capacity(cols.len());
                for (i, (name, int)) in cols.iter().enumerate() {
                    let v = if *int {
                        row.try_get::<Option<i64>, _>(i)
                            .with_context(|| format!("{table}.{name}"))?
                            .map_or(Value::Null, Value::from)
                    } else {
                        row.try_get::<Option<String>, _>(i)
                            .with_context(|| format!("{table}.{name}"))?
                            .map_or(Value::Null, Value::from)
                    };
                    values.push(v);
                }
                writeln!(out, "{}", Value::Array(values))?;
                n += 1;
            }
        }
        writeln!(out, "{}", json!({ "end": table, "rows": n }))?;
        counts.push((table, n));
    }
    // The pool closes only once every connection is back.
    drop(conn);
    store.close().await;
    Ok(counts)
}

/// The table being read: its name, columns (name, integer?), rows not yet inserted, and
/// rows read.
type Pending = (String, Vec<(String, bool)>, Vec<Vec<Value>>, u64);

/// What an import did.
pub struct ImportReport {
    pub tables: Vec<(String, u64)>,
}

/// Loads an export into the empty store at `url` (migrated first), checking each table's
/// row count against the export's own.
pub async fn import(input: impl BufRead, url: &str) -> anyhow::Result<ImportReport> {
    let store = store::Store::connect(url)
        .await
        .context("cannot open the new store")?;
    let pg = is_postgres(url);
    let mut conn = store.conn().await?;
    for table in tables(&mut conn, pg).await? {
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {}", quote(&table)?))
            .fetch_one(&mut *conn)
            .await?;
        if n > 0 {
            bail!("the new store is not empty: table {table} has {n} rows; import into a new database");
        }
    }
    drop(conn);
    let mut lines = input.lines();
    let head: Value = serde_json::from_str(&lines.next().context("the export is empty")??)?;
    if head["format"] != FORMAT {
        bail!("not a Strongroom export");
    }
    let mut report = ImportReport { tables: Vec::new() };
    let mut current: Option<Pending> = None;
    let mut tx = store.begin().await?;
    for line in lines {
        let line = line?;
        let v: Value = serde_json::from_str(&line).context("a line of the export is not JSON")?;
        match v {
            Value::Array(row) => {
                let Some((_, cols, batch, n)) = current.as_mut() else {
                    bail!("a row before any table");
                };
                if row.len() != cols.len() {
                    bail!("a row has {} values for {} columns", row.len(), cols.len());
                }
                batch.push(row);
                *n += 1;
                if batch.len() >= BATCH {
                    let (t, c, b, _) = current.as_mut().context("table")?;
                    insert(&mut tx, t, c, b).await?;
                    b.clear();
                }
            }
            Value::Object(o) if o.contains_key("table") => {
                let table = o["table"].as_str().context("table name")?.to_owned();
                let names = o["columns"].as_array().context("columns")?;
                let ints = o["integer"].as_array().context("column types")?;
                let cols = names
                    .iter()
                    .zip(ints)
                    .map(|(n, i)| {
                        Ok((
                            n.as_str().context("column")?.to_owned(),
                            i.as_bool().unwrap_or(false),
                        ))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                current = Some((table, cols, Vec::new(), 0));
            }
            Value::Object(o) if o.contains_key("end") => {
                let Some((table, cols, batch, n)) = current.take() else {
                    bail!("an end before any table");
                };
                insert(&mut tx, &table, &cols, &batch).await?;
                let expected = o["rows"].as_u64().context("row count")?;
                if expected != n {
                    bail!("table {table}: the export says {expected} rows, it holds {n}");
                }
                report.tables.push((table, n));
            }
            _ => bail!("an unexpected line in the export"),
        }
    }
    if current.is_some() {
        bail!("the export ends inside a table (truncated?)");
    }
    tx.commit().await?;
    // Counted again in the new store.
    let mut conn = store.conn().await?;
    for (table, n) in &report.tables {
        let (have,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {}", quote(table)?))
            .fetch_one(&mut *conn)
            .await?;
        if u64::try_from(have).ok() != Some(*n) {
            bail!("table {table}: {have} rows in the new store, {n} exported");
        }
    }
    drop(conn);
    store.close().await;
    Ok(report)
}

async fn insert(
    conn: &mut AnyConnection,
    table: &str,
    cols: &[(String, bool)],
    rows: &[Vec<Value>],
) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let list = cols
        .iter()
        .map(|(n, _)| quote(n))
        .collect::<anyhow::Result<Vec<_>>>()?
        .join(", ");
    let mut sql = format!("INSERT INTO {} ({list}) VALUES ", quote(table)?);
    let mut p = 0;
    for (r, _) in rows.iter().enumerate() {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols.len() {
            if c > 0 {
                sql.push_str(", ");
            }
            p += 1;
            sql.push_str(&format!("${p}"));
        }
        sql.push(')');
    }
    let mut q = sqlx::query(&sql);
    for row in rows {
        for ((name, int), v) in cols.iter().zip(row) {
            q = match (int, v) {
                (true, Value::Null) => q.bind(None::<i64>),
                (true, v) => q.bind(
                    v.as_i64()
                        .with_context(|| format!("{table}.{name}: not an integer"))?,
                ),
                (false, Value::Null) => q.bind(None::<String>),
                (false, v) => q.bind(
                    v.as_str()
                        .with_context(|| format!("{table}.{name}: not text"))?
                        .to_owned(),
                ),
            };
        }
    }
    q.execute(conn)
        .await
        .with_context(|| format!("inserting into {table}"))?;
    Ok(())
}
