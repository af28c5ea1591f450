//! Operator list queries as data: filters parsed from a query string into SQL with bound
//! parameters, keyset-paginated, each filter backed by an index (see migrations/).
//! Column names come only from this file; every value is a bound parameter.

use base64::Engine as _;

/// A bound SQL parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Int(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(pub String);

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// Opaque keyset cursor: the (time, rowid) of the last row of the previous page.
pub fn encode_cursor(at_ms: i64, id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at_ms}:{id}"))
}

pub fn decode_cursor(c: &str) -> Result<(i64, i64), QueryError> {
    let bad = || QueryError("cursor is not one this API returned".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (a, b) = text.split_once(':').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

fn limit_of(v: Option<&str>) -> Result<i64, QueryError> {
    match v {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(QueryError(format!("limit must be 1..={MAX_LIMIT}"))),
        },
    }
}

fn int_of(name: &str, v: &str) -> Result<i64, QueryError> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(n);
    }
    crate::core::time::parse_rfc3339_ms(v)
        .ok_or_else(|| QueryError(format!("{name} must be epoch milliseconds or an RFC 3339 time")))
}

/// Query-string pairs, already percent-decoded.
pub type Pairs = [(String, String)];

/// Splits the query of a request URL into decoded pairs (`+` is a space, `%XX` a byte;
/// malformed escapes are kept as written). Done here rather than with a URL parser so the
/// Worker does not carry one.
pub fn parse_query_string(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else { return Vec::new() };
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn get<'a>(pairs: &'a Pairs, key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

fn reject_unknown(pairs: &Pairs, allowed: &[&str]) -> Result<(), QueryError> {
    match pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, _)) => Err(QueryError(format!("unknown filter {k:?}; allowed: {}", allowed.join(", ")))),
        None => Ok(()),
    }
}

/// A built query: SQL, its parameters, and the page size (one extra row is fetched to know
/// whether another page exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub sql: String,
    pub params: Vec<Param>,
    pub limit: i64,
}

pub const AUDIT_FILTERS: &[&str] =
    &["order", "shop", "lane", "event", "reason", "actor", "from", "to", "cursor", "limit", "explain"];

/// `GET /admin/audit`: newest first. Filters: order (order id), shop, lane, event, reason,
/// actor, from/to (epoch ms or RFC 3339, inclusive/exclusive), cursor, limit.
pub fn audit(pairs: &Pairs) -> Result<Built, QueryError> {
    reject_unknown(pairs, AUDIT_FILTERS)?;
    let mut conds = Vec::new();
    let mut params = Vec::new();
    let mut eq = |col: &str, key: &str, conds: &mut Vec<String>| {
        if let Some(v) = get(pairs, key) {
            params.push(Param::Text(v.to_string()));
            conds.push(format!("{col} = ?{}", params.len()));
        }
    };
    eq("order_id", "order", &mut conds);
    eq("shop", "shop", &mut conds);
    eq("segment", "lane", &mut conds);
    eq("event", "event", &mut conds);
    eq("reason", "reason", &mut conds);
    eq("actor", "actor", &mut conds);
    if let Some(v) = get(pairs, "from") {
        params.push(Param::Int(int_of("from", v)?));
        conds.push(format!("at_ms >= ?{}", params.len()));
    }
    if let Some(v) = get(pairs, "to") {
        params.push(Param::Int(int_of("to", v)?));
        conds.push(format!("at_ms < ?{}", params.len()));
    }
    if let Some(c) = get(pairs, "cursor") {
        let (at, id) = decode_cursor(c)?;
        params.push(Param::Int(at));
        let a = params.len();
        params.push(Param::Int(id));
        conds.push(format!("(at_ms < ?{a} OR (at_ms = ?{a} AND id < ?{}))", params.len()));
    }
    let limit = limit_of(get(pairs, "limit"))?;
    let filter = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
    Ok(Built {
        sql: format!(
            "SELECT id, at, at_ms, shop, order_id, seq, segment, event, from_state, to_state, reason, rule_id, \
             rules_version, actor, detail FROM audit_log{filter} ORDER BY at_ms DESC, id DESC LIMIT {}",
            limit + 1
        ),
        params,
        limit,
    })
}

pub const EXCEPTION_FILTERS: &[&str] = &["reason", "lane", "state", "min_age_minutes", "cursor", "limit"];

