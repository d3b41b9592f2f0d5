//! Building permits, business licences, the cart and card fees, over HTTP: apply, review,
//! pay with a utility bill in one checkout, issue, inspect, look up; renew a licence late
//! with the clock moved, verify its certificate; a convenience fee as its own line.

use crate::authz::{link, resident};
use crate::harness::*;
use crate::journeys::hidden_value;
use crate::staff::staff_login_full;

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
const STAFF_PW: &str = "permit-desk-harbor-42";

async fn post(
    s: &Server,
    c: &reqwest::Client,
    csrf: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = form.to_vec();
    form.push(("csrf", csrf));
    c.post(format!("{}{path}", s.portal))
        .header("origin", &s.portal)
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn page(s: &Server, c: &reqwest::Client, path: &str) -> String {
    let res = c.get(format!("{}{path}", s.portal)).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.text().await.unwrap()
}

async fn staff(s: &Server, user: &str, role: app::staff::Role) -> (reqwest::Client, String) {
    s.app()
        .create_staff(user, user, STAFF_PW, role)
        .await
        .unwrap();
    let c = client();
    let res = staff_login_full(s, &c, user, STAFF_PW).await;
    assert!(res.status().is_success() || res.status().is_redirection());
    let home = c
        .get(format!("{}/profile", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (c.clone(), hidden_value(&home, "csrf"))
}

async fn staff_post(
    s: &Server,
    c: &reqwest::Client,
    csrf: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = form.to_vec();
    form.push(("csrf", csrf));
    c.post(format!("{}{path}", s.staff))
        .header("origin", &s.staff)
        .form(&form)
        .send()
        .await
        .unwrap()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// Pays everything the form names through the cart: review, pay, the hosted page, back.
async fn pay_cart(s: &Server, c: &reqwest::Client, csrf: &str, form: &[(&str, &str)]) -> String {
    let review = post(s, c, csrf, "/cart/review", form).await;
    assert_eq!(review.status(), 200);
    let html = review.text().await.unwrap();
    let key = hidden_value(&html, "form_key");
    let mut f = form.to_vec();
    f.push(("form_key", &key));
    let res = post(s, c, csrf, "/cart/pay", &f).await;
    assert_eq!(res.status(), 303, "cart pay");
    let checkout = location(&res);
    let card = c
        .post(&checkout)
        .header("origin", &s.processor)
        .form(&[
            ("card_number", "4242 4242 4242 4242"),
            (
                "expiry",
                &format!("12/{:02}", (s.clock.now_year() + 3) % 100),
            ),
            ("cvc", "123"),
            ("name", "Pat Payer"),
            ("zip", "93301"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(card.status(), 303);
    let mut res = card;
    for _ in 0..5 {
        if !res.status().is_redirection() {
            break;
        }
        let loc = location(&res);
        let url = if loc.starts_with("http") {
            loc
        } else {
            format!("{}{}", s.portal, loc)
        };
        res = c.get(url).send().await.unwrap();
    }
    assert_eq!(res.status(), 200);
    s.webhooks_settled().await;
    html
}

async fn open_invoice(s: &Server, subject: &str, purpose: &str) -> store::services::InvoiceRow {
    let mut c = s.app().store.conn().await.unwrap();
    store::services::invoices_of_subject(&mut c, subject)
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.purpose == purpose && i.status == "open")
        .unwrap_or_else(|| panic!("an open {purpose} invoice"))
}

async fn permit_row(s: &Server, id: &str) -> store::services::PermitRow {
    let mut c = s.app().store.conn().await.unwrap();
    store::services::permit(&mut c, id).await.unwrap().unwrap()
}

#[tokio::test]
async fn permit_applied_reviewed_paid_with_a_bill_issued_inspected_and_looked_up() {
    let s = server().start().await;
    let (c, csrf) = resident(&s, "builder@example.com").await;
    link(&s, &c, &csrf, "100001").await;

    // Every problem of the form at once, each on its field, and nothing stored.
    let bad = post(
        &s,
        &c,
        &csrf,
        "/permits/new",
        &[
            ("permit_type", "garage"),
            ("site_zip", "12"),
            ("valuation", "lots"),
            ("area_sq_ft", "-3"),
        ],
    )
    .await;
    assert_eq!(bad.status(), 422);
    let html = bad.text().await.unwrap();
    assert!(html.contains("id=\"error-summary\""), "summary");
    for f in [
        "permit_type",
        "applicant_name",
        "applicant_phone",
        "site_street",
        "site_zip",
        "scope",
        "valuation",
        "area_sq_ft",
    ] {
        assert!(
            html.contains(&format!("href=\"#{f}\"")),
            "summary links {f}"
        );
    }
    assert!(html.matches("aria-invalid=\"true\"").count() >= 7, "{html}");
    assert!(s
        .app()
        .permits_of_resident(&s.resident_id("builder@example.com").await)
        .await
        .unwrap()
        .is_empty());

    let form = [
        ("permit_type", "residential-alteration"),
        ("applicant_name", "Pat Builder"),
        ("applicant_phone", "555-123-4567"),
        ("site_street", "100 Main St"),
        ("site_zip", "93301"),
        ("scope", "Add a 200 sq ft bedroom at the back"),
        ("valuation", "10,000"),
        ("area_sq_ft", "200"),
        ("contractor_licence", "CSLB-123456"),
    ];
    let res = post(&s, &c, &csrf, "/permits/new", &form).await;
    assert_eq!(res.status(), 303);
    let plans_path = location(&res);
    let id = plans_path
        .trim_start_matches("/permits/")
        .trim_end_matches("/plans")
        .to_owned();
    // Sealed at rest: the applicant's name is not in the row.
    assert!(permit_row(&s, &id)
        .await
        .applicant_name
        .starts_with("enc:v1:"));

    // Submitting before the plans are there is refused, with the reason.
    let res = post(&s, &c, &csrf, &format!("/permits/{id}/submit"), &[]).await;
    assert_eq!(res.status(), 422);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Upload the documents listed"));

    // A page disguised as a PDF is refused; a PDF is accepted.
    let upload = |bytes: Vec<u8>, name: &'static str| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf.clone())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            );
        c.post(format!("{}{plans_path}", s.portal))
            .header("origin", &s.portal)
            .multipart(form)
            .send()
    };
    let res = upload(
        b"<html><script>alert(1)</script></html>".to_vec(),
        "plan.pdf",
    )
    .await
    .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let res = upload(PDF.to_vec(), "plan.pdf").await.unwrap();
    assert_eq!(res.status(), 303);

    // The estimate before submitting: $10,000 -> $69.25 + 8 x $14 = $181.25; plan review
    // 65 % = $117.81; $299.06.
    let p = page(&s, &c, &format!("/permits/{id}")).await;
    assert!(p.contains("$299.06"), "estimate shown");
    assert_eq!(
        post(&s, &c, &csrf, &format!("/permits/{id}/submit"), &[])
            .await
            .status(),
        303
    );
    assert_eq!(permit_row(&s, &id).await.status, "submitted");

    // A reviewer approves: the fees are invoiced, the resident emailed.
    let (sc, scsrf) = staff(&s, "reviewer", app::staff::Role::Clerk).await;
    let q = sc
        .get(format!("{}/permit-reviews", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(q.contains(&id));
    let detail = sc
        .get(format!("{}/permit-reviews/{id}", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(detail.contains("Pat Builder") && detail.contains("plan.pdf"));
    let none = staff_post(
        &s,
        &sc,
        &scsrf,
        &format!("/permit-reviews/{id}"),
        &[("decision", "")],
    )
    .await;
    assert_eq!(none.status(), 422);
    let ok = staff_post(
        &s,
        &sc,
        &scsrf,
        &format!("/permit-reviews/{id}"),
        &[("decision", "approve")],
    )
    .await;
    assert_eq!(ok.status(), 303);
    let inv = open_invoice(&s, &id, "permit_fees").await;
    assert_eq!(inv.amount_cents, 29_906);
    let mails = s.app().emails_to("builder@example.com").await.unwrap();
    assert!(mails.iter().any(|m| m.kind == "permit_review"));

    // One checkout: the permit fee and the utility bill. A changed amount is caught first.
    let balance = s.balance("100001").await;
    let (pk, dk, ak) = (
        format!("pay_i_{}", inv.id),
        format!("due_i_{}", inv.id),
        format!("amount_i_{}", inv.id),
    );
    let stale = post(
        &s,
        &c,
        &csrf,
        "/cart/review",
        &[
            (pk.as_str(), "1"),
            (dk.as_str(), "100"),
            (ak.as_str(), "1.00"),
        ],
    )
    .await;
    assert_eq!(stale.status(), 422);
    assert!(stale.text().await.unwrap().contains("amount due changed"));
    let due = inv.amount_cents.to_string();
    let bill = format!("{}.{:02}", balance / 100, balance % 100);
    let cart = [
        (pk.as_str(), "1"),
        (dk.as_str(), due.as_str()),
        (ak.as_str(), "299.06"),
        ("pay_u_100001", "1"),
        ("amount_u_100001", bill.as_str()),
    ];
    let review = pay_cart(&s, &c, &csrf, &cart).await;
    assert!(
        review.contains("Building and Safety") && review.contains("Utilities"),
        "by department"
    );
    assert_eq!(s.balance("100001").await, 0);
    let p = permit_row(&s, &id).await;
    assert_eq!(p.status, "issued");
    let number = p.permit_number.clone().unwrap();
    assert!(
        number.starts_with("BP-") && number.ends_with("-00001"),
        "{number}"
    );
    // Posted once each, to its own ledger account.
    let mut conn = s.app().store.conn().await.unwrap();
    let postings: Vec<(String, i64)> = sqlx::query_as(
        "SELECT item_type, amount_cents FROM postings WHERE kind = 'payment' ORDER BY item_type",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    assert!(
        postings.contains(&("permit".to_owned(), 29_906)),
        "{postings:?}"
    );
    assert!(postings
        .iter()
        .any(|(t, c)| t == "utility" && *c == balance));
    // Paying it again is refused before the processor is involved.
    let again = post(&s, &c, &csrf, "/cart/review", &cart).await;
    assert_eq!(again.status(), 422);
    assert!(again.text().await.unwrap().contains("already paid"));

    // Inspections: booked, failed (a re-inspection fee), paid, booked again, passed.
    let p = page(&s, &c, &format!("/permits/{id}")).await;
    let day = hidden_option(&p, "day");
    assert_eq!(
        post(
            &s,
            &c,
            &csrf,
            &format!("/permits/{id}/inspections"),
            &[("inspection_type", "Foundation"), ("day", &day)]
        )
        .await
        .status(),
        303
    );
    let twice = post(
        &s,
        &c,
        &csrf,
        &format!("/permits/{id}/inspections"),
        &[("inspection_type", "Foundation"), ("day", &day)],
    )
    .await;
    assert_eq!(twice.status(), 422);
    let (ic, icsrf) = staff(&s, "inspector", app::staff::Role::Inspector).await;
    // Least privilege: an inspector sees inspections, not payments.
    assert_eq!(
        ic.get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let queue = ic
        .get(format!("{}/inspections", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let insp = queue
        .split("action=\"/inspections/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let no_note = staff_post(
        &s,
        &ic,
        &icsrf,
        &format!("/inspections/{insp}"),
        &[("result", "failed"), ("note", "")],
    )
    .await;
    assert_eq!(no_note.status(), 400);
    let failed = staff_post(
        &s,
        &ic,
        &icsrf,
        &format!("/inspections/{insp}"),
        &[("result", "failed"), ("note", "Footing too shallow")],
    )
    .await;
    assert_eq!(failed.status(), 303);
    let fee = open_invoice(&s, &id, "reinspection").await;
    assert_eq!(fee.amount_cents, 7_500);
    let blocked = post(
        &s,
        &c,
        &csrf,
        &format!("/permits/{id}/inspections"),
        &[("inspection_type", "Foundation"), ("day", &day)],
    )
    .await;
    assert_eq!(blocked.status(), 422);
    assert!(blocked.text().await.unwrap().contains("re-inspection fee"));
    let (pk, dk, ak) = (
        format!("pay_i_{}", fee.id),
        format!("due_i_{}", fee.id),
        format!("amount_i_{}", fee.id),
    );
    pay_cart(
        &s,
        &c,
        &csrf,
        &[
            (pk.as_str(), "1"),
            (dk.as_str(), "7500"),
            (ak.as_str(), "75.00"),
        ],
    )
    .await;
    assert_eq!(
        post(
            &s,
            &c,
            &csrf,
            &format!("/permits/{id}/inspections"),
            &[("inspection_type", "Foundation"), ("day", &day)]
        )
        .await
        .status(),
        303
    );
    let queue = ic
        .get(format!("{}/inspections", s.staff))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let insp2 = queue
        .split("action=\"/inspections/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(insp, insp2);
    assert_eq!(
        staff_post(
            &s,
            &ic,
            &icsrf,
            &format!("/inspections/{insp2}"),
            &[("result", "passed"), ("note", "")]
        )
        .await
        .status(),
        303
    );
    let p = page(&s, &c, &format!("/permits/{id}")).await;
    assert!(p.contains("Failed") && p.contains("Passed") && p.contains("Footing too shallow"));

    // The public lookup: number and address must match; nothing personal is shown.
    let anon = client();
    let found = anon
        .get(format!(
            "{}/permit-lookup?number={number}&address=93301",
            s.portal
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), 200);
    let html = found.text().await.unwrap();
    assert!(html.contains("Issued") && html.contains("Passed"));
    assert!(
        !html.contains("Pat Builder") && !html.contains("555-123") && !html.contains("Footing")
    );
    let wrong = anon
        .get(format!(
            "{}/permit-lookup?number={number}&address=99999",
            s.portal
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);

    // Another resident cannot see it, its plans or its print page.
    let (other, _) = resident(&s, "neighbour@example.com").await;
    for path in [
        format!("/permits/{id}"),
        format!("/permits/{id}/print"),
        format!("/permits/{id}/plans"),
    ] {
        assert_eq!(
            other
                .get(format!("{}{path}", s.portal))
                .send()
                .await
                .unwrap()
                .status(),
            404,
            "{path}"
        );
    }
    // Everything that changed is in the audit chain, and it verifies.
    let mut conn = s.app().store.conn().await.unwrap();
    assert!(store::audit::verify(&mut conn, AUDIT_KEY)
        .await
        .unwrap()
        .is_ok());
}

/// The first option value of a `<select name=..>`.
fn hidden_option(html: &str, name: &str) -> String {
    let sel = html.split(&format!("name=\"{name}\"")).nth(1).unwrap();
    sel.split("<option value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

/// A home-occupation licence for "Pat's Pottery", applied for and paid through the cart by
/// a signed-in resident; returns its id.
pub(crate) async fn issue_licence(s: &Server, c: &reqwest::Client, csrf: &str) -> String {
    let res = post(
        s,
        c,
        csrf,
        "/licences/new",
        &[
            ("licence_type", "home-occupation"),
            ("business_name", "Pat's Pottery"),
            ("business_street", "12 Elm St"),
            ("business_zip", "93301"),
            ("employees", "1"),
            ("gross_receipts", "40000"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let id = location(&res).trim_start_matches("/licences/").to_owned();
    let inv = open_invoice(s, &id, "licence_new").await;
    let (pk, dk, ak) = (
        format!("pay_i_{}", inv.id),
        format!("due_i_{}", inv.id),
        format!("amount_i_{}", inv.id),
    );
    let due = inv.amount_cents.to_string();
    let amount = format!("{}.{:02}", inv.amount_cents / 100, inv.amount_cents % 100);
    pay_cart(
        s,
        c,
        csrf,
        &[
            (pk.as_str(), "1"),
            (dk.as_str(), due.as_str()),
            (ak.as_str(), amount.as_str()),
        ],
    )
    .await;
    id
}

#[tokio::test]
async fn licence_renewed_late_pays_the_penalty_and_its_certificate_verifies() {
    let s = server().start().await;
    let (c, csrf) = resident(&s, "owner@example.com").await;
    // All the form's problems at once.
    let bad = post(
        &s,
        &c,
        &csrf,
        "/licences/new",
        &[
            ("licence_type", ""),
            ("employees", "many"),
            ("business_zip", "x"),
        ],
    )
    .await;
    assert_eq!(bad.status(), 422);
    let html = bad.text().await.unwrap();
    assert!(html.matches("aria-invalid=\"true\"").count() >= 5);

    let res = post(
        &s,
        &c,
        &csrf,
        "/licences/new",
        &[
            ("licence_type", "home-occupation"),
            ("business_name", "Pat's Pottery"),
            ("business_street", "12 Elm St"),
            ("business_zip", "93301"),
            ("employees", "1"),
            ("gross_receipts", "40000"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let id = location(&res).trim_start_matches("/licences/").to_owned();
    let inv = open_invoice(&s, &id, "licence_new").await;
    assert_eq!(inv.amount_cents, 7_500);
    let (pk, dk, ak) = (
        format!("pay_i_{}", inv.id),
        format!("due_i_{}", inv.id),
        format!("amount_i_{}", inv.id),
    );
    pay_cart(
        &s,
        &c,
        &csrf,
        &[
            (pk.as_str(), "1"),
            (dk.as_str(), "7500"),
            (ak.as_str(), "75.00"),
        ],
    )
    .await;
    let (l, _, _) = s.app().licence(None, &id).await.unwrap();
    assert_eq!(l.status, "active");
    let first_expiry = l.expires_on.clone().unwrap();
    let code = l.verification_code.clone().unwrap();
    let cert = page(&s, &c, &format!("/licences/{id}/certificate")).await;
    assert!(cert.contains(&code) && cert.contains(&format!("/licence-check/{code}")));
    let anon = client();
    let v = anon
        .get(format!("{}/licence-check/{code}", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(v.contains("genuine and current"));
    assert_eq!(
        anon.get(format!("{}/licence-check/NOTACODE22", s.portal))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Not renewable yet; 20 days before expiry a notice goes out, once.
    assert!(!l.renewable);
    assert_eq!(s.app().send_renewal_notices().await.unwrap(), 0);
    s.clock.advance(time::Duration::days(365 - 20));
    assert_eq!(s.app().send_renewal_notices().await.unwrap(), 1);
    assert_eq!(s.app().send_renewal_notices().await.unwrap(), 0);
    assert!(s
        .app()
        .emails_to("owner@example.com")
        .await
        .unwrap()
        .iter()
        .any(|m| m.kind == "licence_renewal_notice"));

    // 40 days after expiry: two started months late, 10 % each of $75.00 (cap 25 %).
    s.clock.advance(time::Duration::days(60));
    // A year on, the resident signs in again.
    let (c, csrf) = login(&s, "owner@example.com").await;
    let v = anon
        .get(format!("{}/licence-check/{code}", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(v.contains("not current") && v.contains("Expired"));
    let renew_page = page(&s, &c, &format!("/licences/{id}/renew")).await;
    assert!(
        renew_page.contains("Pottery") && renew_page.contains("value=\"12 Elm St\""),
        "details carried forward"
    );
    let details = [
        ("business_name", "Pat's Pottery"),
        ("business_street", "12 Elm St"),
        ("business_zip", "93301"),
        ("employees", "2"),
        ("gross_receipts", "52000"),
    ];
    let mut quote = details.to_vec();
    quote.push(("quote", "1"));
    let q = post(&s, &c, &csrf, &format!("/licences/{id}/renew"), &quote).await;
    assert_eq!(q.status(), 200);
    let qh = q.text().await.unwrap();
    assert!(
        qh.contains("$15.00") && qh.contains("$90.00"),
        "penalty and total shown"
    );
    let mut confirm = details.to_vec();
    confirm.push(("quote", "0"));
    assert_eq!(
        post(&s, &c, &csrf, &format!("/licences/{id}/renew"), &confirm)
            .await
            .status(),
        303
    );
    let inv = open_invoice(&s, &id, "licence_renewal").await;
    assert_eq!(inv.amount_cents, 9_000);
    let (pk, dk, ak) = (
        format!("pay_i_{}", inv.id),
        format!("due_i_{}", inv.id),
        format!("amount_i_{}", inv.id),
    );
    pay_cart(
        &s,
        &c,
        &csrf,
        &[
            (pk.as_str(), "1"),
            (dk.as_str(), "9000"),
            (ak.as_str(), "90.00"),
        ],
    )
    .await;
    let (l, _, _) = s.app().licence(None, &id).await.unwrap();
    assert_eq!(l.status, "active");
    assert_eq!(l.employees, 2);
    let old = time::Date::parse(
        &first_expiry,
        &time::format_description::well_known::Iso8601::DATE,
    )
    .unwrap();
    assert_eq!(
        l.expires_on.unwrap(),
        domain::fees::one_year_after(old).to_string(),
        "a year on from the old expiry"
    );
    let v = anon
        .get(format!("{}/licence-check/{code}", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(v.contains("genuine and current"));

    // A supervisor suspends it (with a reason, audited): the public check says so.
    let (sc, scsrf) = staff(&s, "licensing", app::staff::Role::Supervisor).await;
    assert_eq!(
        staff_post(
            &s,
            &sc,
            &scsrf,
            &format!("/licences/{id}/status"),
            &[("action", "suspend"), ("reason", "")]
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        staff_post(
            &s,
            &sc,
            &scsrf,
            &format!("/licences/{id}/status"),
            &[("action", "suspend"), ("reason", "Unpaid fire inspection")]
        )
        .await
        .status(),
        303
    );
    let v = anon
        .get(format!("{}/licence-check/{code}", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(v.contains("not current") && v.contains("Suspended"));
    assert!(crate::staff::audit_of(&s, &id)
        .await
        .iter()
        .any(|(e, _, d)| e == "licence.suspended" && d.contains("Unpaid fire inspection")));
}

/// Signs a registered resident in on a fresh cookie jar (the harness's password).
async fn login(s: &Server, email: &str) -> (reqwest::Client, String) {
    let c = client();
    let token = form_token(&c, &s.portal).await;
    let res = c
        .post(format!("{}/login", s.portal))
        .header("origin", &s.portal)
        .form(&[
            ("email", email),
            ("password", "purple elephants juggle quietly"),
            ("csrf", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let dash = page(s, &c, "/dashboard").await;
    (c.clone(), hidden_value(&dash, "csrf"))
}

fn convenience(item: &str) -> domain::fees::CardFeeRule {
    domain::fees::CardFeeRule {
        item_type: item.into(),
        method: "card".into(),
        channel: "web".into(),
        kind: domain::fees::CardFeeKind::Convenience,
        flat_cents: 295,
        percent_bps: 0,
        charged_to: domain::fees::ChargedTo::Payer,
        on_recurring: false,
        separate_transaction: false,
    }
}

#[tokio::test]
async fn a_convenience_fee_is_shown_before_paying_and_posted_as_its_own_line() {
    let s = server()
        .card_fees(
            domain::fees::ITEM_TYPES
                .iter()
                .map(|t| convenience(t))
                .collect(),
        )
        .start()
        .await;
    let (c, csrf) = resident(&s, "fees@example.com").await;
    link(&s, &c, &csrf, "100001").await;
    let balance = s.balance("100001").await;
    let bill = format!("{}.{:02}", balance / 100, balance % 100);
    let review = pay_cart(
        &s,
        &c,
        &csrf,
        &[("pay_u_100001", "1"), ("amount_u_100001", &bill)],
    )
    .await;
    assert!(review.contains("Card convenience fee") && review.contains("$2.95"));
    assert!(review.contains("href=\"/cart\""), "a way back");
    // The bill is paid exactly; the fee is its own posting, not part of the bill.
    assert_eq!(s.balance("100001").await, 0);
    let mut conn = s.app().store.conn().await.unwrap();
    let lines: Vec<(String, String, i64)> = sqlx::query_as("SELECT item_type, ledger_account, amount_cents FROM postings WHERE kind = 'payment' ORDER BY item_type")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        ("card_fee".into(), "3490-CARD-CONVENIENCE-FEES".into(), 295)
    );
    assert_eq!(lines[1].2, balance);
    let (total,): (i64,) = sqlx::query_as("SELECT amount_cents FROM payments")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(total, balance + 295);
}

#[tokio::test]
async fn error_pages_speak_the_readers_language() {
    let s = server().start().await;
    let c = client();
    let res = c
        .get(format!("{}/no-such-page?lang=es", s.portal))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let html = res.text().await.unwrap();
    assert!(html.contains("<html lang=\"es\">"), "declared Spanish");
    assert!(
        html.contains("No encontramos esa página")
            && html.contains("No pudimos completar esa acción"),
        "{html}"
    );
    // Remembered from the cookie, and by Accept-Language.
    let res = client()
        .get(format!(
            "{}/permits/pmt_AAAAAAAAAAAAAAAAAAAAAA/print",
            s.portal
        ))
        .header("accept-language", "es-US,es;q=0.9")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection() || res.status() == 404);
    let res = client()
        .get(format!("{}/licence-check/NOPE", s.portal))
        .header("accept-language", "es-US,es;q=0.9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.text().await.unwrap().contains("<html lang=\"es\">"));
    // English stays English.
    let html = c
        .get(format!("{}/no-such-page?lang=en", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<html lang=\"en\">"));
}

#[tokio::test]
async fn a_residents_language_is_remembered_for_their_emails() {
    let s = server().start().await;
    // Registered from a Spanish page: the confirmation email is in Spanish.
    let c = client();
    let token = form_token(&c, &s.portal).await;
    let res = c
        .post(format!("{}/register?lang=es", s.portal))
        .header("origin", &s.portal)
        .form(&[
            ("email", "ana@example.com"),
            ("password", "purple elephants juggle quietly"),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mails = s.app().emails_to("ana@example.com").await.unwrap();
    let verify = mails.iter().find(|m| m.kind == "verify_email").unwrap();
    assert_eq!(verify.subject, "Confirme su correo electrónico");
    assert!(verify.body_text.contains("Bienvenido"));
    // A quick payment from a Spanish page: the receipt is in Spanish, itemised by
    // department.
    let form = [("account_number", "100001"), ("postal_code", "93301")];
    let token = form_token(&c, &s.portal).await;
    let page = c
        .post(format!("{}/quick-pay?lang=es", s.portal))
        .header("origin", &s.portal)
        .form(&[form[0], form[1], ("csrf", token.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = hidden_value(&page, "form_key");
    let res = c
        .post(format!("{}/quick-pay/pay?lang=es", s.portal))
        .header("origin", &s.portal)
        .form(&[
            form[0],
            form[1],
            ("amount", "10.00"),
            ("email", "pago@example.com"),
            ("form_key", key.as_str()),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let checkout = location(&res);
    // The processor's card page speaks Spanish too.
    let card_page = c.get(&checkout).send().await.unwrap().text().await.unwrap();
    assert!(
        card_page.contains("<html lang=\"es\">") && card_page.contains("Número de tarjeta"),
        "{card_page}"
    );
    let paid = c
        .post(&checkout)
        .header("origin", &s.processor)
        .form(&[
            ("card_number", "4242 4242 4242 4242"),
            ("expiry", "12/39"),
            ("cvc", "123"),
            ("name", "Ana Pago"),
            ("zip", "93301"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 303);
    s.follow(paid).await;
    s.webhooks_settled().await;
    let receipt = s
        .app()
        .emails_to("pago@example.com")
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.kind == "receipt")
        .unwrap();
    assert!(
        receipt.subject.starts_with("Recibo de pago"),
        "{}",
        receipt.subject
    );
    assert!(
        receipt
            .body_text
            .contains("Servicios públicos: Cuenta de servicios 100001: $10.00"),
        "{}",
        receipt.body_text
    );
    // Quick pay's errors, all at once and in Spanish, on their fields.
    let token = form_token(&c, &s.portal).await;
    let res = c
        .post(format!("{}/quick-pay/pay?lang=es", s.portal))
        .header("origin", &s.portal)
        .form(&[
            form[0],
            form[1],
            ("amount", "diez"),
            ("email", "nadie"),
            ("form_key", app::ids::form_key().as_str()),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("href=\"#amount\"") && html.contains("href=\"#email\""),
        "both in the summary"
    );
    assert!(html.contains("Escriba un correo electrónico"), "in Spanish");
    assert!(!html.contains("items[0]"), "no internal field names");
}

#[tokio::test]
async fn a_guest_pays_a_permits_fees_by_its_number_and_zip() {
    let s = server().start().await;
    let (c, csrf) = resident(&s, "applicant@example.com").await;
    let form = [
        ("permit_type", "fence"),
        ("applicant_name", "Lee Fence"),
        ("applicant_phone", "555-222-3333"),
        ("site_street", "9 Oak St"),
        ("site_zip", "93305"),
        ("scope", "A 7 ft fence"),
        ("valuation", "3000"),
        ("area_sq_ft", "0"),
        ("contractor_licence", ""),
    ];
    let res = post(&s, &c, &csrf, "/permits/new", &form).await;
    let id = location(&res)
        .trim_start_matches("/permits/")
        .trim_end_matches("/plans")
        .to_owned();
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(PDF.to_vec()).file_name("fence.pdf"),
        );
    c.post(format!("{}/permits/{id}/plans", s.portal))
        .header("origin", &s.portal)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        post(&s, &c, &csrf, &format!("/permits/{id}/submit"), &[])
            .await
            .status(),
        303
    );
    let number = permit_row(&s, &id)
        .await
        .permit_number
        .expect("numbered when submitted");
    let admin = s.app().staff_by_username("demo").await.unwrap();
    let reviewer = match admin {
        Some(a) => a.id,
        None => {
            s.app()
                .create_staff("rev", "Rev", STAFF_PW, app::staff::Role::Clerk)
                .await
                .unwrap();
            s.app().staff_by_username("rev").await.unwrap().unwrap().id
        }
    };
    s.app()
        .review_permit(&reviewer, &id, &app::permits::Review::Approve, "127.0.0.1")
        .await
        .unwrap();

    // A guest (the contractor, say): the number and the ZIP, nothing else.
    let g = client();
    let token = form_token(&g, &s.portal).await;
    let guest = |path: &'static str, form: Vec<(&'static str, String)>| {
        let (g, portal, token) = (g.clone(), s.portal.clone(), token.clone());
        async move {
            let mut form = form;
            form.push(("csrf", token));
            g.post(format!("{portal}{path}"))
                .header("origin", &portal)
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    let wrong = guest(
        "/pay-fees",
        vec![("number", number.clone()), ("zip", "93301".into())],
    )
    .await;
    assert_eq!(wrong.status(), 404, "the ZIP must match");
    let bad = guest(
        "/pay-fees",
        vec![("number", String::new()), ("zip", "9".into())],
    )
    .await;
    assert_eq!(bad.status(), 400);
    let html = bad.text().await.unwrap();
    assert!(
        html.contains("href=\"#number\"") && html.contains("href=\"#zip\""),
        "both problems at once"
    );
    let found = guest(
        "/pay-fees",
        vec![("number", number.to_lowercase()), ("zip", "93305".into())],
    )
    .await;
    assert_eq!(found.status(), 200);
    let html = found.text().await.unwrap();
    assert!(html.contains("$75.00") && html.contains("Building and Safety"));
    assert!(!html.contains("Lee Fence"), "no personal data");
    let key = hidden_value(&html, "form_key");
    let inv = open_invoice(&s, &id, "permit_fees").await;
    let due_key: &'static str = Box::leak(format!("due_{}", inv.id).into_boxed_str());
    let res = guest(
        "/pay-fees/pay",
        vec![
            ("number", number.clone()),
            ("zip", "93305".into()),
            ("email", "contractor@example.com".into()),
            ("form_key", key),
            (due_key, "7500".into()),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let paid = s.pay_hosted(&location(&res), "4242 4242 4242 4242").await;
    s.follow(paid).await;
    s.webhooks_settled().await;
    assert_eq!(
        permit_row(&s, &id).await.status,
        "issued",
        "paid by the guest, issued"
    );
    let again = guest(
        "/pay-fees",
        vec![("number", number.clone()), ("zip", "93305".into())],
    )
    .await;
    assert!(again.text().await.unwrap().contains("Nothing is due"));
}

#[tokio::test]
async fn an_invoice_paid_twice_is_acted_on_once_and_the_second_capture_waits_for_staff() {
    let s = server().start().await;
    let (c, csrf) = resident(&s, "twotabs@example.com").await;
    let res = post(
        &s,
        &c,
        &csrf,
        "/licences/new",
        &[
            ("licence_type", "home-occupation"),
            ("business_name", "Two Tabs"),
            ("business_street", "1 Elm St"),
            ("business_zip", "93301"),
            ("employees", "1"),
            ("gross_receipts", "1000"),
        ],
    )
    .await;
    let id = location(&res).trim_start_matches("/licences/").to_owned();
    let inv = open_invoice(&s, &id, "licence_new").await;
    // Two checkouts for the same fee, opened before either was paid (two tabs).
    let mut checkouts = Vec::new();
    for _ in 0..2 {
        let started = s
            .app()
            .start_payment(app::payments::PaymentRequest {
                items: vec![],
                invoices: vec![app::payments::RequestedInvoice {
                    invoice_id: inv.id.clone(),
                    amount: domain::Money::usd(inv.amount_cents),
                    expected_due_cents: Some(inv.amount_cents),
                }],
                email: domain::EmailAddress::parse("twotabs@example.com").unwrap(),
                resident_id: None,
                channel: app::payments::Channel::Api,
                return_url: None,
                source_ip: "10.9.9.9".into(),
                form_key: None,
                language: None,
            })
            .await
            .unwrap();
        checkouts.push(started.checkout_url);
    }
    for url in &checkouts {
        let paid = s.pay_hosted(url, "4242 4242 4242 4242").await;
        s.follow(paid).await;
    }
    s.webhooks_settled().await;
    let (l, _, _) = s.app().licence(None, &id).await.unwrap();
    assert_eq!(l.status, "active");
    let today = s.app().city_today().unwrap();
    assert_eq!(
        l.expires_on.unwrap(),
        domain::fees::Expiry::Anniversary.first(today).to_string(),
        "issued once, not renewed by the second capture"
    );
    let waiting: Vec<_> = s
        .app()
        .exceptions(true)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.evidence.contains(&inv.id))
        .collect();
    assert_eq!(
        waiting.len(),
        1,
        "the second capture waits in the exceptions queue"
    );
    assert_eq!(waiting[0].amount.map(|m| m.cents()), Some(inv.amount_cents));
    let mut conn = s.app().store.conn().await.unwrap();
    let (issued,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_log WHERE event = 'licence.issued' AND object = $1",
    )
    .bind(&id)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(issued, 1);
}
