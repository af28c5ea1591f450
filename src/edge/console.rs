//! `/console`: the operators' web console. Its pages, style sheet and script are compiled into
//! the Worker (`console/` at the repository root), so every answer carries the same strict
//! headers and no page is served without the session check. Sign-in exchanges an admin token
//! for a signed session cookie; the pages then call the admin API with that cookie.

use serde::Deserialize;
use worker::{Env, Method, Request, Response};

use super::api::{body, error, json, now_ms, unavailable, ApiError};
use super::config;
use super::store::{AuditRow, Store};
use crate::core::admin::{actor, AdminTokens};
use crate::core::console::{self as rules, Page, Session, SessionError};
use crate::core::query::percent_encode as percent;

const SHELL: &str = include_str!("../../console/shell.html");
const CSS: &str = include_str!("../../console/console.css");
const JS: &str = include_str!("../../console/console.js");

/// No script, style, image or connection from anywhere but this Worker; no inline script or
/// style; never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// What sessions are signed with and how long they last, read from the environment.
pub struct Sessions {
    key: [u8; 32],
    ttl_ms: i64,
    tokens: AdminTokens,
}

impl Sessions {
    /// `None` when no admin token is configured: nobody can sign in.
    pub fn from_env(env: &Env) -> Option<Sessions> {
        let spec = config::text(env, "ADMIN_TOKENS")?;
        let tokens = AdminTokens::parse(&spec);
        if tokens.is_empty() {
            return None;
        }
        let secret = config::text(env, "CONSOLE_SESSION_SECRET").unwrap_or(spec);
        Some(Sessions {
            key: rules::session_key(&secret),
            ttl_ms: rules::session_ms(config::text(env, "CONSOLE_SESSION_MINUTES").as_deref()),
            tokens,
        })
    }

