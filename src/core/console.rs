//! The console's security decisions: session cookies (signed, expiring, bound to the admin
//! token that opened them), the per-session CSRF token, the Origin check on changes, and which
//! page a `/console/...` path names. Pure: the key, the clock and the randomness come in.
//!
//! A session cookie is `v1.<name>.<expires_ms>.<nonce>.<mac>`: `mac` is HMAC-SHA256 under the
//! session key over the first four fields and the digest of the token `name` holds today, so a
//! cookie cannot be forged or extended, and rotating or removing that token ends its sessions.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::admin::AdminTokens;

type HmacSha256 = Hmac<Sha256>;

/// The cookie's name. `__Host-` makes browsers insist on `Secure`, `Path=/` and no `Domain`,
/// so no sibling subdomain can plant or shadow it.
pub const COOKIE: &str = "__Host-orderlane_session";
/// The header every change made with a session must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Default session lifetime (a working day).
pub const DEFAULT_SESSION_MS: i64 = 8 * 3_600_000;
/// Longest session `CONSOLE_SESSION_MINUTES` may ask for.
pub const MAX_SESSION_MS: i64 = 24 * 3_600_000;

/// The key sessions are signed with, derived from a secret (`CONSOLE_SESSION_SECRET`, else
/// `ADMIN_TOKENS`) so the raw secret never signs anything itself.
pub fn session_key(secret: &str) -> [u8; 32] {
    mac(secret.as_bytes(), &[b"orderlane console session v1"])
}

/// Session lifetime from `CONSOLE_SESSION_MINUTES` (fractions allowed, > 0, at most 24 h).
pub fn session_ms(minutes: Option<&str>) -> i64 {
    minutes
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|m| m.is_finite() && *m > 0.0)
        .map(|m| ((m * 60_000.0) as i64).clamp(1_000, MAX_SESSION_MS))
        .unwrap_or(DEFAULT_SESSION_MS)
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length; this cannot fail.
    let Ok(mut m) = HmacSha256::new_from_slice(key) else { return [0; 32] };
    for p in parts {
        m.update(p);
        m.update(b"\x1f");
    }
    m.finalize().into_bytes().into()
}

/// Compares every byte whatever the first difference.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The admin token's name: the audit actor is `user:<name>`.
    pub name: String,
    pub expires_ms: i64,
    /// What `X-CSRF-Token` must carry for a change made with this session.
    pub csrf: String,
}

/// Why a cookie opens no session. Each maps to a 401 with this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    Missing,
    Malformed,
    BadSignature,
    Expired,
    /// The token that opened it was rotated or removed.
    Revoked,
}

impl SessionError {
    pub fn code(self) -> &'static str {
        match self {
            SessionError::Missing => "session_required",
            SessionError::Malformed | SessionError::BadSignature => "session_invalid",
            SessionError::Expired => "session_expired",
            SessionError::Revoked => "session_revoked",
        }
    }
}

fn signed_part(name: &str, expires_ms: i64, nonce: &str) -> String {
    format!("v1.{name}.{expires_ms}.{nonce}")
}

fn csrf_of(key: &[u8; 32], cookie: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, &[b"csrf", cookie.as_bytes()]))
}

/// A new session cookie value for `name` (whose token has digest `token_digest`), valid until
/// `now_ms + ttl_ms`. `nonce` makes each sign-in distinct.
pub fn issue(
    key: &[u8; 32],
    name: &str,
    token_digest: &[u8; 32],
    now_ms: i64,
    ttl_ms: i64,
    nonce: &[u8; 16],
) -> (String, Session) {
    let expires_ms = now_ms.saturating_add(ttl_ms);
    let head = signed_part(name, expires_ms, &hex::encode(nonce));
    let sig = URL_SAFE_NO_PAD.encode(mac(key, &[head.as_bytes(), token_digest]));
    let cookie = format!("{head}.{sig}");
    let csrf = csrf_of(key, &cookie);
    (cookie.clone(), Session { name: name.to_string(), expires_ms, csrf })
}

