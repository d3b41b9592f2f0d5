//! Personal data at rest: AES-256-GCM with key ids, rotation, and a keyed blind index for
//! the lookups that need equality (login by email, staff search by email).
//!
//! A sealed value is `enc:v1:<key id>:<base64(nonce 12 || ciphertext || tag 16)>`. The
//! associated data is the column's name (`residents.email`), so a value copied into
//! another column does not open. Every key of the ring can open; only the current (highest
//! id) seals. The store never sees a key: it keeps TEXT.

use crate::{App, AppError};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Column names, used as associated data. `table.column`, as in the schema.
pub mod columns {
    pub const RESIDENT_EMAIL: &str = "residents.email";
    pub const ACCOUNT_HOLDER_NAME: &str = "utility_accounts.holder_name";
    pub const ACCOUNT_SERVICE_STREET: &str = "utility_accounts.service_street";
    pub const ACCOUNT_LINKING_CODE: &str = "account_linking_codes.code";
    pub const WEBHOOK_SECRET: &str = "webhook_endpoints.secret";
    pub const PAYMENT_EMAIL: &str = "payments.email";
    pub const OUTBOX_TO: &str = "outbox_emails.to_addr";
    pub const OUTBOX_BODY: &str = "outbox_emails.body_text";
    pub const STAFF_TOTP_SECRET: &str = "staff_mfa.totp_secret";
    pub const RESIDENT_TOTP_SECRET: &str = "resident_mfa.totp_secret";
    pub const PERMIT_APPLICANT_NAME: &str = "permits.applicant_name";
    pub const PERMIT_APPLICANT_PHONE: &str = "permits.applicant_phone";
}

/// Kinds of blind index; part of the MAC input, so equal values of two kinds differ.
pub const INDEX_EMAIL: &str = "email";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("stored value is not sealed (no enc:v1 prefix)")]
    NotSealed,
    #[error("stored value is malformed")]
    Malformed,
    #[error("stored value names key {0}, which is not in the key file")]
    UnknownKey(u32),
    #[error("stored value does not authenticate (tampered, wrong key or wrong column)")]
    Tampered,
    #[error("encryption failed")]
    Seal,
    #[error("data keys file: {0}")]
    KeyFile(String),
}

impl From<CryptoError> for AppError {
    fn from(e: CryptoError) -> AppError {
        AppError::Internal(format!("personal data: {e}"))
    }
}

/// The data keys: AES-256 keys by id (the highest seals) and the blind-index key.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<(u32, [u8; 32])>,
    current: u32,
    index_key: [u8; 32],
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.key_ids())
            .field("current", &self.current)
            .field("keys", &"***")
            .field("index_key", &"***")
            .finish()
    }
}

/// A random key. One whose hex has a run of 13 or more decimal digits is drawn again (a
/// few percent of draws, under 0.1 bit of entropy) so that `scan-pan` over a data
/// directory never mistakes the key file for card data.
fn random_key() -> [u8; 32] {
    loop {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        let hex = hex::encode(k);
        let longest = hex
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        if longest < 13 {
            return k;
        }
    }
}

fn parse_key(hex_text: &str) -> Result<[u8; 32], CryptoError> {
    let bytes = hex::decode(hex_text)
        .map_err(|_| CryptoError::KeyFile("a key is not hexadecimal".into()))?;
    bytes
        .try_into()
        .map_err(|_| CryptoError::KeyFile("a key is not 32 bytes (64 hex digits)".into()))
}

impl KeyRing {
    /// A new ring: key 1 and a blind-index key, from the OS RNG.
    pub fn generate() -> KeyRing {
        KeyRing {
            keys: vec![(1, random_key())],
            current: 1,
            index_key: random_key(),
        }
    }

