//! Build script. The OTLP messages come pre-generated from the `opentelemetry-proto` crate and
//! the two `google.rpc` messages are hand-written. The Prometheus remote-write messages in
//! `proto/prometheus/` are compiled here with `protox` (a pure-Rust protobuf compiler, so no
//! system `protoc` is needed) and `prost-build`, into `OUT_DIR/prometheus.rs`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    let files = protox::compile(["remote.proto", "types.proto"], ["proto/prometheus"])?;
    prost_build::Config::new().compile_fds(files)?;
    Ok(())
}
