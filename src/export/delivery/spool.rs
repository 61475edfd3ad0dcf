//! The disk spool of one upstream: payloads that could not stay in memory (the upstream is
//! failing, or its memory queue is full) are appended to checksummed segment files under
//! `storage.directory/spool/<exporter>/` and read back, oldest first, once the upstream
//! takes them again, also after a restart.
//!
//! This is plain synchronous file code; the delivery queue's async shell decides when to
//! append, read and acknowledge (see [`crate::export::delivery`]). It owns the files of its
//! directory and nothing else.
//!
//! Layout: `lock` is held (an advisory file lock) while a process uses the folder; segments
//! `<id>.seg` (16 hex digits, increasing) start with the magic
//! `OTSLSPL1`; each record is `len: u32 LE | crc32: u32 LE | items: u64 LE | signal: u8 |
//! flags: u8 | body[len]`, the CRC covering everything after itself. `cursor` holds the
//! position up to which records were delivered (segment id, offset, CRC-32), replaced
//! atomically.
//!
//! Durability: every record is handed to the kernel with one `write` when it is appended,
//! so a crash of the process (`SIGKILL`, OOM) loses nothing that was appended; a segment is
//! `fsync`ed when it is full and when the spool is closed, so a power loss can lose the
//! unsynced tail of the newest segment. The cursor is written at most once a second and on
//! close: after a crash, records delivered since its last write are delivered again
//! (at-least-once). A torn record (a crash in the middle of a write) is cut off and its
//! items, read from its header, are counted as lost; a corrupt record ends its segment's
//! readable part: its items are counted and the bytes after it are logged as lost.

use crate::config::units::ByteSize;
use crate::telemetry::Signal;
use bytes::Bytes;
use serde::Deserialize;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// `spool:` of a forwarder or exporter: payloads that cannot be delivered now are kept on
/// disk under `storage.directory/spool/` and sent when the upstream takes them again, also
/// after a restart.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSpool {
    /// Disk space at most; when it is reached the oldest spooled data is dropped (and
    /// counted). At least `1MiB`. Default `1GiB`.
    pub max_bytes: Option<ByteSize>,
}

const MAGIC: &[u8; 8] = b"OTSLSPL1";
const HEADER: u64 = 18;
const CURSOR: &str = "cursor";
const LOCK: &str = "lock";
/// How often, at most, the delivered position is written while records are acknowledged.
const CURSOR_EVERY: Duration = Duration::from_secs(1);
/// Record flag: the body is gzip-compressed as it will be sent.
const FLAG_GZIP: u8 = 1;

/// Settings of one spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    /// The spool's own directory (created if missing).
    pub dir: PathBuf,
    /// Bytes on disk at most; beyond it the oldest records are dropped.
    pub max_bytes: u64,
    /// Size at which a segment is closed and a new one started.
    pub segment_bytes: u64,
}

impl SpoolConfig {
    /// A spool in `dir` holding at most `max_bytes`, in segments of an eighth of it
    /// (between 64 KiB and 64 MiB).
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self {
            dir,
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(64 << 10, 64 << 20),
        }
    }
}

/// Default `spool.max_bytes`.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Validates `spool:` at key path `at` for the upstream whose spool directory is
/// `storage/spool/<name>`.
pub fn validate(
    raw: Option<&RawSpool>,
    at: &str,
    storage: Option<&Path>,
    name: &str,
) -> Result<Option<SpoolConfig>, crate::config::ConfigError> {
    use crate::config::invalid_key;
    let Some(raw) = raw else {
        return Ok(None);
    };
    let max_bytes = raw.max_bytes.map_or(DEFAULT_MAX_BYTES, |b| b.0);
    if max_bytes < 1 << 20 {
        return Err(invalid_key(
            &format!("{at}.max_bytes"),
            "must be at least 1MiB",
        ));
    }
    let Some(storage) = storage else {
        return Err(invalid_key(
            at,
            "needs storage.directory (the spool lives in its spool/ folder)",
        ));
    };
    Ok(Some(SpoolConfig::new(
        storage.join("spool").join(name),
        max_bytes,
    )))
}

/// The spool folder name of a forwarder: stable when `forward:` entries are reordered, so
/// what was spooled for one upstream is never sent to another.
pub fn forward_dir_name(endpoint: &str, protocol: &str) -> String {
    format!(
        "forward-{:08x}",
        crc32fast::hash(format!("{protocol} {endpoint}").as_bytes())
    )
}

/// A spool that could not be used.
#[derive(Debug, Error)]
#[error("spool {dir}: {what}: {source}")]
pub struct SpoolError {
    dir: String,
    what: &'static str,
    source: io::Error,
}

fn err<'a>(dir: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError {
        dir: dir.display().to_string(),
        what,
        source,
    }
}

/// One payload as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The request body.
    pub body: Bytes,
    /// Items in it.
    pub items: u64,
    /// Its OTLP signal, if any.
    pub signal: Option<Signal>,
    /// The body is already gzip-compressed.
    pub gzipped: bool,
}

