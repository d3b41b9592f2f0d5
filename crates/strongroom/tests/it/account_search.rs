//! Staff find an account by number, holder, service street or a resident's email; the
//! search index holds no name or street in clear.

use crate::harness::*;
use crate::staff::staff_login_full;

#[tokio::test]
async fn staff_find_accounts_by_number_name_street_and_email() {
    let s = server().start().await;
    let pw = "ledger-harbor-search-42";
    s.app()
        .create_staff("clerk1", "c", pw, app::staff::Role::Clerk)
        .await
        .unwrap();
    let c = client();
    staff_login_full(&s, &c, "clerk1", pw).await;
    // The seeded accounts were indexed at start; one imported now is indexed by the worker.
    let summary = s.app().account_summary("100003").await.unwrap();
    let street = summary.service_street.clone();
    let find = |q: String| {
        let c = c.clone();
        let url = format!("{}/accounts", s.staff);
        async move {
            let res = c.get(url).query(&[("q", q)]).send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.text().await.unwrap()
        }
    };
    let html = find("10000".into()).await;
    assert!(html.contains("/accounts/100003") && html.contains("/accounts/100001"));
    // A street's words (any case), all of which must match.
    let html = find(street.to_uppercase()).await;
    assert!(html.contains("/accounts/100003"), "{street}: {html}");
    let html = find(format!("{street} nosuchword")).await;
    assert!(html.contains("No account matches."));
    // A holder's name: the full name is on the account page the result links to.
    let name = {
        let mut db = s.app().store.conn().await.unwrap();
        let a = store::accounts::get(&mut db, "100003")
            .await
            .unwrap()
            .unwrap();
        drop(db);
        let found = s.app().find_accounts(&street).await.unwrap();
        let _ = a;
        found
            .into_iter()
            .find(|f| f.account_number == "100003")
            .unwrap()
            .holder_name
    };
    let html = find(name.clone()).await;
    assert!(html.contains("/accounts/100003"), "{name}");
    // A resident's email finds the accounts they linked.
    let (r, csrf) = crate::authz::resident(&s, "finder@example.com").await;
    crate::authz::link(&s, &r, &csrf, "100005").await;
    let html = find("Finder@Example.com".into()).await;
    assert!(html.contains("/accounts/100005"), "{html}");
    // The index holds no word in clear.
    let mut db = s.app().store.conn().await.unwrap();
    let tokens: Vec<(String,)> = sqlx::query_as("SELECT token FROM account_search")
        .fetch_all(&mut *db)
        .await
        .unwrap();
    assert!(!tokens.is_empty());
    let first_word = name.split_whitespace().next().unwrap().to_lowercase();
    assert!(tokens
        .iter()
        .all(|(t,)| t.len() == 64 && !t.contains(&first_word)));
}
