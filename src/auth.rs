//! Bearer-token authentication of the OTLP receivers and the admin API
//! (`receivers.auth`, `admin.auth`). A [`Token`] keeps only the SHA-256 digest of the
//! configured secret, never the secret itself, so no log line, error, `Debug` output or
//! configuration dump can show it; a presented token is hashed and the digests compared in
//! constant time.

use ring::digest::{digest, SHA256};

/// A configured bearer token (its digest only).
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// Equal, in time that does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Token {
    /// The token `secret` (surrounding whitespace, such as a file's final newline, is not
    /// part of it); `None` when nothing is left.
    pub fn new(secret: &str) -> Option<Self> {
        let s = secret.trim();
        (!s.is_empty()).then(|| Self {
            digest: sha256(s.as_bytes()),
        })
    }

    /// True when `authorization` (an `Authorization` header value) is `Bearer <this token>`.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(rest) = value
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|_| &value[7..])
        else {
            return false;
        };
        let presented = rest.trim_ascii();
        constant_time_eq(&self.digest, &sha256(presented))
    }
}

/// Whether a request's `Authorization` header passes `required` (`None`: no check).
pub fn allowed(required: Option<&Token>, authorization: Option<&[u8]>) -> bool {
    required.is_none_or(|t| t.admits(authorization))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_bearer_token_is_admitted() {
        let t = Token::new("s3cret-token\n").expect("token");
        assert!(t.admits(Some(b"Bearer s3cret-token")));
        assert!(t.admits(Some(b"bearer s3cret-token ")));
        for bad in [
            &b"Bearer s3cret-tokeN"[..],
            b"Bearer s3cret-token2",
            b"Bearer ",
            b"Basic s3cret-token",
            b"s3cret-token",
            b"Bearer",
            b"",
        ] {
            assert!(!t.admits(Some(bad)), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(!t.admits(None));
        assert!(allowed(None, None));
        assert!(!allowed(Some(&t), None));
    }

    #[test]
    fn an_empty_secret_is_no_token_and_debug_never_shows_it() {
        assert!(Token::new("  \n").is_none());
        let t = Token::new("s3cret-token").expect("token");
        let shown = format!("{t:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