/// Where a record ends: acknowledging it means everything up to here was delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Segment id.
    pub segment: u64,
    /// Offset just past the record.
    pub offset: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// Readable length (valid records only).
    len: u64,
    /// Items in its records.
    items: u64,
}

/// What was lost, for the drop counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Items dropped to stay under `max_bytes`.
    pub full: u64,
    /// Items in records that could not be read back (torn or corrupt).
    pub corrupt: u64,
}

/// The spool: segments on disk, a read position and a delivered position.
#[derive(Debug)]
pub struct Spool {
    cfg: SpoolConfig,
    /// Oldest first; the last one takes appends.
    segments: VecDeque<Segment>,
    writer: Option<File>,
    next_id: u64,
    /// Next record to read.
    read: Position,
    /// Items read from the segment of `read`.
    read_items: u64,
    reader: Option<(u64, File)>,
    /// Delivered up to here.
    acked: Position,
    /// Items acknowledged in the segment of `acked`.
    acked_items_in_head: u64,
    cursor_written: Option<Instant>,
    cursor_dirty: bool,
    lost: Lost,
    /// Full segments not yet synced.
    sealed: Vec<File>,
    /// Held (locked) while the spool is open.
    _lock: File,
}

fn seg_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

fn crc(meta: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(meta);
    h.update(body);
    h.finalize()
}

fn signal_code(s: Option<Signal>) -> u8 {
    match s {
        None => 0,
        Some(Signal::Traces) => 1,
        Some(Signal::Metrics) => 2,
        Some(Signal::Logs) => 3,
    }
}

fn signal_of(code: u8) -> Option<Option<Signal>> {
    match code {
        0 => Some(None),
        1 => Some(Some(Signal::Traces)),
        2 => Some(Some(Signal::Metrics)),
        3 => Some(Some(Signal::Logs)),
        _ => None,
    }
}

/// Reads one record at the reader's position. A torn or corrupt record is an error that
/// carries the item count of its header, when the header could be read.
fn read_record(r: &mut impl Read, limit: u64) -> Result<(Record, u64), Option<u64>> {
    let mut h = [0u8; HEADER as usize];
    r.read_exact(&mut h).map_err(|_| None)?;
    let mut items = [0u8; 8];
    items.copy_from_slice(&h[8..16]);
    let items = u64::from_le_bytes(items);
    // A header's count is believed only within reason: it may be the damaged part.
    let claimed = (items < 1 << 32).then_some(items);
    let len = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
    if HEADER + len > limit {
        return Err(claimed);
    }
    let want = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let mut body = vec![0u8; usize::try_from(len).map_err(|_| claimed)?];
    r.read_exact(&mut body).map_err(|_| claimed)?;
    if crc(&h[8..], &body) != want {
        return Err(claimed);
    }
    let rec = Record {
        body: Bytes::from(body),
        items,
        signal: signal_of(h[16]).ok_or(claimed)?,
        gzipped: h[17] & FLAG_GZIP != 0,
    };
    Ok((rec, HEADER + len))
}

