//! Webhook hot path against its floor, on Shopify's documented `orders/create` body (paid,
//! minified, ~10.7 KB): verify (headers, HMAC, body SHA-256) + the payload model + the route
//! decision, beside HMAC-SHA256 alone + serde_json into `IgnoredAny` over the same bytes.
//! Prints the ratio at the end.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, Criterion};
use hmac::{Hmac, Mac};
use std::collections::BTreeMap;

use orderlane::core::order::{parse_order, RiskLevel};
use orderlane::core::routing::{decide, RouteInput};
use orderlane::core::rules::Matrix;
use orderlane::core::types::Mode;
use orderlane::core::webhook::{check, sign, WebhookConfig};
use serde::de::IgnoredAny;
use sha2::Sha256;

const SECRET: &str = "bench-secret";

const NOW: i64 = 1_795_000_000_000;

fn body() -> Vec<u8> {
    let pretty = include_str!("../tests/fixtures/orders-create.json");
    // A paid, open order: the path every rule family runs on.
    let text = pretty
        .replace("\"voided\"", "\"paid\"")
        .replace("\"cancelled_at\": \"2021-12-31T19:00:00-05:00\"", "\"cancelled_at\": null");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Stock for every SKU of the sample: the rules compare, nothing is short.
fn stock() -> BTreeMap<String, i64> {
    ["SKU2006-001", "LENS-PROTECT-2YR", "CASE-LEATHER-PREM", "SKU2006-020", "SKU2006-035"]
        .iter()
        .map(|s| (s.to_string(), 10))
        .collect()
}

struct Core {
    cfg: WebhookConfig,
    matrix: Matrix,
    stock: BTreeMap<String, i64>,
}

fn headers(body: &[u8]) -> Vec<(String, String)> {
    [
        ("X-Shopify-Hmac-Sha256", sign(SECRET.as_bytes(), body)),
        ("X-Shopify-Topic", "orders/create".into()),
        ("X-Shopify-Shop-Domain", "bench.myshopify.com".into()),
        ("X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// What the Worker's core does per delivery: verify, parse, decide.
fn ours(c: &Core, h: &[(String, String)], body: &[u8]) -> bool {
    let Ok(d) = check(h, body, &c.cfg) else { return false };
    let Ok(order) = parse_order(body) else { return false };
    let input = RouteInput {
        shop: &d.shop,
        order: &order,
        risk: Some(RiskLevel::Low),
        stock: &c.stock,
        email_orders_in_window: 1,
        mode: Some(Mode::Auto),
    };
    !decide(&c.matrix, &input, NOW).explanation.is_empty()
}

fn core() -> Option<Core> {
    Some(Core { cfg: WebhookConfig::new(SECRET, None, "*"), matrix: Matrix::builtin().ok()?, stock: stock() })
}

fn floor(body: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let parsed: Result<IgnoredAny, _> = serde_json::from_slice(body);
    tag[0] as usize + parsed.is_ok() as usize > 0
}

fn bench(c: &mut Criterion) {
    let body = body();
    let h = headers(&body);
    let Some(core) = core() else { return };
    assert!(ours(&core, &h, &body));
    let mut g = c.benchmark_group(format!("orders-create {} bytes", body.len()));
    g.bench_function("verify+parse+route", |b| b.iter(|| ours(&core, black_box(&h), black_box(&body))));
    g.bench_function("floor: hmac+IgnoredAny", |b| b.iter(|| floor(black_box(&body))));
    g.finish();
}

/// Same two paths timed in alternating batches, so the ratio comes from one run on one machine;
/// each path's fastest batch stands for it, which keeps a noisy neighbour out of the ratio.
fn ratio() {
    let body = body();
    let h = headers(&body);
    let Some(core) = core() else { return };
    let batch = |f: &dyn Fn() -> bool| {
        let n = 2_000;
        let start = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    let (mut floor_ns, mut ours_ns) = (f64::MAX, f64::MAX);
    for _ in 0..25 {
        floor_ns = floor_ns.min(batch(&|| floor(black_box(&body))));
        ours_ns = ours_ns.min(batch(&|| ours(&core, black_box(&h), black_box(&body))));
    }
    println!(
        "\nbody {} bytes: verify+parse+route {:.1} µs, floor {:.1} µs, ratio {:.2}x (fastest of 25 alternating batches)",
        body.len(),
        ours_ns / 1000.0,
        floor_ns / 1000.0,
        ours_ns / floor_ns
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio();
}
