//! Passkeys (WebAuthn) as a second factor, driven by a software authenticator written
//! here from the specification (P-256 keys with ring, CBOR with serde_cbor_2), not by the
//! server's own library: registration on the security pages, sign-in at the code step,
//! and what must fail (a replayed answer, another origin, a forged signature, another
//! person's passkey, a used-up ceremony). Real Chromium does the same in the browser
//! journeys.

use crate::harness::*;
use crate::journeys::hidden_value;
use crate::staff::{audit_of, signed_in, staff_login, staff_login_full};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_cbor_2::Value;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

const STAFF_PW: &str = "ledger-clerk-harbor-42";
const RESIDENT_PW: &str = "purple elephants juggle quietly";

/// A software passkey: one P-256 key, its credential id and signature counter.
pub struct SoftKey {
    key: EcdsaKeyPair,
    pub cred_id: Vec<u8>,
    counter: u32,
    rng: SystemRandom,
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn int(i: i64) -> Value {
    Value::Integer(i.into())
}

impl SoftKey {
    pub fn new() -> SoftKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let mut cred_id = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&rng, &mut cred_id).unwrap();
        SoftKey {
            key,
            cred_id,
            counter: 0,
            rng,
        }
    }

    /// The COSE_Key of the public key (EC2, P-256, ES256).
    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.public_key().as_ref(); // 0x04 || x || y
        let mut m = BTreeMap::new();
        m.insert(int(1), int(2));
        m.insert(int(3), int(-7));
        m.insert(int(-1), int(1));
        m.insert(int(-2), Value::Bytes(point[1..33].to_vec()));
        m.insert(int(-3), Value::Bytes(point[33..65].to_vec()));
        serde_cbor_2::to_vec(&Value::Map(m)).unwrap()
    }

    fn client_data(kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
        json!({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    /// The answer to `navigator.credentials.create(options)` made at `origin`.
    pub fn create(&mut self, options: &Json, origin: &str) -> String {
        let pk = &options["publicKey"];
        let rp_id = pk["rp"]["id"].as_str().unwrap();
        let client_data =
            Self::client_data("webauthn.create", pk["challenge"].as_str().unwrap(), origin);
        let mut auth = sha256(rp_id.as_bytes());
        auth.push(0x45); // user present, user verified, attested credential data
        auth.extend(self.counter.to_be_bytes());
        auth.extend([0u8; 16]); // AAGUID
        auth.extend(u16::try_from(self.cred_id.len()).unwrap().to_be_bytes());
        auth.extend(&self.cred_id);
        auth.extend(self.cose_key());
        let mut att = BTreeMap::new();
        att.insert(Value::Text("fmt".into()), Value::Text("none".into()));
        att.insert(Value::Text("attStmt".into()), Value::Map(BTreeMap::new()));
        att.insert(Value::Text("authData".into()), Value::Bytes(auth));
        let id = B64.encode(&self.cred_id);
        json!({
            "id": id, "rawId": id, "type": "public-key", "extensions": {},
            "response": {
                "attestationObject": B64.encode(serde_cbor_2::to_vec(&Value::Map(att)).unwrap()),
                "clientDataJSON": B64.encode(client_data),
            }
        })
        .to_string()
    }

    /// The answer to `navigator.credentials.get(options)` made at `origin`.
    pub fn get(&mut self, options: &Json, origin: &str) -> String {
        let pk = &options["publicKey"];
        self.counter += 1;
        let client_data =
            Self::client_data("webauthn.get", pk["challenge"].as_str().unwrap(), origin);
        let mut auth = sha256(pk["rpId"].as_str().unwrap().as_bytes());
        auth.push(0x05); // user present, user verified
        auth.extend(self.counter.to_be_bytes());
        let mut signed = auth.clone();
        signed.extend(sha256(&client_data));
        let sig = self.key.sign(&self.rng, &signed).unwrap();
        let id = B64.encode(&self.cred_id);
        json!({
            "id": id, "rawId": id, "type": "public-key", "extensions": {},
            "response": {
                "authenticatorData": B64.encode(auth),
                "clientDataJSON": B64.encode(client_data),
                "signature": B64.encode(sig.as_ref()),
                "userHandle": null,
            }
        })
        .to_string()
    }
}

/// The value of attribute `name` on a page (HTML entities undone).
fn attr(html: &str, name: &str) -> Option<String> {
    let marker = format!("{name}=\"");
    let start = html.find(&marker)? + marker.len();
    let raw = html[start..].split('"').next()?;
    Some(
        raw.replace("&quot;", "\"")
            .replace("&#34;", "\"")
            .replace("&#x27;", "'")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn options_in(html: &str) -> Json {
    serde_json::from_str(&attr(html, "data-passkey-options").expect("passkey options")).unwrap()
}

async fn post(
    c: &reqwest::Client,
    origin: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    c.post(format!("{origin}{path}"))
        .header("origin", origin)
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn page(c: &reqwest::Client, url: String) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

/// Adds a passkey named `name` from a security page (`/profile` or `/account/security`,
/// whose forms post under `base`); returns the answer to the finishing post.
async fn add_passkey(
    c: &reqwest::Client,
    origin: &str,
    security: &str,
    base: &str,
    (name, password): (&str, &str),
    key: &mut SoftKey,
) -> reqwest::Response {
    let html = page(c, format!("{origin}{security}")).await;
    assert!(html.contains("Add a passkey"), "{html}");
    let csrf = hidden_value(&html, "csrf");
    // Without the password again: refused.
    let res = post(
        c,
        origin,
        &format!("{base}/new"),
        &[
            ("csrf", &csrf),
            ("name", name),
            ("current_password", "wrong"),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("current password is not correct"));
    let res = post(
        c,
        origin,
        &format!("{base}/new"),
        &[
            ("csrf", &csrf),
            ("name", name),
            ("current_password", password),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("/assets/passkey.js"), "{html}");
    let options = options_in(&html);
    let token = hidden_value(&html, "token");
    let answer = key.create(&options, origin);
    post(
        c,
        origin,
        base,
        &[("csrf", &csrf), ("token", &token), ("credential", &answer)],
    )
    .await
}

/// After a right password: the code page's passkey options.
async fn login_options(c: &reqwest::Client, origin: &str) -> Json {
    let html = page(c, format!("{origin}/login/mfa")).await;
    assert!(html.contains("Use a passkey"), "{html}");
    options_in(&html)
}

/// How many successful audit entries of `event` there are.
async fn events(s: &Server, event: &str) -> i64 {
    let mut c = s.app().store.conn().await.unwrap();
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE event = $1 AND outcome = 'success'")
            .bind(event)
            .fetch_one(&mut *c)
            .await
            .unwrap();
    n
}

async fn post_answer(c: &reqwest::Client, origin: &str, answer: &str) -> reqwest::Response {
    let csrf = form_token(c, origin).await;
    post(
        c,
        origin,
        "/login/mfa",
        &[("csrf", &csrf), ("credential", answer)],
    )
    .await
}

#[tokio::test]
async fn staff_add_a_passkey_and_sign_in_with_it_and_forgeries_fail() {
    let s = server().named_host().start().await;
    let user = s
        .app()
        .create_staff("pkmember", "Clerk", STAFF_PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    let c = client();
    assert!(signed_in(
        &staff_login_full(&s, &c, "pkmember", STAFF_PW).await
    ));
    let mut key = SoftKey::new();
    let res = add_passkey(
        &c,
        &s.staff,
        "/profile",
        "/profile/passkeys",
        ("Work laptop", STAFF_PW),
        &mut key,
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Your passkey was added"), "{html}");
    assert!(html.contains("Work laptop"), "{html}");
    assert_eq!(events(&s, "staff.passkey_added").await, 1);

    // Sign in: password, then the passkey.
    let c2 = client();
    assert_eq!(
        staff_login(&s, &c2, "pkmember", STAFF_PW).await.status(),
        303
    );
    let options = login_options(&c2, &s.staff).await;
    assert_eq!(options["publicKey"]["rpId"], "localhost");
    let answer = key.get(&options, &s.staff);
    let res = post_answer(&c2, &s.staff, &answer).await;
    assert!(signed_in(&res), "{}", res.status());
    assert!(audit_of(&s, &user.id)
        .await
        .iter()
        .any(|(e, o, d)| e == "staff.login" && o == "success" && d == "mfa: passkey"));

    // The same answer again, on a new sign-in: its challenge is gone.
    let c3 = client();
    assert_eq!(
        staff_login(&s, &c3, "pkmember", STAFF_PW).await.status(),
        303
    );
    let options = login_options(&c3, &s.staff).await;
    let res = post_answer(&c3, &s.staff, &answer).await;
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("could not be verified"));
    // Signed for another origin (a phishing site relaying the challenge).
    let res = post_answer(&c3, &s.staff, &key.get(&options, "http://evil.example")).await;
    assert_eq!(res.status(), 401);
    // A forged signature (another key claiming this credential id).
    let mut forger = SoftKey::new();
    forger.cred_id = key.cred_id.clone();
    let res = post_answer(&c3, &s.staff, &forger.get(&options, &s.staff)).await;
    assert_eq!(res.status(), 401);
    // Garbage.
    let res = post_answer(&c3, &s.staff, "{\"id\":").await;
    assert_eq!(res.status(), 401);
    // Still usable with the right key after those failures (4 of 5 attempts used).
    let res = post_answer(&c3, &s.staff, &key.get(&options, &s.staff)).await;
    assert!(signed_in(&res), "{}", res.status());
}

#[tokio::test]
async fn resident_passkey_comes_with_recovery_codes_signs_in_and_can_be_removed() {
    let s = server().named_host().start().await;
    let email = "pk.resident@example.com";
    let (c, _) = crate::authz::resident(&s, email).await;
    let mut key = SoftKey::new();
    let res = add_passkey(
        &c,
        &s.portal,
        "/account/security",
        "/account/passkeys",
        ("My phone", RESIDENT_PW),
        &mut key,
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    // First second factor: ten recovery codes, shown once.
    let codes: Vec<String> = html
        .split("<code class=\"font-mono-md\">")
        .skip(1)
        .filter_map(|r| r.split('<').next())
        .map(str::to_owned)
        .collect();
    assert_eq!(codes.len(), 10, "{html}");

    let password_step = || async {
        let c = client();
        let token = form_token(&c, &s.portal).await;
        let res = post(
            &c,
            &s.portal,
            "/login",
            &[
                ("email", email),
                ("password", RESIDENT_PW),
                ("csrf", &token),
            ],
        )
        .await;
        (res, c)
    };
    // A right password now leads to the second step, where the passkey signs in.
    let (res, c2) = password_step().await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login/mfa");
    let options = login_options(&c2, &s.portal).await;
    let res = post_answer(&c2, &s.portal, &key.get(&options, &s.portal)).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/dashboard");

    // Without the device: a recovery code, once; a TOTP-looking code is refused.
    let (_, c3) = password_step().await;
    let csrf = form_token(&c3, &s.portal).await;
    let res = post(
        &c3,
        &s.portal,
        "/login/mfa",
        &[("csrf", &csrf), ("code", "123456")],
    )
    .await;
    assert_eq!(res.status(), 401);
    let res = post(
        &c3,
        &s.portal,
        "/login/mfa",
        &[("csrf", &csrf), ("code", &codes[0])],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/dashboard");

    // A staff member's passkey does not sign a resident in, nor the reverse.
    s.app()
        .create_staff("pk_x", "X", STAFF_PW, app::staff::Role::Clerk)
        .await
        .unwrap();
    let (_, c4) = password_step().await;
    let options = login_options(&c4, &s.portal).await;
    let mut stranger = SoftKey::new();
    let res = post_answer(&c4, &s.portal, &stranger.get(&options, &s.portal)).await;
    assert_eq!(res.status(), 401);
    let cs = client();
    assert!(signed_in(
        &staff_login_full(&s, &cs, "pk_x", STAFF_PW).await
    ));
    let cs2 = client();
    assert_eq!(staff_login(&s, &cs2, "pk_x", STAFF_PW).await.status(), 303);
    let page_html = page(&cs2, format!("{}/login/mfa", s.staff)).await;
    assert!(
        !page_html.contains("Use a passkey"),
        "no passkeys, no button"
    );
    let res = post_answer(&cs2, &s.staff, &key.get(&options, &s.staff)).await;
    assert_eq!(res.status(), 401);

    // Removing it takes the password; afterwards a password alone signs in again.
    let html = page(&c, format!("{}/account/security", s.portal)).await;
    let csrf = hidden_value(&html, "csrf");
    let id = html
        .split("<option value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let res = post(
        &c,
        &s.portal,
        "/account/passkeys/remove",
        &[
            ("csrf", &csrf),
            ("passkey", &id),
            ("current_password", "not my password at all"),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    let res = post(
        &c,
        &s.portal,
        "/account/passkeys/remove",
        &[
            ("csrf", &csrf),
            ("passkey", &id),
            ("current_password", RESIDENT_PW),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("The passkey was removed"));
    let (res, _) = password_step().await;
    assert_eq!(res.headers()["location"], "/dashboard");
}

#[tokio::test]
async fn a_registration_ceremony_is_used_once_and_bound_to_its_person() {
    let s = server().named_host().start().await;
    let (a, _) = crate::authz::resident(&s, "pk.a@example.com").await;
    let (b, _) = crate::authz::resident(&s, "pk.b@example.com").await;
    let html = page(&a, format!("{}/account/security", s.portal)).await;
    let csrf_a = hidden_value(&html, "csrf");
    let res = post(
        &a,
        &s.portal,
        "/account/passkeys/new",
        &[
            ("csrf", &csrf_a),
            ("name", "Tablet"),
            ("current_password", RESIDENT_PW),
        ],
    )
    .await;
    let html = res.text().await.unwrap();
    let (options, token) = (options_in(&html), hidden_value(&html, "token"));
    let mut key = SoftKey::new();
    let answer = key.create(&options, &s.portal);
    // Resident B presents A's ceremony: refused, and A's ceremony is untouched.
    let html_b = page(&b, format!("{}/account/security", s.portal)).await;
    let csrf_b = hidden_value(&html_b, "csrf");
    let res = post(
        &b,
        &s.portal,
        "/account/passkeys",
        &[
            ("csrf", &csrf_b),
            ("token", &token),
            ("credential", &answer),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("expired"));
    // A answers for another origin: refused, and the ceremony is used up.
    let res = post(
        &a,
        &s.portal,
        "/account/passkeys",
        &[
            ("csrf", &csrf_a),
            ("token", &token),
            ("credential", &key.create(&options, "http://evil.example")),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("could not be verified"));
    let res = post(
        &a,
        &s.portal,
        "/account/passkeys",
        &[
            ("csrf", &csrf_a),
            ("token", &token),
            ("credential", &answer),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("expired"));
    // Names are checked; nothing was stored.
    let res = post(
        &a,
        &s.portal,
        "/account/passkeys/new",
        &[
            ("csrf", &csrf_a),
            ("name", "  "),
            ("current_password", RESIDENT_PW),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    let mut conn = s.app().store.conn().await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM passkeys")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn passkeys_are_not_offered_on_a_numeric_address() {
    let s = server().start().await;
    let (c, _) = crate::authz::resident(&s, "pk.ip@example.com").await;
    let html = page(&c, format!("{}/account/security", s.portal)).await;
    assert!(html.contains("Passkeys need this site"), "{html}");
    assert!(!html.contains("/account/passkeys/new"));
}
