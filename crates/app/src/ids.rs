//! Random identifiers and tokens (OS randomness).

use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use sha2::{Digest, Sha256};

/// 22 alphanumeric characters: about 131 bits.
pub fn random_id() -> String {
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, 22)
}

/// A secret token for cookies and emailed links: 32 random bytes, hex.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rngs::OsRng.gen();
    hex::encode(bytes)
}

/// What is stored of a token: its SHA-256.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A confirmation number people can read out over the phone: `SR-XXXX-XXXX` from an
/// alphabet without look-alike characters (no 0/O, 1/I/L).
pub fn confirmation_number() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut rng = rand::rngs::OsRng;
    let mut pick = || char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]);
    let a: String = (0..4).map(|_| pick()).collect();
    let b: String = (0..4).map(|_| pick()).collect();
    format!("SR-{a}-{b}")
}
