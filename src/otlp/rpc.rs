//! `google.rpc.Status` and `google.rpc.RetryInfo`, the error payloads OTLP uses: the body of
//! an HTTP 4xx/5xx response and the `grpc-status-details-bin` of a retryable gRPC error.
//! Hand-written prost messages (two tiny messages do not justify a protoc step).

use prost::Message;
use std::time::Duration;

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    /// Type URL of the packed message.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The packed message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    /// gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    /// How long the client should wait.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// gRPC code numbers used here.
pub mod code {
    /// INVALID_ARGUMENT.
    pub const INVALID_ARGUMENT: i32 = 3;
    /// DEADLINE_EXCEEDED.
    pub const DEADLINE_EXCEEDED: i32 = 4;
    /// RESOURCE_EXHAUSTED.
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// UNAVAILABLE.
    pub const UNAVAILABLE: i32 = 14;
    /// UNAUTHENTICATED.
    pub const UNAUTHENTICATED: i32 = 16;
}

/// A `google.rpc.Status` with only a code and message.
pub fn status(code: i32, message: impl Into<String>) -> Status {
    Status {
        code,
        message: message.into(),
        details: Vec::new(),
    }
}

/// An `UNAVAILABLE` status carrying a `RetryInfo` with `delay`.
pub fn unavailable_with_retry(message: impl Into<String>, delay: Duration) -> Status {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    Status {
        code: code::UNAVAILABLE,
        message: message.into(),
        details: vec![Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: info.encode_to_vec(),
        }],
    }
}

/// The status as OTLP/JSON (`{"code":3,"message":"…"}`), details omitted.
pub fn to_json(s: &Status) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "code": s.code, "message": s.message }))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_round_trips() {
        let s = unavailable_with_retry("full", Duration::from_millis(1500));
        let back = Status::decode(s.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(back.code, code::UNAVAILABLE);
        let any = &back.details[0];
        assert!(any.type_url.ends_with("google.rpc.RetryInfo"));
        let info = RetryInfo::decode(any.value.as_slice()).expect("retry info");
        let d = info.retry_delay.expect("delay");
        assert_eq!((d.seconds, d.nanos), (1, 500_000_000));
    }
}
