//! Series keys: the labels that identify one SLI series, encoded as one flat byte string.
//!
//! Encoding: for each label in order (service, feature, then configured dimensions), a
//! little-endian `u16` length followed by the UTF-8 bytes. The encoding is unambiguous, cheap
//! to build into a reusable buffer on the hot path, and hashed once with [`hash_key`] for
//! both shard routing and the shard's series table. This module owns nothing else.

use std::hash::BuildHasher;

/// The process's key hasher: one random seed, drawn at first use, shared by every receiver
/// task and shard so they agree on a key's hash, yet unpredictable from outside, so clients
/// cannot precompute colliding keys to slow the series tables down.
fn hasher() -> &'static foldhash::fast::FixedState {
    static HASHER: std::sync::OnceLock<foldhash::fast::FixedState> = std::sync::OnceLock::new();
    HASHER.get_or_init(|| {
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x6f74_656c_u64);
        foldhash::fast::FixedState::with_seed(seed)
    })
}

/// Hashes an encoded key. Deterministic within a process.
#[inline]
pub fn hash_key(key: &[u8]) -> u64 {
    hasher().hash_one(key)
}

/// Appends one label value, cut to at most `max_bytes` at a character boundary.
#[inline]
pub fn push_label(buf: &mut Vec<u8>, value: &str, max_bytes: usize) {
    let cut = floor_char_boundary(value, max_bytes.min(u16::MAX as usize));
    let v = &value.as_bytes()[..cut];
    // `cut` ≤ u16::MAX by construction.
    buf.extend_from_slice(&(v.len() as u16).to_le_bytes());
    buf.extend_from_slice(v);
}

/// Starts a label whose bytes the caller appends, returning the position to finish with
/// [`finish_label`].
#[inline]
pub fn begin_label(buf: &mut Vec<u8>) -> usize {
    buf.extend_from_slice(&[0, 0]);
    buf.len()
}

/// Finishes a label begun with [`begin_label`]: cuts it to `max_bytes` at a character
/// boundary (the appended bytes must be UTF-8) and writes its length.
#[inline]
pub fn finish_label(buf: &mut Vec<u8>, start: usize, max_bytes: usize) {
    let written = buf.len().saturating_sub(start);
    let limit = max_bytes.min(u16::MAX as usize);
    if written > limit {
        let text = std::str::from_utf8(&buf[start..]).unwrap_or("");
        let cut = floor_char_boundary(text, limit);
        buf.truncate(start + cut);
    }
    let len = (buf.len() - start) as u16;
    if let Some(slot) = buf.get_mut(start - 2..start) {
        slot.copy_from_slice(&len.to_le_bytes());
    }
}

/// `value` cut to at most `max_bytes` at a character boundary.
pub fn truncated(value: &str, max_bytes: usize) -> &str {
    &value[..floor_char_boundary(value, max_bytes)]
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut i = max;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Iterates the label values of an encoded key, in order.
pub fn labels(key: &[u8]) -> impl Iterator<Item = &str> {
    let mut rest = key;
    std::iter::from_fn(move || {
        let len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
        let value = rest.get(2..2 + len)?;
        rest = &rest[2 + len..];
        Some(std::str::from_utf8(value).unwrap_or(""))
    })
}

/// Encodes a whole key from label values. For tests and cold paths.
pub fn encode<'a>(values: impl IntoIterator<Item = &'a str>, max_bytes: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    for v in values {
        push_label(&mut buf, v, max_bytes);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_labels() {
        let k = encode(["checkout", "GET /cart", ""], 256);
        assert_eq!(
            labels(&k).collect::<Vec<_>>(),
            ["checkout", "GET /cart", ""]
        );
    }

    #[test]
    fn encoding_is_unambiguous() {
        assert_ne!(encode(["ab", "c"], 256), encode(["a", "bc"], 256));
        assert_ne!(
            hash_key(&encode(["ab", "c"], 256)),
            hash_key(&encode(["a", "bc"], 256))
        );
    }

    #[test]
    fn cuts_at_char_boundary() {
        let k = encode(["héllo"], 2);
        assert_eq!(labels(&k).collect::<Vec<_>>(), ["h"]);
        let mut buf = Vec::new();
        let s = begin_label(&mut buf);
        buf.extend_from_slice("héllo".as_bytes());
        finish_label(&mut buf, s, 3);
        assert_eq!(labels(&buf).collect::<Vec<_>>(), ["hé"]);
    }

    #[test]
    fn truncated_key_stops_iteration() {
        let mut k = encode(["abc", "def"], 256);
        k.truncate(k.len() - 1);
        assert_eq!(labels(&k).collect::<Vec<_>>(), ["abc"]);
    }
}
