//! Configuration parsing from YAML text, `${VAR}` expansion included.
//!
//! Oracle: `Ok` or an error with a message, never a panic; expansion alone is also
//! checked on its own (its errors name a line within the text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otel_sli::config::env;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = env::expand(text, otel_sli_fuzz::env) {
        let line = match &e {
            env::ExpandError::Unset { line, .. }
            | env::ExpandError::Unterminated { line }
            | env::ExpandError::BadName { line, .. } => *line,
        };
        assert!(
            line >= 1 && line <= text.lines().count().max(1),
            "line {line} outside the text"
        );
    }
    match otel_sli_fuzz::parse_config(text) {
        Ok(c) => std::hint::black_box(&c.warnings).len(),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            0
        }
    };
});
