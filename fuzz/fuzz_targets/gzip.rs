//! The capped gzip decompression of request bodies.
//!
//! Input: one byte picking the cap, one byte choosing whether the rest is sent as is or
//! gzip-compressed first (so both corrupt streams and bombs of every size are reached).
//! Oracle: no panic; output never exceeds the cap; `TooLarge` only when the stream really
//! decompresses to more than the cap; a compressed input within the cap comes back intact.
#![no_main]

use flate2::write::GzEncoder;
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use otel_sli::receiver::decode::{gunzip_limited, DecompressError};
use std::io::Write;

const CAPS: [usize; 6] = [0, 1, 64, 4096, 1 << 16, 1 << 20];

fuzz_target!(|data: &[u8]| {
    let [cap, mode, rest @ ..] = data else {
        return;
    };
    let limit = CAPS[usize::from(*cap) % CAPS.len()];
    let compressed;
    let body: &[u8] = if mode & 1 == 1 {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        // A short input repeated: a small, well-compressing stream that may exceed the cap.
        // At most 2 MiB of plain text (twice the largest cap), so one run stays fast.
        let times = (usize::from(mode >> 1) * 128 + 1).min((2 << 20) / rest.len().max(1));
        for _ in 0..times {
            let _ = e.write_all(rest);
        }
        compressed = e.finish().unwrap_or_default();
        if rest.len() * times <= limit {
            let out = gunzip_limited(&compressed, limit);
            assert_eq!(
                out.map(|o| o.len()),
                Ok(rest.len() * times),
                "within the cap"
            );
        } else {
            assert_eq!(
                gunzip_limited(&compressed, limit),
                Err(DecompressError::TooLarge { limit }),
                "over the cap"
            );
        }
        &compressed
    } else {
        rest
    };
    match gunzip_limited(body, limit) {
        Ok(out) => assert!(
            out.len() <= limit,
            "output {} over the cap {limit}",
            out.len()
        ),
        Err(DecompressError::TooLarge { limit: l }) => assert_eq!(l, limit),
        Err(DecompressError::Corrupt(_)) => {}
    }
});
