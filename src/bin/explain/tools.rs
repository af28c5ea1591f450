//! `explain test`, `explain lint`, `explain intake`, and the matrix loading they share.

use orderlane::core::rules::{cases, intake, lint as linter, Matrix};

/// The matrix built into this binary, as TOML (the same file the build validated).
pub const SHIPPED: &str = include_str!("../../../rules/matrix.toml");

/// The matrix at `path`, or the shipped one, with its source text (for lines).
pub fn load_matrix(path: Option<&str>) -> Result<(Matrix, String, String), String> {
    let (name, src) = match path {
        Some(p) => {
            let bytes = super::cli::read(p)?;
            (p.to_string(), String::from_utf8(bytes).map_err(|_| format!("{p}: not UTF-8"))?)
        }
        None => ("rules/matrix.toml (built in)".to_string(), SHIPPED.to_string()),
    };
    let m = Matrix::from_toml_str(&src).map_err(|e| format!("{name}: {e}"))?;
    Ok((m, src, name))
}

/// Flags and their values; `flags` are options without a value.
fn options(argv: Vec<String>, with_value: &[&str], flags: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        if with_value.contains(&a.as_str()) {
            let v = it.next().ok_or(format!("{a} needs a value"))?;
            out.push((a, v));
        } else if flags.contains(&a.as_str()) {
            out.push((a, String::new()));
        } else {
            return Err(format!("unknown option {a}"));
        }
    }
    Ok(out)
}

fn value<'a>(opts: &'a [(String, String)], flag: &str) -> Option<&'a str> {
    opts.iter().rev().find(|(k, _)| k == flag).map(|(_, v)| v.as_str())
}

/// Runs the rule cases (`rules/tests.toml`, bodies relative to the current directory).
pub fn test(argv: Vec<String>) -> Result<(String, i32), String> {
    let opts = options(argv, &["--matrix", "--cases"], &[])?;
    let (m, _, name) = load_matrix(value(&opts, "--matrix"))?;
    let path = value(&opts, "--cases").unwrap_or("rules/tests.toml");
    let src = String::from_utf8(super::cli::read(path)?).map_err(|_| format!("{path}: not UTF-8"))?;
    let list = cases::parse_cases(&src, &m).map_err(|e| format!("{path} {e}"))?;
    let root = std::path::Path::new(".");
    let load = cases::file_loader(root);
    let results = cases::run_cases(&m, &list, &load);
    let failed: Vec<String> = results.iter().filter(|r| !r.passed()).map(|r| r.failure_text(path)).collect();
    let mut out = String::new();
    for f in &failed {
        out += &format!("FAIL {f}\n");
    }
    out += &format!(
        "{} of {} cases hold against {name} ({})\n",
        results.len() - failed.len(),
        results.len(),
        m.rules_version
    );
    Ok((out, i32::from(!failed.is_empty())))
}

/// Lints a matrix; `--deny` makes any finding an exit status of 1.
pub fn lint(argv: Vec<String>) -> Result<(String, i32), String> {
    let opts = options(argv, &["--matrix"], &["--deny"])?;
    let deny = value(&opts, "--deny").is_some();
    let (m, src, name) = load_matrix(value(&opts, "--matrix"))?;
    let found = linter::lint(&m, &src);
    let mut out = String::new();
    let level = if deny { "error" } else { "warning" };
    for f in &found {
        out += &format!("{level}: {name} {f}\n");
    }
    out += &format!("{}: {} finding(s)\n", name, found.len());
    Ok((out, i32::from(deny && !found.is_empty())))
}

/// Prints the intake map as the README's markdown table.
pub fn intake(argv: Vec<String>) -> Result<(String, i32), String> {
    let opts = options(argv, &["--matrix"], &[])?;
    let (m, _, _) = load_matrix(value(&opts, "--matrix"))?;
    Ok((intake::markdown(&m), 0))
}