    /// A ring from fixed bytes (tests).
    pub fn from_parts(keys: Vec<(u32, [u8; 32])>, index_key: [u8; 32]) -> Option<KeyRing> {
        let current = keys.iter().map(|(id, _)| *id).max()?;
        Some(KeyRing {
            keys,
            current,
            index_key,
        })
    }

    /// Reads the key file: `index <hex>` and one `<id> <hex>` line per key; `#` comments.
    pub fn parse(text: &str) -> Result<KeyRing, CryptoError> {
        let mut keys: Vec<(u32, [u8; 32])> = Vec::new();
        let mut index_key = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| CryptoError::KeyFile("expected `<id> <hex>` lines".into()))?;
            let key = parse_key(value.trim())?;
            if name == "index" {
                if index_key.replace(key).is_some() {
                    return Err(CryptoError::KeyFile("two `index` lines".into()));
                }
                continue;
            }
            let id: u32 = name
                .parse()
                .map_err(|_| CryptoError::KeyFile(format!("`{name}` is not a key id")))?;
            if id == 0 || keys.iter().any(|(k, _)| *k == id) {
                return Err(CryptoError::KeyFile(format!(
                    "key id {id} is zero or repeated"
                )));
            }
            keys.push((id, key));
        }
        let index_key = index_key.ok_or_else(|| CryptoError::KeyFile("no `index` line".into()))?;
        KeyRing::from_parts(keys, index_key)
            .ok_or_else(|| CryptoError::KeyFile("no data key".into()))
    }

    /// The key file's text (see `parse`).
    pub fn to_file_text(&self) -> String {
        let mut out = String::from(
            "# Strongroom data keys. The highest id encrypts; older ids stay so that older\n# values and backups can still be read. Keep this file private (mode 600).\n",
        );
        out.push_str(&format!("index {}\n", hex::encode(self.index_key)));
        let mut keys = self.keys.clone();
        keys.sort_by_key(|(id, _)| *id);
        for (id, k) in keys {
            out.push_str(&format!("{id} {}\n", hex::encode(k)));
        }
        out
    }

    /// This ring plus a new random key (id = highest + 1), which becomes current. The
    /// blind-index key stays: the indexes need not be recomputed.
    pub fn rotated(&self) -> KeyRing {
        let id = self.current.saturating_add(1);
        let mut keys = self.keys.clone();
        keys.push((id, random_key()));
        KeyRing {
            keys,
            current: id,
            index_key: self.index_key,
        }
    }

    pub fn current_id(&self) -> u32 {
        self.current
    }

    pub fn key_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.keys.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    }

    fn cipher(&self, id: u32) -> Result<Aes256Gcm, CryptoError> {
        let (_, k) = self
            .keys
            .iter()
            .find(|(k, _)| *k == id)
            .ok_or(CryptoError::UnknownKey(id))?;
        Aes256Gcm::new_from_slice(k).map_err(|_| CryptoError::Seal)
    }

    /// Encrypts `plaintext` for `column` under the current key, with a random nonce.
    pub fn seal(&self, column: &str, plaintext: &str) -> Result<String, CryptoError> {
        let cipher = self.cipher(self.current)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: column.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{}:{}", self.current, B64.encode(blob)))
    }

    /// The id of the key a stored value was sealed with.
    pub fn key_id_of(stored: &str) -> Result<u32, CryptoError> {
        let rest = stored.strip_prefix(PREFIX).ok_or(CryptoError::NotSealed)?;
        let (id, _) = rest.split_once(':').ok_or(CryptoError::Malformed)?;
        id.parse().map_err(|_| CryptoError::Malformed)
    }

    /// Decrypts a value sealed for `column` under any key of the ring. A value that was
    /// altered, sealed for another column or under an unknown key is an error, never
    /// garbage; a plaintext value is refused too.
    pub fn open(&self, column: &str, stored: &str) -> Result<String, CryptoError> {
        let rest = stored.strip_prefix(PREFIX).ok_or(CryptoError::NotSealed)?;
        let (id, b64) = rest.split_once(':').ok_or(CryptoError::Malformed)?;
        let id: u32 = id.parse().map_err(|_| CryptoError::Malformed)?;
        let blob = B64.decode(b64).map_err(|_| CryptoError::Malformed)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let pt = self
            .cipher(id)?
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: column.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Tampered)?;
        String::from_utf8(pt).map_err(|_| CryptoError::Tampered)
    }

    /// Keyed blind index: hex HMAC-SHA256(index key, kind || 0 || value). The caller
    /// normalizes the value (see `email_index`).
    pub fn blind_index(&self, kind: &str, value: &str) -> String {
        // HMAC takes a key of any length; this cannot fail.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.index_key) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The blind index of an email address: trimmed, lower case.
    pub fn email_index(&self, email: &str) -> String {
        self.blind_index(INDEX_EMAIL, &email.trim().to_lowercase())
    }
}

