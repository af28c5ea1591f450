//! The route decision beside the parse floor, on Shopify's documented order (minified):
//! serde_json into `IgnoredAny` (the floor), the payload model, `decide` alone, and parse +
//! decide (what one delivery costs the core). Prints the ratios at the end.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, Criterion};
use orderlane::core::order::{parse_order, RiskLevel};
use orderlane::core::routing::{decide, RouteInput};
use orderlane::core::rules::Matrix;
use orderlane::core::types::Mode;
use serde::de::IgnoredAny;

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

fn stock() -> BTreeMap<String, i64> {
    ["SKU2006-001", "LENS-PROTECT-2YR", "CASE-LEATHER-PREM", "SKU2006-020", "SKU2006-035"]
        .iter()
        .map(|s| (s.to_string(), 10))
        .collect()
}

fn route(m: &Matrix, body: &[u8], stock: &BTreeMap<String, i64>) -> usize {
    match parse_order(body) {
        Ok(order) => {
            let input = RouteInput {
                shop: "bench.myshopify.com",
                order: &order,
                risk: Some(RiskLevel::Low),
                stock,
                email_orders_in_window: 1,
                mode: Some(Mode::Auto),
            };
            decide(m, &input, NOW).fired.len()
        }
        Err(_) => 0,
    }
}

fn floor(body: &[u8]) -> bool {
    serde_json::from_slice::<IgnoredAny>(body).is_ok()
}

fn bench(c: &mut Criterion) {
    let Ok(m) = Matrix::builtin() else { return };
    let body = body();
    let stock = stock();
    let order = match parse_order(&body) {
        Ok(o) => o,
        Err(_) => return,
    };
    let mut g = c.benchmark_group(format!("route {} bytes", body.len()));
    g.bench_function("floor: serde_json IgnoredAny", |b| b.iter(|| floor(black_box(&body))));
    g.bench_function("parse_order", |b| b.iter(|| parse_order(black_box(&body)).is_ok()));
    g.bench_function("decide", |b| {
        b.iter(|| {
            let input = RouteInput {
                shop: "bench.myshopify.com",
                order: black_box(&order),
                risk: Some(RiskLevel::Low),
                stock: &stock,
                email_orders_in_window: 1,
                mode: Some(Mode::Auto),
            };
            decide(&m, &input, NOW).fired.len()
        })
    });
    g.bench_function("parse_order + decide", |b| b.iter(|| route(&m, black_box(&body), &stock)));
    g.finish();
}

fn ratio() {
    let Ok(m) = Matrix::builtin() else { return };
    let body = body();
    let stock = stock();
    let time = |f: &dyn Fn() -> usize| {
        let n = 20_000;
        let start = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    let _ = time(&|| usize::from(floor(&body)));
    let floor_ns = time(&|| usize::from(floor(black_box(&body))));
    let parse_ns = time(&|| usize::from(parse_order(black_box(&body)).is_ok()));
    let route_ns = time(&|| route(&m, black_box(&body), &stock));
    println!(
        "\nbody {} bytes: floor {:.1} µs, parse_order {:.1} µs ({:.2}x), parse+decide {:.1} µs ({:.2}x floor; decide alone ≈ {:.1} µs)",
        body.len(),
        floor_ns / 1000.0,
        parse_ns / 1000.0,
        parse_ns / floor_ns,
        route_ns / 1000.0,
        route_ns / floor_ns,
        (route_ns - parse_ns) / 1000.0
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio();
}
