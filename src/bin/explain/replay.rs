//! `explain replay`: a corpus decided under two matrices, the diff, and a gate over it.

use std::path::Path;

use orderlane::core::order::RiskLevel;
use orderlane::core::rules::replay::{self, At, Entry, Max, Options, TransitionLimit};
use orderlane::core::time::parse_rfc3339_ms;

/// Reads every corpus path: a folder (its `*.json` files, by name) or a file.
fn read_corpus(paths: &[String]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for p in paths {
        let path = Path::new(p);
        let files: Vec<std::path::PathBuf> = if path.is_dir() {
            let mut f: Vec<_> = std::fs::read_dir(path)
                .map_err(|e| format!("{p}: {e}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "json"))
                .collect();
            f.sort();
            f
        } else {
            vec![path.to_path_buf()]
        };
        for f in files {
            let name = f.display().to_string();
            let bytes = std::fs::read(&f).map_err(|e| format!("{name}: {e}"))?;
            out.extend(replay::entries_from_file(&name, &bytes)?);
        }
    }
    Ok(out)
}

pub fn run(argv: Vec<String>) -> Result<(String, i32), String> {
    let mut corpus = Vec::new();
    let (mut baseline, mut candidate) = (None, None);
    let mut opt =
        Options { shop: "unknown.myshopify.com".into(), risk: None, stock: None, at: At::AfterCreated(0) };
    let mut max_changed = None;
    let mut limits = Vec::new();
    let (mut json, mut changed_only) = (false, false);
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--baseline" => baseline = Some(value("--baseline")?),
            "--candidate" => candidate = Some(value("--candidate")?),
            "--shop" => opt.shop = value("--shop")?.trim().to_ascii_lowercase(),
            "--risk" => {
                let v = value("--risk")?;
                opt.risk = Some(
                    RiskLevel::parse(&v).ok_or(format!("--risk {v}: not high|medium|low|none|pending"))?,
                );
            }
            "--stock" => {
                let p = value("--stock")?;
                opt.stock =
                    Some(super::cli::parse_stock(&super::cli::read(&p)?).map_err(|e| format!("{p}: {e}"))?);
            }
            "--after" => {
                let v = value("--after")?;
                let m: i64 = v
                    .parse()
                    .ok()
                    .filter(|m| *m >= 0)
                    .ok_or(format!("--after {v}: not a number of minutes"))?;
                opt.at = At::AfterCreated(m);
            }
            "--now" => {
                let v = value("--now")?;
                opt.at = At::Fixed(
                    parse_rfc3339_ms(&v).ok_or(format!("--now {v}: not an RFC 3339 time with offset"))?,
                );
            }
            "--max-changed" => {
                let v = value("--max-changed")?;
                max_changed =
                    Some(Max::parse(&v).ok_or(format!("--max-changed {v}: not a count or a percentage"))?);
            }
            "--max-transition" => limits.push(
                TransitionLimit::parse(&value("--max-transition")?)
                    .map_err(|e| format!("--max-transition {e}"))?,
            ),
            "--json" => json = true,
            "--changed-only" => changed_only = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => corpus.push(path.to_string()),
        }
    }
    if corpus.is_empty() {
        return Err("replay needs a corpus: a folder of order bodies or a D1 export".into());
    }
    let (base, _, base_name) =
        super::tools::load_matrix(Some(&baseline.ok_or("replay needs --baseline FILE")?))?;
    let (cand, _, cand_name) =
        super::tools::load_matrix(Some(&candidate.ok_or("replay needs --candidate FILE")?))?;
    let entries = read_corpus(&corpus)?;
    if entries.is_empty() {
        return Err(format!("no order bodies in {}", corpus.join(", ")));
    }
    let report = replay::replay(&base, &cand, &entries, &opt);
    let violations = replay::gate(&report, max_changed, &limits);
    let code = i32::from(!violations.is_empty());
    if json {
        let v = serde_json::json!({
            "baseline": {"file": base_name, "rules_version": report.baseline_version},
            "candidate": {"file": cand_name, "rules_version": report.candidate_version},
            "orders": report.rows,
            "unreadable": report.unreadable,
            "repeated_bodies": report.duplicates,
            "changed": report.changed,
            "rules_only": report.rules_only,
            "transitions": report.transitions.iter().map(|((f, t), n)| serde_json::json!({"from": f, "to": t, "orders": n})).collect::<Vec<_>>(),
            "lane_moves": report.lane_moves.iter().map(|((f, t), n)| serde_json::json!({"from": f, "to": t, "orders": n})).collect::<Vec<_>>(),
            "exception_rate": report.rates.iter().map(|(l, b, c)| serde_json::json!({"lane": l, "baseline": b, "candidate": c})).collect::<Vec<_>>(),
            "gate": {"passed": violations.is_empty(), "violations": violations},
        });
        let mut text = serde_json::to_string_pretty(&v).map_err(|e| format!("JSON: {e}"))?;
        text.push('\n');
        return Ok((text, code));
    }
    let when = match opt.at {
        At::AfterCreated(0) => "at each order's created_at".to_string(),
        At::AfterCreated(m) => format!("{m} min after each order's created_at"),
        At::Fixed(t) => format!("at {}", orderlane::core::time::format_rfc3339_ms(t)),
    };
    let stock = if opt.stock.is_some() { "from --stock" } else { "every SKU in stock" };
    let risk = opt.risk.map_or("none yet", |r| r.as_str());
    let mut out = format!(
        "replay of {} bodies: baseline {base_name} ({}), candidate {cand_name} ({})\n\
         decided as auto lanes {when}; stock: {stock}; risk where the export has none: {risk}\n\n",
        entries.len(),
        report.baseline_version,
        report.candidate_version
    );
    out += &replay::render(&report, changed_only);
    if max_changed.is_some() || !limits.is_empty() {
        if violations.is_empty() {
            out += "\ngate: passed\n";
        } else {
            out += "\ngate: FAILED\n";
            for v in &violations {
                out += &format!("  {v}\n");
            }
        }
    }
    Ok((out, code))
}
