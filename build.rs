//! Build script. The OTLP messages come pre-generated from the `opentelemetry-proto` crate and
//! the two `google.rpc` messages are hand-written, so nothing needs compiling yet; protocol
//! definitions the project adds later (Prometheus remote write) live in `proto/` and are
//! compiled here without a system `protoc`.

fn main() {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
}
