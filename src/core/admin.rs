//! Operator authentication: `ADMIN_TOKENS` holds `name:token` pairs; a request's bearer
//! token names the actor written to the audit log as `user:<name>`.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Default)]
pub struct AdminTokens {
    /// (name, SHA-256 of the token). Comparing digests keeps the comparison length-independent.
    entries: Vec<(String, [u8; 32])>,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Byte-wise comparison that always looks at every byte.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AdminTokens {
    /// Parses `name:token,name:token`. Entries without a name or token, or with characters
    /// outside `[A-Za-z0-9_.-]` in the name, are skipped (they would make ambiguous actors).
    pub fn parse(spec: &str) -> AdminTokens {
        let entries = spec
            .split(',')
            .filter_map(|pair| {
                let (name, token) = pair.trim().split_once(':')?;
                let (name, token) = (name.trim(), token.trim());
                let valid_name = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
                (valid_name && token.len() >= 8).then(|| (name.to_string(), digest(token)))
            })
            .collect();
        AdminTokens { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The token's name for an `Authorization` header value, checking every configured token
    /// (no early exit) so timing does not reveal which one nearly matched.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<&str> {
        let token = authorization?.trim().strip_prefix("Bearer ")?.trim();
        self.token(token).map(|(name, _)| name)
    }

    /// The name and digest of a bare token (the console's sign-in form), in constant time
    /// over the configured tokens.
    pub fn token(&self, token: &str) -> Option<(&str, [u8; 32])> {
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        let given = digest(token);
        let mut found = None;
        for (name, want) in &self.entries {
            if ct_eq(&given, want) && found.is_none() {
                found = Some((name.as_str(), *want));
            }
        }
        found
    }

    /// The digest of the token currently configured under `name`: a console session is bound
    /// to it, so rotating or removing a token ends the sessions it opened.
    pub fn digest_of(&self, name: &str) -> Option<[u8; 32]> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, d)| *d)
    }
}

/// The audit actor for an operator name.
pub fn actor(name: &str) -> String {
    format!("user:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_actor_of_a_valid_token() {
        let t = AdminTokens::parse(" ops:ops-token-123 , reviewer:rev-token-456,bad,:nameless1,x:short");
        assert_eq!(t.authenticate(Some("Bearer ops-token-123")), Some("ops"));
        assert_eq!(t.authenticate(Some("Bearer rev-token-456")), Some("reviewer"));
        assert_eq!(t.authenticate(Some("Bearer short")), None, "tokens under 8 chars are not loaded");
        assert_eq!(t.authenticate(Some("Bearer nameless1")), None);
        assert_eq!(t.entries.len(), 2);
        assert_eq!(actor("ops"), "user:ops");
    }

    #[test]
    fn refuses_everything_else() {
        let t = AdminTokens::parse("ops:ops-token-123");
        for h in [
            None,
            Some(""),
            Some("Bearer "),
            Some("ops-token-123"),
            Some("Basic ops-token-123"),
            Some("Bearer ops-token-12"),
            Some("Bearer ops-token-1234"),
            Some("bearer ops-token-123"),
        ] {
            assert_eq!(t.authenticate(h), None, "{h:?}");
        }
        assert!(AdminTokens::parse("").is_empty());
        assert_eq!(AdminTokens::parse("").authenticate(Some("Bearer anything")), None);
    }
}
