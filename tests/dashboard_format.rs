//! The dashboard's number formatters (`src/api/dashboard/format.js`) under Node's built-in
//! test runner: `tests/dashboard/format.test.js`. Skipped (with a note) without `node`,
//! unless `OTEL_SLI_REQUIRE_TOOLS=1`.

mod common;

#[test]
fn dashboard_formatters_pass_their_unit_tests() {
    if !common::tool_available("node", &["--version"]) {
        return;
    }
    let out = std::process::Command::new("node")
        .arg("--test")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/dashboard/format.test.js"
        ))
        .output()
        .expect("node runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "format.test.js failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every case ran: a file that loads nothing would pass with zero tests.
    let passed = report
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    assert!(
        passed >= 9,
        "only {passed} formatter tests passed:\n{report}"
    );
}