/// The session a cookie value opens at `now_ms`, checked against today's tokens.
pub fn verify(
    key: &[u8; 32],
    cookie: &str,
    now_ms: i64,
    tokens: &AdminTokens,
) -> Result<Session, SessionError> {
    let parts: Vec<&str> = cookie.split('.').collect();
    let [version, name, expires, nonce, sig] = parts.as_slice() else { return Err(SessionError::Malformed) };
    if *version != "v1" || name.is_empty() || nonce.len() != 32 {
        return Err(SessionError::Malformed);
    }
    let expires_ms: i64 = expires.parse().map_err(|_| SessionError::Malformed)?;
    let given = URL_SAFE_NO_PAD.decode(sig).map_err(|_| SessionError::Malformed)?;
    // A name that no longer holds a token still gets a MAC computed (over a zero digest), so
    // the answer's timing does not say which names exist.
    let digest = tokens.digest_of(name);
    let head = signed_part(name, expires_ms, nonce);
    let want = mac(key, &[head.as_bytes(), &digest.unwrap_or([0; 32])]);
    let valid = ct_eq(&given, &want);
    match (valid, digest) {
        (true, Some(_)) if now_ms < expires_ms => {
            Ok(Session { name: name.to_string(), expires_ms, csrf: csrf_of(key, cookie) })
        }
        (true, Some(_)) => Err(SessionError::Expired),
        // No token holds that name any more: removed (or never there; either way no session).
        (_, None) => Err(SessionError::Revoked),
        _ => Err(SessionError::BadSignature),
    }
}

/// Whether a change made with a session carries its CSRF token (constant time).
pub fn csrf_ok(session: &Session, header: Option<&str>) -> bool {
    header.is_some_and(|h| ct_eq(h.trim().as_bytes(), session.csrf.as_bytes()))
}

/// Whether a cookie-authenticated change comes from the console itself: its `Origin` is this
/// Worker's origin, or, when a browser sends no `Origin`, `Sec-Fetch-Site` says same-origin.
/// Anything else (another site, a sandboxed frame's `null`, no evidence at all) is refused.
pub fn origin_ok(origin: Option<&str>, sec_fetch_site: Option<&str>, own_origin: &str) -> bool {
    match origin.map(str::trim) {
        Some(o) => o.eq_ignore_ascii_case(own_origin.trim_end_matches('/')),
        None => sec_fetch_site.map(str::trim) == Some("same-origin"),
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// `Set-Cookie` for a session: `HttpOnly` (no script reads it), `Secure`, `SameSite=Strict`
/// (never sent on a cross-site request), `Path=/` (the admin API it authenticates lives
/// beside `/console`). `max_age_secs = 0` deletes it.
pub fn set_cookie(value: &str, max_age_secs: i64) -> String {
    format!("{COOKIE}={value}; Max-Age={max_age_secs}; Path=/; HttpOnly; Secure; SameSite=Strict")
}

/// What a `/console/...` path shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    SignIn,
    Queue,
    Order { shop: String, order_id: String },
    DeadLetters,
    Lanes,
    Lane(String),
    Audit,
    Stock,
}

impl Page {
    /// The name the page's script dispatches on (`<body data-page>`).
    pub fn name(&self) -> &'static str {
        match self {
            Page::SignIn => "sign-in",
            Page::Queue => "queue",
            Page::Order { .. } => "order",
            Page::DeadLetters => "dead-letters",
            Page::Lanes => "lanes",
            Page::Lane(_) => "lane",
            Page::Audit => "audit",
            Page::Stock => "stock",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            Page::SignIn => "Sign in",
            Page::Queue => "Exception queue",
            Page::Order { .. } => "Order",
            Page::DeadLetters => "Dead letters",
            Page::Lanes => "Lanes",
            Page::Lane(_) => "Lane",
            Page::Audit => "Audit",
            Page::Stock => "Stock",
        }
    }
}

