//! Turns `rules/matrix.toml` into JSON for the Worker, so the wasm never carries a TOML
//! parser. The matrix is parsed and validated here with the same schema the crate uses;
//! a syntax, type or semantic error fails the build and names the line.
//!
//! Then it runs the rule cases of `rules/tests.toml` through the crate's own `decide` (the
//! pure core is compiled into this script): a case that does not hold fails the build,
//! naming the case, its line and the rules that fired. The matrix linter's findings are
//! printed as warnings (`explain lint --deny` makes them errors).
//!
//! Outputs in OUT_DIR: `matrix.json` and `rules_version.txt` (first 12 hex chars of the
//! SHA-256 of the TOML bytes).

use std::path::Path;

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "src/core/mod.rs"]
mod core;

use crate::core::rules::{cases, lint};

const MATRIX: &str = "rules/matrix.toml";
const CASES: &str = "rules/tests.toml";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(orderlane_built)");
    for f in ["rules", "tests/fixtures", "src/core"] {
        println!("cargo::rerun-if-changed={f}");
    }
    match run() {
        Ok(warnings) => {
            for w in warnings {
                println!("cargo::warning={w}");
            }
            // The crate proper may now include the generated files.
            println!("cargo::rustc-cfg=orderlane_built");
        }
        Err(msg) => {
            // A build script reports failure by exiting non-zero; the message is what a
            // reviewer sees in the cargo output.
            eprintln!("error: {msg}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<Vec<String>, String> {
    let root = std::env::var("CARGO_MANIFEST_DIR").map_err(|e| format!("CARGO_MANIFEST_DIR: {e}"))?;
    let root = Path::new(&root);
    let source = std::fs::read_to_string(root.join(MATRIX)).map_err(|e| format!("{MATRIX}: {e}"))?;
    let matrix = crate::core::rules::Matrix::from_toml_str(&source).map_err(|e| format!("{MATRIX}: {e}"))?;
    let json = serde_json::to_string(&matrix).map_err(|e| format!("matrix to JSON: {e}"))?;
    let out = std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?;
    let out = Path::new(&out);
    std::fs::write(out.join("matrix.json"), json).map_err(|e| format!("write matrix.json: {e}"))?;
    std::fs::write(out.join("rules_version.txt"), &matrix.rules_version)
        .map_err(|e| format!("write rules_version.txt: {e}"))?;

    let tests = std::fs::read_to_string(root.join(CASES)).map_err(|e| format!("{CASES}: {e}"))?;
    // A case may read a body from outside tests/fixtures: rerun when it changes too.
    if let Ok(list) = cases::parse_cases(&tests, &matrix) {
        for c in list {
            if let cases::Source::Body(p) = c.source {
                println!("cargo::rerun-if-changed={p}");
            }
        }
    }
    cases::check_file(&matrix, CASES, &tests, &cases::file_loader(root))?;
    Ok(lint::lint(&matrix, &source).iter().map(|f| format!("{MATRIX} {f}")).collect())
}
