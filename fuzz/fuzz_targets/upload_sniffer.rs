//! The upload checks of `app::documents` (name, magic bytes, polyglots, active PDF
//! content) on arbitrary names and contents: no panics, and whatever is accepted starts
//! with the magic bytes of an allowed kind that its extension agrees with.
//!
//! Input: `FILE NAME\nCONTENT` (the first line is the name, the rest is the file).
#![no_main]

use app::documents::{check_content, check_file_name, sniff, DocumentKind, MAX_NAME_CHARS};
use libfuzzer_sys::fuzz_target;

fn magic(kind: DocumentKind) -> &'static [u8] {
    match kind {
        DocumentKind::Pdf => b"%PDF-",
        DocumentKind::Png => b"\x89PNG\r\n\x1a\n",
        DocumentKind::Jpeg => b"\xFF\xD8\xFF",
    }
}

fn extensions(kind: DocumentKind) -> &'static [&'static str] {
    match kind {
        DocumentKind::Pdf => &["pdf"],
        DocumentKind::Png => &["png"],
        DocumentKind::Jpeg => &["jpg", "jpeg"],
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What `check_content` accepted: the right magic, a matching extension, no markup.
fn check_accepted(name: &str, bytes: &[u8], kind: DocumentKind) {
    assert!(!bytes.is_empty());
    assert!(
        bytes.starts_with(magic(kind)),
        "accepted without the {kind:?} magic"
    );
    assert_eq!(sniff(bytes), Some(kind));
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    assert!(
        extensions(kind).contains(&ext.as_str()),
        "{kind:?} accepted as {name:?}"
    );
    // Fuzz inputs are far smaller than the 64 KiB windows, so the whole file is searched.
    let lower = bytes.to_ascii_lowercase();
    for marker in [
        &b"<?php"[..],
        b"<script",
        b"<html",
        b"<svg",
        b"<jsp:",
        b"<iframe",
    ] {
        assert!(
            !contains(&lower, marker),
            "accepted a file with {:?}",
            String::from_utf8_lossy(marker)
        );
    }
    if kind == DocumentKind::Pdf {
        for name in [
            &b"/JavaScript"[..],
            b"/Launch",
            b"/EmbeddedFile",
            b"/RichMedia",
        ] {
            for (at, _) in bytes
                .windows(name.len())
                .enumerate()
                .filter(|(_, w)| *w == name)
            {
                let next = bytes.get(at + name.len()).copied();
                let delimits =
                    next.is_none_or(|b| b.is_ascii_whitespace() || b"/()<>[]{}%\0".contains(&b));
                assert!(
                    !delimits,
                    "accepted a PDF with {}",
                    String::from_utf8_lossy(name)
                );
            }
        }
    }
    if kind == DocumentKind::Png {
        assert!(bytes.ends_with(b"IEND\xAE\x42\x60\x82"));
    }
}

fuzz_target!(|data: &[u8]| {
    let (raw_name, bytes) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let raw_name = String::from_utf8_lossy(raw_name);

    let _ = sniff(bytes);
    match check_file_name(&raw_name) {
        Ok(name) => {
            assert!(!name.is_empty() && name.chars().count() <= MAX_NAME_CHARS);
            assert!(
                !name.contains(['/', '\\', '\0']) && !name.contains(".."),
                "{name:?}"
            );
            assert!(!name.starts_with('.'));
            assert!(!name.chars().any(char::is_control), "{name:?}");
            let lower = name.to_lowercase();
            for ext in ["php", "jsp", "html", "htm", "svg", "exe", "js"] {
                assert!(
                    !lower.split('.').skip(1).any(|e| e.trim() == ext),
                    "{name:?}"
                );
            }
            if let Ok(kind) = check_content(&name, bytes) {
                check_accepted(&name, bytes, kind);
            }
        }
        Err(_) => {
            // The content check is pure too: it must hold up even on a refused name.
            if let Ok(kind) = check_content(&raw_name, bytes) {
                check_accepted(&raw_name, bytes, kind);
            }
        }
    }
});