impl Spool {
    /// Opens (or creates) the spool in `cfg.dir`, checking every segment and skipping what
    /// the cursor says was delivered. Torn records at the end of a segment (a crash during
    /// a write) are cut off and counted in [`Spool::take_lost`].
    pub fn open(cfg: SpoolConfig) -> Result<Self, SpoolError> {
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir).map_err(err(&dir, "cannot create the directory"))?;
        // One user per folder: two processes (or exporters) on the same spool would delete
        // each other's segments.
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))
            .map_err(err(&dir, "cannot open the lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(SpoolError {
                    dir: dir.display().to_string(),
                    what: "in use",
                    source: io::Error::other(
                        "another otel-sli process (or exporter) holds this spool; give each its own storage.directory",
                    ),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(err(&dir, "cannot lock the folder")(e)),
        }
        let mut ids = Vec::new();
        for e in fs::read_dir(&dir).map_err(err(&dir, "cannot list the directory"))? {
            let e = e.map_err(err(&dir, "cannot list the directory"))?;
            let name = e.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
                continue;
            };
            if let Ok(id) = u64::from_str_radix(stem, 16) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let acked = read_cursor(&dir.join(CURSOR));
        let mut s = Spool {
            next_id: 0,
            cfg,
            segments: VecDeque::new(),
            writer: None,
            read: Position {
                segment: 0,
                offset: 0,
            },
            read_items: 0,
            reader: None,
            acked: Position {
                segment: 0,
                offset: 0,
            },
            acked_items_in_head: 0,
            cursor_written: None,
            cursor_dirty: false,
            lost: Lost::default(),
            sealed: Vec::new(),
            _lock: lock,
        };
        for id in ids {
            let path = dir.join(seg_name(id));
            if acked.is_some_and(|a| id < a.segment) {
                // Delivered before the last stop.
                let _ = fs::remove_file(&path);
                continue;
            }
            let skip = acked.filter(|a| a.segment == id).map_or(0, |a| a.offset);
            s.load_segment(id, &path, skip)?;
        }
        // New segments come after every segment on disk and after the one the cursor names
        // (it may have been deleted, fully delivered): a new segment must never reuse an id
        // that the cursor would skip.
        let after = |id: u64| {
            id.checked_add(1).ok_or_else(|| SpoolError {
                dir: dir.display().to_string(),
                what: "segment ids exhausted",
                source: io::Error::other("remove the spool folder"),
            })
        };
        s.next_id = match (s.segments.back(), acked) {
            (Some(last), Some(a)) => after(last.id.max(a.segment))?,
            (Some(last), None) => after(last.id)?,
            (None, Some(a)) => after(a.segment)?,
            (None, None) => 0,
        };
        s.read = s.head_start();
        s.acked = s.read;
        // The newest segment keeps taking appends.
        if let Some(last) = s.segments.back() {
            let path = dir.join(seg_name(last.id));
            let f = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(err(&dir, "cannot open a segment"))?;
            s.writer = Some(f);
        }
        s.update_empty();
        Ok(s)
    }

    /// Checks one segment from `skip` on, keeping its valid part.
    fn load_segment(&mut self, id: u64, path: &Path, skip: u64) -> Result<(), SpoolError> {
        let dir = self.cfg.dir.clone();
        let mut f = File::open(path).map_err(err(&dir, "cannot open a segment"))?;
        let size = f
            .metadata()
            .map_err(err(&dir, "cannot read a segment"))?
            .len();
        let mut magic = [0u8; 8];
        if f.read_exact(&mut magic).is_err() || &magic != MAGIC {
            tracing::warn!(segment = %path.display(), "spool segment without a valid header; removed");
            let _ = fs::remove_file(path);
            return Ok(());
        }
        let skip = if skip > size {
            tracing::warn!(
                segment = %path.display(),
                "spool cursor lies beyond the segment's end; the segment is sent again from its start"
            );
            0
        } else {
            skip
        };
        let start = skip.max(MAGIC.len() as u64);
        f.seek(SeekFrom::Start(start))
            .map_err(err(&dir, "cannot read a segment"))?;
        let mut r = io::BufReader::new(f);
        let mut at = start;
        let mut items = 0u64;
        while at < size {
            match read_record(&mut r, size - at) {
                Ok((rec, n)) => {
                    at += n;
                    items = items.saturating_add(rec.items);
                }
                Err(claimed) => {
                    tracing::warn!(
                        segment = %path.display(),
                        offset = at,
                        bytes_lost = size - at,
                        "spool segment has a torn or corrupt record; it and the rest of the segment are lost"
                    );
                    // What follows cannot be framed: the damaged record's own count (at
                    // least one item) is what is known to be lost.
                    self.lost.corrupt = self
                        .lost
                        .corrupt
                        .saturating_add(claimed.unwrap_or(1).max(1));
                    break;
                }
            }
        }
        if at < size {
            // Cut the damage off so appends (to the newest segment) continue cleanly.
            if let Ok(f) = OpenOptions::new().write(true).open(path) {
                let _ = f.set_len(at);
            }
        }
        self.segments.push_back(Segment { id, len: at, items });
        if skip > MAGIC.len() as u64 {
            // The delivered part of the head segment: readable from `skip` on only.
            self.read_items = 0;
            self.acked = Position {
                segment: id,
                offset: skip,
            };
        }
        Ok(())
    }

    /// Where reading starts: the delivered position in the head segment, or its start.
    fn head_start(&self) -> Position {
        match self.segments.front() {
            Some(h) if self.acked.segment == h.id && self.acked.offset > 0 => self.acked,
            Some(h) => Position {
                segment: h.id,
                offset: MAGIC.len() as u64,
            },
            None => Position {
                segment: self.next_id,
                offset: MAGIC.len() as u64,
            },
        }
    }

    fn update_empty(&mut self) {
        if self.segments.is_empty() {
            self.read = self.head_start();
            self.acked = self.read;
            self.read_items = 0;
            self.acked_items_in_head = 0;
        }
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Items not yet delivered (read or not).
    pub fn items(&self) -> u64 {
        let total = self
            .segments
            .iter()
            .fold(0u64, |n, s| n.saturating_add(s.items));
        let acked_in_head = match self.segments.front() {
            Some(h) if h.id == self.acked.segment => self.acked_items_in_head,
            _ => 0,
        };
        total.saturating_sub(acked_in_head)
    }

    /// True while the record ending at `pos` is still on disk (not dropped for room).
    pub fn holds(&self, pos: Position) -> bool {
        self.segment_index(pos.segment).is_some() && pos > self.acked
    }

    /// True when everything was delivered (nothing on disk).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// What was dropped or found unreadable since the last call.
    pub fn take_lost(&mut self) -> Lost {
        std::mem::take(&mut self.lost)
    }

    fn segment_index(&self, id: u64) -> Option<usize> {
        let first = self.segments.front()?.id;
        let i = usize::try_from(id.checked_sub(first)?).ok()?;
        // Ids are consecutive except where a bad segment was removed: check.
        match self.segments.get(i) {
            Some(s) if s.id == id => Some(i),
            _ => self.segments.iter().position(|s| s.id == id),
        }
    }

    /// Appends a record. Returns false when it alone is larger than the spool (it is then
    /// dropped and counted). The oldest records make room as needed.
    pub fn append(&mut self, rec: &Record) -> Result<bool, SpoolError> {
        let dir = self.cfg.dir.clone();
        let len = rec.body.len() as u64;
        let need = HEADER + len;
        if need + MAGIC.len() as u64 > self.cfg.max_bytes || len > u64::from(u32::MAX) {
            self.lost.full = self.lost.full.saturating_add(rec.items);
            return Ok(false);
        }
        // Room for the record and for the header of a new segment it may start.
        while !self.segments.is_empty()
            && self.bytes() + need + MAGIC.len() as u64 > self.cfg.max_bytes
        {
            self.drop_oldest();
        }
        let rotate = match (self.segments.back(), &self.writer) {
            (Some(last), Some(_)) => {
                last.len + need > self.cfg.segment_bytes && last.len > MAGIC.len() as u64
            }
            _ => true,
        };
        if rotate {
            if let Some(w) = self.writer.take() {
                // Synced by the caller, outside any lock around the spool.
                self.sealed.push(w);
            }
            let id = self.next_id;
            // A cursor may name the highest ids there are (a damaged or hostile file).
            let next = id.checked_add(1).ok_or_else(|| SpoolError {
                dir: dir.display().to_string(),
                what: "segment ids exhausted",
                source: io::Error::other("remove the spool folder"),
            })?;
            self.next_id = next;
            let path = dir.join(seg_name(id));
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .map_err(err(&dir, "cannot create a segment"))?;
            f.write_all(MAGIC)
                .map_err(err(&dir, "cannot write a segment"))?;
            self.segments.push_back(Segment {
                id,
                len: MAGIC.len() as u64,
                items: 0,
            });
            if self.segments.len() == 1 {
                self.read = Position {
                    segment: id,
                    offset: MAGIC.len() as u64,
                };
                self.acked = self.read;
                self.read_items = 0;
                self.acked_items_in_head = 0;
            }
            self.writer = Some(f);
        }
        let mut meta = [0u8; 10];
        meta[..8].copy_from_slice(&rec.items.to_le_bytes());
        meta[8] = signal_code(rec.signal);
        meta[9] = if rec.gzipped { FLAG_GZIP } else { 0 };
        let mut buf = Vec::with_capacity(usize::try_from(need).unwrap_or(0));
        buf.extend_from_slice(&(len as u32).to_le_bytes());
        buf.extend_from_slice(&crc(&meta, &rec.body).to_le_bytes());
        buf.extend_from_slice(&meta);
        buf.extend_from_slice(&rec.body);
        let Some(w) = self.writer.as_mut() else {
            return Ok(false);
        };
        if let Err(e) = w.write_all(&buf) {
            // A partial write leaves a torn record: start a fresh segment next time.
            self.writer = None;
            if let Some(last) = self.segments.back() {
                let path = dir.join(seg_name(last.id));
                if let Ok(f) = OpenOptions::new().write(true).open(&path) {
                    let _ = f.set_len(last.len);
                }
            }
            return Err(err(&dir, "cannot write a segment")(e));
        }
        if let Some(last) = self.segments.back_mut() {
            last.len += need;
            last.items = last.items.saturating_add(rec.items);
        }
        Ok(true)
    }

    /// Deletes the oldest segment; what of it was not delivered is counted as lost.
    fn drop_oldest(&mut self) {
        let Some(head) = self.segments.pop_front() else {
            return;
        };
        // Records already read are in memory, on their way: their fate is counted when it
        // is known (see [`Spool::holds`]). The unread rest is lost.
        let read = match self.read.segment.cmp(&head.id) {
            std::cmp::Ordering::Less => 0,
            std::cmp::Ordering::Equal => self.read_items,
            std::cmp::Ordering::Greater => head.items,
        };
        self.lost.full = self
            .lost
            .full
            .saturating_add(head.items.saturating_sub(read));
        let _ = fs::remove_file(self.cfg.dir.join(seg_name(head.id)));
        if self.segments.is_empty() {
            self.writer = None;
        }
        if self.reader.as_ref().is_some_and(|(id, _)| *id == head.id) {
            self.reader = None;
        }
        let start = self.head_start();
        if self.read.segment <= head.id {
            self.read = start;
            self.read_items = 0;
        }
        if self.acked.segment <= head.id {
            self.acked = start;
            self.acked_items_in_head = 0;
            self.cursor_dirty = true;
        }
    }

    /// Reads the next record, if any, with the position that acknowledges it.
    pub fn read_next(&mut self) -> Result<Option<(Record, Position)>, SpoolError> {
        let dir = self.cfg.dir.clone();
        loop {
            let Some(i) = self.segment_index(self.read.segment) else {
                // The read segment was dropped: continue at the head.
                if self.segments.is_empty() {
                    return Ok(None);
                }
                self.read = self.head_start();
                self.read_items = 0;
                continue;
            };
            let (id, len) = (self.segments[i].id, self.segments[i].len);
            if self.read.offset >= len {
                if i + 1 == self.segments.len() {
                    return Ok(None);
                }
                let next = self.segments[i + 1].id;
                self.read = Position {
                    segment: next,
                    offset: MAGIC.len() as u64,
                };
                self.read_items = 0;
                self.reader = None;
                continue;
            }
            if self.reader.as_ref().is_none_or(|(rid, _)| *rid != id) {
                let f = match File::open(dir.join(seg_name(id))) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // Removed from under us: what was not read of it is lost.
                        tracing::warn!(
                            segment = id,
                            "spool segment file is gone; its records are lost"
                        );
                        let seg = &self.segments[i];
                        self.lost.corrupt = self
                            .lost
                            .corrupt
                            .saturating_add(seg.items.saturating_sub(self.read_items));
                        self.read.offset = len;
                        continue;
                    }
                    Err(e) => return Err(err(&dir, "cannot open a segment")(e)),
                };
                self.reader = Some((id, f));
            }
            let Some((_, f)) = self.reader.as_mut() else {
                return Ok(None);
            };
            f.seek(SeekFrom::Start(self.read.offset))
                .map_err(err(&dir, "cannot read a segment"))?;
            match read_record(f, len - self.read.offset) {
                Ok((rec, n)) => {
                    self.read.offset += n;
                    self.read_items = self.read_items.saturating_add(rec.items);
                    return Ok(Some((rec, self.read)));
                }
                Err(_) => {
                    // Checked when appended or opened: the file changed under us.
                    tracing::warn!(
                        segment = id,
                        offset = self.read.offset,
                        "unreadable spool record; the rest of its segment is lost"
                    );
                    let seg = &self.segments[i];
                    self.lost.corrupt = self
                        .lost
                        .corrupt
                        .saturating_add(seg.items.saturating_sub(self.read_items));
                    self.read.offset = len;
                }
            }
        }
    }

    /// Marks everything up to `pos` as delivered (positions come in the order [`Spool::read_next`]
    /// returned them). Fully delivered segments are deleted; the cursor file is written at
    /// most once a second (`now`).
    pub fn ack(&mut self, pos: Position, items: u64, now: Instant) -> Result<(), SpoolError> {
        if pos < self.acked {
            // From a segment dropped meanwhile.
            return Ok(());
        }
        if pos.segment != self.acked.segment {
            self.acked_items_in_head = 0;
        }
        self.acked = pos;
        self.acked_items_in_head = self.acked_items_in_head.saturating_add(items);
        self.cursor_dirty = true;
        // Delete what lies wholly before the acknowledged position.
        while let Some(h) = self.segments.front() {
            let done = h.id < pos.segment
                || (h.id == pos.segment && pos.offset >= h.len && self.segments.len() > 1);
            let last_done = h.id == pos.segment && pos.offset >= h.len && self.segments.len() == 1;
            if !(done || last_done) {
                break;
            }
            let id = h.id;
            self.segments.pop_front();
            if last_done {
                self.writer = None;
            }
            if self.reader.as_ref().is_some_and(|(r, _)| *r == id) {
                self.reader = None;
            }
            let _ = fs::remove_file(self.cfg.dir.join(seg_name(id)));
            let start = self.head_start();
            if start.segment != pos.segment {
                // What was acknowledged lay in the deleted segment.
                self.acked_items_in_head = 0;
            }
            self.acked = start;
            if self.read.segment <= id {
                self.read = start;
                self.read_items = 0;
            }
        }
        if self
            .cursor_written
            .is_none_or(|t| now.duration_since(t) >= CURSOR_EVERY)
        {
            self.write_cursor(now)?;
        }
        Ok(())
    }

    fn write_cursor(&mut self, now: Instant) -> Result<(), SpoolError> {
        let dir = self.cfg.dir.clone();
        let mut b = Vec::with_capacity(20);
        b.extend_from_slice(&self.acked.segment.to_le_bytes());
        b.extend_from_slice(&self.acked.offset.to_le_bytes());
        let c = crc32fast::hash(&b);
        b.extend_from_slice(&c.to_le_bytes());
        let tmp = dir.join("cursor.tmp");
        fs::write(&tmp, &b).map_err(err(&dir, "cannot write the cursor"))?;
        fs::rename(&tmp, dir.join(CURSOR)).map_err(err(&dir, "cannot write the cursor"))?;
        self.cursor_written = Some(now);
        self.cursor_dirty = false;
        Ok(())
    }

    /// Segments that were filled since the last call: the caller syncs them
    /// ([`File::sync_data`]), so a slow disk does not hold whoever else uses the spool.
    pub fn take_sealed(&mut self) -> Vec<File> {
        std::mem::take(&mut self.sealed)
    }

    /// Syncs the newest segment (and any sealed one) and writes the cursor: call on
    /// shutdown.
    pub fn close(&mut self, now: Instant) -> Result<(), SpoolError> {
        let dir = self.cfg.dir.clone();
        for w in self.take_sealed() {
            w.sync_data().map_err(err(&dir, "cannot sync a segment"))?;
        }
        if let Some(w) = &self.writer {
            w.sync_data().map_err(err(&dir, "cannot sync a segment"))?;
        }
        if self.cursor_dirty || self.cursor_written.is_none() {
            self.write_cursor(now)?;
        }
        Ok(())
    }
}