/// How many values of one column `reseal_all` re-encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResealCount {
    pub column: String,
    pub values: u64,
    pub resealed: u64,
}

impl App {
    pub(crate) fn keys(&self) -> &KeyRing {
        &self.config().keys
    }

    pub(crate) fn seal(&self, column: &str, plaintext: &str) -> Result<String, AppError> {
        Ok(self.keys().seal(column, plaintext)?)
    }

    pub(crate) fn open(&self, column: &str, stored: &str) -> Result<String, AppError> {
        Ok(self.keys().open(column, stored)?)
    }

    pub(crate) fn email_index(&self, email: &str) -> String {
        self.keys().email_index(email)
    }

    /// Seals TOTP secrets written in clear before they were sealed (databases from before
    /// 2026-11-30): run once at start, a no-op afterwards. Returns how many it sealed.
    pub async fn seal_plaintext_mfa_secrets(&self) -> Result<u64, AppError> {
        let mut sealed = 0;
        for t in store::pii::MFA_SECRETS {
            let column = format!("{}.{}", t.table, t.columns[0]);
            let mut tx = self.store.begin().await?;
            // Few rows (one per staff member or resident with TOTP): one page each way.
            let mut after = String::new();
            loop {
                let rows = store::pii::page(&mut tx, t, &after, 500).await?;
                let Some((last, _)) = rows.last() else {
                    break;
                };
                after = last.clone();
                for (key, values) in rows {
                    if let Some(Some(v)) = values.first() {
                        if matches!(KeyRing::key_id_of(v), Err(CryptoError::NotSealed)) {
                            let new = vec![Some(self.seal(&column, v)?)];
                            store::pii::update(&mut tx, t, &key, &new).await?;
                            sealed += 1;
                        }
                    }
                }
            }
            tx.commit().await.map_err(store::StoreError::from)?;
        }
        Ok(sealed)
    }

