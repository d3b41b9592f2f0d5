//! The upload pipeline (invariant 3, breach step 2: a webshell uploaded into the web
//! root). Staff attach documents to an account; only PDF, PNG and JPEG pass, checked by
//! content, and they come back only as inert downloads. Every webshell disguise is
//! refused and leaves nothing stored.

use crate::harness::*;
use crate::staff::staff_login_full;

const PW: &str = "paper-trail-lantern-57";
const ACCOUNT: &str = "100001";

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
const PNG_HEX: &str = "89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a730000001149444154789c63f8cf0004ffc10844000021ee03fd132942cf0000000049454e44ae426082";
const JPEG_HEX: &str = "ffd8ffe000104a46494600010100000100010000ffdb00430001010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101ffc0000b080001000101011100ffc40014000100000000000000000000000000000000ffc40014100100000000000000000000000000000000ffda0008010100003f003fffd9";

fn png() -> Vec<u8> {
    hex::decode(PNG_HEX).unwrap()
}

fn jpeg() -> Vec<u8> {
    hex::decode(JPEG_HEX).unwrap()
}

/// A signed-in clerk's client and the CSRF token of its session.
async fn clerk(s: &Server) -> (reqwest::Client, String) {
    s.app()
        .create_staff("clerk", "Clerk", PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    let c = client();
    let res = staff_login_full(s, &c, "clerk", PW).await;
    assert!(matches!(res.status().as_u16(), 200 | 303), "clerk signs in");
    let html = c
        .get(format!("{}/accounts/{ACCOUNT}/documents", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    assert!(!csrf.is_empty());
    (c, csrf)
}

async fn upload(
    s: &Server,
    c: &reqwest::Client,
    csrf: &str,
    name: &str,
    bytes: Vec<u8>,
    client_type: &str,
) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(client_type)
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_owned())
        .part("file", part);
    c.post(format!("{}/accounts/{ACCOUNT}/documents", s.staff))
        .header("origin", &s.staff)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// Every file under the data directory, as paths relative to it.
fn data_files(s: &Server) -> Vec<String> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(&s.data_dir, &s.data_dir, &mut out);
    out
}

async fn stored(s: &Server) -> i64 {
    let mut conn = s.app().store.conn().await.unwrap();
    app::store::documents::count(&mut conn).await.unwrap()
}

#[tokio::test]
async fn documents_are_accepted_by_content_and_served_only_as_inert_downloads() {
    let s = server().start().await;
    let (c, csrf) = clerk(&s).await;
    let page = c
        .get(format!("{}/accounts/{ACCOUNT}", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("/accounts/{ACCOUNT}/documents")),
        "account page links to its documents"
    );
    let form = c
        .get(format!("{}/accounts/{ACCOUNT}/documents", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("multipart/form-data"));
    assert!(form.contains("Document (PDF, PNG or JPEG, up to 10 MB)"));

    let before = data_files(&s);
    // The client's Content-Type is ignored: ours comes from the content.
    for (name, bytes, ours) in [
        ("Site plan.pdf", PDF.to_vec(), "application/pdf"),
        ("meter.PNG", png(), "image/png"),
        ("photo.jpeg", jpeg(), "image/jpeg"),
    ] {
        let res = upload(&s, &c, &csrf, name, bytes.clone(), "text/html").await;
        assert_eq!(res.status(), 303, "{name} accepted");
        let docs = s.app().documents_for_account(ACCOUNT).await.unwrap();
        let d = docs.iter().find(|d| d.file_name == name).unwrap();
        assert!(d.id.starts_with("doc_") && !d.id.contains(name));
        let list = c
            .get(format!("{}/accounts/{ACCOUNT}/documents", s.staff))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let href = format!("/documents/{}/download", d.id);
        assert!(list.contains(&href), "{name} listed");
        let res = c.get(format!("{}{href}", s.staff)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let h = res.headers().clone();
        assert_eq!(h["content-type"], ours);
        assert_eq!(
            h["content-disposition"].to_str().unwrap(),
            format!("attachment; filename=\"{name}\"")
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["content-security-policy"], "default-src 'none'; sandbox");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(
            res.bytes().await.unwrap().to_vec(),
            bytes,
            "{name} byte-identical"
        );
    }
    assert_eq!(stored(&s).await, 3);

    // Each attachment is audited.
    let mut conn = s.app().store.conn().await.unwrap();
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_log WHERE event = 'document.attached' AND actor LIKE 'staff:%'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(n, 3);
    drop(conn);

    // No file was written: the data directory holds what it held before, plus the database.
    let after = data_files(&s);
    assert!(
        after
            .iter()
            .all(|f| before.contains(f) || f.starts_with("strongroom.db")),
        "new files in the data directory: {after:?} (before: {before:?})"
    );

    // An unknown or malformed id is a 404.
    for id in ["doc_NoSuchDocument123", "doc_..%2F..%2Fetc", "x"] {
        let res = c
            .get(format!("{}/documents/{id}/download", s.staff))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{id}");
    }
}

#[tokio::test]
async fn every_webshell_disguise_is_refused_and_nothing_is_stored() {
    let s = server().start().await;
    let (c, csrf) = clerk(&s).await;
    let with = |head: &[u8], tail: &[u8]| [head, tail].concat();
    let mut jpeg_script_tail = jpeg();
    jpeg_script_tail.truncate(jpeg_script_tail.len() - 2);
    jpeg_script_tail.extend_from_slice(b"<script>fetch('/x?c='+document.cookie)</script>\xFF\xD9");
    let program = "extension of a program or web page";
    let not_allowed = "is not a PDF, PNG or JPEG";
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "shell.jsp",
            b"<%@ page import=\"java.io.*\" %><% Runtime.getRuntime().exec(request.getParameter(\"c\")); %>".to_vec(),
            "JSP webshell",
            program,
        ),
        ("shell.php", b"<?php system($_GET['c']); ?>".to_vec(), "PHP webshell", program),
        ("shell.php.png", b"<?php system($_GET['c']); ?>".to_vec(), "PHP with a double extension", program),
        ("page.html", b"<!doctype html><html><script>alert(1)</script></html>".to_vec(), "HTML", program),
        ("page.pdf", b"<!doctype html><html><script>alert(1)</script></html>".to_vec(), "HTML renamed .pdf", not_allowed),
        (
            "image.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec(),
            "SVG with a script",
            program,
        ),
        (
            "image.png",
            with(b"\x89PNG\r\n\x1a\n", b"<?php system($_GET['c']); ?>"),
            "PNG header with PHP (polyglot)",
            "contains PHP code hidden in a PNG",
        ),
        ("photo.jpg", jpeg_script_tail, "JPEG with a script in its tail", "contains a script hidden in a JPEG"),
        (
            "form.pdf",
            with(
                b"%PDF-1.4\n1 0 obj << /Type /Catalog /OpenAction 2 0 R >> endobj\n",
                b"2 0 obj << /S /JavaScript /JS (app.alert(1)) >> endobj\n%%EOF\n",
            ),
            "PDF with JavaScript",
            "active content (/JavaScript)",
        ),
        ("../../etc/passwd.pdf", PDF.to_vec(), "path traversal in the name", "contains a path"),
        ("a\u{0000}.pdf", PDF.to_vec(), "NUL in the name", ""),
        ("empty.pdf", Vec::new(), "empty file", "the file is empty"),
        ("app.jar", b"PK\x03\x04\x14\0\0\0".to_vec(), "JAR", program),
        ("tool.pdf", b"\x7fELF\x02\x01\x01\0".to_vec(), "ELF renamed .pdf", not_allowed),
        ("setup.png", b"MZ\x90\0\x03\0\0\0".to_vec(), "EXE renamed .png", not_allowed),
    ];
    for (name, bytes, what, reason) in cases {
        let res = upload(&s, &c, &csrf, name, bytes, "application/pdf").await;
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert_eq!(status, 400, "{what}");
        assert!(
            body.contains(reason),
            "{what}: the refusal says {reason:?}: {body}"
        );
        assert_eq!(stored(&s).await, 0, "{what}: nothing stored");
    }

    // 11 MiB: refused before it is read into the application.
    let mut big = PDF.to_vec();
    big.resize(11 * 1024 * 1024, b' ');
    let res = upload(&s, &c, &csrf, "huge.pdf", big, "application/pdf").await;
    assert!(
        matches!(res.status().as_u16(), 400 | 413),
        "{}",
        res.status()
    );
    // Just over 10 MiB but within the body limit: refused by the size check.
    let mut over = PDF.to_vec();
    over.resize(10 * 1024 * 1024 + 1, b' ');
    let res = upload(&s, &c, &csrf, "over.pdf", over, "application/pdf").await;
    assert!(
        matches!(res.status().as_u16(), 400 | 413),
        "{}",
        res.status()
    );

    // A card number in the file name is refused by the guard, file content unscanned.
    let res = upload(
        &s,
        &c,
        &csrf,
        "4242 4242 4242 4242.pdf",
        PDF.to_vec(),
        "application/pdf",
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("card_number_refused"));
    // ...and in the CSRF field.
    let res = upload(
        &s,
        &c,
        "4242424242424242",
        "plan.pdf",
        PDF.to_vec(),
        "application/pdf",
    )
    .await;
    assert_eq!(res.status(), 400);

    // A wrong CSRF token: 403.
    let res = upload(
        &s,
        &c,
        "not-the-token",
        "plan.pdf",
        PDF.to_vec(),
        "application/pdf",
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(stored(&s).await, 0, "nothing stored");

    // A large body anywhere else on the staff listener is still capped at 64 KiB.
    let res = c
        .post(format!("{}/logout", s.staff))
        .header("origin", &s.staff)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
}

#[tokio::test]
async fn documents_are_staff_only() {
    let s = server().start().await;
    let (c, csrf) = clerk(&s).await;
    assert_eq!(
        upload(&s, &c, &csrf, "plan.pdf", PDF.to_vec(), "application/pdf")
            .await
            .status(),
        303
    );
    let id = s.app().documents_for_account(ACCOUNT).await.unwrap()[0]
        .id
        .clone();
    // The portal listener has no such routes.
    for path in [
        format!("/accounts/{ACCOUNT}/documents"),
        format!("/documents/{id}/download"),
    ] {
        let res = s.get(&path).await;
        assert_eq!(res.status(), 404, "portal {path}");
    }
    let part = reqwest::multipart::Part::bytes(PDF.to_vec()).file_name("plan.pdf");
    let res = s
        .http
        .post(format!("{}/accounts/{ACCOUNT}/documents", s.portal))
        .header("origin", &s.portal)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    // Refused either way: no route, and no form token (multipart is not a form of the portal's).
    assert!(
        matches!(res.status().as_u16(), 403..=405),
        "{}",
        res.status()
    );
    // Signed out: to the login page. An auditor: forbidden.
    let anon = client();
    let res = anon
        .get(format!("{}/documents/{id}/download", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    s.app()
        .create_staff("auditor", "Auditor", PW, app::staff::Role::Auditor)
        .await
        .unwrap();
    let a = client();
    let res = staff_login_full(&s, &a, "auditor", PW).await;
    assert!(
        matches!(res.status().as_u16(), 200 | 303),
        "auditor signs in"
    );
    for path in [
        format!("/accounts/{ACCOUNT}/documents"),
        format!("/documents/{id}/download"),
    ] {
        let res = a.get(format!("{}{path}", s.staff)).send().await.unwrap();
        assert_eq!(res.status(), 403, "auditor {path}");
    }
}
