//! `Stripe-Signature` signing and verification, and event parsing.
//!
//! The header is `t=<unix secs>,v1=<hex HMAC-SHA256 of "{t}.{payload}">`; several
//! `v1` entries may appear (during secret rotation) and other schemes (`v0`) are
//! ignored.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{CheckoutSession, WireCharge};

type HmacSha256 = Hmac<Sha256>;

/// Longest header we are willing to parse.
const MAX_HEADER_LEN: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing Stripe-Signature header")]
    MissingHeader,
    #[error("malformed Stripe-Signature header")]
    MalformedHeader,
    #[error("no signature matches the payload")]
    NoMatchingSignature,
    #[error("signature timestamp outside the tolerance window")]
    TimestampOutOfTolerance,
    #[error("malformed event payload")]
    MalformedPayload,
}

/// A verified processor event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_...`; de-duplicate on this.
    pub id: String,
    /// Stripe's `type`, e.g. `checkout.session.completed`.
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    /// `data.object`.
    pub object: serde_json::Value,
}

/// The part of a `charge.refunded` event the application needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundedCharge {
    pub charge_id: String,
    pub payment_intent: Option<String>,
    /// Cumulative amount refunded on the charge (minor units).
    pub amount_refunded: i64,
    /// Amount of the charge (minor units).
    pub amount: i64,
}

impl Event {
    /// The session of a `checkout.session.*` event.
    pub fn session(&self) -> Option<CheckoutSession> {
        if !self.kind.starts_with("checkout.session.") {
            return None;
        }
        CheckoutSession::from_stripe_json(&self.object).ok()
    }

    /// The charge of a `charge.refunded` event.
    pub fn refunded_charge(&self) -> Option<RefundedCharge> {
        if self.kind != "charge.refunded" {
            return None;
        }
        if self.object.get("object").and_then(|o| o.as_str()) != Some("charge") {
            return None;
        }
        let c: WireCharge = serde_json::from_value(self.object.clone()).ok()?;
        Some(RefundedCharge {
            payment_intent: c.payment_intent_id().map(str::to_owned),
            charge_id: c.id,
            amount_refunded: c.amount_refunded,
            amount: c.amount,
        })
    }

    /// Parses an event body without checking any signature (for tests and for
    /// replaying events fetched from the processor's API).
    pub fn parse(payload: &[u8]) -> Result<Event, WebhookError> {
        #[derive(Deserialize)]
        struct WireEvent {
            id: String,
            #[serde(rename = "type")]
            kind: String,
            created: i64,
            data: WireData,
        }
        #[derive(Deserialize)]
        struct WireData {
            object: serde_json::Value,
        }
        let w: WireEvent =
            serde_json::from_slice(payload).map_err(|_| WebhookError::MalformedPayload)?;
        if w.id.is_empty() || w.kind.is_empty() || !w.data.object.is_object() {
            return Err(WebhookError::MalformedPayload);
        }
        Ok(Event {
            id: w.id,
            kind: w.kind,
            created: w.created,
            object: w.data.object,
        })
    }
}

fn mac(payload: &[u8], secret: &str, timestamp: i64) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    Some(mac)
}

/// The `Stripe-Signature` header value for `payload` signed at `timestamp`.
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    // HMAC accepts keys of any length, so `mac` never fails in practice.
    let sig = mac(payload, secret, timestamp)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("t={timestamp},v1={sig}")
}

struct ParsedHeader {
    timestamp: i64,
    v1: Vec<[u8; 32]>,
}

