//! `strongroom scan-pan`: looks for card numbers in files (databases with their WAL, logs,
//! backups). Reports where, never the number.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: PathBuf,
    /// Byte offset of the chunk that held the match.
    pub offset: u64,
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
