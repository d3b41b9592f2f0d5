//! Several nodes on one database: a scheduled job runs once across them and is taken over
//! when its holder dies; the email outbox sends each email once.

use crate::harness::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A second node: its own `App` (own pool, own node id) on the server's database and clock.
async fn second_node(s: &Server) -> app::App {
    let store = store::Store::connect(&s.database_url)
        .await
        .expect("second node's store");
    let processor = processor::client::StripeClient::new(&s.processor, SK).expect("client");
    app::App::new(
        store,
        Arc::new(processor),
        s.clock.clone(),
        s.app().config().clone(),
    )
}

#[tokio::test]
async fn a_scheduled_job_runs_once_across_two_nodes_and_is_taken_over_when_its_node_dies() {
    let s = server().start().await;
    let other = second_node(&s).await;
    assert_ne!(other.node_id(), s.app().node_id());
    let runs = Arc::new(AtomicUsize::new(0));
    let work = |runs: Arc<AtomicUsize>| async move {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, app::AppError>(())
    };
    // Both nodes at once, again and again: it runs once.
    for _ in 0..5 {
        let (a, b) = tokio::join!(
            s.app().run_job("test_job", 60, 300, work(runs.clone())),
            other.run_job("test_job", 60, 300, work(runs.clone())),
        );
        assert!(a.unwrap().is_none() || b.unwrap().is_none());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "once across both nodes");
    // Due again a minute later: once more.
    s.clock.advance(time::Duration::seconds(61));
    let (a, b) = tokio::join!(
        s.app().run_job("test_job", 60, 300, work(runs.clone())),
        other.run_job("test_job", 60, 300, work(runs.clone())),
    );
    assert!(
        a.unwrap().is_some() != b.unwrap().is_some(),
        "exactly one of the two"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // A node claims the job and dies (never finishes): nobody runs it while its lease holds;
    // when the lease ends, another node takes it over.
    s.clock.advance(time::Duration::seconds(61));
    let now = app::Clock::now(&*s.clock).unix_timestamp();
    let mut conn = s.app().store.conn().await.unwrap();
    assert!(
        store::jobs::claim(&mut conn, "test_job", "node_dead", now, 300)
            .await
            .unwrap()
    );
    drop(conn);
    assert!(other
        .run_job("test_job", 60, 300, work(runs.clone()))
        .await
        .unwrap()
        .is_none());
    s.clock.advance(time::Duration::seconds(299));
    assert!(
        other
            .run_job("test_job", 60, 300, work(runs.clone()))
            .await
            .unwrap()
            .is_none(),
        "the lease still holds"
    );
    s.clock.advance(time::Duration::seconds(2));
    assert!(
        other
            .run_job("test_job", 60, 300, work(runs.clone()))
            .await
            .unwrap()
            .is_some(),
        "taken over"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let mut conn = s.app().store.conn().await.unwrap();
    let row = store::jobs::get(&mut conn, "test_job")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.holder, None);
    assert_eq!(row.runs, 4, "three runs and the dead node's claim");
    // The dead node's late finish changes nothing.
    assert!(
        !store::jobs::finish(&mut conn, "test_job", "node_dead", now, now)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn two_nodes_send_each_email_once() {
    let s = server().smtp().start().await;
    let other = second_node(&s).await;
    let sink = s.mail.as_ref().expect("smtp sink");
    let mailer = sink.mailer();
    // Twenty residents' confirmation emails; the server's own worker (every 50 ms) and the
    // second node deliver them side by side.
    let n = 20;
    for i in 0..n {
        crate::authz::resident(&s, &format!("twice{i}@example.com")).await;
    }
    eventually("both nodes delivered every email", || async {
        other.deliver_emails(&mailer).await.unwrap();
        let mut conn = s.app().store.conn().await.unwrap();
        let (pending,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM outbox_emails WHERE status = 'pending'")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        pending == 0
    })
    .await;
    let mut conn = s.app().store.conn().await.unwrap();
    let (sent,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM outbox_emails WHERE status = 'sent'")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    drop(conn);
    eventually("every sent email reached the sink", || async {
        sink.all().await.len() as i64 >= sent
    })
    .await;
    let all = sink.all().await;
    for i in 0..n {
        let to = format!("twice{i}@example.com");
        let count = all.iter().filter(|m| m.contains(&to)).count();
        assert_eq!(count, 1, "{to} got {count} confirmation emails");
    }
    assert_eq!(all.len() as i64, sent, "no email sent twice");
}

#[tokio::test]
async fn a_flood_of_lookups_is_throttled_in_memory_not_with_a_commit_each() {
    let s = server().start().await;
    let c = client();
    let token = form_token(&c, &s.portal).await;
    let mut refused = 0;
    for _ in 0..70 {
        let res = c
            .post(format!("{}/quick-pay", s.portal))
            .header("origin", &s.portal)
            .form(&[
                ("account_number", "100001"),
                ("postal_code", "93301"),
                ("csrf", token.as_str()),
            ])
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 10,
        "60 lookups per 15 minutes per client, then 429"
    );
    let mut conn = s.app().store.conn().await.unwrap();
    let (rows,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM rate_limits WHERE bucket LIKE 'lookup-ip:%'")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(rows, 0, "per-client throttles are counted in memory");
}

/// Audited writes from many connections overlap: on PostgreSQL an entry is queued in its
/// own transaction without a lock, so a transaction that holds an entry open does not
/// hold up another's commit; sealing chains both, gapless. (SQLite has one writer: the
/// entry is chained at once, and there is nothing to overlap.)
#[tokio::test]
async fn audited_writes_overlap_and_the_chain_stays_gapless() {
    let s = server().start().await;
    let other = second_node(&s).await;
    let key = AUDIT_KEY;
    let entry = |event: &'static str| store::audit::AuditEntry {
        at: 1,
        actor: "system",
        event,
        object: "test",
        outcome: "success",
        source_ip: "-",
        detail: "",
    };
    let pg = s.database_url.starts_with("postgres");
    s.app().seal_audit().await.unwrap();
    let before = {
        let mut c = s.app().store.conn().await.unwrap();
        store::audit::head(&mut c).await.unwrap().map_or(0, |h| h.0)
    };
    if pg {
        // A holds its entry, uncommitted, while B (another node's pool) writes and
        // commits: B does not wait for A.
        let mut a = s.app().store.begin().await.unwrap();
        assert!(store::audit::append(&mut a, key, &entry("test.a"))
            .await
            .unwrap());
        let mut b = other.store.begin().await.unwrap();
        let b_done = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            store::audit::append(&mut b, key, &entry("test.b"))
                .await
                .unwrap();
            b.commit().await.unwrap();
        })
        .await;
        assert!(b_done.is_ok(), "B's audited commit waited for A");
        // B is sealed while A is still open; A is sealed after it commits.
        assert_eq!(other.seal_audit().await.unwrap(), 1);
        a.commit().await.unwrap();
    }
    // Then 200 audited writes, from both nodes at once (on PostgreSQL; SQLite has one
    // writer, the server's), and seals racing them.
    let writes = (0..200).map(|i| {
        let node = if pg && i % 2 == 1 { &other } else { s.app() };
        async move {
            let mut tx = node.store.begin().await.unwrap();
            store::audit::append(&mut tx, key, &entry("test.many"))
                .await
                .unwrap();
            tx.commit().await.unwrap();
            node.seal_audit().await.unwrap();
        }
    });
    futures_join_all(writes).await;
    s.app().seal_audit().await.unwrap();
    let mut c = s.app().store.conn().await.unwrap();
    assert_eq!(store::audit::pending(&mut c).await.unwrap(), 0);
    let entries = store::audit::verify(&mut c, key).await.unwrap().unwrap();
    let expected = if pg { 202 } else { 200 };
    assert_eq!(
        entries,
        before + expected,
        "every entry chained once, no gap"
    );
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(DISTINCT seq) FROM audit_log WHERE object = 'test'")
            .fetch_one(&mut *c)
            .await
            .unwrap();
    assert_eq!(n, expected);
}

/// Polls the futures together until all are done (they borrow, so cannot be spawned).
async fn futures_join_all<F: std::future::Future<Output = ()>>(fs: impl Iterator<Item = F>) {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = fs.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pinned.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pinned.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// The signed-in resident's `last_seen_at`.
async fn last_seen(s: &Server, email: &str) -> i64 {
    let id = s.resident_id(email).await;
    let mut c = s.app().store.conn().await.unwrap();
    sqlx::query_as::<_, (i64,)>("SELECT MAX(last_seen_at) FROM sessions WHERE user_id = $1")
        .bind(id)
        .fetch_one(&mut *c)
        .await
        .unwrap()
        .0
}

/// While the one writer is held by a transaction, signed-in pages and the quick-pay lookup
/// still answer: on SQLite from the read-only connections beside the writer (which refuse
/// writes), on PostgreSQL from the pool. Before them every read queued behind the writer.
/// Reading pages writes the session's idle clock only once a minute.
#[tokio::test]
async fn reads_do_not_wait_for_a_busy_writer_and_pages_do_not_write() {
    let s = server().start().await;
    let email = "reader@example.com";
    let (c, csrf) = crate::authz::resident(&s, email).await;
    crate::authz::link(&s, &c, &csrf, "100001").await;

    let mut busy = s.app().store.begin().await.unwrap();
    sqlx::query("UPDATE residents SET language = language WHERE id = 'nobody'")
        .execute(&mut *busy)
        .await
        .unwrap();
    let limit = std::time::Duration::from_secs(5);
    for path in ["/dashboard", "/accounts/100001"] {
        let res = tokio::time::timeout(limit, c.get(format!("{}{path}", s.portal)).send())
            .await
            .unwrap_or_else(|_| panic!("{path} waited for the writer"))
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    let (st, body) = tokio::time::timeout(
        limit,
        s.api(
            reqwest::Method::POST,
            "/api/v1/quick-pay/lookup",
            Some(serde_json::json!({"account_number":"100001","postal_code":"93301"})),
            None,
        ),
    )
    .await
    .expect("the lookup waited for the writer");
    assert_eq!(st, 200, "{body}");
    if s.app().store.backend() == store::Backend::Sqlite {
        let mut read = s.app().store.read().await.unwrap();
        let write = sqlx::query("DELETE FROM sessions WHERE user_id = 'nobody'")
            .execute(&mut *read)
            .await;
        assert!(write.is_err(), "a read connection took a write");
    }
    busy.rollback().await.unwrap();

    // The idle clock: untouched for under a minute of reading, written after it.
    let first = last_seen(&s, email).await;
    for (advance, seen) in [(50, first), (20, first + 70)] {
        s.clock.advance(time::Duration::seconds(advance));
        let res = c
            .get(format!("{}/dashboard", s.portal))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(last_seen(&s, email).await, seen, "after {advance} s more");
    }
}

/// A setting an administrator changes on one node reaches another without a restart: the
/// worker's tick reloads them, and a refund reads the threshold as stored.
#[tokio::test]
async fn settings_changed_on_one_node_reach_the_other() {
    let s = server().start().await;
    let other = second_node(&s).await;
    other.load_settings().await.unwrap();
    assert_eq!(other.cutoff(), (17, 0));
    let admin = s
        .app()
        .create_staff(
            "admin_nodes",
            "Admin",
            "purple elephants juggle quietly",
            app::staff::Role::Administrator,
        )
        .await
        .unwrap();
    s.app()
        .update_settings(&admin, "18:30", "250.00", "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(other.cutoff(), (17, 0), "read at its last reload");
    other.load_settings().await.unwrap();
    assert_eq!(other.cutoff(), (18, 30));
    assert_eq!(other.refund_threshold_cents(), 25_000);
}
