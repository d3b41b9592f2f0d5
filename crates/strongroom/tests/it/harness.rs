#![allow(dead_code)]

use app::email::Mailer;
use app::ManualClock;
use processor::Processor;
use reqwest::redirect::Policy;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use strongroom::server::{self, Running, SandboxOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub const WEBHOOK_SECRET: &str = "whsec_testsecret";
pub const SK: &str = "sk_test_integration";
pub const AUDIT_KEY: &[u8] = b"test-audit-key-0123456789abcdef";

/// The fixed data keys of every test server (also written to `data.keys` in its data dir).
/// Letters only in hex, so the card-number scans of the data dir find no digit runs.
pub fn test_keys() -> app::crypto::KeyRing {
    app::crypto::KeyRing::from_parts(vec![(1, [0xab; 32])], [0xcd; 32]).expect("key ring")
}

/// Where test data directories and logs are kept for the post-suite card-number scan.
pub fn artifacts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("it-artifacts")
}

fn init_logging() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = strongroom::logging::init(Some(
            &artifacts_dir()
                .join("logs")
                .join(format!("it-{}.log", std::process::id())),
        ));
    });
}

pub struct Server {
    pub running: Running,
    pub clock: Arc<ManualClock>,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub portal: String,
    pub staff: String,
    pub processor: String,
    /// Cookie-keeping client that does not follow redirects (so tests see them).
    pub http: reqwest::Client,
    pub mail: Option<SmtpSink>,
}

pub struct Builder {
    smtp: bool,
    accounts: u32,
    named_host: bool,
    fixed_clock: bool,
    services: app::services::ServicesConfig,
}

pub fn server() -> Builder {
    Builder {
        smtp: false,
        accounts: 12,
        named_host: false,
        fixed_clock: false,
        services: app::services::ServicesConfig::demo().expect("demo types"),
    }
}

pub async fn database_url(dir: &std::path::Path) -> String {
    match std::env::var("STRONGROOM_TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            // A fresh database per test on the same server.
            use sqlx::Connection;
            let name = format!("sr_it_{}", app::ids::random_id().to_lowercase());
            let mut admin = sqlx::PgConnection::connect(&base)
                .await
                .expect("connect to STRONGROOM_TEST_DATABASE_URL");
            sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create test database");
            let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
            format!("{prefix}/{name}")
        }
        _ => format!("sqlite://{}?mode=rwc", dir.join("strongroom.db").display()),
    }
}

impl Builder {
    /// Card fees (checked against the networks' rules like the config file's).
    pub fn card_fees(mut self, fees: Vec<domain::fees::CardFeeRule>) -> Self {
        self.services.card_fees = fees;
        self
    }

    pub fn smtp(mut self) -> Self {
        self.smtp = true;
        self
    }

    /// The server's clock starts at a fixed instant (2026-11-16 15:00 UTC) instead of now,
    /// so pages that show dates (the README's screenshots) are the same at every run.
    pub fn fixed_clock(mut self) -> Self {
        self.fixed_clock = true;
        self
    }

    /// Portal and back office at `http://localhost:PORT` instead of `127.0.0.1`: WebAuthn
    /// needs a domain name, so passkeys are offered only then.
    pub fn named_host(mut self) -> Self {
        self.named_host = true;
        self
    }

