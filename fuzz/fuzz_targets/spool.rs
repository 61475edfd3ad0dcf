//! The spool's segment reader over arbitrary file bytes: the input is laid out as up to
//! three segment files and a cursor file in a scratch directory, the spool is opened
//! (which checks every segment), read to the end, acknowledged, appended to and read again.
//!
//! Input: byte 0 flags (bit 0: write a cursor from the next 16 bytes, its checksum made
//! right; bits 1-2: segments - 1; bit 3: put the segment magic in front of each segment;
//! bit 4: a small `max_bytes`, so appends drop the oldest records; bit 5: each segment is
//! written as records with correct checksums, see [`frame`]); then, for each segment
//! but the last, a 2-byte little-endian length and that many bytes; the last segment takes
//! the rest. Oracle: no panic; counts stay consistent (items never grow from reading).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use otel_sli::export::delivery::spool::{Record, Spool, SpoolConfig};
use otel_sli::telemetry::Signal;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

const MAGIC: &[u8; 8] = b"OTSLSPL1";

fn scratch() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        std::env::temp_dir().join(format!("otel-sli-fuzz-spool-{}", std::process::id()))
    })
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, tail) = data.split_at(n);
    *data = tail;
    head
}

/// Writes records with correct checksums: `body` is read as `[len: u8][items: u64 LE]
/// [signal: u8][flags: u8][len bytes]`, repeated, so the reader's checks past the checksum
/// are reached.
fn frame(mut body: &[u8], out: &mut Vec<u8>) {
    while body.len() >= 11 {
        let len = usize::from(body[0]);
        let meta = &body[1..11];
        body = &body[11..];
        let payload = take(&mut body, len);
        let mut h = crc32fast::Hasher::new();
        h.update(meta);
        h.update(payload);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&h.finalize().to_le_bytes());
        out.extend_from_slice(meta);
        out.extend_from_slice(payload);
    }
    out.extend_from_slice(body);
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    data = rest;
    let dir = scratch();
    let _ = std::fs::remove_dir_all(dir);
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    if flags & 1 == 1 {
        let mut c = take(&mut data, 16).to_vec();
        c.resize(16, 0);
        let crc = crc32fast::hash(&c);
        c.extend_from_slice(&crc.to_le_bytes());
        let _ = std::fs::write(dir.join("cursor"), &c);
    }
    let segments = usize::from((flags >> 1) & 3) + 1;
    for i in 0..segments {
        let body = if i + 1 == segments {
            take(&mut data, usize::MAX)
        } else {
            let len = take(&mut data, 2);
            let len = len
                .iter()
                .rev()
                .fold(0usize, |n, b| n << 8 | usize::from(*b));
            take(&mut data, len)
        };
        let mut file = Vec::with_capacity(body.len() + 8);
        if flags & 8 == 8 {
            file.extend_from_slice(MAGIC);
        }
        if flags & 32 == 32 {
            frame(body, &mut file);
        } else {
            file.extend_from_slice(body);
        }
        // Ids with gaps, as after a removed segment.
        let _ = std::fs::write(dir.join(format!("{:016x}.seg", i as u64 * 2 + 1)), &file);
    }
    let max = if flags & 16 == 16 { 256 } else { 1 << 20 };
    let cfg = SpoolConfig {
        dir: dir.clone(),
        max_bytes: max,
        segment_bytes: max / 2,
    };
    let Ok(mut spool) = Spool::open(cfg) else {
        return;
    };
    let now = Instant::now();
    let before = spool.items();
    let mut read = 0u64;
    while let Ok(Some((rec, pos))) = spool.read_next() {
        read = read.saturating_add(rec.items);
        if read > before {
            panic!("read {read} items from a spool that said it held {before}");
        }
        let _ = spool.ack(pos, rec.items, now);
    }
    let rec = Record {
        body: Bytes::from_static(b"appended after reading"),
        items: 3,
        signal: Some(Signal::Logs),
        gzipped: false,
    };
    let _ = spool.append(&rec);
    while let Ok(Some((got, pos))) = spool.read_next() {
        let _ = spool.ack(pos, got.items, now);
    }
    let _ = spool.take_lost();
    let _ = spool.bytes();
    let _ = spool.close(now);
});
