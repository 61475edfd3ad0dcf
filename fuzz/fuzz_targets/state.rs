//! The SLO state-file reader over arbitrary bytes, and restoring what it accepts into an
//! engine with two SLOs, then evaluating them.
//!
//! Input: the first byte picks the mode. Even: the rest is the whole file. Odd: the rest is
//! the JSON body and a correct header is put in front of it, so the body parser and the
//! restore are reached past the checksum. Oracle: no panic; every SLI evaluated after the
//! restore lies in [0, 1]; a restored state saves and parses back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otel_sli::slo::state::{self, VERSION};

const NOW: u64 = 1_700_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let file;
    let bytes: &[u8] = if mode & 1 == 1 {
        let mut f = format!(
            "otel-sli-slo-state {VERSION} {:08x} {}\n",
            crc32fast::hash(rest),
            rest.len()
        )
        .into_bytes();
        f.extend_from_slice(rest);
        file = f;
        &file
    } else {
        rest
    };
    let Ok(saved) = state::parse(bytes) else {
        return;
    };
    let mut engine = otel_sli_fuzz::slo_engine();
    // Restored at several clock readings: before, at and long after the saved minutes.
    let now = match mode >> 1 {
        0 => NOW,
        1 => 0,
        2 => u64::MAX,
        n => u64::from(n) * 60_000_000_000 * 1_000_000,
    };
    let r = engine.restore(&saved, now);
    assert!(r.restored.len() + r.changed.len() + r.unknown.len() == saved.slos.len());
    let statuses = engine.evaluate(now, 1, |_| Vec::new());
    assert_eq!(statuses.len(), engine.defs().len());
    for s in &statuses {
        assert!(s.window.bad <= s.window.total, "more bad than total: {:?}", s.window);
        if let Some(sli) = s.sli {
            assert!((0.0..=1.0).contains(&sli), "SLI {sli} outside [0, 1]");
        }
        let _ = s.budget_consumed();
    }
    let _ = engine.counts(0, now, 60);
    let again = engine.state();
    let body = match serde_json::to_vec(&again).ok() {
        Some(b) => b,
        None => return,
    };
    let header = format!(
        "otel-sli-slo-state {VERSION} {:08x} {}\n",
        crc32fast::hash(&body),
        body.len()
    );
    let mut f = header.into_bytes();
    f.extend_from_slice(&body);
    assert_eq!(
        state::parse(&f).as_ref(),
        Ok(&again),
        "a saved state parses back"
    );
});
