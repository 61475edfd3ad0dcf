//! Reading feature-flag evaluations from a span, by OpenTelemetry's feature-flag semantic
//! conventions: `feature_flag.evaluation` events (and the `feature_flag` events of older SDKs
//! and OpenFeature hooks), and the same keys set as attributes of the span itself.
//!
//! This module owns the conventions' names and the rule for which variant an evaluation
//! names. It reads borrowed views and allocates nothing; series keys, caps and attribution
//! to requests are the pipeline's.
//!
//! # The rule
//!
//! * The flag is `feature_flag.key`; an evaluation without it is not one.
//! * The variant is `feature_flag.result.variant`, else the older `feature_flag.variant`,
//!   else LaunchDarkly's `feature_flag.result.variationIndex` (its hooks name no variant;
//!   the index is one), else the evaluated value `feature_flag.result.value` rendered as
//!   text (`true`, `42`, `blue`): a boolean flag evaluated without variants is then told
//!   apart by its value.
//!   An evaluation with none of them names no cohort ([`FlagEval::variant`] is `None`); the
//!   pipeline counts it.
//! * The provider (`feature_flag.provider.name`, older `feature_flag.provider_name`) is not
//!   part of the key: a flag key is unique within a service.

use crate::otlp::scan::{AnyValueRef, EventsRef, ScanError};

/// Event names of a flag evaluation: the current convention's, then the older one.
pub const EVENT_NAMES: [&[u8]; 2] = [b"feature_flag.evaluation", b"feature_flag"];

/// Attribute holding the flag's key.
pub const KEY: &str = "feature_flag.key";

/// Attributes holding the variant, most preferred first: the current convention's, the
/// older one's, LaunchDarkly's variation index.
pub const VARIANT: [&str; 3] = [
    "feature_flag.result.variant",
    "feature_flag.variant",
    "feature_flag.result.variationIndex",
];

/// Attribute holding the evaluated value, the variant's stand-in.
pub const VALUE: &str = "feature_flag.result.value";

/// Which evaluations count, and toward which requests.
#[derive(Clone, Debug)]
pub struct FlagRules {
    /// Only these flag keys (empty: every key, up to the pipeline's caps).
    pub allow: Vec<Box<[u8]>>,
    /// Evaluations recorded on other spans of a request (not its entry span) count toward
    /// the request when its entry span arrives in the same export request.
    pub child_spans: bool,
}

impl Default for FlagRules {
    /// The defaults of the `flags:` section: every key, child spans' evaluations attributed.
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            child_spans: true,
        }
    }
}

impl FlagRules {
    /// Whether evaluations of `key` count.
    #[inline]
    pub fn allows(&self, key: &[u8]) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|k| **k == *key)
    }
}

/// One evaluation of one flag, borrowing from the request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlagEval<'a> {
    /// `feature_flag.key` (bytes as sent; not empty).
    pub key: &'a [u8],
    /// The variant (or the value standing in for it), `None` when the evaluation names
    /// neither. A string, boolean, integer or double.
    pub variant: Option<AnyValueRef<'a>>,
}

/// What an evaluation's attributes said, gathered in one pass.
#[derive(Default)]
pub struct Parts<'a> {
    /// `feature_flag.key`.
    pub key: Option<AnyValueRef<'a>>,
    /// The variants, by [`VARIANT`] order.
    pub variant: [Option<AnyValueRef<'a>>; 3],
    /// `feature_flag.result.value`.
    pub value: Option<AnyValueRef<'a>>,
}

impl<'a> Parts<'a> {
    /// Notes attribute `k` = `v` if it is one of the conventions' keys (first one wins).
    #[inline]
    pub fn put(&mut self, k: &[u8], v: AnyValueRef<'a>) {
        let slot = if k == KEY.as_bytes() {
            &mut self.key
        } else if k == VARIANT[0].as_bytes() {
            &mut self.variant[0]
        } else if k == VARIANT[1].as_bytes() {
            &mut self.variant[1]
        } else if k == VARIANT[2].as_bytes() {
            &mut self.variant[2]
        } else if k == VALUE.as_bytes() {
            &mut self.value
        } else {
            return;
        };
        if slot.is_none() {
            *slot = Some(v);
        }
    }

    /// The evaluation these parts describe, if they name a flag.
    pub fn eval(&self) -> Option<FlagEval<'a>> {
        let key = match self.key? {
            AnyValueRef::Str(k) if !k.is_empty() => k,
            _ => return None,
        };
        let variant = self
            .variant
            .iter()
            .chain(std::iter::once(&self.value))
            .flatten()
            .copied()
            .find(|v| usable(*v));
        Some(FlagEval { key, variant })
    }
}

