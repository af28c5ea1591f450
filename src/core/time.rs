//! RFC 3339 timestamps <-> epoch milliseconds, without a clock or a date crate. "Now" is
//! always a parameter of the core; these only convert Shopify's strings.

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM|±HHMM)` (the `T` may be `t` or a space)
/// into epoch milliseconds. Fractions beyond milliseconds are truncated. Returns `None` for
/// anything else, including a missing offset (a local time names no instant).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let d = |x: u8| i64::from(x - b'0');
            let (oh, om) = (d(*h1) * 10 + d(*h2), d(*m1) * 10 + d(*m2));
            if oh > 23 || om > 59 {
                return None;
            }
            let total = oh * 60 + om;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// Formats epoch milliseconds as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shopify_forms() {
        // 2021-12-31T19:00:00-05:00 is 2022-01-01T00:00:00Z.
        assert_eq!(parse_rfc3339_ms("2021-12-31T19:00:00-05:00"), Some(1_640_995_200_000));
        assert_eq!(parse_rfc3339_ms("2022-01-01T00:00:00Z"), Some(1_640_995_200_000));
        assert_eq!(parse_rfc3339_ms("2022-01-01T05:30:00+05:30"), Some(1_640_995_200_000));
        assert_eq!(parse_rfc3339_ms("2022-01-01T05:30:00+0530"), Some(1_640_995_200_000));
        assert_eq!(parse_rfc3339_ms("2026-04-01T10:00:00-04:00"), parse_rfc3339_ms("2026-04-01T14:00:00Z"));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.123Z"), Some(123));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.1Z"), Some(100));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.123456789Z"), Some(123));
        assert_eq!(parse_rfc3339_ms("1970-01-01 00:00:01z"), Some(1000));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(parse_rfc3339_ms("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2021-12-31",
            "2021-12-31T19:00:00",
            "2021-12-31T19:00:00+5:00",
            "2021-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2021-12-32T00:00:00Z",
            "2021-12-31T24:00:00Z",
            "2021-12-31T19:00:00.Z",
            "2021-12-31T19:00:00.1234567890Z",
            "2021-12-31T19:00:00+24:00",
            "2021-12-31X19:00:00Z",
            "2021-12-31T19:00:00Z trailing",
            "２０２１-12-31T19:00:00Z",
            "-021-12-31T19:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_utc_millis() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(1_640_995_200_123), "2022-01-01T00:00:00.123Z");
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_ms(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
    }

    #[test]
    fn round_trips_over_four_centuries() {
        // Every ~1.1 days from 1900 to 2300, through leap days and century rules.
        let mut ms = parse_rfc3339_ms("1900-01-01T00:00:00Z").unwrap();
        let end = parse_rfc3339_ms("2300-01-01T00:00:00Z").unwrap();
        while ms < end {
            let s = format_rfc3339_ms(ms);
            assert_eq!(parse_rfc3339_ms(&s), Some(ms), "{s}");
            ms += 95_000_017;
        }
    }
}