/// `GET /admin/exceptions`: orders in `hold` (or `state=fraud-check`), oldest first.
/// Filters: reason, lane, min_age_minutes, cursor, limit.
pub fn exceptions(pairs: &Pairs, now_ms: i64) -> Result<Built, QueryError> {
    reject_unknown(pairs, EXCEPTION_FILTERS)?;
    let state = get(pairs, "state").unwrap_or("hold");
    if state != "hold" && state != "fraud-check" {
        return Err(QueryError("state must be hold or fraud-check".into()));
    }
    let mut params = vec![Param::Text(state.to_string())];
    let mut conds = vec!["state = ?1".to_string()];
    if let Some(r) = get(pairs, "reason") {
        params.push(Param::Text(r.to_string()));
        conds.push(format!("reason = ?{}", params.len()));
    }
    if let Some(l) = get(pairs, "lane") {
        params.push(Param::Text(l.to_string()));
        conds.push(format!("segment = ?{}", params.len()));
    }
    if let Some(a) = get(pairs, "min_age_minutes") {
        let minutes: i64 =
            a.parse().map_err(|_| QueryError("min_age_minutes must be a whole number".into()))?;
        params.push(Param::Int(now_ms - minutes * 60_000));
        conds.push(format!("state_since_ms <= ?{}", params.len()));
    }
    if let Some(c) = get(pairs, "cursor") {
        let (at, id) = decode_cursor(c)?;
        params.push(Param::Int(at));
        let a = params.len();
        params.push(Param::Int(id));
        conds.push(format!(
            "(state_since_ms > ?{a} OR (state_since_ms = ?{a} AND rowid > ?{}))",
            params.len()
        ));
    }
    let limit = limit_of(get(pairs, "limit"))?;
    Ok(Built {
        sql: format!(
            "SELECT rowid AS id, shop, order_id, order_name, state, reason, segment, mode, rule_ids, explanation, \
             rules_version, state_since_ms AS at_ms, strftime('%Y-%m-%dT%H:%M:%fZ', state_since_ms / 1000.0, 'unixepoch') AS since \
             FROM orders WHERE {} ORDER BY state_since_ms ASC, rowid ASC LIMIT {}",
            conds.join(" AND "),
            limit + 1
        ),
        params,
        limit,
    })
}

pub const DEAD_LETTER_FILTERS: &[&str] = &["status", "cause", "shop", "cursor", "limit"];

/// `GET /admin/dead-letters`: oldest first. Filters: status (open | resolved | all, default
/// open), cause, shop, cursor, limit.
pub fn dead_letters(pairs: &Pairs) -> Result<Built, QueryError> {
    reject_unknown(pairs, DEAD_LETTER_FILTERS)?;
    let (mut conds, mut params) = dead_letter_conditions(pairs)?;
    if let Some(c) = get(pairs, "cursor") {
        let (at, id) = decode_cursor(c)?;
        params.push(Param::Int(at));
        let a = params.len();
        params.push(Param::Int(id));
        conds.push(format!("(created_ms > ?{a} OR (created_ms = ?{a} AND id > ?{}))", params.len()));
    }
    let limit = limit_of(get(pairs, "limit"))?;
    let filter = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
    Ok(Built {
        sql: format!(
            "SELECT id, shop, order_id, submission, cause, attempts, last_error, http_status, response, created_at, \
             created_ms AS at_ms, resolved_ms, resolved_by, resolution, note FROM dead_letters{filter} \
             ORDER BY created_ms ASC, id ASC LIMIT {}",
            limit + 1
        ),
        params,
        limit,
    })
}

/// The WHERE conditions of a dead-letter filter (shared by the list and bulk re-drive).
pub fn dead_letter_conditions(pairs: &Pairs) -> Result<(Vec<String>, Vec<Param>), QueryError> {
    let mut conds = Vec::new();
    let mut params = Vec::new();
    match get(pairs, "status").unwrap_or("open") {
        "open" => conds.push("resolved_ms IS NULL".to_string()),
        "resolved" => conds.push("resolved_ms IS NOT NULL".to_string()),
        "all" => {}
        _ => return Err(QueryError("status must be open, resolved or all".into())),
    }
    if let Some(c) = get(pairs, "cause") {
        params.push(Param::Text(c.to_string()));
        conds.push(format!("cause = ?{}", params.len()));
    }
    if let Some(s) = get(pairs, "shop") {
        params.push(Param::Text(s.to_string()));
        conds.push(format!("shop = ?{}", params.len()));
    }
    Ok((conds, params))
}

/// Percent-encodes everything but the unreserved characters (RFC 3986): a path segment, a
/// query value or a form field.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://host[:port]` of an absolute URL as the Fetch API serialises it (scheme and host
/// already lower-case, a default port already dropped), which is what a browser sends in
/// `Origin`. Read by hand so the Worker carries no URL parser.
pub fn url_origin(url: &str) -> &str {
    let Some(scheme_end) = url.find("://") else { return "" };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        // Credentials in a request URL: no browser origin looks like that.
        return "";
    }
    &url[..scheme_end + 3 + authority_end]
}