    /// Re-encrypts every sealed value not under the current key (after `keys rotate`), in
    /// batches of 200 rows per transaction. Every value is opened first: one that does not
    /// authenticate stops the pass with an error.
    pub async fn reseal_all(&self) -> Result<Vec<ResealCount>, AppError> {
        const BATCH: i64 = 200;
        let current = self.keys().current_id();
        let mut out = Vec::new();
        for t in store::pii::SEALED {
            let mut counts: Vec<ResealCount> = t
                .columns
                .iter()
                .map(|c| ResealCount {
                    column: format!("{}.{c}", t.table),
                    values: 0,
                    resealed: 0,
                })
                .collect();
            let mut after = String::new();
            loop {
                let mut tx = self.store.begin().await?;
                let rows = store::pii::page(&mut tx, t, &after, BATCH).await?;
                let Some((last, _)) = rows.last() else {
                    break;
                };
                after = last.clone();
                for (key, values) in &rows {
                    let mut new = Vec::with_capacity(values.len());
                    let mut changed = false;
                    for (i, v) in values.iter().enumerate() {
                        let c = &mut counts[i];
                        let Some(v) = v else {
                            new.push(None);
                            continue;
                        };
                        c.values += 1;
                        let plain = self.keys().open(&c.column, v).map_err(|e| {
                            AppError::Internal(format!("{} of row {key}: {e}", c.column))
                        })?;
                        if KeyRing::key_id_of(v)? == current {
                            new.push(Some(v.clone()));
                        } else {
                            new.push(Some(self.seal(&c.column, &plain)?));
                            c.resealed += 1;
                            changed = true;
                        }
                    }
                    if changed {
                        store::pii::update(&mut tx, t, key, &new).await?;
                    }
                }
                tx.commit().await.map_err(store::StoreError::from)?;
            }
            out.extend(counts);
        }
        let total: u64 = out.iter().map(|c| c.resealed).sum();
        let mut tx = self.store.begin().await?;
        self.audit(
            &mut tx,
            "system",
            "keys.resealed",
            &format!("data-key:{current}"),
            "success",
            "",
            &format!("{total} values re-encrypted"),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::from_parts(vec![(1, [7; 32])], [9; 32]).unwrap()
    }

    #[test]
    fn seals_and_opens() {
        let r = ring();
        let s = r.seal("t.c", "Ana López").unwrap();
        assert!(s.starts_with("enc:v1:1:"));
        assert!(!s.contains("Ana"));
        assert_eq!(r.open("t.c", &s).unwrap(), "Ana López");
        // Random nonce: sealing twice differs.
        assert_ne!(s, r.seal("t.c", "Ana López").unwrap());
    }

    #[test]
    fn other_column_tampering_unknown_key_and_plaintext_fail() {
        let r = ring();
        let s = r.seal("t.a", "x@example.com").unwrap();
        assert_eq!(r.open("t.b", &s), Err(CryptoError::Tampered));
        let mut bytes = s.clone().into_bytes();
        let n = bytes.len() - 3;
        bytes[n] = if bytes[n] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bytes).unwrap();
        assert!(r.open("t.a", &bad).is_err());
        let other = s.replacen("enc:v1:1:", "enc:v1:5:", 1);
        assert_eq!(r.open("t.a", &other), Err(CryptoError::UnknownKey(5)));
        assert_eq!(r.open("t.a", "x@example.com"), Err(CryptoError::NotSealed));
        assert_eq!(r.open("t.a", "enc:v1:1:AAAA"), Err(CryptoError::Malformed));
    }

    #[test]
    fn rotation_keeps_old_keys_and_file_round_trips() {
        let r = ring();
        let old = r.seal("t.c", "v").unwrap();
        let r2 = r.rotated();
        assert_eq!(r2.current_id(), 2);
        assert_eq!(r2.key_ids(), vec![1, 2]);
        assert_eq!(r2.open("t.c", &old).unwrap(), "v");
        assert!(r2.seal("t.c", "v").unwrap().starts_with("enc:v1:2:"));
        let back = KeyRing::parse(&r2.to_file_text()).unwrap();
        assert_eq!(back.current_id(), 2);
        assert_eq!(back.open("t.c", &old).unwrap(), "v");
        assert_eq!(back.email_index("A@x.org"), r.email_index(" a@X.org "));
        assert!(KeyRing::parse("1 00").is_err());
        assert!(KeyRing::parse(&format!("1 {}", "00".repeat(32))).is_err());
        let dbg = format!("{r2:?}");
        assert!(!dbg.contains("0707"), "{dbg}");
    }

    #[test]
    fn blind_index_is_keyed_and_kind_separated() {
        let r = ring();
        let other = KeyRing::from_parts(vec![(1, [7; 32])], [8; 32]).unwrap();
        assert_ne!(r.email_index("a@b.c"), other.email_index("a@b.c"));
        assert_ne!(r.blind_index("email", "a"), r.blind_index("name", "a"));
        assert_eq!(r.email_index("a@b.c").len(), 64);
    }
}
