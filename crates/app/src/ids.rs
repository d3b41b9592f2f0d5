//! Random identifiers and tokens (OS randomness).

use rand::distributions::{Alphanumeric, DistString};
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

/// 22 alphanumeric characters: about 131 bits, from the thread's CSPRNG (ChaCha, seeded
/// and reseeded from the OS): one OS call per id would cost a bulk import a system call per
/// character.
pub fn random_id() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 22)
}

/// A secret token for cookies, forms and emailed links: 32 random bytes, hex.
///
/// Tokens travel in form fields and query strings, which the card-number guard scans; a
/// hex string with a long run of digits could (rarely) look like a card number and get a
/// resident's form refused. Such draws (13+ digits in a row, about 1 in 200) are made
/// again, which costs less than 0.01 bit of the 256.
pub fn random_token() -> String {
    hex_secret::<32>()
}

/// The one-time key of a payment form (`payments::valid_form_key`): 16 random bytes, hex,
/// drawn again like `random_token` if it holds a long run of digits.
pub fn form_key() -> String {
    hex_secret::<16>()
}

/// `N` bytes from the OS in one call (`gen::<[u8; N]>()` would make one call per byte),
/// hex, without a run of 13 digits.
fn hex_secret<const N: usize>() -> String {
    loop {
        let mut bytes = [0u8; N];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let longest_digit_run = token
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        if longest_digit_run < 13 {
            return token;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_look_like_card_numbers() {
        for _ in 0..20_000 {
            let t = random_token();
            assert_eq!(t.len(), 64);
            assert!(!domain::pan::contains_pan(&t), "{t}");
        }
    }
}
