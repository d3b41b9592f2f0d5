//! Staff account search: by number (exact or prefix), whole words of the sealed holder name
//! and service street (through a keyed blind index, never in clear), and a resident's email;
//! back-filled at start for accounts from before the index.

use crate::harness::*;
use crate::staff::staff_login_full;

const PW: &str = "ledger-clerk-harbor-42";

/// The account's holder name and street, opened from the sealed columns.
async fn clear_name_and_street(s: &Server, account: &str) -> (String, String) {
    let mut c = s.app().store.conn().await.unwrap();
    let a = store::accounts::get(&mut c, account)
        .await
        .unwrap()
        .unwrap();
    let keys = test_keys();
    (
        keys.open("utility_accounts.holder_name", &a.holder_name)
            .unwrap(),
        keys.open("utility_accounts.service_street", &a.service_street)
            .unwrap(),
    )
}

async fn word_keys(s: &Server, account: &str) -> Vec<String> {
    let mut c = s.app().store.conn().await.unwrap();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT word_key FROM account_search_words WHERE account_number = $1")
            .bind(account)
            .fetch_all(&mut *c)
            .await
            .unwrap();
    rows.into_iter().map(|(k,)| k).collect()
}

/// The account numbers the search page lists for `q` (None: no accounts table at all).
async fn found(s: &Server, staff: &reqwest::Client, q: &str) -> Option<Vec<String>> {
    let res = staff
        .get(format!("{}/", s.staff))
        .query(&[("q", q)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "search {q}");
    let html = res.text().await.unwrap();
    if !html.contains("id=\"accounts-heading\"") {
        return None;
    }
    Some(
        html.split("href=\"/accounts/")
            .skip(1)
            .filter_map(|r| r.split('"').next())
            .map(str::to_owned)
            .collect(),
    )
}

#[tokio::test]
async fn staff_find_accounts_by_number_words_and_email() {
    let s = server().start().await;
    s.app()
        .create_staff("clerk1", "Clerk One", PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    s.app()
        .create_staff("audit1", "Auditor One", PW, app::staff::Role::Auditor)
        .await
        .unwrap();
    let staff = client();
    assert!(crate::staff::signed_in(
        &staff_login_full(&s, &staff, "clerk1", PW).await
    ));
    let (name, street) = clear_name_and_street(&s, "100001").await;
    let surname = name.split_whitespace().last().unwrap().to_owned();
    let street_word = street.split_whitespace().nth(1).unwrap().to_owned();

    // The index holds keyed hashes only: no word of the name or street in clear.
    let keys = word_keys(&s, "100001").await;
    assert!(!keys.is_empty());
    for w in name.split_whitespace().chain(street.split_whitespace()) {
        let w = w.to_lowercase();
        assert!(keys.iter().all(|k| !k.contains(&w)), "{w} in clear");
    }

    // Number: exact (listed first) and prefix.
    let exact = found(&s, &staff, "100001").await.unwrap();
    assert_eq!(exact.first().map(String::as_str), Some("100001"));
    assert!(found(&s, &staff, "1000")
        .await
        .unwrap()
        .contains(&"100001".to_owned()));
    // Whole words, any case and punctuation; every word must match.
    let by_name = found(&s, &staff, &format!("  {}, ", surname.to_uppercase()))
        .await
        .unwrap();
    assert!(
        by_name.contains(&"100001".to_owned()),
        "{surname}: {by_name:?}"
    );
    let by_both = found(&s, &staff, &format!("{name} {street}"))
        .await
        .unwrap();
    assert_eq!(by_both, vec!["100001".to_owned()], "{name} {street}");
    let by_street = found(&s, &staff, &street.to_lowercase()).await.unwrap();
    assert!(by_street.contains(&"100001".to_owned()), "{street_word}");
    // Part of a word is not a word; an unknown word finds nothing.
    let part = &surname[..surname.len() - 1];
    assert!(!found(&s, &staff, part)
        .await
        .unwrap()
        .contains(&"100001".to_owned()));
    assert_eq!(
        found(&s, &staff, "zzyzx-nobody").await.unwrap(),
        Vec::<String>::new()
    );

    // Email: the accounts linked to that resident.
    let (resident, csrf) = crate::authz::resident(&s, "finder@example.com").await;
    crate::authz::link(&s, &resident, &csrf, "100002").await;
    assert_eq!(
        found(&s, &staff, " Finder@Example.COM ").await.unwrap(),
        vec!["100002".to_owned()]
    );
    assert_eq!(
        found(&s, &staff, "nobody@example.com").await.unwrap(),
        Vec::<String>::new()
    );

    // Results link to the account page, which opens.
    let res = staff
        .get(format!("{}/accounts/100001", s.staff))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Auditors may not open accounts: no accounts list for them.
    let auditor = client();
    assert!(crate::staff::signed_in(
        &staff_login_full(&s, &auditor, "audit1", PW).await
    ));
    assert_eq!(found(&s, &auditor, "100001").await, None);
}

#[tokio::test]
async fn accounts_from_before_the_index_are_back_filled() {
    let s = server().start().await;
    // Accounts seeded by the demo are indexed when created: the back-fill has nothing to do.
    assert_eq!(s.app().index_unindexed_accounts().await.unwrap(), 0);
    let before = word_keys(&s, "100001").await;
    {
        let mut c = s.app().store.conn().await.unwrap();
        sqlx::query(
            "DELETE FROM account_search_words WHERE account_number IN ('100001', '100002')",
        )
        .execute(&mut *c)
        .await
        .unwrap();
    }
    let hits = s.app().search_accounts("100001", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "by number without words");
    let (name, _) = clear_name_and_street(&s, "100001").await;
    assert!(s.app().search_accounts(&name, 10).await.unwrap().is_empty());
    assert_eq!(s.app().index_unindexed_accounts().await.unwrap(), 2);
    assert_eq!(s.app().index_unindexed_accounts().await.unwrap(), 0);
    let mut after = word_keys(&s, "100001").await;
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after);
    let hits = s.app().search_accounts(&name, 10).await.unwrap();
    assert!(hits
        .iter()
        .any(|h| h.account_number == "100001" && h.holder_name == name));
}