    pub async fn start(self) -> Server {
        init_logging();
        let data_dir = artifacts_dir().join("data").join(app::ids::random_id());
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let start = if self.fixed_clock {
            time::macros::datetime!(2026-11-16 15:00 UTC)
        } else {
            time::OffsetDateTime::now_utc()
        };
        let clock = Arc::new(ManualClock::new(start));
        let (mail, mailer) = if self.smtp {
            let sink = SmtpSink::start().await;
            let mailer = sink.mailer();
            (Some(sink), mailer)
        } else {
            (None, Mailer::OutboxOnly)
        };
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
        let keys_file = data_dir.join(strongroom::keys::DEMO_FILE);
        std::fs::write(&keys_file, test_keys().to_file_text()).expect("data keys");
        std::fs::set_permissions(
            &keys_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod data keys");
        let db_url = database_url(&data_dir).await;
        let (portal_listener, staff_listener) = (bind().await, bind().await);
        let named = |l: &TcpListener| {
            self.named_host.then(|| {
                format!(
                    "http://localhost:{}",
                    l.local_addr().expect("local addr").port()
                )
            })
        };
        let (portal_origin, staff_origin) = (named(&portal_listener), named(&staff_listener));
        let running = server::start(server::Options {
            database_url: db_url.clone(),
            portal_listener,
            staff_listener,
            portal_origin,
            staff_origin,
            city_name: "City of Testville".into(),
            sandbox: Some(SandboxOptions {
                listener: bind().await,
                retry_base: Duration::from_millis(20),
            }),
            processor_api_base: String::new(),
            processor_hosted_origin: String::new(),
            processor_secret_key: SK.into(),
            webhook_secret: WEBHOOK_SECRET.into(),
            audit_key: AUDIT_KEY.to_vec(),
            data_keys: test_keys(),
            audit_head_file: Some(data_dir.join("audit.head")),
            clock: clock.clone(),
            mailer,
            secure_cookies: false,
            hsts: false,
            allowed_return_origins: vec!["https://ivr.example.com".into()],
            tls: None,
            trusted_proxies: vec!["127.0.0.1".parse().expect("ip")],
            worker_interval: Some(Duration::from_millis(50)),
            payment_ttl_secs: 3600,
            ledger: app::ledger::LedgerConfig::standard().expect("ledger"),
            services: self.services.clone(),
            pool: store::PoolSettings::default(),
        })
        .await
        .expect("server starts");
        running.app.seed_demo(self.accounts).await.expect("seed");
        let http = client();
        Server {
            portal: running.portal_origin.clone(),
            staff: running.staff_origin.clone(),
            processor: running.processor_origin.clone(),
            running,
            clock,
            data_dir,
            database_url: db_url,
            http,
            mail,
        }
    }
}

/// The form token a page gives this client (its cookie jar keeps the matching cookie).
pub async fn form_token(client: &reqwest::Client, origin: &str) -> String {
    let html = client
        .get(format!("{origin}/login"))
        .send()
        .await
        .expect("login page")
        .text()
        .await
        .expect("html");
    crate::journeys::hidden_value(&html, "csrf")
}

fn rand_octet() -> u8 {
    app::ids::random_token().as_bytes()[0] % 250 + 1
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .expect("client")
}

pub struct Form<'a>(pub Vec<(&'a str, String)>);

impl Server {
    pub fn app(&self) -> &app::App {
        &self.running.app
    }

