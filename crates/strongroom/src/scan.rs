//! `strongroom scan-pan`: looks for card numbers in files (databases with their WAL, logs,
//! backups). Reports where, never the number.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: PathBuf,
    /// Byte offset of the chunk that held the match.
    pub offset: u64,
}

/// Hashes and MACs (audit chain, token hashes) are long hex strings; a run of digits inside
/// one can pass a card-number check by chance but is not card data. Such tokens (32 or
/// more hex characters with at least one letter) are blanked before the check.
fn blank_hex_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        let hexy = token.len() >= 32
            && token
                .bytes()
                .any(|b| matches!(b, b'a'..=b'f' | b'A'..=b'F'));
        if hexy {
            out.extend(std::iter::repeat_n(' ', token.len()));
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

fn scan_file(path: &Path, out: &mut Vec<Finding>) -> std::io::Result<()> {
    let bytes = std::fs::read(path)?;
    // Card numbers are ASCII digits; binary pages hold them as plain text too. Chunks
    // overlap so that a number across a boundary is still seen.
    const CHUNK: usize = 64 * 1024;
    const OVERLAP: usize = 64;
    let mut start = 0;
    while start < bytes.len() {
        let end = (start + CHUNK).min(bytes.len());
        let text: String = bytes[start..end]
            .iter()
            .map(|b| {
                if b.is_ascii_graphic() || *b == b' ' {
                    char::from(*b)
                } else {
                    '\n'
                }
            })
            .collect();
        let text = blank_hex_tokens(&text);
        if domain::pan::contains_pan(&text) {
            out.push(Finding {
                path: path.to_owned(),
                offset: start as u64,
            });
            return Ok(());
        }
        if end == bytes.len() {
            break;
        }
        start = end - OVERLAP;
    }
    Ok(())
}

/// Scans files and directories (recursively). Unreadable files are reported as errors.
pub fn scan(paths: &[PathBuf]) -> std::io::Result<(usize, Vec<Finding>)> {
    let mut findings = Vec::new();
    let mut files = 0;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        } else if meta.is_file() {
            files += 1;
            scan_file(&p, &mut findings)?;
        }
    }
    Ok((files, findings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_hashes_are_not_cards_but_cards_still_are() {
        // A MAC whose digit run passes prefix and Luhn checks by chance.
        let mac = "9af78676551774998303334ffe0d1c2b3a4958671234abcd";
        assert!(domain::pan::contains_pan(mac));
        assert!(!domain::pan::contains_pan(&blank_hex_tokens(mac)));
        let leak = "name=Pat card=4242424242424242 exp=12/30";
        assert!(domain::pan::contains_pan(&blank_hex_tokens(leak)));
    }
}
