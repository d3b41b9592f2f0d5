//! Documents staff attach to a utility account (later: permit plans).
//!
//! The upload pipeline of invariant 3 ("nothing on disk is executable or served from
//! disk"): a document is accepted only if its name is plain, its size is within the limit,
//! its content starts with the magic bytes of PDF, PNG or JPEG and its extension agrees,
//! and it carries no markup or code that another program could run (a polyglot) and, for
//! a PDF, no active content. It is stored as an opaque blob in the database under a random
//! id: nothing is ever written to the filesystem, and no path is derived from its name.
//! The web layer serves it only as a download.

use crate::ids::random_id;
use crate::{App, AppError};
use sha2::{Digest, Sha256};
use store::documents::{self as docs, DocumentRow};
use store::StoreError;

/// Largest document accepted: 10 MiB.
pub const MAX_DOCUMENT_BYTES: usize = 10 * 1024 * 1024;
/// Longest file name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// How much of the head and of the tail is searched for markup and code.
const SCAN_WINDOW: usize = 64 * 1024;
/// Prefix of document ids.
pub const ID_PREFIX: &str = "doc_";
/// How many documents a list shows.
const LIST_LIMIT: i64 = 200;

/// The kinds of document accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    Pdf,
    Png,
    Jpeg,
}

impl DocumentKind {
    pub fn media_type(self) -> &'static str {
        match self {
            DocumentKind::Pdf => "application/pdf",
            DocumentKind::Png => "image/png",
            DocumentKind::Jpeg => "image/jpeg",
        }
    }

    pub fn from_media_type(s: &str) -> Option<DocumentKind> {
        [DocumentKind::Pdf, DocumentKind::Png, DocumentKind::Jpeg]
            .into_iter()
            .find(|k| k.media_type() == s)
    }

    /// Short name for people: "PDF", "PNG", "JPEG".
    pub fn label(self) -> &'static str {
        match self {
            DocumentKind::Pdf => "PDF",
            DocumentKind::Png => "PNG",
            DocumentKind::Jpeg => "JPEG",
        }
    }

    fn extensions(self) -> &'static [&'static str] {
        match self {
            DocumentKind::Pdf => &["pdf"],
            DocumentKind::Png => &["png"],
            DocumentKind::Jpeg => &["jpg", "jpeg"],
        }
    }
}

/// A stored document's description.
#[derive(Debug, Clone)]
pub struct Document {
    pub id: String,
    pub account_number: String,
    pub uploaded_by: String,
    /// The checked original name (display and download filename only).
    pub file_name: String,
    pub kind: DocumentKind,
    pub size_bytes: i64,
    pub sha256: String,
    pub created_at: i64,
}

/// A document with its content.
#[derive(Debug, Clone)]
pub struct DocumentContent {
    pub document: Document,
    pub bytes: Vec<u8>,
}

fn refuse(message: impl Into<String>) -> AppError {
    AppError::invalid("file", message)
}

/// Is `id` shaped like a document id (`doc_` + 1..64 ASCII letters and digits)?
pub fn is_document_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX).is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Extensions of things a server or a browser might run: refused anywhere in a name
/// (`shell.php.png`, `page.html.pdf`), although nothing is ever stored under the name.
const EXECUTABLE_EXTENSIONS: &[&str] = &[
    "php", "php3", "php4", "php5", "php7", "phtml", "phar", "jsp", "jspx", "jsw", "jsv", "jspf",
    "asp", "aspx", "ashx", "asmx", "cer", "shtml", "html", "htm", "xhtml", "svg", "svgz", "xml",
    "js", "mjs", "cjs", "jar", "war", "ear", "class", "zip", "exe", "dll", "com", "bat", "cmd",
    "ps1", "vbs", "sh", "bash", "cgi", "pl", "py", "rb", "elf", "so", "msi", "scr", "hta",
];

/// Characters some operating system refuses in a file name, so they cannot survive a
/// download round trip intact.
const RESERVED_CHARS: &[char] = &['<', '>', ':', '"', '|', '?', '*'];

