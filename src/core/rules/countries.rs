//! ISO 3166-1 alpha-2 country codes and the postcode shapes orderlane checks.
//!
//! Also compiled into `build.rs` (the matrix is validated at build time), so this file
//! depends on nothing but `std`.

/// Every officially assigned ISO 3166-1 alpha-2 code (249), plus `XK`, the user-assigned
/// code Shopify uses for Kosovo. Sorted, so lookups are a binary search.
pub const ISO_ALPHA2: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", //
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT",
    "BV", "BW", "BY", "BZ", //
    "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX",
    "CY", "CZ", //
    "DE", "DJ", "DK", "DM", "DO", "DZ", //
    "EC", "EE", "EG", "EH", "ER", "ES", "ET", //
    "FI", "FJ", "FK", "FM", "FO", "FR", //
    "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU",
    "GW", "GY", //
    "HK", "HM", "HN", "HR", "HT", "HU", //
    "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", //
    "JE", "JM", "JO", "JP", //
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", //
    "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", //
    "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT",
    "MU", "MV", "MW", "MX", "MY", "MZ", //
    "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", //
    "OM", //
    "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", //
    "QA", //
    "RE", "RO", "RS", "RU", "RW", //
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST",
    "SV", "SX", "SY", "SZ", //
    "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ", //
    "UA", "UG", "UM", "US", "UY", "UZ", //
    "VA", "VC", "VE", "VG", "VI", "VN", "VU", //
    "WF", "WS", //
    "XK", //
    "YE", "YT", //
    "ZA", "ZM", "ZW",
];

/// True for an upper-case ISO 3166-1 alpha-2 code (or `XK`). Case-sensitive on purpose:
/// Shopify sends upper case, and the matrix file must spell codes the same way.
pub fn is_iso_alpha2(code: &str) -> bool {
    ISO_ALPHA2.binary_search(&code).is_ok()
}

/// Countries whose addresses have no postcode; an address there never needs one.
pub const NO_POSTCODE: &[&str] = &[
    "AE", "AG", "AO", "AW", "BF", "BI", "BJ", "BO", "BS", "BW", "BZ", "CD", "CF", "CG", "CI", "CK", "CM",
    "DJ", "DM", "ER", "FJ", "GA", "GD", "GH", "GM", "GQ", "GY", "HK", "JM", "KI", "KM", "KN", "KP", "ML",
    "MO", "MR", "MW", "NR", "NU", "QA", "RW", "SB", "SC", "SL", "SR", "ST", "SY", "TF", "TG", "TK", "TL",
    "TO", "TT", "TV", "UG", "VU", "YE", "ZW",
];

/// What a postcode check says about one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostcodeCheck {
    /// Matches the country's format, or the country has none and needs none.
    Ok,
    /// The country uses postcodes with a known format and this one is absent.
    Missing,
    /// Present but not in the country's format.
    Malformed,
    /// orderlane knows no format for this country; anything is accepted.
    Unchecked,
}

/// Checks `postcode` (trimmed, any case) against `country`'s format. Formats are known for
/// US, CA, GB, DE, FR, AU, NL, JP, AT, BE, CH, DK, ES, IT, NO, SE, PL.
pub fn check_postcode(country: &str, postcode: Option<&str>) -> PostcodeCheck {
    let pc = postcode.map(|p| p.trim().to_ascii_uppercase()).filter(|p| !p.is_empty());
    if NO_POSTCODE.contains(&country) {
        return PostcodeCheck::Ok;
    }
    let shape: fn(&[u8]) -> bool = match country {
        "US" => {
            |p| digits(p, 5) || (p.len() == 10 && digits(&p[..5], 5) && p[5] == b'-' && digits(&p[6..], 4))
        }
        "CA" => canada,
        "GB" => britain,
        "DE" | "FR" | "ES" | "IT" => |p| digits(p, 5),
        "AU" | "AT" | "BE" | "CH" | "DK" | "NO" => |p| digits(p, 4),
        "NL" => netherlands,
        "JP" => {
            |p| digits(p, 7) || (p.len() == 8 && digits(&p[..3], 3) && p[3] == b'-' && digits(&p[4..], 4))
        }
        "SE" => {
            |p| digits(p, 5) || (p.len() == 6 && digits(&p[..3], 3) && p[3] == b' ' && digits(&p[4..], 2))
        }
        "PL" => |p| p.len() == 6 && digits(&p[..2], 2) && p[2] == b'-' && digits(&p[3..], 3),
        _ => return PostcodeCheck::Unchecked,
    };
    match pc {
        None => PostcodeCheck::Missing,
        Some(p) if shape(p.as_bytes()) => PostcodeCheck::Ok,
        Some(_) => PostcodeCheck::Malformed,
    }
}

fn digits(p: &[u8], n: usize) -> bool {
    p.len() == n && p.iter().all(u8::is_ascii_digit)
}

