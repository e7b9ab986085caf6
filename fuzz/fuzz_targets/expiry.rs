//! The `expiry-date` string. A date that parses prints back to exactly the input (the form is strict),
//! its last second of validity falls on that date, and the 24-hour rule agrees with the arithmetic at
//! the clock readings around its boundary.
#![no_main]

use dc_certs::ExpiryDate;
use dc_certs::expiry::MIN_VALIDITY_SECS;
use libfuzzer_sys::fuzz_target;

/// 2027-01-15, a reading of the clock.
const NOW: i64 = 1_800_000_000;

fuzz_target!(|input: &str| {
    let Ok(date) = ExpiryDate::parse(input) else {
        return;
    };
    assert_eq!(date.to_string(), input, "does not print back");
    let last = date.not_after();
    assert_eq!(ExpiryDate::of(last), Some(date));
    assert_ne!(ExpiryDate::of(last + 1), Some(date));
    // Plausible clocks only (what `now()` returns): the start of the epoch, today, and the boundary.
    for now in [
        0,
        NOW,
        last - MIN_VALIDITY_SECS,
        last - MIN_VALIDITY_SECS + 1,
    ] {
        let ok = date.check_at(now).is_ok();
        assert_eq!(ok, last - now >= MIN_VALIDITY_SECS, "at {now}");
        assert_eq!(ExpiryDate::parse_valid_at(input, now).is_ok(), ok);
    }
});
