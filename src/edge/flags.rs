//! KV flags: a segment's routing mode, read by every decision (routing reuses a read for up
//! to `memo::MODE_CACHE_MS`) so that `wrangler kv key put --binding FLAGS segment:<name>:mode
//! manual` takes effect without a deploy.

use worker::kv::KvStore;

use crate::core::types::{mode_key, Mode};

pub struct Flags {
    kv: KvStore,
}

/// What KV holds for a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    Unset,
    Set(Mode),
    /// A value that is not a mode: treated as `manual` (the safe side) and logged.
    Invalid(String),
}

impl Flags {
    pub fn new(kv: KvStore) -> Self {
        Flags { kv }
    }

    pub async fn mode(&self, segment: &str) -> Result<Flag, String> {
        let raw = self.kv.get(&mode_key(segment)).text().await.map_err(|e| e.to_string())?;
        Ok(match raw {
            None => Flag::Unset,
            Some(v) => match Mode::parse(v.trim()) {
                Some(m) => Flag::Set(m),
                None => Flag::Invalid(v),
            },
        })
    }

    /// Writes the mode; this isolate's routing sees it at once (`memo`).
    pub async fn set_mode(&self, segment: &str, mode: Mode) -> Result<(), String> {
        self.kv
            .put(&mode_key(segment), mode.as_str())
            .map_err(|e| e.to_string())?
            .execute()
            .await
            .map_err(|e| e.to_string())?;
        super::memo::remember_mode(segment, Flag::Set(mode), super::context::now_ms());
        Ok(())
    }
}
