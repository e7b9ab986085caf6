//! The `expiry-date` of a new root CA: `YYYY-MM-DD`, as dcmanager takes it.
//!
//! The new CA is valid through the whole given day (it expires at 23:59:59 UTC that day), which is what
//! an operator reading "expiry-date 2030-01-31" expects. It must leave at least 24 hours of validity, as
//! in the original.

use std::fmt;
use time::{Date, Month, OffsetDateTime, Time};

use crate::UnixTime;

/// The least validity a new root CA must have left.
pub const MIN_VALIDITY_SECS: i64 = 24 * 3600;

/// What is wrong with an expiry date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpiryError {
    #[error("expiry_date {0} doesn't match format YYYY-MM-DD")]
    Format(String),
    #[error("expiry_date {0} is not a calendar date")]
    NotADate(String),
    #[error(
        "New k8s rootCA should have at least 24 hours of validation before expiry: expiry_date {0} ends in less than 24 hours"
    )]
    TooSoon(String),
}

/// A calendar date in `YYYY-MM-DD` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryDate(Date);

impl ExpiryDate {
    /// Parses the strict `YYYY-MM-DD` form (four, two and two digits).
    pub fn parse(input: &str) -> Result<Self, ExpiryError> {
        let bytes = input.as_bytes();
        let shape_ok = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shape_ok {
            return Err(ExpiryError::Format(input.to_owned()));
        }
        let num = |range: std::ops::Range<usize>| input[range].parse::<u16>().unwrap_or(0);
        let month = Month::try_from(num(5..7) as u8)
            .map_err(|_| ExpiryError::NotADate(input.to_owned()))?;
        let date = Date::from_calendar_date(i32::from(num(0..4)), month, num(8..10) as u8)
            .map_err(|_| ExpiryError::NotADate(input.to_owned()))?;
        Ok(Self(date))
    }

    /// Parses and checks that the date leaves at least 24 hours of validity after `now`.
    pub fn parse_valid_at(input: &str, now: UnixTime) -> Result<Self, ExpiryError> {
        let date = Self::parse(input)?;
        date.check_at(now)?;
        Ok(date)
    }

    /// Checks that the date leaves at least 24 hours of validity after `now`.
    pub fn check_at(&self, now: UnixTime) -> Result<(), ExpiryError> {
        if self.not_after() - now < MIN_VALIDITY_SECS {
            return Err(ExpiryError::TooSoon(self.to_string()));
        }
        Ok(())
    }

    /// The last second of validity: 23:59:59 UTC on the date.
    pub fn not_after(&self) -> UnixTime {
        self.0
            .with_time(Time::from_hms(23, 59, 59).unwrap_or(Time::MIDNIGHT))
            .assume_utc()
            .unix_timestamp()
    }

    /// The date of a Unix time, in UTC.
    pub fn of(time: UnixTime) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(time)
            .ok()
            .map(|t| Self(t.date()))
    }
}

impl fmt::Display for ExpiryDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-28 12:00:00 UTC.
    const NOW: UnixTime = 1_795_867_200;

    #[test]
    fn parses_and_prints() {
        let d = ExpiryDate::parse("2030-01-31").unwrap();
        assert_eq!(d.to_string(), "2030-01-31");
        assert_eq!(d.not_after(), 1_896_134_399); // 2030-01-31T23:59:59Z
    }

    #[test]
    fn rejects_every_bad_form() {
        for bad in [
            "",
            "2030-1-31",
            "30-01-31",
            "2030/01/31",
            "2030-01-31T00:00",
            "2030-01-3a",
            " 2030-01-31",
            "２０３０-01-31",
        ] {
            assert_eq!(
                ExpiryDate::parse(bad).unwrap_err(),
                ExpiryError::Format(bad.to_owned()),
                "{bad:?}"
            );
        }
        for bad in [
            "2030-13-01",
            "2030-00-10",
            "2030-02-30",
            "2031-02-29",
            "2030-01-00",
        ] {
            assert_eq!(
                ExpiryDate::parse(bad).unwrap_err(),
                ExpiryError::NotADate(bad.to_owned()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn needs_at_least_24_hours() {
        // Today ends in 12 hours, tomorrow ends in 36.
        assert!(matches!(
            ExpiryDate::parse_valid_at("2026-11-28", NOW),
            Err(ExpiryError::TooSoon(_))
        ));
        assert!(matches!(
            ExpiryDate::parse_valid_at("2020-01-01", NOW),
            Err(ExpiryError::TooSoon(_))
        ));
        assert!(ExpiryDate::parse_valid_at("2026-11-29", NOW).is_ok());
        // Exactly 24 hours left is enough.
        let d = ExpiryDate::parse("2026-11-29").unwrap();
        assert!(d.check_at(d.not_after() - MIN_VALIDITY_SECS).is_ok());
        assert!(d.check_at(d.not_after() - MIN_VALIDITY_SECS + 1).is_err());
    }
}
