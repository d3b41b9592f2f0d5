//! The portal's form and API bodies and the domain parsers behind them: no panics on any
//! body, and a parsed amount survives a round trip through its input-field spelling.
//!
//! The input is tried both as an `application/x-www-form-urlencoded` body and as a JSON
//! body of each API request.
#![no_main]

use domain::{AccountNumber, Currency, EmailAddress, Money, PostalCode};
use libfuzzer_sys::fuzz_target;
use web::api::{CreatePaymentRequest, LookupRequest};

fn check_value(v: &str) {
    if let Ok(m) = Money::parse_dollars(v, Currency::Usd) {
        assert!(m.cents() >= 0, "negative amount from {v:?}");
        let plain = m.to_plain();
        assert_eq!(
            Money::parse_dollars(&plain, Currency::Usd),
            Ok(m),
            "{v:?} -> {plain:?}"
        );
        let _ = m.to_string();
    }
    if let Some(e) = EmailAddress::parse(v) {
        let again = EmailAddress::parse(e.as_str());
        assert_eq!(again.as_ref(), Some(&e), "email {v:?} does not parse again");
        let _ = e.normalized();
    }
    if let Some(a) = AccountNumber::parse(v) {
        assert_eq!(AccountNumber::parse(a.as_str()).as_ref(), Some(&a));
    }
    if let Some(p) = PostalCode::parse(v) {
        assert_eq!(p.as_str().len(), 5);
        assert_eq!(PostalCode::parse(p.as_str()).as_ref(), Some(&p));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) {
        for (k, v) in &pairs {
            check_value(k);
            check_value(v);
        }
    }
    if let Ok(req) = serde_json::from_slice::<LookupRequest>(data) {
        check_value(&req.account_number);
        check_value(&req.postal_code);
    }
    if let Ok(req) = serde_json::from_slice::<CreatePaymentRequest>(data) {
        check_value(&req.email);
        if let Some(url) = &req.return_url {
            check_value(url);
        }
        for item in &req.items {
            check_value(&item.item_type);
            check_value(&item.account_number);
            check_value(&item.postal_code);
            let _ = Money::usd(item.amount_cents).to_plain();
        }
    }
    let _ = serde_json::from_slice::<serde_json::Value>(data);
});
