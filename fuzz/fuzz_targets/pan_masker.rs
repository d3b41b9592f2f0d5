//! Card-number detection and masking on arbitrary text: no panics, nothing left that
//! still looks like a card number after masking, lengths unchanged.
#![no_main]

use domain::pan::{contains_pan, mask_pans, scrub};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Arbitrary UTF-8 (invalid input is repaired rather than thrown away).
    let s = String::from_utf8_lossy(data);
    let s: &str = &s;

    let found = contains_pan(s);
    let masked = mask_pans(s);
    assert!(
        !contains_pan(&masked),
        "masked text still has a card number: {masked:?}"
    );
    assert_eq!(
        masked.chars().count(),
        s.chars().count(),
        "masking changed the length"
    );
    // Only ASCII digits turn into `*`; everything else is kept.
    for (a, b) in s.chars().zip(masked.chars()) {
        assert!(
            a == b || (a.is_ascii_digit() && b == '*'),
            "{a:?} became {b:?}"
        );
    }
    assert_eq!(found, masked != s, "contains_pan and mask_pans disagree");

    // A run of digits that is a card number on its own is one in any context: text
    // around it (a label, a CVV after a space, a dash) must not hide it.
    for run in s.split(|c: char| !c.is_ascii_digit()) {
        if run.len() >= 13 && contains_pan(run) {
            assert!(found, "card number {run:?} missed in {s:?}");
        }
    }

    let scrubbed = scrub(s);
    assert!(
        !contains_pan(&scrubbed),
        "scrubbed text still has a card number"
    );
});
