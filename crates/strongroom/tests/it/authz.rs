//! Object-level access: every signed-in route tried as nobody and as the wrong resident;
//! one realm's cookie tried on the other's listener.

use crate::harness::*;
use crate::journeys::hidden_value;

/// Registers, verifies and logs in a resident on its own cookie jar; returns the client and
/// its CSRF token.
pub async fn resident(s: &Server, email: &str) -> (reqwest::Client, String) {
    let c = client();
    let pw = "purple elephants juggle quietly";
    let token = form_token(&c, &s.portal).await;
    let post = |path: &str, mut form: Vec<(&str, String)>| {
        form.push(("csrf", token.clone()));
        c.post(format!("{}{path}", s.portal))
            .header("origin", &s.portal)
            .form(&form)
            .send()
    };
    post(
        "/register",
        vec![("email", email.into()), ("password", pw.into())],
    )
    .await
    .unwrap();
    let mail = s
        .app()
        .emails_to(email)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.kind == "verify_email")
        .unwrap();
    c.get(link_after(&mail.body_text, &format!("{}/verify", s.portal)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        post(
            "/login",
            vec![("email", email.into()), ("password", pw.into())]
        )
        .await
        .unwrap()
        .status(),
        303
    );
    let dash = c
        .get(format!("{}/dashboard", s.portal))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (c.clone(), hidden_value(&dash, "csrf"))
}

pub async fn link(s: &Server, c: &reqwest::Client, csrf: &str, account: &str) {
    let code = s.app().linking_code_of(account).await.unwrap().unwrap();
    let res = c
        .post(format!("{}/accounts/link", s.portal))
        .header("origin", &s.portal)
        .form(&[
            ("csrf", csrf),
            ("account_number", account),
            ("linking_code", &code),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_redirection(),
        "link {account}: {}",
        res.status()
    );
}

#[tokio::test]
async fn residents_see_only_their_own_accounts_bills_and_payments() {
    let s = server().start().await;
    let (a, a_csrf) = resident(&s, "alice@example.com").await;
    let (b, b_csrf) = resident(&s, "bob@example.com").await;
    link(&s, &a, &a_csrf, "100001").await;
    let bill = s.app().bills("100001", 1).await.unwrap().remove(0);
    // Alice pays her account.
    let bal = s.balance("100001").await;
    let res = a
        .post(format!("{}/pay", s.portal))
        .header("origin", &s.portal)
        .form(&[
            ("csrf", a_csrf.as_str()),
            ("form_key", &app::ids::form_key()),
            ("pay_100001", "on"),
            ("amount_100001", &format!("{}.{:02}", bal / 100, bal % 100)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let paid = s
        .pay_hosted(
            res.headers()["location"].to_str().unwrap(),
            "4242424242424242",
        )
        .await;
    let receipt_url = {
        let back = paid.headers()["location"].to_str().unwrap().to_owned();
        let r = a.get(&back).send().await.unwrap();
        format!("{}{}", s.portal, r.headers()["location"].to_str().unwrap())
    };
    assert_eq!(
        a.get(&receipt_url).send().await.unwrap().status(),
        200,
        "Alice sees her receipt"
    );

    for path in [
        "/accounts/100001".to_owned(),
        format!("/accounts/100001/bills/{}", bill.id),
    ] {
        assert_eq!(
            a.get(format!("{}{path}", s.portal))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{path} for its owner"
        );
        assert_eq!(
            b.get(format!("{}{path}", s.portal))
                .send()
                .await
                .unwrap()
                .status(),
            404,
            "{path} for another resident"
        );
        assert_eq!(
            client()
                .get(format!("{}{path}", s.portal))
                .send()
                .await
                .unwrap()
                .status(),
            303,
            "{path} signed out"
        );
    }
    assert_eq!(
        b.get(&receipt_url).send().await.unwrap().status(),
        404,
        "another resident's receipt"
    );
    // Nor the processor-return pages or the API for that payment.
    let pay_id = receipt_url.rsplit('/').nth(1).unwrap().to_owned();
    assert_eq!(
        b.get(format!("{}/payments/{pay_id}/cancel", s.portal))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let res = b
        .post(format!("{}/payments/{pay_id}/cancel", s.portal))
        .header("origin", &s.portal)
        .form(&[("csrf", b_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        client()
            .get(format!("{}/api/v1/payments/{pay_id}", s.portal))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "a resident's payment is not in the API"
    );
    assert_eq!(
        client().get(&receipt_url).send().await.unwrap().status(),
        404,
        "a resident's receipt, signed out"
    );
    // Bob cannot pay (or even probe) Alice's account through his dashboard form.
    let res = b
        .post(format!("{}/pay", s.portal))
        .header("origin", &s.portal)
        .form(&[
            ("csrf", b_csrf.as_str()),
            ("pay_100001", "on"),
            ("amount_100001", "1.00"),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    // Alice's token does not work in Bob's session.
    let res = b
        .post(format!("{}/pay", s.portal))
        .header("origin", &s.portal)
        .form(&[
            ("csrf", a_csrf.as_str()),
            ("pay_100003", "on"),
            ("amount_100003", "1.00"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Signed-in routes, signed out.
    let anon = client();
    for path in ["/dashboard", "/accounts/link", "/payments"] {
        assert_eq!(
            anon.get(format!("{}{path}", s.portal))
                .send()
                .await
                .unwrap()
                .status(),
            303,
            "{path}"
        );
    }
    for path in ["/pay", "/accounts/link"] {
        let st = anon
            .post(format!("{}{path}", s.portal))
            .header("origin", &s.portal)
            .form(&[("csrf", "x")])
            .send()
            .await
            .unwrap()
            .status();
        assert!(st == 303 || st == 403, "{path}: {st}");
    }
    // A resident's cookie means nothing on the staff listener.
    let cookie = format!("sr_resident={}", "0".repeat(64));
    assert_eq!(
        client()
            .get(format!("{}/", s.staff))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
    assert_eq!(
        a.get(format!("{}/", s.staff))
            .send()
            .await
            .unwrap()
            .status(),
        303,
        "Alice's jar on the staff listener"
    );
}