    /// The session the request's cookie opens now.
    pub fn session(&self, req: &Request) -> Result<Session, SessionError> {
        let header = header(req, "cookie");
        let cookie = rules::cookie_value(header.as_deref(), rules::COOKIE).ok_or(SessionError::Missing)?;
        rules::verify(&self.key, cookie, now_ms(), &self.tokens)
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// This Worker's own origin, as the browser names it in `Origin`.
fn own_origin(req: &Request) -> String {
    crate::core::query::url_origin(&req.inner().url()).to_string()
}

/// Whether a change made with a session comes from the console: same origin, and the
/// session's CSRF token in `X-CSRF-Token`. Answers the refusal otherwise.
pub fn check_change(req: &Request, session: &Session) -> Result<(), Response> {
    let origin = header(req, "origin");
    let site = header(req, "sec-fetch-site");
    if !rules::origin_ok(origin.as_deref(), site.as_deref(), &own_origin(req)) {
        return Err(error(403, "origin_refused", "changes are only accepted from the console's own origin"));
    }
    if !rules::csrf_ok(session, header(req, rules::CSRF_HEADER).as_deref()) {
        return Err(error(
            403,
            "csrf_failed",
            "the X-CSRF-Token header is missing or wrong; reload the page",
        ));
    }
    Ok(())
}

pub async fn handle(req: Request, env: &Env) -> Response {
    let path = req.path();
    match (path.as_str(), req.method()) {
        ("/console/static/console.css", Method::Get) => asset(CSS, "text/css; charset=utf-8"),
        ("/console/static/console.js", Method::Get) => asset(JS, "text/javascript; charset=utf-8"),
        ("/console/session", Method::Post) => sign_in(req, env).await.unwrap_or_else(ApiError::into_response),
        ("/console/sign-out", Method::Post) => {
            sign_out(req, env).await.unwrap_or_else(ApiError::into_response)
        }
        ("/console/session", _) | ("/console/sign-out", _) => {
            error(405, "method_not_allowed", "this endpoint does not accept that method")
        }
        (p, Method::Get) => match rules::page_for(p) {
            Some(page) => show(&req, env, page),
            None => error(404, "not_found", "no such console page"),
        },
        _ => error(405, "method_not_allowed", "console pages are read with GET"),
    }
}

fn harden(mut r: Response, cache: &str) -> Response {
    let h = r.headers_mut();
    let _ = h.set("content-security-policy", CSP);
    let _ = h.set("x-content-type-options", "nosniff");
    let _ = h.set("referrer-policy", "same-origin");
    let _ = h.set("x-frame-options", "DENY");
    let _ = h.set("cache-control", cache);
    r
}

fn asset(text: &str, content_type: &str) -> Response {
    match Response::ok(text) {
        Ok(mut r) => {
            let _ = r.headers_mut().set("content-type", content_type);
            // Short, so a deploy reaches every open console within minutes.
            harden(r, "public, max-age=300")
        }
        Err(_) => error(500, "internal", "response could not be built"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The page shell: the script builds the page from the admin API. The operator's name and
/// the CSRF token travel in `<meta>` (the cookie itself is out of the script's reach).
fn render(page: &Page, session: Option<&Session>) -> Response {
    let html = SHELL
        .replace("{{title}}", page.title())
        .replace("{{page}}", page.name())
        .replace("{{operator}}", &escape(session.map(|s| s.name.as_str()).unwrap_or("")))
        .replace("{{csrf}}", &escape(session.map(|s| s.csrf.as_str()).unwrap_or("")))
        .replace(
            "{{left}}",
            &session.map(|s| (s.expires_ms - now_ms()).max(0).to_string()).unwrap_or_default(),
        );
    match Response::from_html(html) {
        Ok(r) => harden(r, "no-store"),
        Err(_) => error(500, "internal", "response could not be built"),
    }
}

fn redirect(location: &str) -> Response {
    let mut r = Response::empty().map(|r| r.with_status(303)).unwrap_or_else(|_| error(500, "internal", ""));
    let _ = r.headers_mut().set("location", location);
    harden(r, "no-store")
}

fn show(req: &Request, env: &Env, page: Page) -> Response {
    let session = Sessions::from_env(env).map(|s| s.session(req));
    if page == Page::SignIn {
        return render(&page, None);
    }
    match session {
        Some(Ok(s)) => render(&page, Some(&s)),
        Some(Err(e)) => {
            let url = req.inner().url();
            let here = crate::core::query::url_path_and_query(&url);
            let next = percent(&rules::safe_next(Some(here)));
            let why = match e {
                SessionError::Expired => "&why=expired",
                SessionError::Revoked => "&why=revoked",
                _ => "",
            };
            redirect(&format!("/console/sign-in?next={next}{why}"))
        }
        None => redirect("/console/sign-in?why=unconfigured"),
    }
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

fn store(env: &Env) -> Result<Store, ApiError> {
    env.d1(config::DB).map(Store::new).map_err(|_| ApiError::Answered(unavailable(5)))
}

async fn audit(store: &Store, name: &str, event: &str, detail: serde_json::Value) -> Result<(), ApiError> {
    let who = actor(name);
    let row = AuditRow::event(now_ms(), event, &who, &detail);
    store.batch(vec![store.audit(&row)?]).await?;
    Ok(())
}

/// `POST /console/session` `{"token": "..."}`: a valid admin token sets the session cookie.
/// Same-origin only, so another site cannot sign a browser in under its own token.
async fn sign_in(mut req: Request, env: &Env) -> Result<Response, ApiError> {
    let origin = header(&req, "origin");
    let site = header(&req, "sec-fetch-site");
    if !rules::origin_ok(origin.as_deref(), site.as_deref(), &own_origin(&req)) {
        return Err(ApiError::new(403, "origin_refused", "sign in from the console's own page"));
    }
    let Some(sessions) = Sessions::from_env(env) else {
        return Err(ApiError::new(
            503,
            "console_unconfigured",
            "no admin token is configured (ADMIN_TOKENS)",
        ));
    };
    let b = body::<SignIn>(&mut req).await?;
    let Some((name, digest)) = sessions.tokens.token(&b.token) else {
        return Err(ApiError::new(401, "unauthorized", "that is not a valid admin token"));
    };
    let mut nonce = [0u8; 16];
    if getrandom::fill(&mut nonce).is_err() {
        return Err(ApiError::new(503, "no_randomness", "a session could not be opened; retry"));
    }
    let (cookie, session) = rules::issue(&sessions.key, name, &digest, now_ms(), sessions.ttl_ms, &nonce);
    audit(&store(env)?, name, "console_signed_in", serde_json::json!({ "expires_ms": session.expires_ms }))
        .await?;
    let mut r = json(200, &serde_json::json!({ "operator": name, "expires_ms": session.expires_ms }));
    let _ = r.headers_mut().set("set-cookie", &rules::set_cookie(&cookie, sessions.ttl_ms / 1000));
    Ok(harden(r, "no-store"))
}

/// `POST /console/sign-out`: clears the cookie (with the session's CSRF token, so another site
/// cannot sign an operator out either).
async fn sign_out(req: Request, env: &Env) -> Result<Response, ApiError> {
    let sessions =
        Sessions::from_env(env).ok_or_else(|| ApiError::new(401, "session_required", "not signed in"))?;
    let mut r = json(200, &serde_json::json!({ "signed_out": true }));
    if let Ok(session) = sessions.session(&req) {
        check_change(&req, &session)?;
        audit(&store(env)?, &session.name, "console_signed_out", serde_json::json!({})).await?;
    }
    let _ = r.headers_mut().set("set-cookie", &rules::set_cookie("", 0));
    Ok(harden(r, "no-store"))
}