    /// A resident's id, by email.
    pub async fn resident_id(&self, email: &str) -> String {
        let key = self.app().config().keys.email_index(email);
        let mut c = self.app().store.conn().await.unwrap();
        store::residents::by_email_key(&mut c, &key)
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// POST a form to the portal as a same-origin browser would: with the page's form token
    /// (fetched from a page first) unless the test sets `csrf` itself.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut form: Vec<(&str, String)> =
            form.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        if !form.iter().any(|(k, _)| *k == "csrf") {
            form.push(("csrf", form_token(&self.http, &self.portal).await));
        }
        // A payment form carries the one-time key its page was rendered with: each call
        // here is a freshly rendered form unless the test sets `form_key` itself.
        if matches!(path, "/quick-pay/pay" | "/pay") && !form.iter().any(|(k, _)| *k == "form_key")
        {
            form.push(("form_key", app::ids::form_key()));
        }
        self.http
            .post(format!("{}{path}", self.portal))
            .header("origin", &self.portal)
            .form(&form)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.portal))
            .send()
            .await
            .expect("request")
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        idem: Option<&str>,
    ) -> (u16, serde_json::Value) {
        // Each API call comes from its own client, as residents behind the city's proxy do
        // (the harness trusts 127.0.0.1 as that proxy).
        let client_ip = format!("10.{}.{}.{}", rand_octet(), rand_octet(), rand_octet());
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.portal))
            .header("x-forwarded-for", client_ip);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    pub async fn balance(&self, account: &str) -> i64 {
        let mut c = self.app().store.conn().await.expect("conn");
        store::accounts::balance_cents(&mut c, account)
            .await
            .expect("balance")
    }

    pub async fn ledger_payments(&self, account: &str, payment_id: &str) -> usize {
        let mut c = self.app().store.conn().await.expect("conn");
        store::accounts::ledger(&mut c, account, 1000)
            .await
            .expect("ledger")
            .iter()
            .filter(|l| l.kind == "payment" && l.reference == payment_id)
            .count()
    }

    /// Creates a quick-pay payment through the API and returns (payment id, checkout url).
    pub async fn api_payment(
        &self,
        account: &str,
        zip: &str,
        cents: i64,
        key: &str,
    ) -> (String, String) {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "/api/v1/payments",
                Some(serde_json::json!({"items":[{"type":"utility","account_number":account,"postal_code":zip,"amount_cents":cents}],"email":"payer@example.com"})),
                Some(key),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["id"].as_str().expect("id").to_owned(),
            body["checkout_url"].as_str().expect("url").to_owned(),
        )
    }

    /// Pays on the sandbox's hosted page with `card`; returns the response to the card form.
    pub async fn pay_hosted(&self, checkout_url: &str, card: &str) -> reqwest::Response {
        let page = self
            .http
            .get(checkout_url)
            .send()
            .await
            .expect("hosted page");
        assert_eq!(page.status(), 200);
        let html = page.text().await.expect("html");
        assert!(
            html.contains("Card number"),
            "hosted page has the card form"
        );
        let year = (self.clock.now_year() + 3) % 100;
        self.http
            .post(checkout_url)
            .header("origin", &self.processor)
            .form(&[
                ("card_number", card),
                ("expiry", &format!("12/{year:02}")),
                ("cvc", "123"),
                ("name", "Pat Payer"),
                ("zip", "93301"),
            ])
            .send()
            .await
            .expect("card form")
    }

    /// Follows a redirect chain (across origins), returning the last response.
    pub async fn follow(&self, mut res: reqwest::Response) -> reqwest::Response {
        for _ in 0..10 {
            if !res.status().is_redirection() {
                return res;
            }
            let loc = res
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .expect("location")
                .to_owned();
            let url = if loc.starts_with("http") {
                loc
            } else {
                format!("{}{}", origin_of(res.url()), loc)
            };
            res = self.http.get(url).send().await.expect("redirect");
        }
        res
    }

    /// Full quick-pay through the API and the hosted page with a good card.
    pub async fn pay_ok(&self, account: &str, zip: &str, cents: i64, key: &str) -> String {
        let (id, url) = self.api_payment(account, zip, cents, key).await;
        let res = self.pay_hosted(&url, "4242 4242 4242 4242").await;
        assert_eq!(res.status(), 303, "successful card form redirects");
        let last = self.follow(res).await;
        assert_eq!(last.status(), 200);
        self.webhooks_settled().await;
        id
    }

    /// Waits until the sandbox has delivered every webhook it raised (each answered 2xx,
    /// so its transaction committed), unless deliveries are paused: afterwards nothing in
    /// flight still writes audit rows, ledger entries or emails behind a test's back.
    pub async fn webhooks_settled(&self) {
        eventually("the sandbox delivered every webhook", || async {
            let v = self.sandbox_events().await;
            v["paused"] == true
                || v["data"]
                    .as_array()
                    .is_some_and(|evs| evs.iter().all(|e| e["delivered"] == true))
        })
        .await;
    }

    /// A checkout opened at the processor with the city's keys but never by the portal, and
    /// paid: the processor's webhook reaches us for a session we have no payment for.
    pub async fn foreign_capture(&self, cents: i64) -> String {
        let s = self;
        let client = processor::client::StripeClient::new(&s.processor, SK).unwrap();
        let session = client
            .create_checkout_session(
                &processor::CreateCheckoutSession {
                    line_items: vec![processor::LineItem {
                        name: "Water bill".into(),
                        unit_amount: cents,
                        quantity: 1,
                    }],
                    currency: "usd".into(),
                    success_url: format!("{}/", s.portal),
                    cancel_url: format!("{}/", s.portal),
                    client_reference_id: "not-one-of-ours".into(),
                    metadata: vec![],
                    customer_email: Some("someone@example.com".into()),
                    expires_at: None,
                    locale: None,
                },
                &app::ids::random_id(),
            )
            .await
            .unwrap();
        let res = s
            .pay_hosted(session.url.as_deref().unwrap(), "4242424242424242")
            .await;
        assert_eq!(res.status(), 303);
        s.webhooks_settled().await;
        session.id
    }

    /// Writes the audit key where a demo data directory keeps it, so command-line tools
    /// (`--data-dir`) open this server's SQLite store.
    pub fn write_audit_key(&self) {
        use std::os::unix::fs::PermissionsExt;
        let key = self.data_dir.join("audit.key");
        std::fs::write(&key, AUDIT_KEY).expect("audit key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    /// The ZIP code of a seeded account.
    pub async fn zip_of(&self, account: &str) -> String {
        let mut c = self.app().store.conn().await.expect("conn");
        store::accounts::get(&mut c, account)
            .await
            .expect("read account")
            .expect("seeded account")
            .postal_code
    }

    /// The sandbox's event list (`/_sandbox/events`): `{"paused", "data": [..]}`.
    pub async fn sandbox_events(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/_sandbox/events", self.processor))
            .bearer_auth(SK)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub fn origin_of(u: &reqwest::Url) -> String {
    format!(
        "{}://{}",
        u.scheme(),
        u.host_str()
            .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(80)))
            .unwrap_or_default()
    )
}

pub trait ClockExt {
    fn now_year(&self) -> i32;
}

impl ClockExt for ManualClock {
    fn now_year(&self) -> i32 {
        app::Clock::now(self).year()
    }
}

/// A local SMTP sink: accepts every message and hands it to the test.
pub struct SmtpSink {
    pub port: u16,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("smtp bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                    let mut data: Option<String> = None;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(buf) = data.as_mut() {
                            if line == "." {
                                let _ = tx.send(std::mem::take(buf));
                                data = None;
                                let _ = w.write_all(b"250 queued\r\n").await;
                            } else {
                                buf.push_str(&line);
                                buf.push('\n');
                            }
                            continue;
                        }
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO")
                        {
                            b"250 sink\r\n"
                        } else if upper.starts_with("DATA") {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            break;
                        } else {
                            b"250 ok\r\n"
                        };
                        let _ = w.write_all(reply).await;
                    }
                });
            }
        });
        SmtpSink {
            port,
            rx: tokio::sync::Mutex::new(rx),
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A mailer that delivers to this sink (as each node of a test does).
    pub fn mailer(&self) -> Mailer {
        Mailer::smtp(
            "127.0.0.1",
            self.port,
            "City of Testville <pay@testville.gov>",
            "none",
        )
        .expect("mailer")
    }

    /// Every message received so far (those already seen and any waiting).
    pub async fn all(&self) -> Vec<String> {
        let mut rx = self.rx.lock().await;
        while let Ok(m) = rx.try_recv() {
            self.seen.lock().expect("lock").push(m);
        }
        self.seen.lock().expect("lock").clone()
    }

    /// Waits (bounded) for a message containing `needle`.
    pub async fn wait_for(&self, needle: &str) -> String {
        let mut rx = self.rx.lock().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(m) = self
                .seen
                .lock()
                .expect("lock")
                .iter()
                .find(|m| m.contains(needle))
            {
                return m.clone();
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => self.seen.lock().expect("lock").push(m),
                _ => panic!("no email containing {needle:?} arrived"),
            }
        }
    }
}

/// The plain-text link following `prefix` in a text.
pub fn link_after(text: &str, prefix: &str) -> String {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} in {text}"));
    text[start..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Waits (bounded, no sleeping) until `f` returns true, re-checking on a short interval.
pub async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(15), f).await;
}

/// [`eventually`] with its own bound, for work paced by a server's timers.
pub async fn eventually_within<F, Fut>(what: &str, bound: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
    }
}
