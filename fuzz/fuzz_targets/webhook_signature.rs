//! `Stripe-Signature` verification and event parsing must never panic, whatever the
//! header and body.
//!
//! Input: `HEADER\nPAYLOAD` (the first line is the header, the rest is the body). Besides
//! the header as given, the body is also checked with a header signed over it, so the
//! fuzzer reaches event parsing and the tolerance arithmetic without forging an HMAC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use processor::webhook::{self, Event, WebhookError};

const SECRET: &str = "whsec_fuzz_secret";
/// The time the seed corpus was signed at.
const NOW: i64 = 1_700_000_000;

fn use_event(ev: &Event) {
    let _ = ev.session();
    let _ = ev.refunded_charge();
}

fuzz_target!(|data: &[u8]| {
    let (header, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let header = String::from_utf8_lossy(header);

    // The header as the fuzzer wrote it, at the usual and at extreme clocks.
    for now in [NOW, 0, i64::MIN, i64::MAX] {
        if let Ok(ev) = webhook::verify(payload, &header, SECRET, now, 300) {
            use_event(&ev);
        }
    }
    let _ = webhook::verify(payload, &header, SECRET, NOW, i64::MAX);
    let _ = webhook::verify(payload, &header, SECRET, NOW, -1);
    let _ = webhook::verify(payload, &header, "", NOW, 300);

    // The parser alone.
    let parsed = Event::parse(payload);
    if let Ok(ev) = &parsed {
        use_event(ev);
    }

    // A correctly signed body verifies exactly when it parses.
    let signed = webhook::sign(payload, SECRET, NOW);
    assert_eq!(webhook::verify(payload, &signed, SECRET, NOW, 300), parsed);
    // Signed, but with the fuzzer's header items around it (rotation, other schemes).
    let mixed = format!("{header},{signed}");
    let _ = webhook::verify(payload, &mixed, SECRET, NOW, 300);
    // Signed with another secret: never accepted.
    let forged = webhook::sign(payload, "whsec_other", NOW);
    assert_eq!(
        webhook::verify(payload, &forged, SECRET, NOW, 300),
        Err(WebhookError::NoMatchingSignature)
    );
});
