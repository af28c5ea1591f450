//! Turns `rules/matrix.toml` into JSON for the Worker, so the wasm never carries a TOML
//! parser. The matrix is parsed and validated here with the same schema the crate uses;
//! a syntax, type or semantic error fails the build and names the line.
//!
//! Outputs in OUT_DIR: `matrix.json` and `rules_version.txt` (first 12 hex chars of the
//! SHA-256 of the TOML bytes).

use std::path::Path;

#[allow(dead_code)]
#[path = "src/core/types.rs"]
mod types;

#[allow(dead_code)]
mod rules {
    #[path = "../src/core/rules/countries.rs"]
    pub mod countries;
    #[path = "../src/core/rules/matrix.rs"]
    pub mod matrix;
}

const MATRIX: &str = "rules/matrix.toml";

fn main() {
    for f in [MATRIX, "src/core/rules/matrix.rs", "src/core/rules/countries.rs", "src/core/types.rs"] {
        println!("cargo:rerun-if-changed={f}");
    }
    if let Err(msg) = run() {
        // A build script reports failure by exiting non-zero; the message is what a
        // reviewer sees in the cargo output.
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let source = std::fs::read_to_string(MATRIX).map_err(|e| format!("{MATRIX}: {e}"))?;
    let mut matrix: rules::matrix::Matrix = toml::from_str(&source).map_err(|e| {
        let line = e.span().map(|s| rules::matrix::line_of_offset(&source, s.start));
        match line {
            Some(l) => format!("{MATRIX} line {l}: {}", e.message().trim()),
            None => format!("{MATRIX}: {}", e.message().trim()),
        }
    })?;
    matrix.validate_source(&source).map_err(|e| format!("{MATRIX}: {e}"))?;
    matrix.rules_version = rules::matrix::rules_version_of(source.as_bytes());
    let json = serde_json::to_string(&matrix).map_err(|e| format!("matrix to JSON: {e}"))?;
    let out = std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?;
    let out = Path::new(&out);
    std::fs::write(out.join("matrix.json"), json).map_err(|e| format!("write matrix.json: {e}"))?;
    std::fs::write(out.join("rules_version.txt"), &matrix.rules_version)
        .map_err(|e| format!("write rules_version.txt: {e}"))?;
    Ok(())
}
