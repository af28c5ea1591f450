//! `explain`: orderlane's rules, run with no side effects through the same
//! `routing::decide` the Worker calls. Reads files, prints, changes nothing.
//!
//! ```text
//! explain ORDER.json [--risk high|medium|low|none|pending] [--stock stock.json]
//!     [--mode auto|lane=auto,other=manual] [--matrix rules/matrix.toml]
//!     [--email-orders N] [--now 2026-04-01T10:00:00Z] [--shop x.myshopify.com] [--json]
//! explain replay CORPUS... --baseline OLD.toml --candidate NEW.toml [--max-changed 2%]
//!     [--max-transition 'FROM->TO=N|P%']... [--after MINUTES | --now RFC3339] [--risk LEVEL]
//!     [--stock FILE] [--shop DOMAIN] [--changed-only] [--json]
//! explain test [--matrix FILE] [--cases rules/tests.toml]
//! explain lint [--matrix FILE] [--deny]
//! explain intake [--matrix FILE]
//! ```
//!
//! The stock file is the `PUT /admin/stock` body: `[{"sku": "A-1", "available": 3}, ...]`
//! (or a `wrangler d1 execute --json` export of `SELECT sku, available FROM stock`).
//! Without `--matrix` the matrix built into the binary is used; without `--mode` each
//! lane's `default_mode` applies (as when KV holds no flag); without `--now`, the clock.
//! Exit status: 0, 1 when a replay gate, a case or `lint --deny` fails, 2 on bad input.

#[cfg(not(target_arch = "wasm32"))]
mod replay;
#[cfg(not(target_arch = "wasm32"))]
mod tools;

