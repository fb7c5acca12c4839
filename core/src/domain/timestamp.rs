//! Timestamps as JSON: exactly chrono's own serde form (RFC 3339, `Z`,
//! fraction in 3, 6 or 9 digits as needed), written without `core::fmt`.
//! Every task and event rendered carries two of them, and chrono's
//! `collect_str` path was half of a task's serialisation (docs/BENCHMARKS.md).

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serializer;

/// `#[serde(serialize_with = "timestamp::serialize")]`.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buffer = [0u8; 30];
    match write(at, &mut buffer) {
        Some(text) => serializer.serialize_str(text),
        // Years outside 0..=9999 and leap seconds: chrono's own path.
        None => serde::Serialize::serialize(at, serializer),
    }
}

/// `at` in chrono's serde form, or `None` where only chrono knows it.
fn write<'b>(at: &DateTime<Utc>, buffer: &'b mut [u8; 30]) -> Option<&'b str> {
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = at.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let (fraction, fraction_digits) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    let mut out = Out { buffer, len: 0 };
    out.digits(year, 4);
    out.byte(b'-');
    out.digits(at.month(), 2);
    out.byte(b'-');
    out.digits(at.day(), 2);
    out.byte(b'T');
    out.digits(at.hour(), 2);
    out.byte(b':');
    out.digits(at.minute(), 2);
    out.byte(b':');
    out.digits(at.second(), 2);
    if fraction_digits > 0 {
        out.byte(b'.');
        out.digits(fraction, fraction_digits);
    }
    out.byte(b'Z');
    let Out { buffer, len } = out;
    std::str::from_utf8(&buffer[..len]).ok()
}

/// ASCII written left to right into a fixed buffer.
struct Out<'b> {
    buffer: &'b mut [u8; 30],
    len: usize,
}

impl Out<'_> {
    fn byte(&mut self, byte: u8) {
        self.buffer[self.len] = byte;
        self.len += 1;
    }

    /// `value` in exactly `count` decimal digits, zero-padded.
    fn digits(&mut self, mut value: u32, count: usize) {
        for place in (self.len..self.len + count).rev() {
            self.buffer[place] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.len += count;
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn ours(at: &DateTime<Utc>) -> String {
        let mut out = Vec::new();
        serialize(at, &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_what_chrono_writes() {
        for (secs, nanos) in [
            (0, 0),
            (1_780_000_000, 0),
            (1_780_000_000, 123_000_000),
            (1_780_000_000, 123_456_000),
            (1_780_000_000, 123_456_789),
            (1_780_000_000, 1_000),
            (253_402_300_799, 999_999_999), // 9999-12-31T23:59:59.999999999
        ] {
            let at = Utc.timestamp_opt(secs, nanos).unwrap();
            assert_eq!(ours(&at), serde_json::to_string(&at).unwrap());
        }
        assert_eq!(
            ours(&Utc.timestamp_opt(1_780_000_000, 123_456_000).unwrap()),
            r#""2026-05-28T20:26:40.123456Z""#
        );
    }

    #[test]
    fn leaves_what_it_does_not_write_to_chrono() {
        let far = Utc.with_ymd_and_hms(12345, 1, 2, 3, 4, 5).unwrap();
        let before = Utc.with_ymd_and_hms(-1, 1, 2, 3, 4, 5).unwrap();
        for at in [far, before] {
            assert_eq!(ours(&at), serde_json::to_string(&at).unwrap());
        }
    }

    proptest! {
        #[test]
        fn any_instant_reads_as_chrono_writes_it(
            secs in -62_167_219_200i64..253_402_300_800,
            nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000, (0u32..1_000_000).prop_map(|n| n * 1000)],
        ) {
            let at = Utc.timestamp_opt(secs, nanos).unwrap();
            prop_assert_eq!(ours(&at), serde_json::to_string(&at).unwrap());
        }
    }
}
