use crate::harness::*;

#[tokio::test]
async fn quick_pay_end_to_end_posts_exactly_the_amount_and_emails_a_receipt() {
    let s = server().smtp().start().await;
    let before = s.balance("100001").await;
    assert!(before > 1000);
    let id = s.pay_ok("100001", "93301", 1234, "journey-1").await;
    let p = s.app().payment(&id).await.unwrap();
    assert_eq!(p.status.as_str(), "succeeded");
    assert_eq!(p.card_last4.as_deref(), Some("4242"));
    assert_eq!(
        s.balance("100001").await,
        before - 1234,
        "balance dropped by exactly the amount paid"
    );
    assert_eq!(s.ledger_payments("100001", &id).await, 1);
    let mails = s.app().emails_to("payer@example.com").await.unwrap();
    assert!(
        mails
            .iter()
            .any(|m| m.kind == "receipt" && m.body_text.contains(&p.confirmation_number)),
        "receipt in the outbox"
    );
    let mail = s
        .mail
        .as_ref()
        .unwrap()
        .wait_for(&p.confirmation_number)
        .await;
    assert!(mail.contains("ending in 4242"));
    assert!(!mail.contains("4242 4242"), "never the card number");

    // The receipt page on the portal.
    let html = s
        .get(&format!("/payments/{id}/receipt"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(&p.confirmation_number));
    assert!(html.contains("Payment received"));
    let (_, api) = s
        .api(
            reqwest::Method::GET,
            &format!("/api/v1/payments/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(api["status"], "succeeded");
    assert_eq!(api["card"]["last4"], "4242");
    assert_eq!(api["confirmation_number"], p.confirmation_number.as_str());
}

#[tokio::test]
async fn quick_pay_through_the_portal_forms() {
    let s = server().start().await;
    let res = s
        .post_form(
            "/quick-pay",
            &[("account_number", "100001"), ("postal_code", "93301")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Balance due") && html.contains("Continue to secure payment"));
    let before = s.balance("100001").await;
    let amount = format!("{}.{:02}", before / 100, before % 100);
    // More than the balance is refused.
    let too_much = format!("{}.00", before / 100 + 5);
    let res = s
        .post_form(
            "/quick-pay/pay",
            &[
                ("account_number", "100001"),
                ("postal_code", "93301"),
                ("amount", &too_much),
                ("email", "q@example.com"),
            ],
        )
        .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("more than the balance"));
    let res = s
        .post_form(
            "/quick-pay/pay",
            &[
                ("account_number", "100001"),
                ("postal_code", "93301"),
                ("amount", "twelve"),
                ("email", "q@example.com"),
            ],
        )
        .await;
    assert_eq!(res.status(), 400);
    let res = s
        .post_form(
            "/quick-pay/pay",
            &[
                ("account_number", "100001"),
                ("postal_code", "93301"),
                ("amount", &amount),
                ("email", "q@example.com"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let checkout = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(checkout.starts_with(&s.processor));
    let res = s.pay_hosted(&checkout, "4242424242424242").await;
    let last = s.follow(res).await;
    let html = last.text().await.unwrap();
    assert!(html.contains("Payment received"), "{html}");
    assert_eq!(s.balance("100001").await, 0);
    // Wrong ZIP on the form: generic message.
    let res = s
        .post_form(
            "/quick-pay",
            &[("account_number", "100001"), ("postal_code", "90210")],
        )
        .await;
    assert_eq!(res.status(), 404);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("could not find an account"));
}

#[tokio::test]
async fn declined_cards_leave_the_bill_unpaid_with_a_clear_message() {
    let s = server().start().await;
    let before = s.balance("100001").await;
    for (card, code, text) in [
        (
            "4000 0000 0000 0002",
            "generic_decline",
            "Your card was declined.",
        ),
        (
            "4000 0000 0000 9995",
            "insufficient_funds",
            "insufficient funds",
        ),
    ] {
        let (id, url) = s
            .api_payment("100001", "93301", 500, &format!("decline-{code}"))
            .await;
        let res = s.pay_hosted(&url, card).await;
        assert_eq!(res.status(), 402);
        let page = res.text().await.unwrap();
        assert!(
            page.contains("declined") || page.contains("insufficient"),
            "hosted page says why"
        );
        // The resident gives up and returns through the cancel link.
        let res = s
            .follow(s.get(&format!("/payments/{id}/cancel")).await)
            .await;
        let html = res.text().await.unwrap();
        assert!(html.contains(text), "{code}: {html}");
        assert!(html.contains("Nothing was charged"));
        assert!(
            html.contains("Try another card"),
            "the checkout is still open"
        );
        // Looking changed nothing; cancelling is a deliberate POST.
        assert_eq!(
            s.app().payment(&id).await.unwrap().status.as_str(),
            "pending"
        );
        let res = s.post_form(&format!("/payments/{id}/cancel"), &[]).await;
        assert_eq!(res.status(), 303);
        let p = s.app().payment(&id).await.unwrap();
        assert_eq!(p.status.as_str(), "failed");
        assert_eq!(p.failure_code.as_deref(), Some(code));
    }
    assert_eq!(s.balance("100001").await, before);
}

#[tokio::test]
async fn cancel_returns_to_the_portal_with_nothing_charged() {
    let s = server().start().await;
    let before = s.balance("100001").await;
    let (id, url) = s.api_payment("100001", "93301", 700, "cancel-1").await;
    assert_eq!(s.http.get(&url).send().await.unwrap().status(), 200);
    let html = s
        .follow(s.get(&format!("/payments/{id}/cancel")).await)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Nothing was charged"));
    assert_eq!(
        s.app().payment(&id).await.unwrap().status.as_str(),
        "pending",
        "a GET changes nothing"
    );
    // Without the form token the cancel is refused; with it, the payment is canceled.
    let res = s
        .http
        .post(format!("{}/payments/{id}/cancel", s.portal))
        .header("origin", &s.portal)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let html = s
        .follow(s.post_form(&format!("/payments/{id}/cancel"), &[]).await)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Nothing was charged"));
    assert_eq!(
        s.app().payment(&id).await.unwrap().status.as_str(),
        "canceled"
    );
    // The hosted page can no longer be paid.
    let page = s.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("no longer open"), "{page}");
    assert_eq!(s.balance("100001").await, before);
}

#[tokio::test]
async fn abandoned_payments_expire() {
    let s = server().start().await;
    let (id, _url) = s.api_payment("100001", "93301", 700, "abandon-1").await;
    assert_eq!(
        s.app().expire_stale_payments().await.unwrap(),
        0,
        "not yet stale"
    );
    s.clock.advance(time::Duration::hours(2));
    assert_eq!(s.app().expire_stale_payments().await.unwrap(), 1);
    assert_eq!(
        s.app().payment(&id).await.unwrap().status.as_str(),
        "expired"
    );
}

#[tokio::test]
async fn resident_registers_links_two_accounts_and_pays_both_in_one_checkout() {
    let s = server().start().await;
    let email = "resident@example.com";
    let password = "purple elephants juggle quietly";
    let res = s
        .post_form("/register", &[("email", email), ("password", password)])
        .await;
    assert!(
        res.status().is_success() || res.status().is_redirection(),
        "{}",
        res.status()
    );
    let verify = s
        .app()
        .emails_to(email)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.kind == "verify_email")
        .expect("verification email");
    let link = link_after(&verify.body_text, &format!("{}/verify", s.portal));
    let res = s.http.get(&link).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = s
        .post_form("/login", &[("email", email), ("password", password)])
        .await;
    assert_eq!(res.status(), 303, "login redirects");
    let dash = s.get("/dashboard").await;
    assert_eq!(dash.status(), 200);
    let csrf = hidden_value(&dash.text().await.unwrap(), "csrf");

    // Link 100001 and 100003 with the amount of their latest bill.
    let mut accounts = vec![];
    for n in ["100001", "100003"] {
        let summary = s.app().account_summary(n).await.unwrap();
        let bill = summary.latest_bill.unwrap();
        let zip = {
            let mut c = s.app().store.conn().await.unwrap();
            store::accounts::get(&mut c, n)
                .await
                .unwrap()
                .unwrap()
                .postal_code
        };
        // What quick pay shows (ZIP, the latest bill's amount) is no proof; a wrong web
        // code is refused without saying which part was wrong.
        let res = s
            .post_form(
                "/accounts/link",
                &[
                    ("csrf", &csrf),
                    ("account_number", n),
                    ("linking_code", "ZZZZZZZZZZ"),
                ],
            )
            .await;
        assert_eq!(res.status(), 400);
        let html = res.text().await.unwrap();
        assert!(html.contains("do not match") && html.contains("id=\"error-summary\""));
        let _ = (&zip, &bill);
        let code = s.app().linking_code_of(n).await.unwrap().unwrap();
        let res = s
            .post_form(
                "/accounts/link",
                &[
                    ("csrf", &csrf),
                    ("account_number", n),
                    ("linking_code", &code.to_lowercase()),
                ],
            )
            .await;
        assert!(
            res.status().is_redirection() || res.status().is_success(),
            "link {n}: {}",
            res.status()
        );
        accounts.push((n, s.balance(n).await));
    }
    let dash = s.get("/dashboard").await.text().await.unwrap();
    assert!(dash.contains("100001") && dash.contains("100003"));
    // The dashboard's pay form carries its one-time key.
    let mut form: Vec<(String, String)> = vec![
        ("csrf".into(), csrf.clone()),
        ("form_key".into(), hidden_value(&dash, "form_key")),
    ];
    for (n, bal) in &accounts {
        assert!(*bal > 0, "{n} owes something");
        form.push((format!("pay_{n}"), "on".into()));
        form.push((
            format!("amount_{n}"),
            format!("{}.{:02}", bal / 100, bal % 100),
        ));
    }
    let res = s
        .http
        .post(format!("{}/pay", s.portal))
        .header("origin", &s.portal)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let checkout = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(checkout.starts_with(&s.processor));
    let res = s.pay_hosted(&checkout, "4242424242424242").await;
    assert_eq!(s.follow(res).await.status(), 200);
    for (n, _) in &accounts {
        assert_eq!(s.balance(n).await, 0, "{n} posted its own amount");
    }
    let payments = s.get("/payments").await.text().await.unwrap();
    assert!(payments.contains("Paid"));
}

pub fn hidden_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden {name}"))
        + marker.len();
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn malformed_forms_get_clear_4xx_pages_and_change_nothing() {
    let s = server().start().await;
    let before = s.balance("100001").await;
    // Not url-encoded at all, invalid percent-encoding, wrong content type, wrong method.
    let res = s
        .http
        .post(format!("{}/quick-pay", s.portal))
        .header("origin", &s.portal)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("account_number=%ZZ&postal_code=%")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let res = s
        .http
        .post(format!("{}/quick-pay/pay", s.portal))
        .header("origin", &s.portal)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    let html = res.text().await.unwrap();
    assert!(
        html.contains("<html") && html.contains("usa-alert"),
        "an error page, not plain text: {html}"
    );
    let res = s
        .http
        .request(
            reqwest::Method::from_bytes(b"TRACE").unwrap(),
            format!("{}/", s.portal),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    let res = s
        .http
        .delete(format!("{}/quick-pay", s.portal))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    // Missing and absurd fields.
    for form in [
        vec![],
        vec![("account_number", "100001")],
        vec![
            (
                "account_number",
                "1".repeat(5000).as_str().to_owned().leak() as &str,
            ),
            ("postal_code", "93301"),
        ],
        vec![
            ("account_number", "<script>alert(1)</script>"),
            ("postal_code", "93301"),
        ],
    ] {
        let res = s.post_form("/quick-pay", &form).await;
        assert!(res.status().is_client_error(), "{form:?}: {}", res.status());
        let html = res.text().await.unwrap();
        assert!(!html.contains("<script>alert"), "escaped");
    }
    let res = s
        .post_form(
            "/quick-pay/pay",
            &[
                ("account_number", "100001"),
                ("postal_code", "93301"),
                ("amount", "-5"),
                ("email", "a@example.com"),
            ],
        )
        .await;
    assert_eq!(res.status(), 400);
    let res = s
        .post_form(
            "/quick-pay/pay",
            &[
                ("account_number", "100001"),
                ("postal_code", "93301"),
                ("amount", "5"),
                ("email", "nope"),
            ],
        )
        .await;
    assert_eq!(res.status(), 400);
    assert!(
        res.text().await.unwrap().contains("Email address"),
        "names the field"
    );
    let res = s.get("/payments/not-a-payment/receipt").await;
    assert_eq!(res.status(), 404);
    assert_eq!(s.balance("100001").await, before);
}

#[tokio::test]
async fn pressing_pay_twice_reuses_the_open_checkout() {
    let s = server().start().await;
    let form = [
        ("account_number", "100001"),
        ("postal_code", "93301"),
        ("amount", "5.00"),
        ("email", "twice@example.com"),
    ];
    let first = s.post_form("/quick-pay/pay", &form).await;
    let second = s.post_form("/quick-pay/pay", &form).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (303, 303)
    );
    assert_eq!(
        first.headers()["location"],
        second.headers()["location"],
        "the same checkout"
    );
    let mut c = s.app().store.conn().await.unwrap();
    assert_eq!(
        store::payments::recent(&mut c, 10).await.unwrap().len(),
        1,
        "one payment"
    );
    drop(c);
    // A different amount is a different payment.
    let third = s
        .post_form(
            "/quick-pay/pay",
            &[
                ("account_number", "100001"),
                ("postal_code", "93301"),
                ("amount", "6.00"),
                ("email", "twice@example.com"),
            ],
        )
        .await;
    assert_eq!(third.status(), 303);
    assert_ne!(third.headers()["location"], first.headers()["location"]);
}