fn read_cursor(path: &Path) -> Option<Position> {
    let b = fs::read(path).ok()?;
    if b.len() != 20
        || crc32fast::hash(&b[..16]) != u32::from_le_bytes([b[16], b[17], b[18], b[19]])
    {
        tracing::warn!(file = %path.display(), "spool cursor unreadable; delivered records may be sent again");
        return None;
    }
    let mut seg = [0u8; 8];
    let mut off = [0u8; 8];
    seg.copy_from_slice(&b[..8]);
    off.copy_from_slice(&b[8..16]);
    Some(Position {
        segment: u64::from_le_bytes(seg),
        offset: u64::from_le_bytes(off),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fn dir(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("otel-sli-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        Dir(d)
    }

    fn rec(i: u64) -> Record {
        Record {
            body: Bytes::from(format!("payload number {i}").repeat(1 + (i % 3) as usize)),
            items: i,
            signal: Some(Signal::Logs),
            gzipped: i.is_multiple_of(2),
        }
    }

    fn cfg(d: &Dir, max: u64, seg: u64) -> SpoolConfig {
        SpoolConfig {
            dir: d.0.clone(),
            max_bytes: max,
            segment_bytes: seg,
        }
    }

    fn drain(s: &mut Spool, now: Instant) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some((r, pos)) = s.read_next().expect("read") {
            s.ack(pos, r.items, now).expect("ack");
            out.push(r);
        }
        out
    }

    fn segment_files(d: &Dir) -> usize {
        fs::read_dir(&d.0)
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            })
            .count()
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_are_deleted_when_delivered() {
        let d = dir("order");
        let mut s = Spool::open(cfg(&d, 1 << 20, 256)).expect("open");
        for i in 1..=20 {
            assert!(s.append(&rec(i)).expect("append"));
        }
        assert!(segment_files(&d) > 3, "small segments rotate");
        assert_eq!(s.items(), (1..=20).sum::<u64>());
        let got = drain(&mut s, Instant::now());
        assert_eq!(got, (1..=20).map(rec).collect::<Vec<_>>());
        assert!(s.is_empty());
        assert_eq!(s.read_next().expect("read"), None, "nothing left to read");
        assert_eq!(s.items(), 0);
        assert_eq!(segment_files(&d), 0, "delivered segments are removed");
        // And it keeps working after emptying.
        assert!(s.append(&rec(7)).expect("append"));
        assert_eq!(drain(&mut s, Instant::now()), vec![rec(7)]);
    }

    #[test]
    fn a_restart_resumes_after_what_was_delivered() {
        let d = dir("restart");
        let now = Instant::now();
        {
            let mut s = Spool::open(cfg(&d, 1 << 20, 300)).expect("open");
            for i in 1..=10 {
                s.append(&rec(i)).expect("append");
            }
            for _ in 0..4 {
                let (r, pos) = s.read_next().expect("read").expect("record");
                s.ack(pos, r.items, now).expect("ack");
            }
            // Read but not delivered: must come back.
            let _ = s.read_next().expect("read");
            s.close(now).expect("close");
        }
        let mut s = Spool::open(cfg(&d, 1 << 20, 300)).expect("reopen");
        assert_eq!(s.items(), (5..=10).sum::<u64>());
        assert_eq!(s.take_lost(), Lost::default());
        s.append(&rec(11)).expect("append");
        assert_eq!(drain(&mut s, now), (5..=11).map(rec).collect::<Vec<_>>());
    }

    #[test]
    fn a_crash_delivers_again_at_most_what_followed_the_last_cursor_write() {
        let d = dir("crash");
        let now = Instant::now();
        {
            let mut s = Spool::open(cfg(&d, 1 << 20, 1 << 20)).expect("open");
            for i in 1..=6 {
                s.append(&rec(i)).expect("append");
            }
            // The first ack writes the cursor, the next ones (same second) do not.
            for _ in 0..3 {
                let (r, pos) = s.read_next().expect("read").expect("record");
                s.ack(pos, r.items, now).expect("ack");
            }
            // Dropped without close: a crash.
        }
        let mut s = Spool::open(cfg(&d, 1 << 20, 1 << 20)).expect("reopen");
        assert_eq!(drain(&mut s, now), (2..=6).map(rec).collect::<Vec<_>>());
    }

    #[test]
    fn the_cap_drops_the_oldest_and_counts_them() {
        let d = dir("cap");
        let mut s = Spool::open(cfg(&d, 2048, 512)).expect("open");
        for i in 1..=100 {
            assert!(s.append(&rec(i)).expect("append"));
            assert!(s.bytes() <= 2048, "{}", s.bytes());
        }
        let lost = s.take_lost().full;
        let kept = drain(&mut s, Instant::now());
        assert!(!kept.is_empty());
        assert_eq!(kept.last(), Some(&rec(100)), "the newest survive");
        let kept_items: u64 = kept.iter().map(|r| r.items).sum();
        assert_eq!(
            lost + kept_items,
            (1..=100).sum::<u64>(),
            "every item delivered or counted"
        );
        // A record larger than the whole spool is refused and counted.
        let big = Record {
            body: Bytes::from(vec![0u8; 4096]),
            items: 9,
            signal: None,
            gzipped: false,
        };
        assert!(!s.append(&big).expect("append"));
        assert_eq!(s.take_lost().full, 9);
    }

    #[test]
    fn dropping_the_segment_being_read_counts_only_the_unread_records() {
        let d = dir("cap-read");
        let mut s = Spool::open(cfg(&d, 1200, 400)).expect("open");
        for i in 1..=6 {
            s.append(&rec(i)).expect("append");
        }
        let (first, pos) = s.read_next().expect("read").expect("record");
        assert_eq!(first, rec(1));
        for i in 7..=30 {
            s.append(&rec(i)).expect("append");
        }
        assert!(!s.holds(pos), "its segment was dropped for room");
        s.ack(pos, first.items, Instant::now())
            .expect("late ack is ignored");
        let lost = s.take_lost().full;
        let kept: u64 = drain(&mut s, Instant::now()).iter().map(|r| r.items).sum();
        assert_eq!(lost + kept + first.items, (1..=30).sum::<u64>());
    }

    #[test]
    fn a_torn_tail_is_cut_off_counted_and_appends_continue() {
        let d = dir("torn");
        {
            let mut s = Spool::open(cfg(&d, 1 << 20, 1 << 20)).expect("open");
            for i in 1..=3 {
                s.append(&rec(i)).expect("append");
            }
        }
        let seg = d.0.join(seg_name(0));
        let len = fs::metadata(&seg).expect("segment").len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .expect("open")
            .set_len(len - 5)
            .expect("truncate");
        let mut s = Spool::open(cfg(&d, 1 << 20, 1 << 20)).expect("reopen");
        assert_eq!(s.take_lost().corrupt, 3, "the torn record's own count");
        s.append(&rec(4)).expect("append");
        assert_eq!(drain(&mut s, Instant::now()), vec![rec(1), rec(2), rec(4)]);
    }

    #[test]
    fn a_corrupt_record_ends_its_segment_and_later_segments_still_read() {
        let d = dir("corrupt");
        {
            let mut s = Spool::open(cfg(&d, 1 << 20, 120)).expect("open");
            for i in 1..=8 {
                s.append(&rec(i)).expect("append");
            }
        }
        assert!(segment_files(&d) >= 3);
        // Flip a body byte of the first record of segment 0.
        let seg = d.0.join(seg_name(0));
        let mut bytes = fs::read(&seg).expect("read");
        let at = MAGIC.len() + HEADER as usize + 2;
        bytes[at] ^= 0xff;
        fs::write(&seg, &bytes).expect("write");
        let mut s = Spool::open(cfg(&d, 1 << 20, 120)).expect("reopen");
        assert_eq!(s.take_lost().corrupt, 1);
        let got = drain(&mut s, Instant::now());
        assert!(!got.contains(&rec(1)));
        assert_eq!(got.last(), Some(&rec(8)));
        drop(s);
        // A garbage file in the directory is not mistaken for a segment.
        fs::write(d.0.join("0000000000000fff.seg"), b"garbage").expect("write");
        let mut s = Spool::open(cfg(&d, 1 << 20, 120)).expect("reopen");
        assert!(drain(&mut s, Instant::now()).is_empty());
    }

    #[test]
    fn ids_after_a_fully_delivered_spool_never_fall_behind_the_cursor() {
        let d = dir("ids");
        let now = Instant::now();
        {
            let mut s = Spool::open(cfg(&d, 1 << 20, 100)).expect("open");
            for i in 1..=10 {
                s.append(&rec(i)).expect("append");
            }
            drain(&mut s, now);
            s.close(now).expect("close");
        }
        {
            // Everything was delivered and deleted; new records, then a crash.
            let mut s = Spool::open(cfg(&d, 1 << 20, 100)).expect("reopen");
            for i in 11..=13 {
                s.append(&rec(i)).expect("append");
            }
        }
        let mut s = Spool::open(cfg(&d, 1 << 20, 100)).expect("reopen");
        assert_eq!(s.items(), 11 + 12 + 13);
        assert_eq!(drain(&mut s, now), (11..=13).map(rec).collect::<Vec<_>>());
    }

    #[test]
    fn a_cursor_beyond_its_segment_sends_the_segment_again() {
        let d = dir("cursor-beyond");
        let now = Instant::now();
        {
            let mut s = Spool::open(cfg(&d, 1 << 20, 1 << 20)).expect("open");
            for i in 1..=4 {
                s.append(&rec(i)).expect("append");
            }
            for _ in 0..3 {
                let (r, pos) = s.read_next().expect("read").expect("record");
                s.ack(pos, r.items, now).expect("ack");
            }
            s.close(now).expect("close");
        }
        // A power loss kept the cursor but not the segment's tail.
        let seg = d.0.join(seg_name(0));
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .expect("open")
            .set_len(MAGIC.len() as u64 + HEADER + rec(1).body.len() as u64)
            .expect("truncate");
        let mut s = Spool::open(cfg(&d, 1 << 20, 1 << 20)).expect("reopen");
        s.append(&rec(5)).expect("append");
        let got = drain(&mut s, now);
        assert_eq!(
            got,
            vec![rec(1), rec(5)],
            "resent from the start, then the new one"
        );
    }

    #[test]
    fn item_counts_read_from_disk_saturate_instead_of_overflowing() {
        // Two records whose (checksummed) headers claim 2^63 items each, as only a damaged
        // or hostile file does.
        let d = dir("huge-items");
        fs::create_dir_all(&d.0).expect("dir");
        let mut seg = MAGIC.to_vec();
        for _ in 0..2 {
            let mut meta = [0u8; 10];
            meta[..8].copy_from_slice(&(1u64 << 63).to_le_bytes());
            let body = b"x";
            seg.extend_from_slice(&1u32.to_le_bytes());
            seg.extend_from_slice(&crc(&meta, body).to_le_bytes());
            seg.extend_from_slice(&meta);
            seg.extend_from_slice(body);
        }
        fs::write(d.0.join(seg_name(0)), &seg).expect("segment");
        let mut s = Spool::open(cfg(&d, 1 << 20, 1 << 19)).expect("open");
        assert_eq!(s.items(), u64::MAX);
        let got = drain(&mut s, Instant::now());
        assert_eq!(got.len(), 2);
        assert!(s.is_empty());
        assert_eq!(s.items(), 0);
    }

    #[test]
    fn items_count_what_is_left_when_an_empty_segment_is_skipped() {
        let d = dir("items");
        let now = Instant::now();
        {
            let mut s = Spool::open(cfg(&d, 1 << 20, 100)).expect("open");
            for i in 1..=6 {
                s.append(&rec(i)).expect("append");
            }
        }
        // The first record of segment 0 is damaged: segment 0 holds nothing readable.
        let seg = d.0.join(seg_name(0));
        let mut bytes = fs::read(&seg).expect("read");
        bytes[MAGIC.len() + HEADER as usize] ^= 0xff;
        fs::write(&seg, &bytes).expect("write");
        let mut s = Spool::open(cfg(&d, 1 << 20, 100)).expect("reopen");
        let total = s.items();
        let (r, pos) = s.read_next().expect("read").expect("record");
        s.ack(pos, r.items, now).expect("ack");
        assert_eq!(s.items(), total - r.items);
    }

    #[test]
    fn a_segment_removed_from_under_the_spool_is_counted_and_skipped() {
        let d = dir("removed");
        let mut s = Spool::open(cfg(&d, 1 << 20, 100)).expect("open");
        for i in 1..=6 {
            s.append(&rec(i)).expect("append");
        }
        fs::remove_file(d.0.join(seg_name(0))).expect("remove");
        let got = drain(&mut s, Instant::now());
        let lost = s.take_lost().corrupt;
        let got_items: u64 = got.iter().map(|r| r.items).sum();
        assert!(lost > 0);
        assert_eq!(got_items + lost, (1..=6).sum::<u64>());
        assert_eq!(got.last(), Some(&rec(6)));
    }

    #[test]
    fn a_cursor_naming_the_last_segment_ids_makes_appends_fail_cleanly() {
        // Found by the `spool` fuzz target: flags (a cursor, two segments holding only the
        // magic), then the cursor: segment u64::MAX - 1, offset 0.
        let input: &[u8] = b"\x0b\xfe\xff\xff\xff\xff\xff\xff\xff";
        let d = dir("ids-exhausted");
        fs::create_dir_all(&d.0).expect("dir");
        let mut cursor = input[1..].to_vec();
        cursor.resize(16, 0);
        let sum = crc32fast::hash(&cursor);
        cursor.extend_from_slice(&sum.to_le_bytes());
        fs::write(d.0.join(CURSOR), &cursor).expect("cursor");
        for id in [1, 3] {
            fs::write(d.0.join(seg_name(id)), MAGIC).expect("segment");
        }
        let mut s = Spool::open(cfg(&d, 1 << 20, 1 << 19)).expect("open");
        let e = s.append(&rec(1)).expect_err("no segment id left");
        assert_eq!(e.what, "segment ids exhausted");
        assert!(s.is_empty());
        assert_eq!(s.read_next().expect("read"), None);
    }

    #[test]
    fn a_spool_folder_has_one_user_at_a_time() {
        let d = dir("lock");
        let first = Spool::open(cfg(&d, 1 << 20, 100)).expect("open");
        let e = Spool::open(cfg(&d, 1 << 20, 100)).expect_err("second user refused");
        assert!(e.to_string().contains("in use"), "{e}");
        drop(first);
        Spool::open(cfg(&d, 1 << 20, 100)).expect("free again");
    }
}