/// A value that can name a variant: a non-empty string, a boolean or a number.
fn usable(v: AnyValueRef<'_>) -> bool {
    match v {
        AnyValueRef::Str(s) => !s.is_empty(),
        AnyValueRef::Bool(_) | AnyValueRef::Int(_) => true,
        AnyValueRef::Double(d) => d.is_finite(),
        _ => false,
    }
}

/// Appends the flag evaluations recorded as events of a span to `out`, validating the
/// events, and the attributes of flag evaluation events, as it reads them (a malformed one
/// is the error; other events' attributes are not read).
pub fn from_events<'a>(
    events: &EventsRef<'a>,
    out: &mut Vec<FlagEval<'a>>,
) -> Result<(), ScanError> {
    if events.is_empty() {
        return Ok(());
    }
    events.try_for_each(|name, attrs| {
        if EVENT_NAMES.contains(&name) {
            let mut parts = Parts::default();
            attrs.try_for_each(|k, v| parts.put(k, v))?;
            out.extend(parts.eval());
        }
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::scan::{scan_traces, ResourceView, SpanSink, SpanView};
    use crate::otlp::synth::kv_str;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::span::Event;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    /// The evaluations each span's events name, as `(key, rendered variant)`.
    fn evals(events: Vec<Event>) -> Vec<(String, Option<String>)> {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        events,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        struct Sink(Vec<(String, Option<String>)>);
        impl<'a> SpanSink<'a> for Sink {
            fn resource(&mut self, _: ResourceView<'a>) {}
            fn span(&mut self, s: &SpanView<'a>) -> Result<(), ScanError> {
                let mut out = Vec::new();
                from_events(&s.events, &mut out)?;
                for e in out {
                    let v = e.variant.map(|v| format!("{v:?}"));
                    self.0.push((String::from_utf8_lossy(e.key).into(), v));
                }
                Ok(())
            }
        }
        let body = req.encode_to_vec();
        let mut sink = Sink(Vec::new());
        scan_traces(&body, &mut sink).expect("valid");
        sink.0
    }

    fn event(name: &str, attributes: Vec<KeyValue>) -> Event {
        Event {
            name: name.into(),
            attributes,
            ..Default::default()
        }
    }

    fn kv_bool(k: &str, b: bool) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::BoolValue(b)),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn current_and_older_conventions_and_the_value_fallback() {
        let got = evals(vec![
            event(
                "feature_flag.evaluation",
                vec![
                    kv_str("feature_flag.key", "new-flow"),
                    kv_str("feature_flag.provider.name", "flagd"),
                    kv_str("feature_flag.result.variant", "on"),
                ],
            ),
            event(
                "feature_flag",
                vec![
                    kv_str("feature_flag.key", "old-flow"),
                    kv_str("feature_flag.provider_name", "LaunchDarkly"),
                    kv_str("feature_flag.variant", "treatment"),
                ],
            ),
            event(
                "feature_flag.evaluation",
                vec![
                    kv_str("feature_flag.key", "dark-mode"),
                    kv_bool("feature_flag.result.value", true),
                ],
            ),
            // LaunchDarkly's hook by default: a variation index, no value.
            event(
                "feature_flag",
                vec![
                    kv_str("feature_flag.key", "ld-flag"),
                    kv_str("feature_flag.provider.name", "LaunchDarkly"),
                    kv_str("feature_flag.context.id", "user-1"),
                    crate::otlp::synth::kv_int("feature_flag.result.variationIndex", 1),
                ],
            ),
            // Not a flag evaluation: another event name, or no key.
            event("exception", vec![kv_str("feature_flag.key", "x")]),
            event("feature_flag", vec![kv_str("feature_flag.variant", "on")]),
            // A key without variant or value names no cohort.
            event(
                "feature_flag.evaluation",
                vec![kv_str("feature_flag.key", "bare")],
            ),
        ]);
        assert_eq!(
            got,
            [
                (
                    "new-flow".into(),
                    Some(format!("{:?}", AnyValueRef::Str(b"on")))
                ),
                (
                    "old-flow".into(),
                    Some(format!("{:?}", AnyValueRef::Str(b"treatment")))
                ),
                ("dark-mode".into(), Some("Bool(true)".into())),
                ("ld-flag".into(), Some("Int(1)".into())),
                ("bare".into(), None),
            ]
        );
    }

    #[test]
    fn the_current_variant_wins_over_the_older_and_the_value() {
        let got = evals(vec![event(
            "feature_flag.evaluation",
            vec![
                kv_str("feature_flag.result.value", "v"),
                kv_str("feature_flag.variant", "old"),
                kv_str("feature_flag.key", "f"),
                kv_str("feature_flag.result.variant", "new"),
            ],
        )]);
        assert_eq!(
            got,
            [("f".into(), Some(format!("{:?}", AnyValueRef::Str(b"new"))))]
        );
    }
}