/// Invisible characters that change how a name reads (a right-to-left override makes
/// `gpj.exe` look like `exe.jpg`).
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Checks an uploaded file's name and returns it (trimmed) for display. The name is never
/// used to build a path; these rules keep it harmless wherever it is shown or downloaded.
pub fn check_file_name(name: &str) -> Result<String, AppError> {
    let name = name.trim_matches(' ');
    if name.is_empty() {
        return Err(refuse("the file has no name"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(refuse(format!(
            "the file name is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name.contains('\0')
        || name
            .chars()
            .any(|c| c.is_control() || is_invisible_format(c))
    {
        return Err(refuse(
            "the file name contains control or invisible characters",
        ));
    }
    if name.contains('/') || name.contains('\\') || name.contains("..") {
        return Err(refuse(
            "the file name contains a path (/, \\ or ..); give just the name of the file",
        ));
    }
    if name.contains(RESERVED_CHARS) {
        return Err(refuse(
            "the file name contains a character that is not allowed (< > : \" | ? *)",
        ));
    }
    if name.starts_with('.') {
        return Err(refuse("the file name starts with a dot"));
    }
    if domain::pan::contains_pan(name) {
        return Err(refuse("the file name looks like a card number"));
    }
    let lower = name.to_lowercase();
    let mut parts = lower.split('.');
    let _stem = parts.next();
    if parts.any(|ext| EXECUTABLE_EXTENSIONS.contains(&ext.trim())) {
        return Err(refuse(
            "the file name has the extension of a program or web page",
        ));
    }
    Ok(name.to_owned())
}

/// The kind of document `bytes` is, by its magic bytes alone.
pub fn sniff(bytes: &[u8]) -> Option<DocumentKind> {
    if bytes.starts_with(b"%PDF-") {
        Some(DocumentKind::Pdf)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(DocumentKind::Png)
    } else if bytes.starts_with(b"\xFF\xD8\xFF") {
        Some(DocumentKind::Jpeg)
    } else {
        None
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Markup and code that a browser, an application server or a shell would act on. The
/// short, two- or three-byte openers (`<%`, `<?=`, `#!/`) occur by chance in compressed
/// image data, so they count only when followed by text: `followed` printable ASCII bytes.
const MARKERS: &[(&[u8], usize, &str)] = &[
    (b"<?php", 0, "PHP code"),
    (b"<?=", 8, "PHP code"),
    (b"<%", 8, "JSP or ASP code"),
    (b"<jsp:", 0, "JSP code"),
    (b"<script", 0, "a script"),
    (b"<html", 0, "HTML"),
    (b"<!doctype", 0, "HTML"),
    (b"<body", 0, "HTML"),
    (b"<iframe", 0, "HTML"),
    (b"<svg", 0, "SVG"),
    (b"#!/", 4, "a shell script"),
    (b"pk\x05\x06", 0, "a ZIP or JAR archive"),
];

/// The first marker found in `window` (already lower-cased), if any.
fn marker_in(window: &[u8]) -> Option<&'static str> {
    for (needle, followed, what) in MARKERS {
        let mut from = 0;
        while let Some(at) = find(&window[from..], needle) {
            let start = from + at + needle.len();
            let end = start + followed;
            let text_follows = *followed == 0
                || window
                    .get(start..end)
                    .is_some_and(|t| t.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\n'));
            if text_follows {
                return Some(what);
            }
            from = from + at + 1;
        }
    }
    None
}

/// PDF names that make a document act: scripts, launching programs, embedded files.
const PDF_ACTIVE_NAMES: &[&str] = &[
    "JavaScript",
    "JS",
    "Launch",
    "EmbeddedFile",
    "EmbeddedFiles",
    "RichMedia",
];

/// The first active-content name in a PDF, if any. PDF names may spell characters as
/// `#xx` (`/J#53` is `/JS`); they are decoded before comparing. Inside stream data (often
/// compressed binary) the three-letter `/JS` would turn up by chance, so there only the
/// long names count; a script action also needs `/S /JavaScript`, which counts anywhere.
fn pdf_active_name(bytes: &[u8]) -> Option<&'static str> {
    let is_delim = |b: u8| {
        b.is_ascii_whitespace()
            || matches!(
                b,
                b'/' | b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'%'
            )
            || b == 0
    };
    let mut in_stream = false;
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"endstream") {
            in_stream = false;
            i += b"endstream".len();
            continue;
        }
        if rest.starts_with(b"stream")
            && matches!(rest.get(6), Some(b'\r' | b'\n'))
            && (i < 3 || &bytes[i - 3..i] != b"end")
        {
            in_stream = true;
            i += b"stream".len();
            continue;
        }
        if bytes[i] != b'/' {
            i += 1;
            continue;
        }
        let mut name = Vec::new();
        let mut j = i + 1;
        while j < bytes.len() && !is_delim(bytes[j]) && name.len() < 64 {
            if bytes[j] == b'#' && j + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[j + 1..j + 3]).ok();
                if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    name.push(v);
                    j += 3;
                    continue;
                }
            }
            name.push(bytes[j]);
            j += 1;
        }
        if let Some(found) = PDF_ACTIVE_NAMES
            .iter()
            .find(|n| n.as_bytes() == name.as_slice() && !(in_stream && n.len() < 6))
        {
            return Some(found);
        }
        i = j.max(i + 1);
    }
    None
}

/// Checks a document's content against its (already checked) name and returns its kind.
pub fn check_content(file_name: &str, bytes: &[u8]) -> Result<DocumentKind, AppError> {
    if bytes.is_empty() {
        return Err(refuse("the file is empty"));
    }
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(refuse(format!(
            "the file is larger than {} MB",
            MAX_DOCUMENT_BYTES / (1024 * 1024)
        )));
    }
    let Some(kind) = sniff(bytes) else {
        return Err(refuse(
            "the file is not a PDF, PNG or JPEG (its content says otherwise, whatever its name)",
        ));
    };
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if !kind.extensions().contains(&ext.as_str()) {
        return Err(refuse(format!(
            "the file's content is a {} but its name does not end in .{}",
            kind.label(),
            kind.extensions().join(" or .")
        )));
    }
    let head = &bytes[..bytes.len().min(SCAN_WINDOW)];
    let tail = &bytes[bytes.len().saturating_sub(SCAN_WINDOW)..];
    for window in [head, tail] {
        if let Some(what) = marker_in(&window.to_ascii_lowercase()) {
            return Err(refuse(format!(
                "the file contains {what} hidden in a {}",
                kind.label()
            )));
        }
    }
    match kind {
        DocumentKind::Pdf => {
            if let Some(name) = pdf_active_name(bytes) {
                return Err(refuse(format!(
                    "the PDF contains active content (/{name}); print it to a new PDF and try again"
                )));
            }
        }
        DocumentKind::Png => {
            // Anything after the IEND chunk is not part of the image: a hiding place.
            if !bytes.ends_with(b"IEND\xAE\x42\x60\x82") {
                return Err(refuse("the PNG has data after its end"));
            }
        }
        DocumentKind::Jpeg => {}
    }
    Ok(kind)
}

fn document_from_row(r: DocumentRow) -> Result<Document, AppError> {
    Ok(Document {
        kind: DocumentKind::from_media_type(&r.media_type)
            .ok_or_else(|| AppError::Internal("stored document type unknown".into()))?,
        id: r.id,
        account_number: r.account_number,
        uploaded_by: r.uploaded_by,
        file_name: r.original_name,
        size_bytes: r.size_bytes,
        sha256: r.sha256,
        created_at: r.created_at,
    })
}

impl App {
    /// Attaches a document to a utility account, after the checks of [`check_file_name`]
    /// and [`check_content`], with the audit event `document.attached` in the same
    /// transaction.
    pub async fn attach_document(
        &self,
        staff_id: &str,
        account: &str,
        file_name: &str,
        bytes: &[u8],
        ip: &str,
    ) -> Result<Document, AppError> {
        let file_name = check_file_name(file_name)?;
        let kind = check_content(&file_name, bytes)?;
        let size_bytes = i64::try_from(bytes.len())
            .map_err(|_| AppError::Internal("document size out of range".into()))?;
        let row = DocumentRow {
            id: format!("{ID_PREFIX}{}", random_id()),
            account_number: account.to_owned(),
            uploaded_by: staff_id.to_owned(),
            original_name: file_name,
            media_type: kind.media_type().to_owned(),
            size_bytes,
            sha256: hex::encode(Sha256::digest(bytes)),
            created_at: self.now_unix(),
        };
        let mut tx = self.store.begin().await?;
        if store::accounts::get(&mut tx, account).await?.is_none() {
            return Err(AppError::NotFound("account"));
        }
        docs::insert(&mut tx, &row, bytes).await?;
        self.audit(
            &mut tx,
            &format!("staff:{staff_id}"),
            "document.attached",
            &row.id,
            "success",
            ip,
            &format!(
                "account {}; {} of {} bytes; sha256 {}",
                row.account_number,
                kind.label(),
                row.size_bytes,
                row.sha256
            ),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(document_id = %row.id, staff_id, kind = kind.label(), size = row.size_bytes, "document attached");
        document_from_row(row)
    }

    /// A document's description.
    pub async fn document(&self, id: &str) -> Result<Document, AppError> {
        let mut conn = self.store.conn().await?;
        let row = docs::get(&mut conn, id)
            .await?
            .ok_or(AppError::NotFound("document"))?;
        document_from_row(row)
    }

    /// A document with its content, checked against the hash taken at upload.
    pub async fn document_content(&self, id: &str) -> Result<DocumentContent, AppError> {
        let mut conn = self.store.conn().await?;
        let row = docs::get(&mut conn, id)
            .await?
            .ok_or(AppError::NotFound("document"))?;
        let bytes = docs::content(&mut conn, id)
            .await?
            .ok_or(AppError::NotFound("document"))?;
        if hex::encode(Sha256::digest(&bytes)) != row.sha256 {
            return Err(AppError::Internal(format!(
                "document {id}: content does not match its hash"
            )));
        }
        Ok(DocumentContent {
            document: document_from_row(row)?,
            bytes,
        })
    }

    /// An account's documents, newest first.
    pub async fn documents_for_account(&self, account: &str) -> Result<Vec<Document>, AppError> {
        let mut conn = self.store.conn().await?;
        docs::for_account(&mut conn, account, LIST_LIMIT)
            .await?
            .into_iter()
            .map(document_from_row)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\x0f\0\0\x01\x01\0\x05\x18\xd8N\0\0\0\0IEND\xaeB`\x82";
    const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

    fn refused(name: &str, bytes: &[u8]) -> String {
        match check_file_name(name).and_then(|n| check_content(&n, bytes)) {
            Err(AppError::Invalid { field, message }) => {
                assert_eq!(field, "file");
                message
            }
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_three_kinds() {
        assert_eq!(check_content("a.pdf", PDF).ok(), Some(DocumentKind::Pdf));
        assert_eq!(check_content("A.PNG", PNG).ok(), Some(DocumentKind::Png));
        let jpeg = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0\xFF\xD9";
        assert_eq!(check_content("a.jpeg", jpeg).ok(), Some(DocumentKind::Jpeg));
        assert_eq!(check_content("a.JPG", jpeg).ok(), Some(DocumentKind::Jpeg));
    }

    #[test]
    fn refuses_names() {
        for name in [
            "../../etc/passwd.pdf",
            "a/b.pdf",
            "a\\b.pdf",
            "a\0.pdf",
            "a\n.pdf",
            "a\u{202E}fdp.exe",
            ".pdf",
            "shell.php.png",
            "page.html.pdf",
            "a\".pdf",
            "",
        ] {
            refused(name, PDF);
        }
        refused(&format!("{}.pdf", "a".repeat(200)), PDF);
        assert!(check_file_name(&format!("{}.pdf", "a".repeat(196))).is_ok());
        assert!(refused("4242 4242 4242 4242.pdf", PDF).contains("card number"));
    }

    #[test]
    fn refuses_wrong_types_and_mismatched_extensions() {
        assert!(refused("a.pdf", b"<html><body>hi</body></html>").contains("not a PDF"));
        assert!(refused("a.png", PDF).contains("does not end in .pdf"));
        assert!(refused("a.jsp", b"<% out.println(1); %>").contains("program"));
        refused("a.pdf", b"\x7fELF\x02\x01\x01");
        refused("a.pdf", b"MZ\x90\0");
        refused("a.pdf", b"PK\x03\x04");
        refused("a.pdf", b"");
    }

    #[test]
    fn refuses_polyglots() {
        let mut png = PNG.to_vec();
        png.extend_from_slice(b"<?php system($_GET['c']); ?>");
        assert!(refused("a.png", &png).contains("PHP"));
        let mut jpeg = b"\xFF\xD8\xFF\xE0".to_vec();
        jpeg.extend(std::iter::repeat_n(0u8, 200_000));
        jpeg.extend_from_slice(b"<SCRIPT>alert(1)</SCRIPT>\xFF\xD9");
        assert!(refused("a.jpg", &jpeg).contains("script"));
        let mut jsp = PDF.to_vec();
        jsp.extend_from_slice(b"<%@ page import=\"java.io.*\" %>");
        assert!(refused("a.pdf", &jsp).contains("JSP"));
        let mut zip = PNG.to_vec();
        zip.extend_from_slice(b"PK\x05\x06\0\0\0\0");
        refused("a.png", &zip);
    }

    #[test]
    fn refuses_active_pdfs() {
        for active in [
            "/OpenAction << /S /JavaScript /JS (app.alert(1)) >>",
            "/AA << /O << /S /J#53 (x) >> >>",
            "/S /Launch /F (cmd.exe)",
            "/Type /EmbeddedFile",
        ] {
            let mut pdf = b"%PDF-1.7\n".to_vec();
            pdf.extend_from_slice(active.as_bytes());
            pdf.extend_from_slice(b"\n%%EOF\n");
            assert!(
                refused("a.pdf", &pdf).contains("active content"),
                "{active}"
            );
        }
        // Names that merely start the same are not active.
        let benign = b"%PDF-1.7\n/JSONData /Launcher\n%%EOF\n";
        assert!(check_content("a.pdf", benign).is_ok());
        // `/JS` by chance inside (compressed) stream data is not a script...
        let in_stream = b"%PDF-1.7\n<< /Length 9 >>\nstream\n\x01/JS \x02\nendstream\n%%EOF\n";
        assert!(check_content("a.pdf", in_stream).is_ok());
        // ...but outside it is.
        let outside = b"%PDF-1.7\n<< /Length 1 >>\nstream\n\x01\nendstream\n<< /JS (x) >>\n%%EOF\n";
        assert!(refused("a.pdf", outside).contains("/JS"));
    }

    #[test]
    fn short_openers_need_text_after_them() {
        // `<%` followed by binary is chance in compressed data, not code.
        let mut png = PNG[..PNG.len() - 12].to_vec();
        png.extend_from_slice(b"\x00<%\x01\x02\x03\x04\x05\x06\x07\x08");
        png.extend_from_slice(&PNG[PNG.len() - 12..]);
        assert!(check_content("a.png", &png).is_ok());
    }

    #[test]
    fn size_limit() {
        let mut big = PDF.to_vec();
        big.resize(MAX_DOCUMENT_BYTES + 1, b' ');
        assert!(refused("a.pdf", &big).contains("larger than 10 MB"));
    }

    #[test]
    fn ids() {
        assert!(is_document_id("doc_abc123"));
        assert!(!is_document_id("doc_"));
        assert!(!is_document_id("doc_../x"));
        assert!(!is_document_id("pay_abc"));
    }
}