fn alpha(b: u8) -> bool {
    b.is_ascii_uppercase()
}

/// `A9A 9A9`, the space optional.
fn canada(p: &[u8]) -> bool {
    let p: Vec<u8> = p.iter().copied().filter(|b| *b != b' ').collect();
    p.len() == 6
        && alpha(p[0])
        && p[1].is_ascii_digit()
        && alpha(p[2])
        && p[3].is_ascii_digit()
        && alpha(p[4])
        && p[5].is_ascii_digit()
}

/// Outward code `A9`, `A99`, `A9A`, `AA9`, `AA99` or `AA9A`, then inward `9AA`; space
/// optional. `GIR 0AA` is the one historic exception.
fn britain(p: &[u8]) -> bool {
    let p: Vec<u8> = p.iter().copied().filter(|b| *b != b' ').collect();
    if p == b"GIR0AA" {
        return true;
    }
    if p.len() < 5 || p.len() > 7 {
        return false;
    }
    let (out, inw) = p.split_at(p.len() - 3);
    let inward_ok = inw[0].is_ascii_digit() && alpha(inw[1]) && alpha(inw[2]);
    let outward_ok = match out {
        [a, d] => alpha(*a) && d.is_ascii_digit(),
        [a, x, y] => {
            alpha(*a)
                && ((x.is_ascii_digit() && (y.is_ascii_digit() || alpha(*y)))
                    || (alpha(*x) && y.is_ascii_digit()))
        }
        [a, b, d, x] => alpha(*a) && alpha(*b) && d.is_ascii_digit() && (x.is_ascii_digit() || alpha(*x)),
        _ => false,
    };
    inward_ok && outward_ok
}

/// `9999 AA`, first digit not zero, space optional.
fn netherlands(p: &[u8]) -> bool {
    let p: Vec<u8> = p.iter().copied().filter(|b| *b != b' ').collect();
    p.len() == 6 && p[0] != b'0' && digits(&p[..4], 4) && alpha(p[4]) && alpha(p[5])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_list_is_sorted_and_complete() {
        assert!(ISO_ALPHA2.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
        assert_eq!(ISO_ALPHA2.len(), 250, "249 assigned codes plus XK");
        for c in ["US", "DE", "GB", "HK", "AE", "JP", "XK", "AX", "SS"] {
            assert!(is_iso_alpha2(c), "{c}");
        }
        for c in ["UK", "EU", "us", "USA", "", "ZZ", "AN"] {
            assert!(!is_iso_alpha2(c), "{c}");
        }
        assert!(NO_POSTCODE.iter().all(|c| is_iso_alpha2(c)));
    }

    #[test]
    fn postcode_formats() {
        use PostcodeCheck::*;
        let cases: &[(&str, Option<&str>, PostcodeCheck)] = &[
            ("US", Some("40003"), Ok),
            ("US", Some("40003-1234"), Ok),
            ("US", Some("4000"), Malformed),
            ("US", Some("40003 1234"), Malformed),
            ("US", None, Missing),
            ("US", Some("  "), Missing),
            ("CA", Some("K2H7A8"), Ok),
            ("CA", Some("k2h 7a8"), Ok),
            ("CA", Some("K2H 7A"), Malformed),
            ("GB", Some("SW1A 1AA"), Ok),
            ("GB", Some("M1 1AE"), Ok),
            ("GB", Some("B33 8TH"), Ok),
            ("GB", Some("CR2 6XH"), Ok),
            ("GB", Some("DN55 1PT"), Ok),
            ("GB", Some("W1A 0AX"), Ok),
            ("GB", Some("EC1A1BB"), Ok),
            ("GB", Some("GIR 0AA"), Ok),
            ("GB", Some("SW1A"), Malformed),
            ("GB", Some("12345"), Malformed),
            ("DE", Some("10115"), Ok),
            ("DE", Some("1011"), Malformed),
            ("FR", Some("75008"), Ok),
            ("FR", Some("75 008"), Malformed),
            ("AU", Some("2000"), Ok),
            ("AU", Some("20000"), Malformed),
            ("NL", Some("1012 AB"), Ok),
            ("NL", Some("1012AB"), Ok),
            ("NL", Some("0123 AB"), Malformed),
            ("NL", Some("1012"), Malformed),
            ("JP", Some("100-0001"), Ok),
            ("JP", Some("1000001"), Ok),
            ("JP", Some("100 0001"), Malformed),
            ("SE", Some("114 55"), Ok),
            ("PL", Some("00-950"), Ok),
            ("HK", None, Ok),
            ("AE", Some(""), Ok),
            ("BR", None, Unchecked),
            ("BR", Some("01310-100"), Unchecked),
        ];
        for (country, pc, want) in cases {
            assert_eq!(check_postcode(country, *pc), *want, "{country} {pc:?}");
        }
    }
}