/// The path and query of an absolute URL (no fragment): `/console/orders?x=1`.
pub fn url_path_and_query(url: &str) -> &str {
    let origin = url_origin(url);
    let rest = if origin.is_empty() { "" } else { &url[origin.len()..] };
    let rest = rest.split('#').next().unwrap_or("");
    if rest.is_empty() || !rest.starts_with('/') {
        "/"
    } else {
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("shop.myshopify.com"), "shop.myshopify.com");
        assert_eq!(percent_encode("a b/c?d=e&f%"), "a%20b%2Fc%3Fd%3De%26f%25");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn audit_filters_bind_values_never_splice_them() {
        let b = audit(&q(&[("lane", "eu'; DROP TABLE orders; --"), ("actor", "user:ops"), ("limit", "10")]))
            .unwrap();
        assert!(b.sql.contains("segment = ?1") && b.sql.contains("actor = ?2"), "{}", b.sql);
        assert!(!b.sql.contains("DROP"));
        assert_eq!(b.params[0], Param::Text("eu'; DROP TABLE orders; --".into()));
        assert!(b.sql.ends_with("LIMIT 11"));
        assert_eq!(b.limit, 10);
    }

    #[test]
    fn audit_time_range_and_cursor() {
        let c = encode_cursor(1_700_000_000_000, 42);
        assert_eq!(decode_cursor(&c).unwrap(), (1_700_000_000_000, 42));
        let b =
            audit(&q(&[("from", "2026-11-27T00:00:00Z"), ("to", "1795800000000"), ("cursor", &c)])).unwrap();
        assert_eq!(b.params[0], Param::Int(1_795_737_600_000));
        assert_eq!(b.params[1], Param::Int(1_795_800_000_000));
        assert!(b.sql.contains("(at_ms < ?3 OR (at_ms = ?3 AND id < ?4))"), "{}", b.sql);
        assert!(audit(&q(&[("from", "yesterday")])).is_err());
        assert!(audit(&q(&[("cursor", "!!")])).is_err());
        assert!(audit(&q(&[("limit", "0")])).is_err());
        assert!(audit(&q(&[("limit", "501")])).is_err());
        assert!(audit(&q(&[("colour", "red")])).unwrap_err().0.contains("colour"));
    }

    #[test]
    fn exceptions_oldest_first_with_age() {
        let b = exceptions(&q(&[("reason", "address"), ("min_age_minutes", "30")]), 10_000_000).unwrap();
        assert_eq!(
            b.params,
            vec![
                Param::Text("hold".into()),
                Param::Text("address".into()),
                Param::Int(10_000_000 - 1_800_000)
            ]
        );
        assert!(b.sql.contains("ORDER BY state_since_ms ASC"));
        assert!(exceptions(&q(&[("state", "submitted")]), 0).is_err());
        assert!(exceptions(&q(&[("min_age_minutes", "soon")]), 0).is_err());
    }

    #[test]
    fn query_strings_decode() {
        let p = parse_query_string(
            "https://x.dev/admin/audit?actor=user%3Aops&lane=eu&note=a+b&bad=%zz&empty=&flag#frag",
        );
        assert_eq!(
            p,
            q(&[
                ("actor", "user:ops"),
                ("lane", "eu"),
                ("note", "a b"),
                ("bad", "%zz"),
                ("empty", ""),
                ("flag", "")
            ])
        );
        assert_eq!(parse_query_string("https://x.dev/admin/audit"), vec![]);
        assert_eq!(parse_query_string("/a?x=%E2%9C%93&y=100%"), q(&[("x", "✓"), ("y", "100%")]));
    }

    #[test]
    fn dead_letters_default_to_open() {
        let b = dead_letters(&q(&[])).unwrap();
        assert!(b.sql.contains("WHERE resolved_ms IS NULL"));
        let b = dead_letters(&q(&[("status", "all"), ("cause", "refused")])).unwrap();
        assert!(b.sql.contains("WHERE cause = ?1"));
        assert!(dead_letters(&q(&[("status", "maybe")])).is_err());
    }

    #[test]
    fn origin_and_path_of_request_urls() {
        assert_eq!(url_origin("https://lane.example.com/console/x?a=1"), "https://lane.example.com");
        assert_eq!(url_origin("http://127.0.0.1:8787/console"), "http://127.0.0.1:8787");
        assert_eq!(url_origin("http://127.0.0.1:8787"), "http://127.0.0.1:8787");
        assert_eq!(url_origin("https://u:p@evil.example/console"), "");
        assert_eq!(url_origin("/console"), "");
        assert_eq!(
            url_path_and_query("https://h.example/console/orders/s/1?tab=a#x"),
            "/console/orders/s/1?tab=a"
        );
        assert_eq!(url_path_and_query("https://h.example"), "/");
        assert_eq!(url_path_and_query("https://h.example?x=1"), "/");
        assert_eq!(url_path_and_query("nonsense"), "/");
    }
}
