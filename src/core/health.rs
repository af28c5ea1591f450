//! Whether the two Workers run with the same configuration. The lane Worker hashes each value
//! it would read and sends the hashes to the ops Worker over their private service binding; the
//! ops Worker compares them with its own and answers with names only, so no secret and no hash
//! of one is ever in a public answer.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Every secret and var either Worker reads.
pub const CONFIG_NAMES: &[&str] = &[
    "ADMIN_TOKENS",
    "ALERT_FORMAT",
    "ALERT_URL",
    "ALLOWED_SHOPS",
    "ALLOW_CLOCK_OVERRIDE",
    "ALLOW_FAULTS",
    "BODY_RETENTION_DAYS",
    "CONSOLE_ORIGIN",
    "CONSOLE_SESSION_MINUTES",
    "CONSOLE_SESSION_SECRET",
    "EMAIL_HASH_KEY",
    "FULFILMENT_SECRET",
    "FULFILMENT_TIMEOUT_MS",
    "FULFILMENT_URL",
    "MODE_CACHE_MS",
    "RECONCILE_LOOKBACK_HOURS",
    "RECONCILE_MAX_PAGES",
    "RETRY_DELAY_SCALE",
    "SHOPIFY_ADMIN_ORIGIN",
    "SHOPIFY_ADMIN_TOKENS",
    "SHOPIFY_CLIENT_ID",
    "SHOPIFY_QUIET_MINUTES",
    "SHOPIFY_TIMEOUT_MS",
    "SHOPIFY_WEBHOOK_SECRET",
    "SHOPIFY_WEBHOOK_SECRET_PREVIOUS",
];

/// A hash of each configured value by name (`unset` for an absent or empty one).
pub fn fingerprints(read: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    CONFIG_NAMES
        .iter()
        .map(|name| {
            let print = match read(name) {
                Some(v) => {
                    let mut h = Sha256::new();
                    h.update(name.as_bytes());
                    h.update([0]);
                    h.update(v.as_bytes());
                    hex::encode(&h.finalize()[..12])
                }
                None => "unset".to_string(),
            };
            (name.to_string(), print)
        })
        .collect()
}

/// The names whose values differ between `mine` and `theirs` (a name one side lacks counts).
pub fn differing(mine: &BTreeMap<String, String>, theirs: &BTreeMap<String, String>) -> Vec<String> {
    let mut names: Vec<String> = mine
        .iter()
        .filter(|(k, v)| theirs.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(theirs.keys().filter(|k| !mine.contains_key(*k)).cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        fingerprints(|name| map.get(name).map(|v| v.to_string()))
    }

    #[test]
    fn the_same_configuration_differs_nowhere() {
        let a = config(&[("ADMIN_TOKENS", "ops:t1"), ("FULFILMENT_SECRET", "s")]);
        assert_eq!(differing(&a, &a.clone()), Vec::<String>::new());
        assert_eq!(a.len(), CONFIG_NAMES.len());
    }

    #[test]
    fn a_missing_or_changed_value_is_named_and_its_value_never_appears() {
        let lane =
            config(&[("ADMIN_TOKENS", "ops:t1"), ("FULFILMENT_SECRET", "s"), ("SHOPIFY_CLIENT_ID", "cid")]);
        let ops = config(&[("ADMIN_TOKENS", "ops:t2"), ("FULFILMENT_SECRET", "s")]);
        assert_eq!(differing(&lane, &ops), vec!["ADMIN_TOKENS", "SHOPIFY_CLIENT_ID"]);
        assert_eq!(differing(&ops, &lane), vec!["ADMIN_TOKENS", "SHOPIFY_CLIENT_ID"]);
        assert_eq!(ops["SHOPIFY_CLIENT_ID"], "unset");
        assert!(lane.values().all(|v| !v.contains("ops:t1") && !v.contains("cid")));
    }

    #[test]
    fn equal_values_under_different_names_hash_apart() {
        let a = config(&[("ADMIN_TOKENS", "x"), ("FULFILMENT_SECRET", "x")]);
        assert_ne!(a["ADMIN_TOKENS"], a["FULFILMENT_SECRET"]);
    }

    #[test]
    fn a_name_only_one_side_knows_counts_as_different() {
        let a = config(&[]);
        let mut b = a.clone();
        b.insert("NEW_SETTING".into(), "unset".into());
        assert_eq!(differing(&a, &b), vec!["NEW_SETTING"]);
    }

    #[test]
    fn every_name_the_edge_reads_is_compared() {
        // The edge reads configuration only through `config::text(env, "<NAME>")` and the
        // settings' `num("<NAME>", ...)`: every such name must be in CONFIG_NAMES.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/edge");
        let mut read = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
            for marker in ["text(env, \"", "text(&env, \"", "num(\""] {
                for part in text.split(marker).skip(1) {
                    if let Some(name) = part.split('"').next() {
                        read.push(name.to_string());
                    }
                }
            }
        }
        assert!(read.len() > 20, "found {read:?}");
        for name in read {
            assert!(CONFIG_NAMES.contains(&name.as_str()), "{name} is read by the edge but not compared");
        }
    }
}
