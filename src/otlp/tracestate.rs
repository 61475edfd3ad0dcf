//! Sampling information in a span's W3C `tracestate`: the OpenTelemetry `ot` member's
//! `th` (rejection threshold, consistent probability sampling) and the older `p` (p-value).
//! From them comes the span's *adjusted count*: how many spans of the original traffic this
//! one stands for. Pure parsing; no allocation.

/// 2^56: thresholds are 56-bit.
const MAX_ADJUSTED_COUNT: f64 = 72_057_594_037_927_936.0;

/// Largest weight one span counts with (a sampling probability of 1 in 2^32).
pub const MAX_WEIGHT: f64 = 4_294_967_296.0;

/// What a tracestate says about sampling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// No `ot` sampling information (not sampled, or sampled without saying so): count 1.
    Unknown,
    /// Sampled with the given adjusted count (`1` for 100%, `10` for 10%; `0` for the
    /// p-value 63, which marks a span that was kept without probability sampling).
    AdjustedCount(f64),
    /// An `ot` member whose `th` or `p` could not be read: count 1, flagged.
    Invalid,
}

impl Sampling {
    /// The weight to count the span with: the adjusted count (at most [`MAX_WEIGHT`], so
    /// one span cannot swamp a series' totals), or 1 when unknown or invalid.
    pub fn weight(self) -> f64 {
        match self {
            Sampling::AdjustedCount(c) => c.min(MAX_WEIGHT),
            Sampling::Unknown | Sampling::Invalid => 1.0,
        }
    }
}

/// Reads the sampling information of a `tracestate` value (as bytes; not UTF-8 is `Unknown`).
pub fn sampling(tracestate: &[u8]) -> Sampling {
    let Some(ot) = member(tracestate, b"ot") else {
        return Sampling::Unknown;
    };
    let (mut th, mut p) = (None, None);
    for kv in ot.split(|&b| b == b';') {
        let Some(colon) = kv.iter().position(|&b| b == b':') else {
            continue;
        };
        let (k, v) = (&kv[..colon], &kv[colon + 1..]);
        match k {
            b"th" => th = Some(v),
            b"p" => p = Some(v),
            _ => {}
        }
    }
    if let Some(th) = th {
        return threshold(th).map_or(Sampling::Invalid, |t| {
            Sampling::AdjustedCount(MAX_ADJUSTED_COUNT / (MAX_ADJUSTED_COUNT - t as f64))
        });
    }
    if let Some(p) = p {
        let parsed = std::str::from_utf8(p)
            .ok()
            .and_then(|s| s.parse::<u32>().ok());
        return match parsed {
            Some(63) => Sampling::AdjustedCount(0.0),
            Some(p) if p < 63 => Sampling::AdjustedCount((p as f64).exp2()),
            _ => Sampling::Invalid,
        };
    }
    Sampling::Unknown
}

/// The value of list member `key` (`key=value`, members separated by `,` with optional
/// spaces or tabs around them).
fn member<'a>(list: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    list.split(|&b| b == b',').find_map(|m| {
        let m = trim(m);
        let eq = m.iter().position(|&b| b == b'=')?;
        (&m[..eq] == key).then(|| &m[eq + 1..])
    })
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A `th` value: 1 to 14 hex digits, implicitly padded with trailing zeros to 56 bits.
fn threshold(hex: &[u8]) -> Option<u64> {
    if hex.is_empty() || hex.len() > 14 {
        return None;
    }
    let mut t = 0u64;
    for &b in hex {
        let d = (b as char).to_digit(16)?;
        t = (t << 4) | u64::from(d);
    }
    Some(t << (4 * (14 - hex.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(ts: &str) -> Sampling {
        sampling(ts.as_bytes())
    }

    #[test]
    fn thresholds() {
        assert_eq!(count("ot=th:0"), Sampling::AdjustedCount(1.0));
        assert_eq!(count("ot=th:8"), Sampling::AdjustedCount(2.0), "50%");
        assert_eq!(count("ot=th:c"), Sampling::AdjustedCount(4.0), "25%");
        // 10%: threshold = 90% of 2^56, written with 14 digits of precision.
        match count("ot=th:e666666666666") {
            Sampling::AdjustedCount(c) => assert!((c - 10.0).abs() < 1e-9, "{c}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(count("ot=th:80000000000000"), Sampling::AdjustedCount(2.0));
    }

    #[test]
    fn p_values() {
        assert_eq!(count("ot=p:0"), Sampling::AdjustedCount(1.0));
        assert_eq!(count("ot=p:3;r:10"), Sampling::AdjustedCount(8.0));
        assert_eq!(count("ot=p:63"), Sampling::AdjustedCount(0.0));
        assert_eq!(count("ot=p:64"), Sampling::Invalid);
        // th wins over p.
        assert_eq!(count("ot=p:3;th:8"), Sampling::AdjustedCount(2.0));
    }

    #[test]
    fn other_vendors_and_spacing() {
        assert_eq!(count(""), Sampling::Unknown);
        assert_eq!(count("congo=t61rcWkgMzE"), Sampling::Unknown);
        assert_eq!(
            count("congo=t61rcWkgMzE , ot=th:c;rv:9b8233f7e3a151 ,rojo=00f067aa0ba902b7"),
            Sampling::AdjustedCount(4.0)
        );
        assert_eq!(count("ot=rv:9b8233f7e3a151"), Sampling::Unknown);
    }

    #[test]
    fn invalid_values_are_flagged_and_count_once() {
        for bad in [
            "ot=th:",
            "ot=th:xyz",
            "ot=th:123456789012345",
            "ot=p:-1",
            "ot=p:x",
        ] {
            assert_eq!(count(bad), Sampling::Invalid, "{bad}");
            assert_eq!(count(bad).weight(), 1.0);
        }
        assert_eq!(sampling(&[0xff, b'=', 0xfe]), Sampling::Unknown);
    }
}