fn parse_header(header: &str) -> Result<ParsedHeader, WebhookError> {
    if header.trim().is_empty() {
        return Err(WebhookError::MissingHeader);
    }
    if header.len() > MAX_HEADER_LEN {
        return Err(WebhookError::MalformedHeader);
    }
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (k, v) = item.split_once('=').ok_or(WebhookError::MalformedHeader)?;
        match k.trim() {
            "t" => {
                let v = v.trim();
                if timestamp.is_some()
                    || v.is_empty()
                    || v.len() > 19
                    || !v.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(WebhookError::MalformedHeader);
                }
                timestamp = Some(
                    v.parse::<i64>()
                        .map_err(|_| WebhookError::MalformedHeader)?,
                );
            }
            "v1" => {
                // An undecodable signature simply cannot match.
                let mut buf = [0u8; 32];
                if hex::decode_to_slice(v.trim(), &mut buf).is_ok() {
                    v1.push(buf);
                }
            }
            // Other schemes (v0, ...) are ignored.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::MalformedHeader)?;
    Ok(ParsedHeader { timestamp, v1 })
}

/// Verifies `header` against `payload` and parses the event.
///
/// The signature must match one of the `v1` entries (constant-time compare),
/// and the signed timestamp must be within `tolerance_secs` of `now_unix` in
/// either direction.
pub fn verify(
    payload: &[u8],
    header: &str,
    secret: &str,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<Event, WebhookError> {
    let parsed = parse_header(header)?;
    let expected = mac(payload, secret, parsed.timestamp)
        .map(|m| m.finalize().into_bytes())
        .ok_or(WebhookError::NoMatchingSignature)?;
    let mut matched = subtle::Choice::from(0u8);
    for candidate in &parsed.v1 {
        matched |= candidate.as_slice().ct_eq(expected.as_slice());
    }
    if !bool::from(matched) {
        return Err(WebhookError::NoMatchingSignature);
    }
    let skew = (i128::from(now_unix) - i128::from(parsed.timestamp)).abs();
    if tolerance_secs < 0 || skew > i128::from(tolerance_secs) {
        return Err(WebhookError::TimestampOutOfTolerance);
    }
    Event::parse(payload)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_test_secret";
    const NOW: i64 = 1_700_000_000;

    fn payload() -> Vec<u8> {
        serde_json::json!({
            "id": "evt_1", "object": "event", "type": "checkout.session.completed", "created": NOW,
            "data": {"object": {"id": "cs_test_1", "object": "checkout.session", "status": "complete",
                "payment_status": "paid", "amount_total": 500, "currency": "usd",
                "client_reference_id": "pay-1", "payment_intent": "pi_test_1", "metadata": {}}}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn round_trip() {
        let p = payload();
        let h = sign(&p, SECRET, NOW);
        assert!(h.starts_with(&format!("t={NOW},v1=")));
        let ev = verify(&p, &h, SECRET, NOW, 300).unwrap();
        assert_eq!(ev.id, "evt_1");
        assert_eq!(ev.kind, "checkout.session.completed");
        assert_eq!(ev.created, NOW);
        let s = ev.session().unwrap();
        assert_eq!(s.id, "cs_test_1");
        assert_eq!(s.payment_intent_id.as_deref(), Some("pi_test_1"));
        assert!(ev.refunded_charge().is_none());
    }

    #[test]
    fn known_vector() {
        // Independently computed: HMAC-SHA256(key="secret", "1.{}").
        let h = sign(b"{}", "secret", 1);
        let expected = {
            let mut m = HmacSha256::new_from_slice(b"secret").unwrap();
            m.update(b"1.{}");
            hex::encode(m.finalize().into_bytes())
        };
        assert_eq!(h, format!("t=1,v1={expected}"));
    }

    #[test]
    fn multiple_v1_and_unknown_schemes() {
        let p = payload();
        let good = sign(&p, SECRET, NOW);
        let sig = good.split_once("v1=").unwrap().1;
        let header = format!("t={NOW}, v0=abc, v1={}, v1={sig}, x=y", "00".repeat(32));
        assert!(verify(&p, &header, SECRET, NOW, 300).is_ok());
        // Rotated secret: one of the two secrets signed it.
        let other = sign(&p, "whsec_old", NOW);
        let other_sig = other.split_once("v1=").unwrap().1;
        let header = format!("t={NOW},v1={other_sig},v1={sig}");
        assert!(verify(&p, &header, SECRET, NOW, 300).is_ok());
        assert!(verify(&p, &header, "whsec_old", NOW, 300).is_ok());
    }

    #[test]
    fn failure_variants() {
        let p = payload();
        let h = sign(&p, SECRET, NOW);
        assert_eq!(
            verify(&p, "", SECRET, NOW, 300),
            Err(WebhookError::MissingHeader)
        );
        assert_eq!(
            verify(&p, "   ", SECRET, NOW, 300),
            Err(WebhookError::MissingHeader)
        );
        assert_eq!(
            verify(&p, "v1=abcd", SECRET, NOW, 300),
            Err(WebhookError::MalformedHeader)
        );
        assert_eq!(
            verify(&p, &h, "wrong", NOW, 300),
            Err(WebhookError::NoMatchingSignature)
        );
        let mut tampered = p.clone();
        tampered.push(b' ');
        assert_eq!(
            verify(&tampered, &h, SECRET, NOW, 300),
            Err(WebhookError::NoMatchingSignature)
        );
        assert_eq!(
            verify(&p, &h, SECRET, NOW + 301, 300),
            Err(WebhookError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify(&p, &h, SECRET, NOW - 301, 300),
            Err(WebhookError::TimestampOutOfTolerance)
        );
        assert!(verify(&p, &h, SECRET, NOW + 300, 300).is_ok());
        assert!(verify(&p, &h, SECRET, NOW - 300, 300).is_ok());
        let bad = b"not json";
        let hb = sign(bad, SECRET, NOW);
        assert_eq!(
            verify(bad, &hb, SECRET, NOW, 300),
            Err(WebhookError::MalformedPayload)
        );
        let no_data = br#"{"id":"evt_1","type":"x","created":1}"#;
        let hn = sign(no_data, SECRET, NOW);
        assert_eq!(
            verify(no_data, &hn, SECRET, NOW, 300),
            Err(WebhookError::MalformedPayload)
        );
    }

    #[test]
    fn hostile_headers() {
        let p = payload();
        let sig = sign(&p, SECRET, NOW);
        let v1 = sig.split_once("v1=").unwrap().1.to_owned();
        let cases: Vec<(String, WebhookError)> = vec![
            ("t".into(), WebhookError::MalformedHeader),
            ("t=".into(), WebhookError::MalformedHeader),
            ("t=,v1=".into(), WebhookError::MalformedHeader),
            ("t=-5,v1=00".into(), WebhookError::MalformedHeader),
            ("t=+5,v1=00".into(), WebhookError::MalformedHeader),
            ("t=1e9,v1=00".into(), WebhookError::MalformedHeader),
            (
                "t=99999999999999999999999,v1=00".into(),
                WebhookError::MalformedHeader,
            ),
            (
                format!("t={NOW},t={NOW},v1={v1}"),
                WebhookError::MalformedHeader,
            ),
            ("=,=,=".into(), WebhookError::MalformedHeader),
            (",,,".into(), WebhookError::MalformedHeader),
            ("t=１２３,v1=00".into(), WebhookError::MalformedHeader),
            (format!("t={NOW}"), WebhookError::NoMatchingSignature),
            (format!("t={NOW},v1="), WebhookError::NoMatchingSignature),
            (format!("t={NOW},v1=zz"), WebhookError::NoMatchingSignature),
            (
                format!("t={NOW},v1={}", &v1[..63]),
                WebhookError::NoMatchingSignature,
            ),
            (
                format!("t={NOW},v1={v1}0"),
                WebhookError::NoMatchingSignature,
            ),
            (
                format!("t={NOW},v0={v1}"),
                WebhookError::NoMatchingSignature,
            ),
            (
                format!("t={NOW},V1={v1}"),
                WebhookError::NoMatchingSignature,
            ),
            (
                format!("t={NOW},v1={}", "é".repeat(32)),
                WebhookError::NoMatchingSignature,
            ),
            (
                format!("t={NOW},{}", "v1=00,".repeat(5000)),
                WebhookError::MalformedHeader,
            ),
            (
                format!("t=9223372036854775807,v1={v1}"),
                WebhookError::NoMatchingSignature,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(verify(&p, &h, SECRET, NOW, 300), Err(want), "header {h:?}");
        }
        // Extreme timestamps with a valid signature must not overflow.
        for t in [0, i64::MAX] {
            let h = sign(&p, SECRET, t);
            assert_eq!(
                verify(&p, &h, SECRET, i64::MIN, 300),
                Err(WebhookError::TimestampOutOfTolerance)
            );
            assert_eq!(
                verify(&p, &h, SECRET, NOW, i64::MAX).map(|e| e.id),
                Ok("evt_1".to_owned())
            );
        }
        assert_eq!(
            verify(&p, &sig, SECRET, NOW, -1),
            Err(WebhookError::TimestampOutOfTolerance)
        );
    }

    #[test]
    fn refunded_charge_helper() {
        let body = serde_json::json!({
            "id": "evt_2", "object": "event", "type": "charge.refunded", "created": NOW,
            "data": {"object": {"id": "ch_1", "object": "charge", "amount": 1000,
                "amount_refunded": 400, "payment_intent": "pi_1", "refunded": false}}
        })
        .to_string();
        let h = sign(body.as_bytes(), SECRET, NOW);
        let ev = verify(body.as_bytes(), &h, SECRET, NOW, 300).unwrap();
        assert!(ev.session().is_none());
        assert_eq!(
            ev.refunded_charge(),
            Some(RefundedCharge {
                charge_id: "ch_1".into(),
                payment_intent: Some("pi_1".into()),
                amount_refunded: 400,
                amount: 1000,
            })
        );
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic(h in ".{0,300}") {
            let p = payload();
            let r = verify(&p, &h, SECRET, NOW, 300);
            prop_assert!(r.is_err());
        }

        #[test]
        fn structured_headers_never_panic(
            t in "[-+0-9a-z ]{0,25}",
            sigs in proptest::collection::vec("[0-9a-fA-Fxz=]{0,70}", 0..4),
            now in any::<i64>(),
            tol in any::<i64>(),
        ) {
            let p = payload();
            let mut h = format!("t={t}");
            for s in sigs { h.push_str(",v1="); h.push_str(&s); }
            let _ = verify(&p, &h, SECRET, now, tol);
        }

        #[test]
        fn arbitrary_payloads_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let h = sign(&body, SECRET, NOW);
            match verify(&body, &h, SECRET, NOW, 300) {
                Ok(ev) => { let _ = ev.session(); let _ = ev.refunded_charge(); }
                Err(e) => prop_assert_eq!(e, WebhookError::MalformedPayload),
            }
        }

        #[test]
        fn signed_json_shapes_never_panic(
            id in "[a-z_0-9]{0,10}",
            kind in prop_oneof![Just("checkout.session.completed".to_owned()), Just("charge.refunded".to_owned()), "[a-z.]{0,20}"],
            obj in prop_oneof![
                Just(serde_json::json!({})),
                Just(serde_json::json!({"object": "charge", "id": 5})),
                Just(serde_json::json!({"object": "checkout.session", "id": "cs", "status": 1})),
                Just(serde_json::json!({"object": "charge", "id": "ch", "payment_intent": {"id": "pi"}, "amount": "x"})),
            ],
        ) {
            let body = serde_json::json!({"id": id, "type": kind, "created": 1, "data": {"object": obj}}).to_string();
            let h = sign(body.as_bytes(), SECRET, NOW);
            if let Ok(ev) = verify(body.as_bytes(), &h, SECRET, NOW, 300) {
                let _ = ev.session();
                let _ = ev.refunded_charge();
            }
        }
    }
}