/// The page a path names (`None`: not a console page). Path segments are taken as sent
/// (still percent-encoded); the page's script decodes them for display and API calls.
pub fn page_for(path: &str) -> Option<Page> {
    let rest = path.strip_prefix("/console")?;
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let page = match segs.as_slice() {
        [] if rest.is_empty() || rest == "/" => Page::Queue,
        ["sign-in"] => Page::SignIn,
        ["orders", shop, order_id] => Page::Order { shop: shop.to_string(), order_id: order_id.to_string() },
        ["dead-letters"] => Page::DeadLetters,
        ["lanes"] => Page::Lanes,
        ["lanes", lane] => Page::Lane(lane.to_string()),
        ["audit"] => Page::Audit,
        ["stock"] => Page::Stock,
        _ => return None,
    };
    Some(page)
}

/// Where sign-in may send the browser back to: a console path only (never another site, so
/// `next=` cannot be used to bounce a signed-in operator elsewhere).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/console" || n.starts_with("/console/") || n.starts_with("/console?"))
                && !n.contains("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/console".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn tokens() -> AdminTokens {
        AdminTokens::parse("ops:ops-token-123,reviewer:rev-token-456")
    }

    fn open(tokens: &AdminTokens, name: &str, ttl: i64) -> (String, Session) {
        let key = session_key("secret");
        let digest = tokens.digest_of(name).unwrap();
        issue(&key, name, &digest, NOW, ttl, &[7; 16])
    }

    #[test]
    fn a_session_verifies_until_it_expires() {
        let t = tokens();
        let key = session_key("secret");
        let (cookie, s) = open(&t, "ops", 60_000);
        assert_eq!(s.expires_ms, NOW + 60_000);
        let v = verify(&key, &cookie, NOW, &t).unwrap();
        assert_eq!(v, s);
        assert_eq!(v.name, "ops");
        assert_eq!(verify(&key, &cookie, NOW + 59_999, &t).map(|s| s.name), Ok("ops".into()));
        assert_eq!(verify(&key, &cookie, NOW + 60_000, &t), Err(SessionError::Expired));
        assert_eq!(SessionError::Expired.code(), "session_expired");
    }

    #[test]
    fn a_tampered_cookie_is_refused() {
        let t = tokens();
        let key = session_key("secret");
        let (cookie, _) = open(&t, "reviewer", 60_000);
        // Another name, a later expiry, another nonce: each breaks the signature.
        for (from, to) in [("reviewer", "ops"), (&(NOW + 60_000).to_string()[..], "9999999999999")] {
            let forged = cookie.replacen(from, to, 1);
            assert_ne!(forged, cookie);
            assert_eq!(verify(&key, &forged, NOW, &t), Err(SessionError::BadSignature), "{forged}");
        }
        let parts: Vec<&str> = cookie.split('.').collect();
        let other_nonce = format!("{}.{}.{}.{}.{}", parts[0], parts[1], parts[2], "0".repeat(32), parts[4]);
        assert_eq!(verify(&key, &other_nonce, NOW, &t), Err(SessionError::BadSignature));
        // Another key (another deployment's secret) does not verify it either.
        assert_eq!(verify(&session_key("other"), &cookie, NOW, &t), Err(SessionError::BadSignature));
        for bad in
            ["", "v1", "v2.ops.1.00000000000000000000000000000000.x", "v1.ops.soon.00.x", "a.b.c.d.e.f"]
        {
            assert_eq!(verify(&key, bad, NOW, &t), Err(SessionError::Malformed), "{bad}");
        }
    }

    #[test]
    fn rotating_or_removing_the_token_ends_its_sessions() {
        let key = session_key("secret");
        let (cookie, _) = open(&tokens(), "ops", 60_000);
        let rotated = AdminTokens::parse("ops:ops-token-new,reviewer:rev-token-456");
        assert_eq!(verify(&key, &cookie, NOW, &rotated), Err(SessionError::BadSignature));
        let removed = AdminTokens::parse("reviewer:rev-token-456");
        assert_eq!(verify(&key, &cookie, NOW, &removed), Err(SessionError::Revoked));
        // The other operator's session is untouched by the rotation.
        let (theirs, _) = open(&tokens(), "reviewer", 60_000);
        assert!(verify(&key, &theirs, NOW, &rotated).is_ok());
    }

    #[test]
    fn csrf_token_is_per_session_and_checked_exactly() {
        let t = tokens();
        let (_, a) = open(&t, "ops", 60_000);
        let key = session_key("secret");
        let (_, b) = issue(&key, "ops", &t.digest_of("ops").unwrap(), NOW, 60_000, &[8; 16]);
        assert_ne!(a.csrf, b.csrf, "each sign-in has its own token");
        assert!(csrf_ok(&a, Some(&a.csrf)));
        assert!(!csrf_ok(&a, Some(&b.csrf)));
        assert!(!csrf_ok(&a, None));
        assert!(!csrf_ok(&a, Some("")));
        assert!(!csrf_ok(&a, Some(&a.csrf[..a.csrf.len() - 1])));
        assert!(!csrf_ok(&a, Some(&format!("{}x", a.csrf))));
    }

    #[test]
    fn changes_must_come_from_the_console_origin() {
        let own = "https://orderlane.example.workers.dev";
        assert!(origin_ok(Some(own), None, own));
        assert!(origin_ok(Some("HTTPS://orderlane.example.workers.dev"), None, own));
        assert!(origin_ok(None, Some("same-origin"), own));
        assert!(!origin_ok(Some("https://evil.example"), Some("same-origin"), own));
        assert!(!origin_ok(Some("null"), None, own));
        assert!(!origin_ok(Some("http://orderlane.example.workers.dev"), None, own));
        assert!(!origin_ok(None, Some("same-site"), own));
        assert!(!origin_ok(None, Some("cross-site"), own));
        assert!(!origin_ok(None, None, own));
    }

    #[test]
    fn cookies_and_lifetimes() {
        let h = Some("a=1; __Host-orderlane_session=v1.ops.2.n.s ; b=2");
        assert_eq!(cookie_value(h, COOKIE), Some("v1.ops.2.n.s"));
        assert_eq!(cookie_value(Some("x__Host-orderlane_session=1"), COOKIE), None);
        assert_eq!(cookie_value(None, COOKIE), None);
        let c = set_cookie("v", 60);
        for part in
            ["__Host-orderlane_session=v", "Max-Age=60", "Path=/", "HttpOnly", "Secure", "SameSite=Strict"]
        {
            assert!(c.contains(part), "{c}");
        }
        assert_eq!(session_ms(None), DEFAULT_SESSION_MS);
        assert_eq!(session_ms(Some("30")), 1_800_000);
        assert_eq!(session_ms(Some("0.05")), 3_000);
        assert_eq!(session_ms(Some("100000")), MAX_SESSION_MS);
        for bad in ["0", "-5", "soon", "NaN", "inf"] {
            assert_eq!(session_ms(Some(bad)), DEFAULT_SESSION_MS, "{bad}");
        }
    }

    #[test]
    fn pages_and_redirects() {
        assert_eq!(page_for("/console"), Some(Page::Queue));
        assert_eq!(page_for("/console/"), Some(Page::Queue));
        assert_eq!(page_for("/console/sign-in"), Some(Page::SignIn));
        assert_eq!(
            page_for("/console/orders/s.myshopify.com/820982911946154508"),
            Some(Page::Order { shop: "s.myshopify.com".into(), order_id: "820982911946154508".into() })
        );
        assert_eq!(page_for("/console/lanes/eu"), Some(Page::Lane("eu".into())));
        for p in ["/console/dead-letters", "/console/lanes", "/console/audit", "/console/stock"] {
            assert!(page_for(p).is_some(), "{p}");
        }
        for p in ["/consoles", "/console/nope", "/console/orders/x", "/admin/orders", "/console/lanes/a/b"] {
            assert_eq!(page_for(p), None, "{p}");
        }
        assert_eq!(safe_next(Some("/console/orders/a/1")), "/console/orders/a/1");
        assert_eq!(safe_next(Some("/console?reason=payment")), "/console?reason=payment");
        for bad in [
            None,
            Some("https://evil.example/"),
            Some("//evil.example"),
            Some("/console//evil"),
            Some("/admin/x"),
            Some("/console/\\evil"),
        ] {
            assert_eq!(safe_next(bad), "/console", "{bad:?}");
        }
    }
}