const USAGE: &str = "usage: explain ORDER.json [--risk LEVEL] [--stock FILE] [--mode MODE|LANE=MODE,...] [--matrix FILE] [--email-orders N] [--now RFC3339] [--shop DOMAIN] [--json]
       explain replay CORPUS... --baseline FILE --candidate FILE [--max-changed N|P%] [--max-transition FROM->TO=N|P%]... [--after MIN | --now RFC3339] [--risk LEVEL] [--stock FILE] [--shop DOMAIN] [--changed-only] [--json]
       explain test [--matrix FILE] [--cases FILE]
       explain lint [--matrix FILE] [--deny]
       explain intake [--matrix FILE]";

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    match dispatch(std::env::args().skip(1).collect()) {
        Ok((text, code)) => {
            print!("{text}");
            std::process::exit(code);
        }
        Err(msg) => {
            eprintln!("explain: {msg}");
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

/// Runs a subcommand: its output and exit status, or a usage error.
#[cfg(not(target_arch = "wasm32"))]
fn dispatch(argv: Vec<String>) -> Result<(String, i32), String> {
    let rest = argv.iter().skip(1).cloned().collect();
    match argv.first().map(String::as_str) {
        Some("replay") => replay::run(rest),
        Some("test") => tools::test(rest),
        Some("lint") => tools::lint(rest),
        Some("intake") => tools::intake(rest),
        _ => cli::run(argv).map(|t| (t, 0)),
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::collections::BTreeMap;

    use orderlane::core::order::{parse_order, RiskLevel};
    use orderlane::core::routing::{decide, RouteInput};
    use orderlane::core::rules::{Effect, Matrix};
    use orderlane::core::time::{format_rfc3339_ms, parse_rfc3339_ms};
    use orderlane::core::types::Mode;

    #[derive(Default)]
    struct Args {
        order: Option<String>,
        risk: Option<RiskLevel>,
        stock: Option<String>,
        modes: BTreeMap<String, Mode>,
        all_lanes: Option<Mode>,
        matrix: Option<String>,
        email_orders: u32,
        now_ms: Option<i64>,
        shop: String,
        json: bool,
    }

    fn parse_args(argv: Vec<String>) -> Result<Args, String> {
        let mut a = Args { email_orders: 1, shop: "unknown.myshopify.com".into(), ..Args::default() };
        let mut it = argv.into_iter();
        while let Some(arg) = it.next() {
            let mut value = |flag: &str| it.next().ok_or(format!("{flag} needs a value"));
            match arg.as_str() {
                "--risk" => {
                    let v = value("--risk")?;
                    a.risk = Some(
                        RiskLevel::parse(&v)
                            .ok_or(format!("--risk {v}: not high|medium|low|none|pending"))?,
                    );
                }
                "--stock" => a.stock = Some(value("--stock")?),
                "--matrix" => a.matrix = Some(value("--matrix")?),
                "--shop" => a.shop = value("--shop")?.to_ascii_lowercase(),
                "--email-orders" => {
                    let v = value("--email-orders")?;
                    a.email_orders = v.parse().map_err(|_| format!("--email-orders {v}: not a count"))?;
                }
                "--now" => {
                    let v = value("--now")?;
                    a.now_ms = Some(
                        parse_rfc3339_ms(&v).ok_or(format!("--now {v}: not an RFC 3339 time with offset"))?,
                    );
                }
                "--mode" => {
                    for part in value("--mode")?.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        match part.split_once('=') {
                            Some((lane, m)) => {
                                let mode = Mode::parse(m.trim())
                                    .ok_or(format!("--mode {part}: not auto|shadow|manual"))?;
                                a.modes.insert(lane.trim().to_string(), mode);
                            }
                            None => {
                                a.all_lanes = Some(
                                    Mode::parse(part)
                                        .ok_or(format!("--mode {part}: not auto|shadow|manual"))?,
                                )
                            }
                        }
                    }
                }
                "--json" => a.json = true,
                "-h" | "--help" => return Err("help".into()),
                flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
                path if a.order.is_none() => a.order = Some(path.to_string()),
                extra => return Err(format!("unexpected argument {extra}")),
            }
        }
        Ok(a)
    }

    pub fn read(path: &str) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("{path}: {e}"))
    }

    /// `[{"sku": "...", "available": N}]` → map; duplicate or blank SKUs are errors.
    pub fn parse_stock(bytes: &[u8]) -> Result<BTreeMap<String, i64>, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Row {
            sku: String,
            available: i64,
        }
        let shape =
            |e: serde_json::Error| format!("expected [{{\"sku\": \"...\", \"available\": N}}, ...]: {e}");
        // A `wrangler d1 execute --json` export of the stock table is read too.
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(shape)?;
        let v = match v.get(0).and_then(|s| s.get("results")) {
            Some(rows) => rows.clone(),
            None => v,
        };
        let rows: Vec<Row> = serde_json::from_value(v).map_err(shape)?;
        let mut stock = BTreeMap::new();
        for r in rows {
            let sku = r.sku.trim().to_string();
            if sku.is_empty() {
                return Err("a row has a blank sku".into());
            }
            if stock.insert(sku.clone(), r.available).is_some() {
                return Err(format!("sku {sku} appears twice"));
            }
        }
        Ok(stock)
    }

    fn now_from_clock() -> Result<i64, String> {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| "system clock is before 1970".to_string())?;
        i64::try_from(d.as_millis()).map_err(|_| "system clock out of range".to_string())
    }

    pub fn run(argv: Vec<String>) -> Result<String, String> {
        let a = parse_args(argv)?;
        let order_path = a.order.clone().ok_or("no order file given")?;
        let order =
            parse_order(&read(&order_path)?).map_err(|e| format!("{order_path}: {} ({})", e, e.code()))?;
        let matrix = match &a.matrix {
            Some(p) => {
                let src = String::from_utf8(read(p)?).map_err(|_| format!("{p}: not UTF-8"))?;
                Matrix::from_toml_str(&src).map_err(|e| format!("{p}: {e}"))?
            }
            None => Matrix::builtin().map_err(|e| format!("built-in matrix: {e}"))?,
        };
        for lane in a.modes.keys() {
            if matrix.lane(lane).is_none() {
                return Err(format!("--mode names lane {lane}, which the matrix does not have"));
            }
        }
        let stock = match &a.stock {
            Some(p) => parse_stock(&read(p)?).map_err(|e| format!("{p}: {e}"))?,
            None => BTreeMap::new(),
        };
        let now_ms = match a.now_ms {
            Some(t) => t,
            None => now_from_clock()?,
        };
        let lane = matrix.lane_for(&a.shop, &order);
        let mode = a.modes.get(&lane.name).copied().or(a.all_lanes);
        let input = RouteInput {
            shop: &a.shop,
            order: &order,
            risk: a.risk,
            stock: &stock,
            email_orders_in_window: a.email_orders,
            mode,
        };
        let d = decide(&matrix, &input, now_ms);
        if a.json {
            let mut text = serde_json::to_string_pretty(&d).map_err(|e| format!("JSON: {e}"))?;
            text.push('\n');
            return Ok(text);
        }
        let mut out = String::new();
        let mode_src = if mode.is_some() { "from --mode" } else { "lane default; no flag" };
        out += &format!(
            "order          {} ({})\n",
            order.id,
            if order.name.is_empty() { "-" } else { &order.name }
        );
        out += &format!("lane           {}\n", d.lane);
        out += &format!("mode           {} ({mode_src})\n", d.mode);
        let target = match d.reason {
            Some(r) => format!("{}/{}", d.state, r),
            None => d.state.to_string(),
        };
        out += &format!("decision       {target}\n");
        if let Some((s, r)) = d.shadow {
            out +=
                &format!("shadow         rules alone: {}\n", r.map_or(s.to_string(), |r| format!("{s}/{r}")));
        }
        out += &format!("why            {}\n", d.explanation);
        if d.fired.is_empty() {
            out += "rules fired    none\n";
        } else {
            out += "rules fired\n";
            for h in &d.fired {
                let effect = match h.effect {
                    Effect::Hold(r) => format!("hold/{r}"),
                    Effect::Wait(s) => format!("wait in {s}"),
                    Effect::Note => "note".to_string(),
                };
                let mark = if Some(h.id) == d.primary_rule { "*" } else { " " };
                out += &format!("  {mark} {:<26} {:<20} {}\n", h.id, effect, h.explanation);
            }
        }
        if !d.reservations.is_empty() {
            out += "reserve\n";
            for (sku, q) in &d.reservations {
                out += &format!("    {sku} x{q}\n");
            }
        }
        out += &format!("evaluated at   {}\n", format_rfc3339_ms(now_ms));
        out += &format!("rules_version  {}\n", d.rules_version);
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const ORDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/orders-create.json");

        fn args(list: &[&str]) -> Vec<String> {
            list.iter().map(|s| s.to_string()).collect()
        }

        #[test]
        fn explains_the_shopify_sample() {
            let out = run(args(&[ORDER, "--now", "2022-01-01T01:00:00Z", "--mode", "auto"])).unwrap();
            assert!(out.contains("lane           default\n"), "{out}");
            assert!(out.contains("decision       cancelled\n"), "{out}");
            assert!(out.contains("* order.cancelled"), "{out}");
            assert!(out.contains("payment.failed_status"), "voided is listed too: {out}");
            assert!(out.contains(&format!("rules_version  {}\n", orderlane::core::rules::RULES_VERSION)));
            let json = run(args(&[ORDER, "--now", "2022-01-01T01:00:00Z", "--json"])).unwrap();
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(v["state"], "cancelled");
            assert_eq!(v["mode"], "manual", "the lane default applies without --mode");
        }

        #[test]
        fn bad_input_is_a_clear_error() {
            let cases: &[(&[&str], &str)] = &[
                (&[], "no order file"),
                (&["/nonexistent/order.json"], "/nonexistent/order.json"),
                (&[ORDER, "--risk", "extreme"], "--risk extreme"),
                (&[ORDER, "--mode", "eu=fast"], "--mode eu=fast"),
                (&[ORDER, "--mode", "mars=auto"], "lane mars"),
                (&[ORDER, "--now", "yesterday"], "--now yesterday"),
                (&[ORDER, "--email-orders", "-1"], "--email-orders"),
                (&[ORDER, "--frobnicate"], "unknown option"),
                (&[ORDER, "--stock"], "--stock needs a value"),
                (&[ORDER, ORDER], "unexpected argument"),
                (&[ORDER, "--matrix", ORDER], "route matrix"),
            ];
            for (argv, words) in cases {
                let err = run(args(argv)).unwrap_err();
                assert!(err.contains(words), "{argv:?}: {err}");
            }
        }

        #[test]
        fn stock_file_shape() {
            let s = parse_stock(br#"[{"sku":"A","available":3},{"sku":" B ","available":-1}]"#).unwrap();
            assert_eq!(s.get("A"), Some(&3));
            assert_eq!(s.get("B"), Some(&-1));
            assert!(parse_stock(br#"[{"sku":"A","available":1},{"sku":"A","available":2}]"#)
                .unwrap_err()
                .contains("twice"));
            assert!(parse_stock(br#"{"A":1}"#).is_err());
            assert!(parse_stock(br#"[{"sku":"A","available":1.5}]"#).is_err());
            assert!(parse_stock(br#"[{"sku":"","available":1}]"#).is_err());
            // A `wrangler d1 execute --json` export of the stock table reads the same.
            let export = br#"[{"results":[{"sku":"A","available":3},{"sku":"B","available":0}],"success":true,"meta":{}}]"#;
            let s = parse_stock(export).unwrap();
            assert_eq!((s.get("A"), s.get("B")), (Some(&3), Some(&0)));
        }
    }
}
