//! Signs a JSON file as Shopify would and POSTs it to an orderlane webhook endpoint.
//!
//! ```text
//! cargo run --bin orderlane-send -- send tests/fixtures/orders-create.json --topic orders/create \
//!     [--url http://127.0.0.1:8787] [--shop demo.myshopify.com] [--secret S] [--webhook-id ID]
//! ```
//! The secret defaults to `SHOPIFY_WEBHOOK_SECRET` from the environment, then from `.dev.vars`.
//! Plain HTTP only: it is for local stacks and demos.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orderlane::core::webhook::sign;

const USAGE: &str = "usage: orderlane-send send <file.json> --topic <topic> [--url URL] [--shop DOMAIN] \
[--secret SECRET] [--webhook-id ID]";

struct Args {
    file: String,
    topic: String,
    url: String,
    shop: String,
    secret: Option<String>,
    webhook_id: Option<String>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    if it.next().as_deref() != Some("send") {
        return Err(USAGE.into());
    }
    let file = it.next().ok_or(USAGE)?;
    let mut a = Args {
        file,
        topic: String::new(),
        url: "http://127.0.0.1:8787".into(),
        shop: "demo.myshopify.com".into(),
        secret: None,
        webhook_id: None,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--topic" => a.topic = value,
            "--url" => a.url = value,
            "--shop" => a.shop = value,
            "--secret" => a.secret = Some(value),
            "--webhook-id" => a.webhook_id = Some(value),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if a.topic.is_empty() {
        return Err(format!("--topic is required\n{USAGE}"));
    }
    Ok(a)
}

fn secret_from_dev_vars() -> Option<String> {
    let text = std::fs::read_to_string(".dev.vars").ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "SHOPIFY_WEBHOOK_SECRET").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Splits `http://host:port/path` into (host:port, path).
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs are supported (local stacks)")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/webhooks/shopify"),
    };
    let path = if path == "/" { "/webhooks/shopify" } else { path };
    let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    Ok((authority, path.to_string()))
}

fn run() -> Result<(), String> {
    let a = parse_args(std::env::args().skip(1))?;
    let body = std::fs::read(&a.file).map_err(|e| format!("cannot read {}: {e}", a.file))?;
    let secret = a
        .secret
        .or_else(|| std::env::var("SHOPIFY_WEBHOOK_SECRET").ok())
        .or_else(secret_from_dev_vars)
        .ok_or("no secret: pass --secret, set SHOPIFY_WEBHOOK_SECRET, or create .dev.vars")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
    let webhook_id = a.webhook_id.unwrap_or_else(|| format!("orderlane-send-{}", now.as_nanos()));
    let (authority, path) = split_url(&a.url)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         X-Shopify-Hmac-Sha256: {}\r\nX-Shopify-Topic: {}\r\nX-Shopify-Shop-Domain: {}\r\n\
         X-Shopify-Webhook-Id: {webhook_id}\r\nX-Shopify-Api-Version: 2026-04\r\n\
         X-Shopify-Triggered-At: {}\r\nConnection: close\r\n\r\n",
        body.len(),
        sign(secret.as_bytes(), &body),
        a.topic,
        a.shop,
        orderlane::core::time::format_rfc3339_ms(now.as_millis() as i64),
    );
    let mut conn =
        TcpStream::connect(&authority).map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(&body)).map_err(|e| e.to_string())?;
    let mut response = String::new();
    conn.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let status = response.lines().next().unwrap_or_default();
    let payload = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    println!("webhook id {webhook_id}: {status}\n{payload}");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
